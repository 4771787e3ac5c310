// BatchNorm, its Keras / ONNX convention, batch statistics at inference,
// GhostBatchNorm and FrozenBatchNorm against PyTorch fixtures (tolerances in
// layer-fixtures.ts), plus the PyTorch issue 60528 vector and argument errors.
import { BatchNorm, FrozenBatchNorm, freeze, freezeBatchNorms, GhostBatchNorm, splitIntoGroups } from '../lib';
import { expectClose, randomFloats } from './helpers';
import { checkStep, expectState, fixtures, Sequence, Step, TOL } from './layer-fixtures';

describe('BatchNorm against PyTorch (sequences of train / eval steps)', () => {
  test.each((fixtures.batchnorm as Sequence[]).map((s) => [s.name, s] as const))('%s', (_name, seq) => {
    const o = seq.options as { eps: number; momentum: number | null; affine: boolean; trackRunningStats: boolean };
    const bn = new BatchNorm(seq.steps[0].shape[seq.layout === 'NCHW' ? 1 : seq.steps[0].shape.length - 1], { ...o, layout: seq.layout });
    bn.loadState(seq.initial as never);
    expectState(bn.state(), seq.initial, 'initial');
    seq.steps.forEach((step, i) => checkStep(bn, step, `${seq.name} step ${i} (${step.mode})`));
  });

  test('known vector of PyTorch issue 60528 through the layer', () => {
    const x = new Float32Array(48);
    for (let n = 0; n < 4; n++) for (let c = 0; c < 3; c++) for (let l = 0; l < 4; l++) x[(n * 3 + c) * 4 + l] = 4 * c + n + l + 1;
    const bn = new BatchNorm(3);
    const y = bn.forward(x, [4, 3, 4]);
    expect(y[0]).toBeCloseTo(-1.8974, 4);
    expect(bn.runningMean![0]).toBeCloseTo(0.4, 6);
    expect(bn.runningVar![0]).toBeCloseTo(1.16667, 5);
    expect(bn.numBatchesTracked).toBe(1);
  });

  test('tiny variance: running_var from the exact moments (float64 reference)', () => {
    // channel 0 constant, channel 1 with variance ~1e-14 (far below eps = 0.7:
    // recovering it from invstd would be off by 0.6 %, and channel 0 would not be 0), channel 2 ordinary
    const n = 16;
    const x = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) {
      x[i * 3] = 3;
      x[i * 3 + 1] = 1 + ((i % 3) - 1) * 1.1920929e-7;
      x[i * 3 + 2] = i;
    }
    const bn = new BatchNorm(3, { layout: 'NHWC', momentum: 1, eps: 0.7 });
    bn.forward(x, [n, 3]);
    const want = [0, 0, 0].map((_, c) => {
      let m = 0;
      for (let i = 0; i < n; i++) m += x[i * 3 + c] / n;
      let q = 0;
      for (let i = 0; i < n; i++) q += (x[i * 3 + c] - m) ** 2;
      return q / (n - 1);
    });
    expect(bn.runningVar![0]).toBe(0);
    expectClose(bn.runningVar!, want, 1e-6, 0, 'running_var');
  });

  test('training with one value per channel throws as PyTorch does; eval does not', () => {
    const bn = new BatchNorm(3);
    expect(() => bn.forward(new Float32Array(3), [1, 3])).toThrow(/Expected more than 1 value per channel when training, got input with shape \[1, 3\]/);
    expect(bn.numBatchesTracked).toBe(0);
    bn.eval();
    expect(Array.from(bn.forward(Float32Array.of(1, 2, 3), [1, 3])).map((v) => Math.round(v * 1e4) / 1e4)).toEqual([1, 2, 3]);
  });

  test('argument errors name the argument, the expected and the actual', () => {
    expect(() => new BatchNorm(0)).toThrow(/numFeatures: expected an integer from 1/);
    expect(() => new BatchNorm(3, { momentum: 2 })).toThrow(/options.momentum: expected a number in \[0, 1\], got 2/);
    expect(() => new BatchNorm(3, { momentm: 0.1 } as object)).toThrow(/options.momentm: unknown option/);
    expect(() => new BatchNorm(3, { convention: 'tf' as 'keras' })).toThrow(/options.convention: expected 'pytorch' or 'keras', got string "tf"/);
    expect(() => new BatchNorm(3, { evalStats: 'pop' as 'batch' })).toThrow(TypeError);
    const bn = new BatchNorm(3);
    expect(() => bn.forward(new Float32Array(16), [2, 8])).toThrow(/x: BatchNorm expects 3 channels \(shape\[1\]\), got 8 in shape \[2, 8\]/);
    expect(() => bn.backward(new Float32Array(6))).toThrow(/BatchNorm.backward: no forward to differentiate/);
    bn.forward(new Float32Array(6).map((_, i) => i), [2, 3]);
    expect(() => bn.backward(new Float32Array(5))).toThrow(/dy: expected 6 elements \(the shape \[2, 3\] of the last forward\), got 5/);
    expect(() => bn.loadState({ weight: [1, 1, 1] } as never)).toThrow(/state.bias: expected an entry/);
    expect(() => bn.loadState({ ...bn.state(), extra: [1] })).toThrow(/state.extra: unexpected entry/);
    expect(() => bn.loadState({ ...bn.state(), running_var: [1, 1] })).toThrow(/state.running_var: expected 3 values, got 2/);
    expect(() => bn.loadState({ ...bn.state(), num_batches_tracked: -1 })).toThrow(/state.num_batches_tracked: expected a non-negative integer, got -1/);
  });

  test('state() is JSON-able and round-trips; num_batches_tracked may be a bigint (int64)', () => {
    const bn = new BatchNorm(4, { momentum: 0.5 });
    bn.forward(randomFloats(4 * 4 * 9, 3), [4, 4, 3, 3]);
    const copy = new BatchNorm(4);
    copy.loadState(JSON.parse(JSON.stringify(bn.state())));
    expect(copy.state()).toEqual(bn.state());
    copy.loadState({ ...bn.state(), num_batches_tracked: 7n });
    expect(copy.numBatchesTracked).toBe(7);
  });
});

