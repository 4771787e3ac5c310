// SyncBatchNorm over worker_threads (SharedMemoryCommunicator): 2 and 4
// workers holding uneven shards of each batch — one of them empty — give the
// output, input gradient and running statistics of one PyTorch BatchNorm2d
// over the whole batch (the bn2d fixture sequence), and weight / bias
// gradients that sum to its. Tolerances as layer-fixtures.ts. The workers run
// the compiled package in dist/ (npm test builds it before jest).
import * as fs from 'fs';
import * as path from 'path';
import { Worker } from 'worker_threads';
import {
  BatchNorm, batchNormBackward, batchNormBackwardElemt, batchNormBackwardReduce, LocalCommunicator, moments, SharedMemoryCommunicator,
  SyncBatchNorm,
} from '../lib';
import { expectClose, randomFloats } from './helpers';
import { expectState, fixtures, Sequence, TOL } from './layer-fixtures';

const dist = path.join(__dirname, '..', 'dist', 'lib', 'index.js');
const workerFile = path.join(__dirname, 'workers', 'sync-bn-worker.js');

interface RankResult { y: number[]; dx: number[]; state: Record<string, number[] | number>; weightGrad: number[]; biasGrad: number[] }

function runRanks(seq: Sequence, splits: number[][]): Promise<RankResult[][]> {
  const worldSize = splits[0].length;
  const group = SharedMemoryCommunicator.createGroup(worldSize, { timeoutMs: 20000 });
  const channels = seq.layout === 'NCHW' ? seq.steps[0].shape[1] : seq.steps[0].shape[seq.steps[0].shape.length - 1];
  return Promise.all(Array.from({ length: worldSize }, (_, rank) => new Promise<RankResult[]>((resolve, reject) => {
    const w = new Worker(workerFile, { workerData: { group, rank, layout: seq.layout, channels, initial: seq.initial, steps: seq.steps, splits } });
    w.once('message', (m: { ok: boolean; results: RankResult[]; error: string }) => (m.ok ? resolve(m.results) : reject(new Error(`rank ${rank}: ${m.error}`))));
    w.once('error', reject);
  })));
}

// per step (N = 4, 6, 2, 3, 5 in the bn2d sequence): samples of each rank
const SPLITS: Record<number, number[][]> = {
  2: [[1, 3], [6, 0], [1, 1], [2, 1], [3, 2]],
  4: [[1, 0, 2, 1], [2, 0, 1, 3], [0, 1, 0, 1], [1, 1, 1, 0], [0, 0, 5, 0]],
};

beforeAll(() => {
  if (!fs.existsSync(dist)) throw new Error(`${dist} is missing: the worker tests run the compiled package; run npm test (or npm run build) first`);
});

describe.each([
  ['bn2d_nchw', 2], ['bn2d_nchw', 4], ['bn2d_nhwc', 2], ['bn2d_nhwc', 4],
] as const)('%s on %i workers = one BatchNorm over the whole batch', (name, worldSize) => {
  test('output, input gradient, running statistics on every rank, summed parameter gradients', async () => {
    const seq = (fixtures.batchnorm as Sequence[]).find((s) => s.name === name)!;
    const ranks = await runRanks(seq, SPLITS[worldSize]);
    seq.steps.forEach((step, s) => {
      const what = `${name} step ${s} (${step.mode}, split ${SPLITS[worldSize][s].join('+')})`;
      expectClose(ranks.flatMap((r) => r[s].y), step.y, TOL.y[0], TOL.y[1], `${what} y`);
      expectClose(ranks.flatMap((r) => r[s].dx), step.dx, TOL.grad[0], TOL.grad[1], `${what} dx`);
      for (const r of ranks) expectState(r[s].state, { ...step.state, weight: seq.initial.weight, bias: seq.initial.bias }, what);
      const sum = (key: 'weightGrad' | 'biasGrad') => ranks.map((r) => r[s][key]).reduce((a, b) => a.map((v, i) => v + b[i]));
      expectClose(sum('weightGrad'), step.weight_grad!, TOL.grad[0], TOL.grad[1], `${what} weight grad`);
      expectClose(sum('biasGrad'), step.bias_grad!, TOL.grad[0], TOL.grad[1], `${what} bias grad`);
    });
  });
});

