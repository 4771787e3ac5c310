// PopulationEstimator and recomputePopulationStats (PreciseBN, paper §3):
// the DESIGN.md §2 worked example, PyTorch / numpy fixtures (pooled: numpy
// float64 over all batches concatenated; batch-average: torch.optim.swa_utils
// .update_bn; EMA drift), sharded merges, and the collecting-mode contract.
// Tolerances: estimates within 1e-7 relative of the float64 references (the
// kernels' per-batch moments are exact to about 1e-8; README: 1e-6); shards
// merged vs one pass within 1e-12; statistics stored in a layer (float32)
// within 1e-6 relative.
import {
  BatchNorm, ChannelStats, estimatePopulation, GhostBatchNorm, moments, PopulationCollector, PopulationEstimator,
  recomputePopulationStats, recomputePopulationStatsSync,
} from '../lib';
import { expectClose, randomFloats } from './helpers';
import { fixtures } from './layer-fixtures';

const pop = fixtures.population as {
  channels: number; batches: Array<{ shape: number[]; x: number[] }>;
  pooled: { mean: number[]; var: number[]; count: number }; batch_average: { mean: number[]; var: number[] };
  ema: { running_mean: number[]; running_var: number[]; num_batches_tracked: number };
  drift: { meanShift: number[]; logVarRatio: number[] };
};
const batches = pop.batches.map((b) => ({ x: Float32Array.from(b.x), shape: b.shape }));

describe('the worked example of DESIGN.md §2: batches [0, 2] and [10, 12, 14, 16]', () => {
  const a = Float32Array.of(0, 2);
  const b = Float32Array.of(10, 12, 14, 16);

  test('PopulationEstimator: pooled var 35.667, batch-average 4.333', () => {
    const stats = [moments(a, [2, 1]), moments(b, [4, 1])];
    const pooled = estimatePopulation(stats, 'pooled');
    expect(pooled.mean[0]).toBeCloseTo(9, 12);
    expect(pooled.var[0]).toBeCloseTo(35.6667, 4);
    expect(pooled.var[0]).toBeCloseTo(107 / 3, 12);
    expect([pooled.count, pooled.batches]).toEqual([6, 2]);
    const avg = estimatePopulation(stats, 'batch-average');
    expect(avg.mean[0]).toBeCloseTo(7, 12);
    expect(avg.var[0]).toBeCloseTo(4.3333, 4);
    expect(avg.var[0]).toBeCloseTo(13 / 3, 12);
  });

  test.each(['pooled', 'batch-average'] as const)('recomputePopulationStats writes the %s estimate into a BatchNorm', async (estimator) => {
    const bn = new BatchNorm(1);
    const report = await recomputePopulationStats(bn, (x: Float32Array) => bn.forward(x, [x.length, 1]), [a, b], { estimator });
    const want = estimator === 'pooled' ? [9, 107 / 3] : [7, 13 / 3];
    expect(bn.runningMean![0]).toBeCloseTo(want[0], 5);
    expect(bn.runningVar![0]).toBeCloseTo(want[1], 4);
    expect(report.layers.map((l) => [l.path, l.key, l.stats.batches, l.stats.count])).toEqual([['', '', 2, 6]]);
    expect(report.forwards).toBe(2);
    expect(bn.numBatchesTracked).toBe(0);
  });
});