describe('Keras / TF.js / ONNX convention (biased variance, decay = 1 − momentum)', () => {
  test.each((fixtures.keras as Array<Sequence & { decay: number; epsilon: number }>).map((s) => [s.name, s] as const))('%s', (name, seq) => {
    const c = seq.steps[0].shape[seq.layout === 'NCHW' ? 1 : 3];
    const bn = name === 'keras' ? BatchNorm.keras(c) : BatchNorm.onnx(c, { momentum: seq.decay, epsilon: seq.epsilon });
    expect(bn.layout).toBe(seq.layout);
    expect(bn.eps).toBe(seq.epsilon);
    expect(bn.momentum).toBeCloseTo(1 - seq.decay, 15);
    seq.steps.forEach((step, i) => checkStep(bn, step, `${name} step ${i}`));
  });
});

describe('batch statistics at inference (paper §4.2)', () => {
  interface EvalCase { name: string; layout: 'NCHW' | 'NHWC'; evalGroupSize: number | null; lastGroup: 'auto' | 'separate' | 'merge'; sizes: number[];
    shape: number[]; weight: number[]; bias: number[]; x: number[]; dy: number[]; y: number[]; dx: number[]; weight_grad: number[]; bias_grad: number[] }
  test.each((fixtures.eval_batch_stats as EvalCase[]).map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const channels = c.layout === 'NCHW' ? c.shape[1] : c.shape[c.shape.length - 1];
    expect(splitIntoGroups(c.shape[0], c.evalGroupSize, c.lastGroup).flatMap((s) => Array(s.groups).fill(s.count / s.groups))).toEqual(c.sizes);
    const bn = new BatchNorm(channels, { layout: c.layout, evalStats: 'batch', evalGroupSize: c.evalGroupSize, lastGroup: c.lastGroup });
    bn.weight!.set(c.weight);
    bn.bias!.set(c.bias);
    bn.eval();
    const before = bn.state();
    const y = bn.forward(Float32Array.from(c.x), c.shape);
    expectClose(y, c.y, TOL.y[0], TOL.y[1], 'y');
    expectClose(bn.backward(Float32Array.from(c.dy)), c.dx, TOL.grad[0], TOL.grad[1], 'dx');
    expectClose(bn.weightGrad!, c.weight_grad, TOL.grad[0], TOL.grad[1], 'weight grad');
    expectClose(bn.biasGrad!, c.bias_grad, TOL.grad[0], TOL.grad[1], 'bias grad');
    expect(bn.state()).toEqual(before); // no running-statistics update at inference
  });

  test('evalStats can be switched on an existing layer', () => {
    const bn = new BatchNorm(2).eval();
    const x = Float32Array.of(1, 10, 3, 30);
    expect(Array.from(bn.forward(x, [2, 2]))).toEqual(Array.from(x).map((v) => Math.fround(v / Math.sqrt(1 + 1e-5))));
    bn.evalStats = 'batch';
    expectClose(bn.forward(x, [2, 2]), [-1, -1, 1, 1], 1e-5, 1e-5, 'y');
  });
});

