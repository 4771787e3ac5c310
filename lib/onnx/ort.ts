// onnxruntime-node, loaded on first use. It is an optional peer dependency:
// the BatchNorm library does not need it (and its postinstall would download
// GPU files on every install), only the CLI's model-running commands do.
import type * as Ort from 'onnxruntime-node';

/** onnxruntime-node is not installed: the user's to fix (exit 2). */
export class MissingDependencyError extends Error {}

let cached: typeof Ort | null = null;

/** The onnxruntime-node module; a {@link MissingDependencyError} saying how to install it when absent. */
export function loadOrt(): typeof Ort {
  if (cached) return cached;
  try {
    cached = require('onnxruntime-node') as typeof Ort;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'MODULE_NOT_FOUND' && /onnxruntime-node/.test(err.message)) {
      throw new MissingDependencyError('this command runs the model with onnxruntime-node, which is not installed: ' +
        'npm install onnxruntime-node (set ONNXRUNTIME_NODE_INSTALL=skip to skip its optional GPU download)');
    }
    throw e;
  }
  return cached;
}
