// Shuffle BN: random normalization groups, original order restored. Checked
// against the float64 reference of test/reference.ts applied to the groups the
// layer reports (y within 2e-5 + 1e-5·|y|, dx within 1e-4 relative + 2e-5),
// in both layouts; reproducibility with a seed; permutation helpers.
import { createRng, inversePermutation, permuteSamples, randomPermutation, ShuffleBatchNorm } from '../lib';
import { expectClose, randomFloats } from './helpers';
import { Geometry, refBackward, refForward, refMoments } from './reference';

describe.each(['NCHW', 'NHWC'] as const)('ShuffleBatchNorm (%s)', (layout) => {
  const g: Geometry = { n: 12, c: 3, spatial: [2, 2], layout, groups: 3 };
  const shape = layout === 'NCHW' ? [12, 3, 2, 2] : [12, 2, 2, 3];
  const x = randomFloats(144, 21, -1, 3);
  const dy = randomFloats(144, 22);

  test('y and dx = ghost batches of 4 over the permuted batch, in the original order (float64 reference)', () => {
    const sbn = new ShuffleBatchNorm(3, { virtualBatchSize: 4, seed: 5, layout });
    const w = Float32Array.of(0.5, 1.5, 2);
    sbn.weight!.set(w);
    const y = sbn.forward(x, shape);
    const perm = sbn.lastPermutation!;
    expect(Array.from(perm).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    expect(Array.from(perm)).not.toEqual([...Array(12).keys()]);
    const size = 12;
    const xs = new Float32Array(144);
    const dys = new Float32Array(144);
    for (let i = 0; i < 12; i++) for (let k = 0; k < size; k++) {
      xs[i * size + k] = x[perm[i] * size + k];
      dys[i * size + k] = dy[perm[i] * size + k];
    }
    const m = refMoments(xs, g);
    const invstd = m.variance.map((v) => 1 / Math.sqrt(v + 1e-5));
    const ys = refForward(xs, g, m.mean, invstd, w, null, false);
    const dxs = refBackward(dys, xs, g, m.mean, invstd, w, null, false, true).dx;
    const wantY = new Float64Array(144);
    const wantDx = new Float64Array(144);
    for (let i = 0; i < 12; i++) for (let k = 0; k < size; k++) {
      wantY[perm[i] * size + k] = ys[i * size + k];
      wantDx[perm[i] * size + k] = dxs[i * size + k];
    }
    expectClose(y, wantY, 1e-5, 2e-5, 'y');
    expectClose(sbn.backward(dy), wantDx, 1e-4, 2e-5, 'dx');
  });

  test('reproducible with a seed; a new permutation every forward; none in eval', () => {
    const a = new ShuffleBatchNorm(3, { virtualBatchSize: 4, seed: 9, layout });
    const b = new ShuffleBatchNorm(3, { virtualBatchSize: 4, seed: 9, layout });
    expect(a.forward(x, shape)).toEqual(b.forward(x, shape));
    const first = Array.from(a.lastPermutation!);
    a.forward(x, shape);
    expect(Array.from(a.lastPermutation!)).not.toEqual(first);
    a.eval();
    a.forward(x, shape);
    expect(a.lastPermutation).toBeNull();
  });
});

test('permutation helpers', () => {
  const perm = randomPermutation(50, createRng(3));
  const inv = inversePermutation(perm);
  for (let i = 0; i < 50; i++) expect(inv[perm[i]]).toBe(i);
  const x = randomFloats(50 * 6, 1);
  expect(permuteSamples(permuteSamples(x, 50, perm), 50, inv)).toEqual(x);
  expect(permuteSamples(Float32Array.of(1, 2, 3, 4, 5, 6), 3, Uint32Array.of(2, 0, 1))).toEqual(Float32Array.of(5, 6, 1, 2, 3, 4));
  expect(createRng(7)()).toBe(createRng(7)());
  expect(() => permuteSamples(x, 50, Uint32Array.of(1))).toThrow(/perm: expected 50 entries/);
  expect(() => permuteSamples(Float32Array.of(1, 2), 2, Uint32Array.of(1, 1))).toThrow(/perm: not a permutation of 0..1/);
  expect(() => createRng(-1)).toThrow(/seed: expected an integer from 0/);
});
