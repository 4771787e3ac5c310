// Partial statistics: the accumulators of one shard of the calibration data,
// saved by `rebatch stats` and combined by `rebatch merge`. They keep what
// each estimator needs to continue (pooled: count/mean/M2; batch-average: the
// sums of per-batch means and unbiased variances and the batch count), so
// shards merged in data order give the statistics of one pass over all data.
import { createHash } from 'crypto';
import { BnNode } from './batchnorm';
import { ModelError, OnnxModel } from './model';
import { AccumulatorJSON, Estimator, PopulationAccumulator } from './population';

/** The JSON a `rebatch stats` run writes. */
export interface PartialStats {
  rebatch: 'partial-statistics';
  version: 1;
  model: { file: string; sha256: string };
  data: string;
  input: string;
  batchSize: number;
  estimator: Estimator;
  samples: number;
  batches: number;
  layers: { name: string; channels: number; eps: number; accumulator: AccumulatorJSON }[];
}

/** SHA-256 of the model bytes, to check that shards and model belong together. */
export function modelDigest(model: OnnxModel): string {
  return createHash('sha256').update(model.bytes).digest('hex');
}

/** The partial statistics of one shard. */
export function partialStats(model: OnnxModel, bns: BnNode[], accs: PopulationAccumulator[],
  info: { data: string; input: string; batchSize: number; estimator: Estimator; samples: number; batches: number }): PartialStats {
  return {
    rebatch: 'partial-statistics', version: 1, model: { file: model.file, sha256: modelDigest(model) }, ...info,
    layers: bns.map((bn, k) => ({ name: bn.label, channels: bn.channels, eps: Number(bn.eps.toPrecision(7)), accumulator: accs[k].toJSON() })),
  };
}

/**
 * Merges shards (in the order given, which should be the data's order) into
 * one accumulator per BN node, checking each shard against the model.
 * `parts` pairs each parsed JSON with its file name for messages.
 */
export function mergePartials(model: OnnxModel, bns: BnNode[], parts: { file: string; json: unknown }[]): PopulationAccumulator[] {
  const digest = modelDigest(model);
  const accs = bns.map((bn) => new PopulationAccumulator(bn.channels));
  for (const { file, json } of parts) {
    const p = json as Partial<PartialStats>;
    if (typeof p !== 'object' || p === null || p.rebatch !== 'partial-statistics' || !Array.isArray(p.layers)) {
      throw new ModelError(`${file}: not a rebatch partial statistics file (write one with rebatch stats --stats-out)`);
    }
    if (p.model?.sha256 !== digest) {
      throw new ModelError(`${file}: computed on a different model (${p.model?.file ?? '?'}, sha256 ${String(p.model?.sha256).slice(0, 12)}…) than ${model.file} (sha256 ${digest.slice(0, 12)}…)`);
    }
    if (p.layers.length !== bns.length) throw new ModelError(`${file}: has ${p.layers.length} layers; ${model.file} has ${bns.length} BatchNormalization nodes`);
    p.layers.forEach((l, k) => {
      if (l.name !== bns[k].label || l.channels !== bns[k].channels) {
        throw new ModelError(`${file}: layer ${k} is ${l.name} (${l.channels} channels); expected ${bns[k].label} (${bns[k].channels})`);
      }
      try {
        accs[k].mergeFrom(PopulationAccumulator.fromJSON(l.accumulator, l.channels));
      } catch (e) {
        throw new ModelError(`${file}: layer ${l.name}: damaged accumulator (${(e as Error).message})`);
      }
    });
  }
  return accs;
}
