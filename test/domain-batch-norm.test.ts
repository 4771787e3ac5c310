// DomainBatchNorm (paper §5) against PyTorch: two BatchNorm2d modules sharing
// weight and bias, driven through train / eval steps of both domains
// (tolerances in layer-fixtures.ts); AdaBN as a per-domain recompute against
// the numpy pooled reference (1e-6 relative, float32 storage).
import { DomainBatchNorm, recomputePopulationStatsSync, saveSafetensors, loadSafetensors } from '../lib';
import { expectClose, randomFloats } from './helpers';
import { checkStep, expectState, fixtures, Step } from './layer-fixtures';

const seq = fixtures.domain as { domains: string[]; initial: Record<string, number[]>; steps: Step[] };
const pop = fixtures.population as { channels: number; batches: Array<{ shape: number[]; x: number[] }>; pooled: { mean: number[]; var: number[] } };

test('against two PyTorch BatchNorm2d sharing weight and bias', () => {
  const dbn = new DomainBatchNorm(3, seq.domains);
  dbn.weight!.set(seq.initial.weight);
  dbn.bias!.set(seq.initial.bias);
  seq.steps.forEach((step, i) => checkStep(dbn, step, `step ${i} (${step.domain}, ${step.mode})`, (x) => dbn.forward(x, step.shape, step.domain!)));
});

test('state names: weight, bias, <domain>.running_*; round trip through safetensors', () => {
  const dbn = new DomainBatchNorm(3, seq.domains);
  for (const step of seq.steps.filter((s) => s.mode === 'train')) dbn.forward(Float32Array.from(step.x), step.shape, step.domain!);
  const last = seq.steps[seq.steps.length - 1].state;
  const copy = new DomainBatchNorm(3, seq.domains);
  loadSafetensors(copy, saveSafetensors(dbn));
  expectState(copy.state(), { ...last, weight: [1, 1, 1], bias: [0, 0, 0] }, 'state');
});

test('AdaBN: recomputing only the target domain on its unlabeled batches', () => {
  const dbn = new DomainBatchNorm(pop.channels, ['source', 'target']);
  dbn.forward(randomFloats(4 * pop.channels * 9, 1), [4, pop.channels, 3, 3], 'source');
  const source = dbn.runningStatsOf('source')!;
  const before = [Array.from(source.runningMean), Array.from(source.runningVar)];
  const batches = pop.batches.map((b) => ({ x: Float32Array.from(b.x), shape: b.shape }));
  const report = recomputePopulationStatsSync(dbn, (b: { x: Float32Array; shape: number[] }) => dbn.forward(b.x, b.shape, 'target'), batches);
  expect(report.layers.map((l) => l.key)).toEqual(['target']);
  expect(report.untouched).toEqual([{ path: '', key: 'source' }]);
  const target = dbn.runningStatsOf('target')!;
  expectClose(target.runningMean, pop.pooled.mean, 1e-6, 1e-6, 'target mean');
  expectClose(target.runningVar, pop.pooled.var, 1e-6, 0, 'target var');
  expect([Array.from(source.runningMean), Array.from(source.runningVar)]).toEqual(before);
});

test('one forward may use several domains, but each domain once', () => {
  const dbn = new DomainBatchNorm(2, ['a', 'b']);
  const x = randomFloats(8, 2);
  expect(() => recomputePopulationStatsSync({ dbn }, () => {
    dbn.forward(x, [4, 2], 'a');
    dbn.forward(x, [4, 2], 'b');
  }, [0])).not.toThrow();
  expect(() => recomputePopulationStatsSync({ dbn }, () => {
    dbn.forward(x, [4, 2], 'a');
    dbn.forward(x, [4, 2], 'a');
  }, [0])).toThrow(/layer 'dbn' was called twice in one forward with domain 'a'/);
});

test('addDomain and argument errors', () => {
  const dbn = new DomainBatchNorm(2, ['day']);
  dbn.forward(Float32Array.of(1, 2, 3, 5), [2, 2], 'day');
  dbn.addDomain('night', { from: 'day' });
  expect(dbn.domains).toEqual(['day', 'night']);
  expect(dbn.runningStatsOf('night')!.runningMean).toEqual(dbn.runningStatsOf('day')!.runningMean);
  expect(() => dbn.addDomain('day')).toThrow(/domain: 'day' already exists/);
  expect(() => dbn.forward(Float32Array.of(1, 2, 3, 4), [2, 2], 'dusk')).toThrow(/domain: expected one of 'day', 'night', got 'dusk'/);
  expect(() => new DomainBatchNorm(2, [])).toThrow(/domains: expected a non-empty array/);
  expect(() => new DomainBatchNorm(2, ['a.b'])).toThrow(/domains\[0\]: expected a domain name/);
});