describe('GhostBatchNorm against PyTorch (chunks normalized apart)', () => {
  interface GhostSeq extends Sequence { virtualBatchSize: number; lastGroup: 'auto' | 'separate' | 'merge'; runningStatsFrom: 'batch' | 'groups' }
  test.each((fixtures.ghost as GhostSeq[]).map((s) => [s.name, s] as const))('%s', (_name, seq) => {
    const first = seq.steps[0].shape;
    const c = seq.layout === 'NCHW' ? first[1] : first[first.length - 1];
    const gbn = new GhostBatchNorm(c, { virtualBatchSize: seq.virtualBatchSize, lastGroup: seq.lastGroup, runningStatsFrom: seq.runningStatsFrom, layout: seq.layout });
    gbn.weight!.set(seq.initial.weight as number[]);
    gbn.bias!.set(seq.initial.bias as number[]);
    seq.steps.forEach((step: Step, i) => {
      if (step.sizes) {
        expect(splitIntoGroups(step.shape[0], seq.virtualBatchSize, seq.lastGroup).flatMap((s) => Array(s.groups).fill(s.count / s.groups))).toEqual(step.sizes);
      }
      checkStep(gbn, step, `${seq.name} step ${i}`);
    });
  });

  test('splitIntoGroups: the ragged-group rule', () => {
    const sizes = (n: number, gs: number | null, last: 'auto' | 'separate' | 'merge') =>
      splitIntoGroups(n, gs, last).flatMap((s) => Array(s.groups).fill(s.count / s.groups));
    expect(sizes(8, 4, 'auto')).toEqual([4, 4]);
    expect(sizes(10, 4, 'auto')).toEqual([4, 4, 2]);
    expect(sizes(9, 4, 'auto')).toEqual([4, 5]);
    expect(sizes(5, 4, 'auto')).toEqual([5]);
    expect(sizes(6, 4, 'auto')).toEqual([4, 2]);
    expect(sizes(5, 4, 'separate')).toEqual([4, 1]);
    expect(sizes(3, 4, 'separate')).toEqual([3]);
    expect(sizes(11, 4, 'merge')).toEqual([4, 7]);
    expect(sizes(11, null, 'merge')).toEqual([11]);
  });

  test('virtualBatchSize is required', () => {
    expect(() => new GhostBatchNorm(3, {} as never)).toThrow(/options.virtualBatchSize: expected a number, got undefined/);
    expect(() => new GhostBatchNorm(3, { virtualBatchSize: 4, runningStatsFrom: 'x' as 'batch' })).toThrow(/options.runningStatsFrom/);
  });
});

