// Population statistics from per-batch statistics (paper §3, DESIGN.md §2):
// independent of the layers, so the layers' recompute (lib/precise-bn.ts) and
// the ONNX CLI share it, and shards computed apart can be merged.
import { ChannelStats } from './stats';
import { checkInteger, checkKeys, checkObject, float64Values, typeError } from './validate';

/**
 * - `'pooled'` (the paper's, fvcore's update_bn_stats): every element weighted equally;
 *   mean = Σnᵢμᵢ/Σnᵢ and var = the biased variance of all batches pooled
 *   (computed by Chan-merging the batches, without cancellation).
 * - `'batch-average'` (torch.optim.swa_utils.update_bn): every batch weighted equally;
 *   the mean of the batch means and the mean of the unbiased batch variances (it leaves
 *   out the variance between batches).
 */
export type PopulationEstimatorKind = 'pooled' | 'batch-average';

/** An estimate of the population statistics of one set of channels. */
export interface PopulationStats {
  /** Per-channel mean, float64. */
  mean: Float64Array;
  /** Per-channel variance, float64 (biased pooled, or the mean of unbiased batch variances). */
  var: Float64Array;
  /** Elements per channel seen. */
  count: number;
  /** Batches seen (ghost-batch groups count one each). */
  batches: number;
  estimator: PopulationEstimatorKind;
}

/** The JSON form of a {@link PopulationEstimator}: every float64 round-trips exactly. */
export interface PopulationEstimatorJSON {
  format: 'rebatch.population-estimator';
  version: 1;
  estimator: PopulationEstimatorKind;
  channels: number | null;
  batches: number;
  /** Batches with one element per channel, which the batch-average estimator cannot use. */
  singleValueBatches: number;
  count: number;
  mean: number[];
  m2: number[];
  meanSum: number[];
  varSum: number[];
}

export function checkEstimator(value: unknown, name: string): PopulationEstimatorKind {
  if (value === undefined) return 'pooled';
  if (value !== 'pooled' && value !== 'batch-average') throw typeError(name, "'pooled' or 'batch-average'", value);
  return value;
}

/**
 * Accumulates per-batch statistics (ChannelStats from `moments`, or from layers
 * in collecting mode) and turns them into population statistics. Both
 * estimators' sums are kept, so either can be finalized from one pass.
 * `toJSON` / `fromJSON` save partial results; `merge` combines shards: merging
 * shards agrees with one pass over all batches to float64 rounding.
 *
 * @example
 * const est = new PopulationEstimator({ estimator: 'pooled' });
 * for (const x of batches) est.add(moments(x, shape));
 * const { mean, var: variance, count, batches: n } = est.finalize();
 *
 * // Sharded: each shard saves JSON.stringify(est); then
 * const all = PopulationEstimator.fromJSON(a).merge(PopulationEstimator.fromJSON(b));
 */
export class PopulationEstimator {
  readonly estimator: PopulationEstimatorKind;
  private channelCount: number | null = null;
  private pooled: ChannelStats | null = null;
  private meanSum: Float64Array | null = null;
  private varSum: Float64Array | null = null;
  private batchCount = 0;
  private singles = 0;

  constructor(options?: { estimator?: PopulationEstimatorKind }) {
    const o = checkObject<{ estimator: PopulationEstimatorKind }>(options, 'options');
    checkKeys(o, ['estimator']);
    this.estimator = checkEstimator(o.estimator, 'options.estimator');
  }

  /** Statistics of a sequence of batches in one call. */
  static from(stats: Iterable<ChannelStats>, options?: { estimator?: PopulationEstimatorKind }): PopulationEstimator {
    const est = new PopulationEstimator(options);
    for (const s of stats) est.add(s);
    return est;
  }

  /** Channels, once a batch has been added. */
  get channels(): number | null {
    return this.channelCount;
  }

  /** Batches added (each ghost-batch group counts as one; empty batches do not count). */
  get batches(): number {
    return this.batchCount;
  }

  /** Elements per channel added. */
  get count(): number {
    return this.pooled?.count ?? 0;
  }

  /** Adds one batch's statistics; a ChannelStats with groups adds each group as a batch. Empty batches are skipped. */
  add(stats: ChannelStats): this {
    if (!(stats instanceof ChannelStats)) throw typeError('stats', 'a ChannelStats (from moments)', stats);
    this.checkChannels(stats.channels, 'stats');
    if (stats.count === 0) return this;
    const c = stats.channels;
    for (let g = 0; g < stats.groups; g++) {
      const s = stats.groups === 1 ? stats : stats.group(g);
      this.pooled = this.pooled === null ? new ChannelStats(s.count, s.mean.slice(), s.m2.slice()) : this.pooled.merge(s);
      if (s.count < 2) {
        this.singles += 1;
      } else {
        for (let i = 0; i < c; i++) {
          this.meanSum![i] += s.mean[i];
          this.varSum![i] += s.m2[i] / (s.count - 1);
        }
      }
      this.batchCount += 1;
    }
    return this;
  }