describe('against PyTorch / numpy (5 batches of different sizes, 4 channels, one with mean 100)', () => {
  test('pooled = the biased statistics of all batches concatenated', () => {
    const est = PopulationEstimator.from(batches.map((b) => moments(b.x, b.shape)));
    const p = est.finalize();
    expectClose(p.mean, pop.pooled.mean, 1e-7, 1e-9, 'mean');
    expectClose(p.var, pop.pooled.var, 1e-7, 0, 'var');
    expect(p.count).toBe(pop.pooled.count);
  });

  test('batch-average = torch.optim.swa_utils.update_bn', () => {
    const p = estimatePopulation(batches.map((b) => moments(b.x, b.shape)), 'batch-average');
    expectClose(p.mean, pop.batch_average.mean, 1e-7, 1e-9, 'mean');
    expectClose(p.var, pop.batch_average.var, 1e-7, 0, 'var');
  });

  test('EMA drift report (write: false leaves the EMA), then the recompute writes pooled', () => {
    const bn = new BatchNorm(pop.channels);
    for (const b of batches) bn.forward(b.x, b.shape);
    expectClose(bn.runningMean!, pop.ema.running_mean, 1e-6, 1e-7, 'EMA mean');
    expectClose(bn.runningVar!, pop.ema.running_var, 1e-6, 1e-7, 'EMA var');
    const ema = bn.state();
    const dry = recomputePopulationStatsSync({ bn }, (b: { x: Float32Array; shape: number[] }) => bn.forward(b.x, b.shape), batches, { write: false });
    expect(dry.written).toBe(false);
    expect(bn.state()).toEqual(ema);
    const d = dry.layers[0].drift;
    expect(dry.layers[0].path).toBe('bn');
    expectClose(d.meanShift, pop.drift.meanShift, 1e-5, 1e-6, 'meanShift');
    expectClose(d.logVarRatio, pop.drift.logVarRatio, 1e-5, 1e-6, 'logVarRatio');
    expect(d.maxMeanShift).toBeCloseTo(Math.max(...pop.drift.meanShift), 5);
    expect(d.meanLogVarRatio).toBeCloseTo(pop.drift.logVarRatio.reduce((s, v) => s + v, 0) / pop.channels, 5);
    const done = recomputePopulationStatsSync({ bn }, (b: { x: Float32Array; shape: number[] }) => bn.forward(b.x, b.shape), batches);
    expect(done.written).toBe(true);
    expectClose(bn.runningMean!, pop.pooled.mean, 1e-6, 1e-6, 'written mean');
    expectClose(bn.runningVar!, pop.pooled.var, 1e-6, 0, 'written var');
    expect(bn.numBatchesTracked).toBe(pop.ema.num_batches_tracked);
  });
});

describe('sharded estimates: toJSON / fromJSON / merge', () => {
  test.each(['pooled', 'batch-average'] as const)('%s: shards merged = one pass (to float64 rounding)', (estimator) => {
    const all = PopulationEstimator.from(batches.map((b) => moments(b.x, b.shape)), { estimator });
    const shard = (part: typeof batches) => JSON.stringify(PopulationEstimator.from(part.map((b) => moments(b.x, b.shape)), { estimator }));
    const merged = PopulationEstimator.fromJSON(shard(batches.slice(0, 2)))
      .merge(PopulationEstimator.fromJSON(shard(batches.slice(2, 3))))
      .merge(PopulationEstimator.fromJSON(shard(batches.slice(3))));
    const [p, q] = [all.finalize(), merged.finalize()];
    expectClose(q.mean, p.mean, 1e-12, 1e-12, 'mean');
    expectClose(q.var, p.var, 1e-12, 0, 'var');
    expect([q.count, q.batches]).toEqual([p.count, p.batches]);
    const want = estimator === 'pooled' ? pop.pooled : pop.batch_average;
    expectClose(q.var, want.var, 1e-7, 0, 'var vs reference');
  });

  test('JSON keeps every bit; an empty estimator merges as a no-op', () => {
    const est = PopulationEstimator.from(batches.map((b) => moments(b.x, b.shape)));
    const back = PopulationEstimator.fromJSON(JSON.parse(JSON.stringify(est)));
    expect(back.finalize()).toEqual(est.finalize());
    expect(back.finalize('batch-average')).toEqual(est.finalize('batch-average'));
    expect(new PopulationEstimator().merge(est).finalize()).toEqual(est.finalize());
    expect(est.merge(new PopulationEstimator()).finalize()).toEqual(est.finalize());
    expect(PopulationEstimator.fromJSON(JSON.stringify(new PopulationEstimator())).batches).toBe(0);
  });

  test('errors', () => {
    const est = new PopulationEstimator();
    expect(() => est.finalize()).toThrow(/no batches were added/);
    est.add(moments(Float32Array.of(1, 2, 3), [1, 3]));
    expect(() => est.add(moments(Float32Array.of(1, 2), [1, 2]))).toThrow(/stats: expected statistics of 3 channels, got 2/);
    expect(est.finalize().var).toEqual(new Float64Array(3));
    expect(() => est.finalize('batch-average')).toThrow(/1 batch\(es\) had 1 element per channel/);
    expect(() => est.add({} as ChannelStats)).toThrow(/stats: expected a ChannelStats/);
    expect(() => new PopulationEstimator({ estimator: 'ema' as 'pooled' })).toThrow(/options.estimator: expected 'pooled' or 'batch-average', got string "ema"/);
    expect(() => est.merge(new PopulationEstimator({ estimator: 'batch-average' }))).toThrow(/other: expected a 'pooled' estimator/);
    expect(() => PopulationEstimator.fromJSON({ format: 'x' })).toThrow(/json.format/);
    expect(() => PopulationEstimator.fromJSON({ ...est.toJSON(), mean: [1] })).toThrow(/json.mean: expected 3 values/);
  });
});

