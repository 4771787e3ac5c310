// Partial statistics: each BN node's PopulationEstimator over one shard of the
// calibration data, saved by `rebatch stats` and combined by `rebatch merge`.
// The estimator keeps what both estimators need to continue (pooled:
// count/mean/M2; batch-average: the sums of per-batch means and unbiased
// variances), so shards merged in data order give the statistics of one pass
// over all data.
import { createHash } from 'crypto';
import { BnNode } from './batchnorm';
import { ModelError, OnnxModel } from './model';
import { PopulationEstimator, PopulationEstimatorJSON, PopulationEstimatorKind } from '../population';

/**
 * The version of the file layout. Version 1 kept the CLI's former accumulator
 * layout per layer (before the CLI used PopulationEstimator); it is refused
 * with a clear message rather than read through a second code path.
 */
export const PARTIAL_VERSION = 2;

/** The JSON a `rebatch stats` run writes. */
export interface PartialStats {
  rebatch: 'partial-statistics';
  version: typeof PARTIAL_VERSION;
  model: { file: string; sha256: string };
  data: string;
  input: string;
  batchSize: number;
  /** The estimator `merge` uses unless told otherwise (both are kept). */
  estimator: PopulationEstimatorKind;
  samples: number;
  batches: number;
  layers: { name: string; channels: number; eps: number; population: PopulationEstimatorJSON }[];
}

/** SHA-256 of the model bytes, to check that shards and model belong together. */
export function modelDigest(model: OnnxModel): string {
  return createHash('sha256').update(model.bytes).digest('hex');
}

/** The partial statistics of one shard. */
export function partialStats(model: OnnxModel, bns: BnNode[], populations: PopulationEstimator[],
  info: { data: string; input: string; batchSize: number; estimator: PopulationEstimatorKind; samples: number; batches: number }): PartialStats {
  return {
    rebatch: 'partial-statistics', version: PARTIAL_VERSION, model: { file: model.file, sha256: modelDigest(model) }, ...info,
    layers: bns.map((bn, k) => ({ name: bn.label, channels: bn.channels, eps: Number(bn.eps.toPrecision(7)), population: populations[k].toJSON() })),
  };
}

/**
 * Checks that `json` (read from `file`) is partial statistics this rebatch
 * reads, before anything else is taken from it; a ModelError otherwise.
 */
export function checkPartial(file: string, json: unknown): PartialStats {
  const p = json as Partial<PartialStats> | null;
  if (typeof p !== 'object' || p === null || p.rebatch !== 'partial-statistics') {
    throw new ModelError(`${file}: not a rebatch partial statistics file (write one with rebatch stats --stats-out)`);
  }
  if (p.version !== PARTIAL_VERSION) {
    throw new ModelError(`${file}: partial statistics version ${String(p.version)}; this rebatch reads version ${PARTIAL_VERSION} ` +
      '(rerun rebatch stats on this shard with this rebatch)');
  }
  if (!Array.isArray(p.layers)) throw new ModelError(`${file}: damaged partial statistics (no layers list)`);
  return p as PartialStats;
}

/**
 * Merges shards (in the order given, which should be the data's order) into
 * one PopulationEstimator per BN node that finalizes with `estimator`,
 * checking each shard against the model; also returns the samples of all shards.
 */
export function mergePartials(model: OnnxModel, bns: BnNode[], parts: { file: string; json: unknown }[],
  estimator: PopulationEstimatorKind): { populations: PopulationEstimator[]; samples: number } {
  const digest = modelDigest(model);
  const populations = bns.map(() => new PopulationEstimator({ estimator }));
  let samples = 0;
  for (const { file, json } of parts) {
    const p = checkPartial(file, json);
    if (p.model?.sha256 !== digest) {
      throw new ModelError(`${file}: computed on a different model (${p.model?.file ?? '?'}, sha256 ${String(p.model?.sha256).slice(0, 12)}…) than ${model.file} (sha256 ${digest.slice(0, 12)}…)`);
    }
    if (p.layers.length !== bns.length) throw new ModelError(`${file}: has ${p.layers.length} layers; ${model.file} has ${bns.length} BatchNormalization nodes`);
    if (!Number.isSafeInteger(p.samples) || p.samples < 0) throw new ModelError(`${file}: damaged partial statistics (samples: ${String(p.samples)})`);
    samples += p.samples;
    p.layers.forEach((l, k) => {
      if (l.name !== bns[k].label || l.channels !== bns[k].channels) {
        throw new ModelError(`${file}: layer ${k} is ${l.name} (${l.channels} channels); expected ${bns[k].label} (${bns[k].channels})`);
      }
      let shard: PopulationEstimator;
      try {
        // Every shard keeps both estimators' sums and records only a default,
        // so shards recorded with different defaults merge under the one chosen.
        shard = PopulationEstimator.fromJSON({ ...l.population, estimator });
      } catch (e) {
        throw new ModelError(`${file}: layer ${l.name}: damaged statistics (${(e as Error).message})`);
      }
      if (shard.channels !== null && shard.channels !== l.channels) {
        throw new ModelError(`${file}: layer ${l.name}: damaged statistics (${shard.channels} channels; expected ${l.channels})`);
      }
      populations[k] = populations[k].merge(shard);
    });
  }
  return { populations, samples };
}
