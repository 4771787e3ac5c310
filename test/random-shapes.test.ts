// Every op on many shapes against the float64 reference in test/reference.ts,
// on every ISA here with 1 and 2 threads. Tolerances: y within 1e-5 relative +
// 2e-5 absolute (float32 output); statistics 1e-6; dx 1e-4 of its largest
// magnitude; dweight/dbias 1e-6 per summed element.
import { batchNorm, batchNormBackward, moments } from '../lib';
import { configurations, expectClose, randomFloats, withConfiguration } from './helpers';
import { Geometry, refBackward, refForward, refMoments, shapeOf } from './reference';

const shapes: Array<Omit<Geometry, 'layout'>> = [
  { n: 1, c: 3, spatial: [7, 7], groups: 1 },        // N = 1 with spatial dims
  { n: 4, c: 1, spatial: [10, 10], groups: 2 },      // C = 1, ghost batches
  { n: 3, c: 5, spatial: [7], groups: 1 },           // C not a multiple of 8, odd spatial
  { n: 6, c: 11, spatial: [], groups: 3 },           // (N, C) without spatial dims
  { n: 64, c: 13, spatial: [], groups: 1 },
  { n: 2, c: 17, spatial: [3, 11], groups: 1 },
  { n: 8, c: 9, spatial: [2, 3, 5], groups: 4 },     // 3 spatial dims
  { n: 2, c: 3, spatial: [65, 67], groups: 1 },      // runs longer than a block
  { n: 4, c: 6, spatial: [150, 150], groups: 1 },    // large N·H·W: 540k elements, parallel path
];

const cases = configurations.flatMap(([isaName, threads]) =>
  shapes.flatMap((s) => (['NCHW', 'NHWC'] as const).map((layout) => [isaName, threads, { ...s, layout }] as const)));

const describeGeometry = (g: Geometry) => `${g.layout} [${shapeOf(g).join(',')}] groups=${g.groups}`;

test.each(cases.map(([i, t, g]) => [i, t, describeGeometry(g), g] as const))('%s, %i thread(s): %s', (isaName, threads, _label, g) => {
  withConfiguration(isaName, threads, () => {
    const shape = shapeOf(g);
    const size = shape.reduce((a, b) => a * b, 1);
    const x = randomFloats(size, size + g.c, -2, 3);
    const dy = randomFloats(size, 7 * g.c + 1);
    const weight = randomFloats(g.c, 3, 0.5, 1.5);
    const bias = randomFloats(g.c, 4, -0.5, 0.5);
    const ref = refMoments(x, g);

    const stats = moments(x, shape, { layout: g.layout, groups: g.groups });
    expect(stats.count).toBe(ref.count);
    expectClose(stats.mean, ref.mean, 1e-6, 1e-6, 'mean');
    expectClose(stats.variance(), ref.variance, 1e-5, 1e-7, 'variance');

    for (const relu of [false, true]) {
      const fwd = batchNorm(x, shape, { layout: g.layout, training: true, weight, bias, groups: g.groups, relu });
      const invstd = ref.variance.map((v) => 1 / Math.sqrt(v + 1e-5));
      expectClose(fwd.invstd, invstd, 1e-5, 0, 'invstd');
      expectClose(fwd.y, refForward(x, g, ref.mean, invstd, weight, bias, relu), 1e-5, 2e-5, `y relu=${relu}`);
      const want = refBackward(dy, x, g, ref.mean, invstd, weight, bias, relu, true);
      const got = batchNormBackward(dy, x, shape, { layout: g.layout, training: true, weight, bias, groups: g.groups, relu, mean: fwd.mean, invstd: fwd.invstd });
      const scale = want.dx.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expectClose(got.dx, want.dx, 1e-4, 1e-4 * scale + 1e-6, `dx relu=${relu}`);
      expectClose(got.dweight, want.dweight, 1e-4, 1e-6 * ref.count * g.groups, 'dweight');
      expectClose(got.dbias, want.dbias, 1e-4, 1e-6 * ref.count * g.groups, 'dbias');
    }

    // Given statistics (eval): one set for the whole batch.
    const flat = { ...g, groups: 1 };
    const mean = randomFloats(g.c, 5, -0.5, 0.5);
    const variance = randomFloats(g.c, 6, 0.2, 2);
    const evalFwd = batchNorm(x, shape, { layout: g.layout, training: false, mean, variance, weight, bias, eps: 1e-3 });
    const invstd = Array.from(variance, (v) => 1 / Math.sqrt(v + 1e-3));
    expectClose(evalFwd.y, refForward(x, flat, mean, invstd, weight, bias, false), 1e-5, 2e-5, 'eval y');
    const want = refBackward(dy, x, flat, mean, invstd, weight, bias, false, false);
    const got = batchNormBackward(dy, x, shape, { layout: g.layout, training: false, weight, mean, invstd: evalFwd.invstd });
    expectClose(got.dx, want.dx, 1e-5, 1e-6, 'eval dx');
    expectClose(got.dweight, want.dweight, 1e-4, 1e-6 * ref.count * g.groups, 'eval dweight');
  });
});
