// GroupNorm, LayerNorm and InstanceNorm against PyTorch (torch.nn.GroupNorm,
// LayerNorm, InstanceNorm1d/2d in float64; tolerances in layer-fixtures.ts),
// in both layouts, on every ISA this machine runs.
import { GroupNorm, InstanceNorm, LayerNorm, loadSafetensors, saveSafetensors, stateDict, supportedIsas } from '../lib';
import { expectClose, randomFloats, withConfiguration } from './helpers';
import { checkStep, fixtures, Sequence, TOL } from './layer-fixtures';

interface OneShot {
  name: string; layout?: 'NCHW' | 'NHWC'; shape: number[]; weight: number[] | null; bias: number[] | null; eps: number;
  x: number[]; dy: number[]; y: number[]; dx: number[]; weight_grad: number[] | null; bias_grad: number[] | null;
}

function checkOneShot(layer: GroupNorm | LayerNorm, c: OneShot): void {
  if (c.weight) layer.weight!.set(c.weight);
  if (c.bias) layer.bias!.set(c.bias);
  for (const mode of [true, false]) {
    layer.train(mode);
    layer.zeroGrad();
    expectClose(layer.forward(Float32Array.from(c.x), c.shape), c.y, TOL.y[0], TOL.y[1], `${c.name} y`);
    expectClose(layer.backward(Float32Array.from(c.dy)), c.dx, TOL.grad[0], TOL.grad[1], `${c.name} dx`);
    if (c.weight_grad) expectClose(layer.weightGrad!, c.weight_grad, TOL.grad[0], TOL.grad[1], `${c.name} weight grad`);
    if (c.bias_grad) expectClose(layer.biasGrad!, c.bias_grad, TOL.grad[0], TOL.grad[1], `${c.name} bias grad`);
  }
}

describe.each(supportedIsas())('on %s kernels', (isaName) => {
  test.each((fixtures.group_norm as Array<OneShot & { numGroups: number; affine?: boolean }>).map((c) => [c.name, c] as const))('GroupNorm %s', (_n, c) => {
    withConfiguration(isaName, 1, () => {
      const channels = c.layout === 'NHWC' ? c.shape[c.shape.length - 1] : c.shape[1];
      checkOneShot(new GroupNorm(c.numGroups, channels, { eps: c.eps, layout: c.layout, affine: c.affine ?? true }), c);
    });
  });

  test.each((fixtures.layer_norm as Array<OneShot & { normalizedShape: number[]; affine: boolean }>).map((c) => [c.name, c] as const))('LayerNorm %s', (_n, c) => {
    withConfiguration(isaName, 1, () => {
      checkOneShot(new LayerNorm(c.normalizedShape, { eps: c.eps, elementwiseAffine: c.affine }), c);
    });
  });

  test.each((fixtures.instance_norm as Sequence[]).map((s) => [s.name, s] as const))('InstanceNorm %s', (_n, seq) => {
    withConfiguration(isaName, 1, () => {
      const shape = seq.shape as number[];
      const c = seq.layout === 'NHWC' ? shape[shape.length - 1] : shape[1];
      const inorm = new InstanceNorm(c, { ...(seq.options as object), layout: seq.layout });
      if (inorm.affine) {
        inorm.weight!.set(seq.initial.weight as number[]);
        inorm.bias!.set(seq.initial.bias as number[]);
      }
      seq.steps.forEach((step, i) => checkStep(inorm, { ...step, shape: seq.shape as number[] }, `${seq.name} step ${i}`));
    });
  });
});

test('GroupNorm: large inputs in both layouts agree with each other (multi-threaded NHWC path)', () => {
  const [N, C, H, W] = [4, 32, 24, 24];
  const x = randomFloats(N * C * H * W, 5, -2, 6);
  const nhwc = new Float32Array(x.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let s = 0; s < H * W; s++) nhwc[(n * H * W + s) * C + c] = x[(n * C + c) * H * W + s];
  const a = new GroupNorm(8, C);
  const b = new GroupNorm(8, C, { layout: 'NHWC' });
  const w = randomFloats(C, 6, 0.5, 1.5);
  a.weight!.set(w);
  b.weight!.set(w);
  const ya = a.forward(x, [N, C, H, W]);
  const yb = b.forward(nhwc, [N, H, W, C]);
  const back = new Float32Array(x.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let s = 0; s < H * W; s++) back[(n * C + c) * H * W + s] = yb[(n * H * W + s) * C + c];
  expectClose(back, ya, 1e-5, 2e-5, 'y');
  const dy = randomFloats(x.length, 7);
  const dyNhwc = new Float32Array(x.length);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let s = 0; s < H * W; s++) dyNhwc[(n * H * W + s) * C + c] = dy[(n * C + c) * H * W + s];
  a.backward(dy);
  b.backward(dyNhwc);
  expectClose(b.weightGrad!, a.weightGrad!, 1e-4, 1e-3, 'weight grad');
  expectClose(b.biasGrad!, a.biasGrad!, 1e-4, 1e-3, 'bias grad');
});

test('state: LayerNorm weight keeps normalizedShape in safetensors; GroupNorm weight / bias', () => {
  const model = { ln: new LayerNorm([3, 2, 5]), gn: new GroupNorm(2, 4), inorm: new InstanceNorm(3, { trackRunningStats: true, affine: true }) };
  model.ln.weight!.set(randomFloats(30, 1));
  const bytes = saveSafetensors(model);
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + Number(Buffer.from(bytes).readBigUInt64LE(0)))).toString());
  expect(header['ln.weight'].shape).toEqual([3, 2, 5]);
  expect(Object.keys(header).sort()).toEqual(['__metadata__', 'gn.bias', 'gn.weight', 'inorm.bias', 'inorm.num_batches_tracked', 'inorm.running_mean',
    'inorm.running_var', 'inorm.weight', 'ln.bias', 'ln.weight']);
  const copy = { ln: new LayerNorm([3, 2, 5]), gn: new GroupNorm(2, 4), inorm: new InstanceNorm(3, { trackRunningStats: true, affine: true }) };
  loadSafetensors(copy, bytes);
  expect(stateDict(copy)).toEqual(stateDict(model));
  expect(() => loadSafetensors({ ln: new LayerNorm([30]), gn: copy.gn, inorm: copy.inorm }, bytes)).toThrow(/ln.(weight|bias): shape \[3, 2, 5\] in the file, the layer has \[30\]/);
});

test('argument errors', () => {
  expect(() => new GroupNorm(3, 8)).toThrow(/numChannels: expected a multiple of numGroups = 3, got 8/);
  expect(() => new GroupNorm(4, 4).forward(new Float32Array(8), [2, 4])).toThrow(/x: GroupNorm needs more than 1 value per group, got 1/);
  expect(() => new LayerNorm([5]).forward(new Float32Array(12), [3, 4])).toThrow(/shape: expected \[\.\.\., 5\] \(normalizedShape last\), got \[3, 4\]/);
  expect(() => new LayerNorm([])).toThrow(/normalizedShape: expected a size or a non-empty array/);
  expect(() => new LayerNorm(4).backward(new Float32Array(4))).toThrow(/LayerNorm.backward: no forward/);
  expect(() => new InstanceNorm(3, { momentum: null as unknown as number })).toThrow(/options.momentum: expected a number, got null/);
  expect(() => new InstanceNorm(3).forward(new Float32Array(6), [2, 3])).toThrow(/Expected more than 1 value per channel when training/);
});
