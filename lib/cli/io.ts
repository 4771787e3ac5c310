// Where the CLI writes: stdout and stderr, replaceable in tests.

/** Output streams and whether stderr is a terminal (for the progress bar). */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  stderrIsTTY: boolean;
  /** Terminal width, for the progress bar. */
  columns: number;
}

/** The process's own streams. */
export function processIo(): Io {
  return {
    out: (t) => process.stdout.write(t),
    err: (t) => process.stderr.write(t),
    stderrIsTTY: Boolean(process.stderr.isTTY),
    columns: process.stderr.columns ?? 80,
  };
}

/** An Io that records everything, for tests. */
export function memoryIo(): Io & { stdout: string; stderr: string } {
  const io = {
    stdout: '', stderr: '', stderrIsTTY: false, columns: 80,
    out(t: string) { io.stdout += t; },
    err(t: string) { io.stderr += t; },
  };
  return io;
}
