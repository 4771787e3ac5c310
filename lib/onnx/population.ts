// Population statistics of one BN layer from its per-batch statistics
// (DESIGN.md §2, "Population estimators"). This is the CLI's own small
// aggregation; the layers' PopulationEstimator (lib/population.ts) may replace
// it behind `estimatePopulation` / `PopulationAccumulator`.
import { ChannelStats } from '../stats';

/** `pooled`: every element weighted equally (the paper's PreciseBN). `batch-average`: every batch weighted equally. */
export type Estimator = 'pooled' | 'batch-average';

/** The JSON form of a {@link PopulationAccumulator}, as partial statistics files keep it. */
export interface AccumulatorJSON {
  /** Pooled: count / mean / M2 over all elements (Chan-merged), or null before the first batch. */
  pooled: ReturnType<ChannelStats['toJSON']> | null;
  /** Batch-average: sums of per-batch means and unbiased variances, and the number of batches. */
  sumMean: number[];
  sumVar: number[];
  batches: number;
  /** Samples seen (N summed over batches). */
  samples: number;
}

/**
 * Accumulates per-batch statistics of one layer for both estimators at once,
 * so shards can be merged and either estimate taken at the end.
 */
export class PopulationAccumulator {
  pooled: ChannelStats | null = null;
  readonly sumMean: Float64Array;
  readonly sumVar: Float64Array;
  batches = 0;
  samples = 0;

  constructor(readonly channels: number) {
    this.sumMean = new Float64Array(channels);
    this.sumVar = new Float64Array(channels);
  }

  /** Adds one batch's statistics (from `moments` of the layer's input) covering `samples` samples. */
  add(batch: ChannelStats, samples: number): void {
    if (batch.channels !== this.channels || batch.groups !== 1) {
      throw new RangeError(`batch: expected ${this.channels} channels in one group, got ${batch.groups} × ${batch.channels}`);
    }
    this.pooled = this.pooled ? this.pooled.merge(batch) : batch;
    // The unbiased variance needs two elements; a 1-element batch adds its mean only (and is refused by estimate()).
    const unbiased = batch.count > 1 ? batch.variance({ unbiased: true }) : new Float64Array(this.channels).fill(NaN);
    for (let c = 0; c < this.channels; c++) {
      this.sumMean[c] += batch.mean[c];
      this.sumVar[c] += unbiased[c];
    }
    this.batches++;
    this.samples += samples;
  }

  /** Adds another accumulator's batches (a later shard). */
  mergeFrom(other: PopulationAccumulator): void {
    if (other.channels !== this.channels) throw new RangeError(`other: expected ${this.channels} channels, got ${other.channels}`);
    if (other.pooled) this.pooled = this.pooled ? this.pooled.merge(other.pooled) : other.pooled;
    for (let c = 0; c < this.channels; c++) {
      this.sumMean[c] += other.sumMean[c];
      this.sumVar[c] += other.sumVar[c];
    }
    this.batches += other.batches;
    this.samples += other.samples;
  }

  /** The population mean and variance under `estimator`, in float64. */
  estimate(estimator: Estimator): { mean: Float64Array; variance: Float64Array } {
    if (!this.pooled || this.batches === 0) throw new RangeError('no batch was accumulated');
    if (estimator === 'pooled') return { mean: this.pooled.mean.slice(), variance: this.pooled.variance() };
    if (this.sumVar.some((v) => Number.isNaN(v))) {
      throw new RangeError('batch-average: a batch had one element per channel, so no unbiased variance; use a larger batch or --drop-last');
    }
    return { mean: this.sumMean.map((m) => m / this.batches), variance: this.sumVar.map((v) => v / this.batches) };
  }

  toJSON(): AccumulatorJSON {
    return {
      pooled: this.pooled ? this.pooled.toJSON() : null,
      sumMean: Array.from(this.sumMean),
      sumVar: Array.from(this.sumVar, (v) => (Number.isNaN(v) ? null : v)) as number[],
      batches: this.batches,
      samples: this.samples,
    };
  }

  /** Rebuilds an accumulator from its JSON; float64 values round-trip exactly. */
  static fromJSON(json: AccumulatorJSON, channels: number): PopulationAccumulator {
    const a = new PopulationAccumulator(channels);
    a.pooled = json.pooled ? ChannelStats.fromJSON(json.pooled) : null;
    if (a.pooled && a.pooled.channels !== channels) throw new RangeError(`pooled: expected ${channels} channels, got ${a.pooled.channels}`);
    if (json.sumMean.length !== channels || json.sumVar.length !== channels) throw new RangeError(`sums: expected ${channels} values`);
    json.sumMean.forEach((v, c) => { a.sumMean[c] = v; });
    json.sumVar.forEach((v, c) => { a.sumVar[c] = v === null ? NaN : v; });
    a.batches = json.batches;
    a.samples = json.samples;
    return a;
  }
}

/**
 * The population mean and variance of one layer from its per-batch statistics,
 * in batch order, under `estimator`.
 */
export function estimatePopulation(perBatchStats: ChannelStats[], estimator: Estimator): { mean: Float64Array; variance: Float64Array } {
  if (perBatchStats.length === 0) throw new RangeError('perBatchStats: expected at least one batch');
  const acc = new PopulationAccumulator(perBatchStats[0].channels);
  for (const s of perBatchStats) acc.add(s, 0);
  return acc.estimate(estimator);
}
