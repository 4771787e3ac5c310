// The `rebatch` command line: dispatches to lib/cli/commands/*, turns errors
// into one-line messages and exit codes (2: bad input, 1: internal error).
import * as fs from 'fs';
import * as path from 'path';
import { CliError, exitCodeOf } from './errors';
import { Io, processIo } from './io';

interface Command {
  usage: string;
  run(args: string[], io: Io): Promise<number>;
}

// Loaded on demand so `rebatch --help` does not load onnxruntime.
const COMMANDS: Record<string, () => Command> = {
  recompute: () => require('./commands/recompute') as Command,
  inspect: () => require('./commands/inspect') as Command,
  fold: () => require('./commands/fold') as Command,
  stats: () => require('./commands/stats') as Command,
  merge: () => require('./commands/merge') as Command,
  demo: () => require('./commands/demo') as Command,
  'build-from-source': () => require('./commands/build-from-source') as Command,
};

/** The overall help text. */
export const usage = `rebatch: BatchNorm population statistics for ONNX models

  rebatch recompute MODEL.onnx --data FILE [--input NAME] [--batch-size 32] [--max-samples N] [--drop-last]
                    [--estimator pooled|batch-average] [--out OUT.onnx] [--stats-out STATS.json] [--threads N] [--json]
  rebatch inspect   MODEL.onnx [--json]
  rebatch fold      MODEL.onnx --out OUT.onnx
  rebatch stats     MODEL.onnx --data FILE [data options] --stats-out PART.json
  rebatch merge     PART.json... --model MODEL.onnx --out OUT.onnx
  rebatch demo
  rebatch build-from-source   compile the native addon here when no prebuilt binary fits

rebatch COMMAND --help tells more. --debug prints stack traces on errors.
`;

/** The package's version, from the package.json above this file (in lib/ or dist/lib/). */
function packageVersion(): string {
  for (let dir = __dirname; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

/** Runs the CLI with `argv` (without node and the script); resolves to the exit code. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const [name, ...args] = argv;
  const debug = argv.includes('--debug');
  try {
    if (name === undefined) {
      io.err(usage);
      return 2;
    }
    if (name === '--help' || name === '-h' || name === 'help') {
      io.out(usage);
      return 0;
    }
    if (name === '--version') {
      io.out(`${packageVersion()}\n`);
      return 0;
    }
    const load = COMMANDS[name];
    if (!load) throw new CliError(`rebatch: unknown command '${name}'; expected one of ${Object.keys(COMMANDS).join(', ')}`);
    return await load().run(args, io);
  } catch (e) {
    const code = exitCodeOf(e);
    const message = e instanceof Error ? e.message : String(e);
    io.err(`rebatch: ${code === 1 ? 'internal error: ' : ''}${message.replace(/^rebatch:\s*/, '')}\n`);
    if (debug && e instanceof Error && e.stack) io.err(`${e.stack}\n`);
    else if (code === 1) io.err('(run with --debug for a stack trace)\n');
    return code;
  }
}

/** Entry point for bin/rebatch.js. */
export function run(): void {
  // `rebatch inspect big.onnx | head` closes stdout early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0); else throw e; });
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
    process.stderr.write(`rebatch: internal error: ${String(e)}\n`);
    process.exitCode = 1;
  });
}

if (require.main === module) run();
