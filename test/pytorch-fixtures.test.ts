// Golden values from PyTorch 1.13 (F.batch_norm + autograd in float64), made by
// test/fixtures/make_fixtures.py. Tolerances: outputs are float32, so y within
// 2e-5 absolute + 1e-5 relative; statistics within 1e-6 relative; gradients,
// which sum over the batch, within 1e-4 relative + 2e-5 absolute.
import * as fs from 'fs';
import * as path from 'path';
import { batchNorm, batchNormBackward, ChannelStats, moments, updateRunningStats, Layout } from '../lib';
import { configurations, expectClose, withConfiguration } from './helpers';

interface Case {
  name: string; layout: Layout; shape: number[]; x: number[]; training: boolean; relu?: boolean; eps: number;
  momentum?: number; weight: number[] | null; bias: number[] | null; running_mean?: number[]; running_var?: number[];
  running_mean_in?: number[]; running_var_in?: number[]; running_mean_out?: number[]; running_var_out?: number[];
  y: number[]; save_mean?: number[]; save_invstd?: number[]; dy: number[]; dx: number[];
  dweight: number[] | null; dbias: number[] | null; groups?: number;
}

const fixtures = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'batchnorm.json'), 'utf8')) as {
  cases: Case[]; ghost: Case[]; known_vector: Case & { running_mean: number[]; running_var: number[] };
};

function check(c: Case): void {
  const x = Float32Array.from(c.x);
  const common = { layout: c.layout, weight: c.weight, bias: c.bias, eps: c.eps, relu: c.relu ?? false, groups: c.groups };
  const fwd = c.training
    ? batchNorm(x, c.shape, { ...common, training: true })
    : batchNorm(x, c.shape, { ...common, training: false, mean: c.running_mean!, variance: c.running_var! });
  expectClose(fwd.y, c.y, 1e-5, 2e-5, `${c.name} y`);
  if (c.training) {
    expectClose(fwd.mean, c.save_mean!, 1e-6, 1e-7, `${c.name} mean`);
    expectClose(fwd.invstd, c.save_invstd!, 1e-6, 0, `${c.name} invstd`);
  }
  const { groups, ...backwardCommon } = common;
  const grads = batchNormBackward(Float32Array.from(c.dy), x, c.shape, {
    ...backwardCommon, groups, training: c.training, mean: fwd.mean, invstd: fwd.invstd,
  });
  expectClose(grads.dx, c.dx, 1e-4, 2e-5, `${c.name} dx`);
  if (c.dweight) expectClose(grads.dweight, c.dweight, 1e-4, 2e-5, `${c.name} dweight`);
  if (c.dbias) expectClose(grads.dbias, c.dbias, 1e-4, 2e-5, `${c.name} dbias`);
  if (c.training && c.running_mean_out && !c.groups) {
    const rm = Float32Array.from(c.running_mean_in!);
    const rv = Float32Array.from(c.running_var_in!);
    updateRunningStats(rm, rv, moments(x, c.shape, { layout: c.layout }), { momentum: c.momentum! });
    expectClose(rm, c.running_mean_out, 1e-6, 1e-7, `${c.name} running_mean`);
    expectClose(rv, c.running_var_out!, 1e-6, 1e-7, `${c.name} running_var`);
  }
}

describe.each(configurations)('PyTorch fixtures on %s with %i thread(s)', (isaName, threads) => {
  test.each(fixtures.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    withConfiguration(isaName, threads, () => check(c));
  });

  test.each(fixtures.ghost.map((c) => [c.name, c] as const))('ghost batches: %s', (_name, c) => {
    withConfiguration(isaName, threads, () => check(c));
  });

  test('known vector of PyTorch issue 60528', () => {
    withConfiguration(isaName, threads, () => {
      const k = fixtures.known_vector;
      const x = Float32Array.from(k.x);
      const { y } = batchNorm(x, k.shape, { training: true });
      expect(y[0]).toBeCloseTo(-1.8974, 4);
      expectClose(y, k.y, 1e-5, 2e-5, 'y');
      const rm = new Float32Array(3);
      const rv = new Float32Array(3).fill(1);
      const stats: ChannelStats = moments(x, k.shape);
      updateRunningStats(rm, rv, stats, { momentum: 0.1 });
      expect(rm[0]).toBeCloseTo(0.4, 6);
      expect(rv[0]).toBeCloseTo(1.16667, 5);
      expectClose(rm, k.running_mean, 1e-6, 0, 'running_mean');
      expectClose(rv, k.running_var, 1e-6, 0, 'running_var');
    });
  });
});