describe('FrozenBatchNorm (paper §4.3)', () => {
  interface FrozenCase { name: string; layout: 'NCHW' | 'NHWC'; eps: number; shape: number[]; state: Record<string, number[]>; x: number[]; dy: number[]; y: number[]; dx: number[] }
  test.each((fixtures.frozen as FrozenCase[]).map((c) => [c.name, c] as const))('%s: forward and dx = dy·a in both modes', (_name, c) => {
    const channels = c.layout === 'NCHW' ? c.shape[1] : c.shape[c.shape.length - 1];
    const f = new FrozenBatchNorm(channels, { eps: c.eps, layout: c.layout });
    f.loadState(c.state);
    for (const mode of [true, false]) {
      f.train(mode);
      expectClose(f.forward(Float32Array.from(c.x), c.shape), c.y, TOL.y[0], TOL.y[1], 'y');
      expectClose(f.backward(Float32Array.from(c.dy)), c.dx, TOL.grad[0], TOL.grad[1], 'dx');
    }
    expect(f.state()).toEqual(Object.fromEntries(Object.entries(c.state).map(([k, v]) => [k, v.map(Math.fround)])));
  });

  test('a new FrozenBatchNorm is the identity (running_var = 1 − eps)', () => {
    const f = new FrozenBatchNorm(3);
    expect(f.runningVar[0]).toBe(Math.fround(1 - 1e-5));
    const x = randomFloats(24, 4);
    expectClose(f.forward(x, [2, 3, 4]), x, 1e-6, 1e-7, 'y');
  });

  test('freeze(bn) copies eps and statistics: output equals the BatchNorm fixture in eval mode', () => {
    const seq = (fixtures.batchnorm as Sequence[]).find((s) => s.name === 'bn2d_nchw')!;
    const evalIndex = seq.steps.findIndex((s) => s.mode === 'eval');
    const before = seq.steps[evalIndex - 1].state;
    const bn = new BatchNorm(3, { eps: 1e-5 });
    bn.loadState(before as never);
    const f = freeze(bn);
    expect(f.eps).toBe(bn.eps);
    expect(f.runningVar).toEqual(bn.runningVar); // eps not added
    const step = seq.steps[evalIndex];
    f.train(true);
    expectClose(f.forward(Float32Array.from(step.x), step.shape), step.y, TOL.y[0], TOL.y[1], 'y');
    expectClose(f.backward(Float32Array.from(step.dy)), step.dx, TOL.grad[0], TOL.grad[1], 'dx');
    expect(() => freeze(new BatchNorm(3, { trackRunningStats: false }))).toThrow(/bn: has no running statistics to freeze/);
    expect(() => freeze({} as BatchNorm)).toThrow(/bn: expected a BatchNorm/);
  });

  test('freezeBatchNorms swaps every BatchNorm in a tree, in place', () => {
    class Block {
      conv = { weight: new Float32Array(4) };
      bn = new BatchNorm(4);
    }
    const ghost = new GhostBatchNorm(2, { virtualBatchSize: 2 });
    const keep = new BatchNorm(2, { trackRunningStats: false });
    const model = { stem: new BatchNorm(3), blocks: [new Block(), new Block()], heads: new Map([['cls', ghost]]), keep, frozen: new FrozenBatchNorm(2) };
    const { tree, replaced } = freezeBatchNorms(model);
    expect(tree).toBe(model);
    expect(replaced).toEqual(['stem', 'blocks.0.bn', 'blocks.1.bn', 'heads.cls']);
    expect(model.stem).toBeInstanceOf(FrozenBatchNorm);
    expect(model.blocks[1].bn).toBeInstanceOf(FrozenBatchNorm);
    expect(model.heads.get('cls')).toBeInstanceOf(FrozenBatchNorm);
    expect(model.keep).toBe(keep);
    const root = freezeBatchNorms(new BatchNorm(2));
    expect(root.tree).toBeInstanceOf(FrozenBatchNorm);
    expect(root.replaced).toEqual(['']);
  });
});