  /** A new estimator holding the batches of both (neither is changed). */
  merge(other: PopulationEstimator): PopulationEstimator {
    if (!(other instanceof PopulationEstimator)) throw typeError('other', 'a PopulationEstimator', other);
    if (other.estimator !== this.estimator) {
      throw new RangeError(`other: expected a '${this.estimator}' estimator, got '${other.estimator}'`);
    }
    const out = PopulationEstimator.fromJSON(this.toJSON());
    if (other.channelCount === null) return out;
    out.checkChannels(other.channelCount, 'other');
    if (other.pooled !== null) out.pooled = out.pooled === null ? other.pooled : out.pooled.merge(other.pooled);
    for (let i = 0; i < other.channelCount; i++) {
      out.meanSum![i] += other.meanSum![i];
      out.varSum![i] += other.varSum![i];
    }
    out.batchCount += other.batchCount;
    out.singles += other.singles;
    return out;
  }

  /**
   * The population statistics under this estimator (or the one given).
   * Throws a RangeError when no batch was added, or, for 'batch-average', when
   * a batch had a single element per channel (its unbiased variance is undefined).
   */
  finalize(estimator?: PopulationEstimatorKind): PopulationStats {
    const kind = estimator === undefined ? this.estimator : checkEstimator(estimator, 'estimator');
    if (this.pooled === null) throw new RangeError('PopulationEstimator: no batches were added; nothing to estimate');
    if (kind === 'pooled') {
      const p = this.pooled;
      return { mean: p.mean.slice(), var: p.variance(), count: p.count, batches: this.batchCount, estimator: kind };
    }
    if (this.singles > 0) {
      throw new RangeError(`PopulationEstimator: ${this.singles} batch(es) had 1 element per channel; ` +
        "the 'batch-average' estimator needs an unbiased variance per batch (use 'pooled')");
    }
    const n = this.batchCount;
    return {
      mean: this.meanSum!.map((v) => v / n), var: this.varSum!.map((v) => v / n), count: this.pooled.count, batches: n, estimator: kind,
    };
  }

  toJSON(): PopulationEstimatorJSON {
    return {
      format: 'rebatch.population-estimator',
      version: 1,
      estimator: this.estimator,
      channels: this.channelCount,
      batches: this.batchCount,
      singleValueBatches: this.singles,
      count: this.count,
      mean: this.pooled ? Array.from(this.pooled.mean) : [],
      m2: this.pooled ? Array.from(this.pooled.m2) : [],
      meanSum: this.meanSum ? Array.from(this.meanSum) : [],
      varSum: this.varSum ? Array.from(this.varSum) : [],
    };
  }

  /** Rebuilds an estimator from `toJSON()` output (an object or its JSON string). */
  static fromJSON(json: unknown): PopulationEstimator {
    if (typeof json === 'string') json = JSON.parse(json);
    if (typeof json !== 'object' || json === null) throw typeError('json', 'a PopulationEstimator JSON object', json);
    const o = json as Partial<PopulationEstimatorJSON>;
    if (o.format !== 'rebatch.population-estimator') throw typeError('json.format', "'rebatch.population-estimator'", o.format);
    if (o.version !== 1) throw new RangeError(`json.version: expected 1, got ${String(o.version)}`);
    const est = new PopulationEstimator({ estimator: checkEstimator(o.estimator, 'json.estimator') });
    const batches = checkInteger(o.batches, 'json.batches', undefined, 0);
    const singles = checkInteger(o.singleValueBatches ?? 0, 'json.singleValueBatches', undefined, 0, batches);
    if (o.channels === null || o.channels === undefined) {
      if (batches !== 0) throw new RangeError(`json.channels: expected a channel count with ${batches} batches, got ${String(o.channels)}`);
      return est;
    }
    const c = checkInteger(o.channels, 'json.channels', undefined, 1);
    est.checkChannels(c, 'json');
    const count = checkInteger(o.count, 'json.count', undefined, batches > 0 ? 1 : 0);
    if (batches > 0) est.pooled = new ChannelStats(count, float64Values(o.mean, 'json.mean', c), float64Values(o.m2, 'json.m2', c));
    est.meanSum!.set(float64Values(o.meanSum, 'json.meanSum', c));
    est.varSum!.set(float64Values(o.varSum, 'json.varSum', c));
    est.batchCount = batches;
    est.singles = singles;
    return est;
  }

  private checkChannels(c: number, name: string): void {
    if (this.channelCount === null) {
      this.channelCount = c;
      this.meanSum = new Float64Array(c);
      this.varSum = new Float64Array(c);
    } else if (c !== this.channelCount) {
      throw new RangeError(`${name}: expected statistics of ${this.channelCount} channels, got ${c}`);
    }
  }
}

/**
 * Population statistics of a sequence of per-batch statistics in one call.
 * @example
 * estimatePopulation([moments(a, [2, 1]), moments(b, [4, 1])], 'pooled').var; // Float64Array
 */
export function estimatePopulation(stats: Iterable<ChannelStats>, estimator: PopulationEstimatorKind = 'pooled'): PopulationStats {
  return PopulationEstimator.from(stats, { estimator }).finalize();
}
