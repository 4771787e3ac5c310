// Error kinds and exit codes: 2 for bad input (a file, an option, the data),
// 1 for an internal error.
import { DataError } from '../data/bytes';
import { ModelError } from '../onnx/model';
import { OutputError } from '../onnx/atomic';
import { MissingDependencyError } from '../onnx/ort';

/** A user-facing error: bad arguments or input; exit code 2 unless given. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

/** The exit code for an error: 2 for the user's input, 1 otherwise. */
export function exitCodeOf(e: unknown): number {
  if (e instanceof CliError) return e.exitCode;
  if (e instanceof DataError || e instanceof ModelError || e instanceof OutputError || e instanceof MissingDependencyError) return 2;
  return 1;
}
