// Jest environment for tests that run onnxruntime-node: its native code makes
// output tensors with Node's own typed-array constructors, which jest's sandbox
// replaces with its own, so onnxruntime's `instanceof Float32Array` checks fail
// ("A float32 tensor's data must be type of function Float32Array()").
// Sharing the typed-array constructors of the outer realm avoids that.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array',
  'Uint16Array', 'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

class OrtEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = OrtEnvironment;
