// A progress bar on stderr when it is a terminal: samples done, samples/s, ETA.
// Redrawn at most every 100 ms; nothing is printed when stderr is not a TTY.
import { Io } from './io';

/** Formats seconds as 1m05s / 12s. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  s = Math.max(0, Math.round(s));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

/** The progress line for `done` of `total` samples after `elapsed` seconds, fit to `width` columns. */
export function progressLine(label: string, done: number, total: number, elapsed: number, width: number): string {
  const rate = elapsed > 0 ? done / elapsed : 0;
  const eta = rate > 0 ? (total - done) / rate : Infinity;
  const tail = ` ${done}/${total} samples  ${rate.toFixed(0)} samples/s  ETA ${formatDuration(eta)}`;
  const barWidth = Math.max(10, Math.min(40, width - label.length - tail.length - 4));
  const filled = total > 0 ? Math.round((barWidth * done) / total) : barWidth;
  return `${label} [${'='.repeat(filled)}${' '.repeat(barWidth - filled)}]${tail}`;
}

/** A progress reporter; `update` is cheap to call often. */
export class Progress {
  private readonly start = Date.now();
  private last = 0;
  private shown = false;

  constructor(private readonly io: Io, private readonly label: string, private readonly enabled = io.stderrIsTTY) {}

  update(done: number, total: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.last < 100 && done < total) return;
    this.last = now;
    this.shown = true;
    const line = progressLine(this.label, done, total, (now - this.start) / 1000, this.io.columns);
    this.io.err(`\r${line.slice(0, this.io.columns - 1)}\x1b[K`);
  }

  /** Clears the bar so later output starts on a clean line. */
  done(): void {
    if (this.shown) this.io.err('\r\x1b[K');
    this.shown = false;
  }
}
