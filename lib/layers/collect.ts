// The hook population statistics are gathered through (see lib/precise-bn.ts):
// a layer in collecting mode normalizes as in training, leaves its running
// statistics alone, and hands each forward's batch statistics to a sink.
import type { ChannelStats } from '../stats';

/**
 * Receives the statistics of one forward: one ChannelStats per native call
 * (more than one with a ragged ghost batch), each possibly holding several
 * ghost-batch groups. `key` names the statistics set: `''` for a plain
 * BatchNorm, the domain for a DomainBatchNorm.
 */
export type StatsSink = (stats: ChannelStats[], key: string) => void;

/** Running statistics of one set, as stored by a layer. */
export interface RunningStatsView {
  mean: Float32Array;
  var: Float32Array;
  eps: number;
}

/**
 * A layer whose running statistics can be recomputed as population statistics.
 * BatchNorm, GhostBatchNorm, SyncBatchNorm and DomainBatchNorm implement it.
 */
export interface PopulationTarget {
  /** The statistics sets: `['']` for one set, the domain names for DomainBatchNorm. */
  statisticsKeys(): string[];
  /** Collecting mode: training-mode normalization, no running-statistics update, statistics to `sink`. */
  startCollecting(sink: StatsSink): void;
  stopCollecting(): void;
  /** The current running statistics of a set, or null when the layer keeps none. */
  runningStats(key: string): RunningStatsView | null;
  /** Writes population statistics (mean and variance, float64) into a set's running statistics. */
  setPopulationStats(key: string, mean: Float64Array, variance: Float64Array): void;
}

/**
 * Whether a value implements {@link PopulationTarget}.
 * @example namedLayers(model).filter(([, l]) => isPopulationTarget(l));
 */
export function isPopulationTarget(value: unknown): value is PopulationTarget {
  const v = value as Partial<PopulationTarget> | null;
  return typeof v === 'object' && v !== null && typeof v.startCollecting === 'function' &&
    typeof v.setPopulationStats === 'function' && typeof v.statisticsKeys === 'function';
}