test('with a LocalCommunicator, SyncBatchNorm is BatchNorm', () => {
  const seq = (fixtures.batchnorm as Sequence[]).find((s) => s.name === 'bn2d_nhwc')!;
  const sync = new SyncBatchNorm(3, new LocalCommunicator(), { layout: 'NHWC' });
  const bn = new BatchNorm(3, { layout: 'NHWC' });
  for (const layer of [sync, bn]) layer.loadState(seq.initial as never);
  for (const step of seq.steps) {
    for (const layer of [sync, bn]) layer.train(step.mode === 'train');
    const x = Float32Array.from(step.x);
    expectClose(sync.forward(x, step.shape), step.y, TOL.y[0], TOL.y[1], 'y');
    bn.forward(x, step.shape);
    expectClose(sync.backward(Float32Array.from(step.dy)), step.dx, TOL.grad[0], TOL.grad[1], 'dx');
    bn.backward(Float32Array.from(step.dy));
    expectState(sync.state(), bn.state(), 'state');
  }
  expect(() => new SyncBatchNorm(3, {} as never)).toThrow(/communicator: expected a Communicator/);
  expect(() => sync.train().forward(new Float32Array(3), [1, 1, 1, 3])).toThrow(/Expected more than 1 value per channel when training, got 1 over all 1 workers/);
});

test('SharedMemoryCommunicator on the main thread with one worker; length mismatch and abort', async () => {
  const group = SharedMemoryCommunicator.createGroup(1);
  const comm = new SharedMemoryCommunicator(group, 0);
  expect(comm.allGather(Float64Array.of(1, 2))).toEqual([Float64Array.of(1, 2)]);
  expect(() => comm.allGather(new Float64Array(group.capacity + 1))).toThrow(/exceed the group's capacity/);
  comm.abort();
  expect(() => comm.allGather(Float64Array.of(1))).toThrow(/aborted by a rank/);
  expect(() => new SharedMemoryCommunicator(group, 1)).toThrow(/rank: expected an integer from 0 to 0, got 1/);
  const pair = SharedMemoryCommunicator.createGroup(2, { timeoutMs: 200 });
  expect(() => new SharedMemoryCommunicator(pair, 0).allGather(Float64Array.of(1))).toThrow(/waited more than 200 ms/);
});

test('batchNormBackwardReduce / Elemt against a float64 reference (and as the training backward)', () => {
  for (const layout of ['NCHW', 'NHWC'] as const) {
    const shape = layout === 'NCHW' ? [6, 5, 7] : [6, 7, 5];
    const x = randomFloats(210, 3, -2, 5);
    const dy = randomFloats(210, 4);
    const s = moments(x, shape, { layout, groups: 2 });
    const mean = s.mean;
    const invstd = s.variance().map((v) => 1 / Math.sqrt(v + 1e-5));
    const { sumDy, sumDyXhat } = batchNormBackwardReduce(dy, x, shape, { layout, groups: 2, mean, invstd });
    const at = (n: number, c: number, l: number) => (layout === 'NCHW' ? (n * 5 + c) * 7 + l : (n * 7 + l) * 5 + c);
    const want = [new Float64Array(10), new Float64Array(10)];
    for (let n = 0; n < 6; n++) for (let c = 0; c < 5; c++) for (let l = 0; l < 7; l++) {
      const g = Math.floor(n / 3) * 5 + c;
      want[0][g] += dy[at(n, c, l)];
      want[1][g] += dy[at(n, c, l)] * (x[at(n, c, l)] - mean[g]) * invstd[g];
    }
    expectClose(sumDy, want[0], 1e-6, 1e-6, 'sumDy');
    expectClose(sumDyXhat, want[1], 1e-6, 1e-6, 'sumDyXhat');
    const w = randomFloats(5, 5, 0.5, 1.5);
    const a = new Float64Array(10).map((_, i) => w[i % 5] * invstd[i]);
    const dx = batchNormBackwardElemt(dy, x, shape, {
      layout, groups: 2, mean, a, b: a.map((v, i) => (-v * invstd[i] * sumDyXhat[i]) / 21), c: a.map((v, i) => (-v * sumDy[i]) / 21),
    });
    const ref = batchNormBackward(dy, x, shape, { layout, training: true, groups: 2, weight: w, mean, invstd }).dx;
    expectClose(dx, ref, 1e-4, 2e-5, `${layout} dx`);
    expect(() => batchNormBackwardElemt(dy, x, shape, { layout, mean, a, b: a, c: a })).toThrow(/options.mean: expected 5 values/);
  }
});