describe('recomputePopulationStats: collecting mode and its contract', () => {
  test('layers normalize as in training during collection, without touching their statistics', () => {
    const bn = new BatchNorm(4);
    bn.eval();
    const seen: Float32Array[] = [];
    recomputePopulationStatsSync([bn], (b: { x: Float32Array; shape: number[] }) => seen.push(bn.forward(b.x, b.shape)), batches.slice(0, 1));
    const trainingY = new BatchNorm(4).forward(batches[0].x, batches[0].shape);
    expect(seen[0]).toEqual(trainingY);
    expect(bn.training).toBe(false);
    bn.train();
    bn.forward(batches[1].x, batches[1].shape); // back to normal: EMA updates again
    expect(bn.numBatchesTracked).toBe(1);
  });

  test('async iterables and async forwards; maxBatches', async () => {
    const bn = new BatchNorm(4);
    async function* gen() {
      for (const b of batches) yield b;
    }
    let calls = 0;
    const report = await recomputePopulationStats(bn, async (b: { x: Float32Array; shape: number[] }) => {
      calls += 1;
      await new Promise((r) => setImmediate(r));
      bn.forward(b.x, b.shape);
    }, gen(), { maxBatches: 3 });
    expect(calls).toBe(3);
    expect(report.layers[0].stats.batches).toBe(3);
    const want = estimatePopulation(batches.slice(0, 3).map((b) => moments(b.x, b.shape)));
    expectClose(bn.runningVar!, want.var, 1e-6, 0, 'var of the first 3 batches');
  });

  test('layers the forward never calls are left alone and reported', () => {
    const used = new BatchNorm(4);
    const unused = new BatchNorm(4, { momentum: 0.5 });
    unused.forward(batches[0].x, batches[0].shape);
    const before = unused.state();
    const noStats = new BatchNorm(4, { trackRunningStats: false });
    const report = recomputePopulationStatsSync({ used, unused, noStats }, (b: { x: Float32Array; shape: number[] }) => used.forward(b.x, b.shape), batches);
    expect(report.untouched).toEqual([{ path: 'unused', key: '' }]);
    expect(report.layers.map((l) => l.path)).toEqual(['used']);
    expect(unused.state()).toEqual(before);
  });

  test('a layer called twice in one forward is an error, and collecting mode ends', () => {
    const bn = new BatchNorm(4);
    const forward = (b: { x: Float32Array; shape: number[] }) => bn.forward(bn.forward(b.x, b.shape), b.shape);
    expect(() => recomputePopulationStatsSync({ block: { bn } }, forward, batches)).toThrow(/layer 'block.bn' was called twice in one forward/);
    expect(bn.runningMean).toEqual(new Float32Array(4));
    bn.forward(batches[0].x, batches[0].shape);
    expect(bn.numBatchesTracked).toBe(1);
  });

  test('ghost batches: every group is a batch of the estimator', () => {
    const gbn = new GhostBatchNorm(4, { virtualBatchSize: 2, lastGroup: 'separate' });
    const r = recomputePopulationStatsSync(gbn, (b: { x: Float32Array; shape: number[] }) => gbn.forward(b.x, b.shape), batches, { estimator: 'batch-average' });
    const groups = batches.flatMap((b) => {
      const size = b.x.length / b.shape[0];
      const out: ChannelStats[] = [];
      for (let s = 0; s < b.shape[0]; s += 2) {
        const n = Math.min(2, b.shape[0] - s);
        out.push(moments(b.x.subarray(s * size, (s + n) * size), [n, ...b.shape.slice(1)]));
      }
      return out;
    });
    expect(r.layers[0].stats.batches).toBe(groups.length);
    expectClose(r.layers[0].stats.var, estimatePopulation(groups, 'batch-average').var, 1e-12, 0, 'var');
  });

  test('argument errors', async () => {
    const bn = new BatchNorm(4);
    expect(() => recomputePopulationStatsSync(bn, 3 as never, [])).toThrow(/forward: expected a function/);
    expect(() => recomputePopulationStatsSync(bn, () => 0, 5 as never)).toThrow(/batches: expected an iterable of batches, got number 5/);
    expect(() => recomputePopulationStatsSync(bn, async () => 0, [1])).toThrow(/forward: expected a synchronous function/);
    expect(() => recomputePopulationStatsSync(bn, () => 0, [], { maxBatches: 0 })).toThrow(/options.maxBatches: expected an integer from 1/);
    await expect(recomputePopulationStats(bn, () => 0, [], { estimator: 'x' as 'pooled' })).rejects.toThrow(/options.estimator/);
    const c = new PopulationCollector(bn);
    expect(() => c.beginForward()).toThrow(/expected a started collector/);
  });
});
