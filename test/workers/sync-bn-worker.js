// A worker_threads rank for test/sync-batch-norm.test.ts. Plain JavaScript on
// the compiled package (dist/, built by `npm test` before jest runs), so no
// TypeScript loader is needed inside the worker.
'use strict';
const path = require('path');
const { parentPort, workerData } = require('worker_threads');
const rebatch = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'index.js'));

const { group, rank, layout, channels, initial, steps, splits } = workerData;
const comm = new rebatch.SharedMemoryCommunicator(group, rank);
try {
  const bn = new rebatch.SyncBatchNorm(channels, comm, { layout });
  bn.loadState(initial);
  const results = steps.map((step, s) => {
    const sizes = splits[s];
    const start = sizes.slice(0, rank).reduce((a, b) => a + b, 0);
    const count = sizes[rank];
    const sample = step.x.length / step.shape[0];
    const x = Float32Array.from(step.x.slice(start * sample, (start + count) * sample));
    const dy = Float32Array.from(step.dy.slice(start * sample, (start + count) * sample));
    bn.train(step.mode === 'train');
    const y = bn.forward(x, [count, ...step.shape.slice(1)]);
    const dx = bn.backward(dy);
    return { y: Array.from(y), dx: Array.from(dx), state: bn.state(), weightGrad: Array.from(bn.weightGrad), biasGrad: Array.from(bn.biasGrad) };
  });
  parentPort.postMessage({ ok: true, results });
} catch (e) {
  comm.abort();
  parentPort.postMessage({ ok: false, error: String(e && e.stack || e) });
}
