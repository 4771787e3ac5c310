// Per-channel moments as a value: count, mean and M2 in float64.
import { native } from './native';
import { checkBoolean, checkInteger, checkObject, float64Values, typeError } from './validate';

/** The JSON form of {@link ChannelStats}. */
export interface ChannelStatsJSON {
  count: number;
  groups: number;
  channels: number;
  mean: number[];
  m2: number[];
}

/**
 * Per-channel statistics of a batch: `count` elements per channel, their `mean`
 * and `m2` (sum of squared deviations from the mean), all float64. With ghost
 * batches (`groups > 1`) there is one set per group, group-major: entry
 * `g * channels + c`, each over `count` elements.
 *
 * @example
 * const s = moments(x, [8, 3, 4, 4]);
 * s.variance();                   // biased: m2 / count
 * s.variance({ unbiased: true }); // m2 / (count - 1), as PyTorch's running_var uses
 * const all = s.merge(moments(x2, [8, 3, 4, 4])); // Chan's formula, exact in float64
 */
export class ChannelStats {
  readonly count: number;
  readonly mean: Float64Array;
  readonly m2: Float64Array;
  readonly groups: number;

  constructor(count: number, mean: Float64Array, m2: Float64Array, groups = 1) {
    checkNumberOfElements(count);
    checkInteger(groups, 'groups', undefined, 1);
    if (!(mean instanceof Float64Array)) throw typeError('mean', 'a Float64Array', mean);
    if (!(m2 instanceof Float64Array)) throw typeError('m2', 'a Float64Array', m2);
    if (mean.length !== m2.length) throw new RangeError(`m2: expected ${mean.length} values like mean, got ${m2.length}`);
    if (mean.length % groups !== 0) throw new RangeError(`mean: expected a multiple of groups = ${groups} values, got ${mean.length}`);
    this.count = count;
    this.mean = mean;
    this.m2 = m2;
    this.groups = groups;
  }

  get channels(): number {
    return this.mean.length / this.groups;
  }

  /** Biased (`m2 / count`, the default, used for normalization) or unbiased (`m2 / (count - 1)`) variance. */
  variance(options?: { unbiased?: boolean }): Float64Array {
    const unbiased = checkBoolean(checkObject<{ unbiased: boolean }>(options, 'options').unbiased, 'options.unbiased', false);
    const divisor = unbiased ? this.count - 1 : this.count;
    return this.m2.map((q) => q / divisor);
  }

  /** The statistics of both batches together (Chan's parallel merge, in float64). */
  merge(other: ChannelStats): ChannelStats {
    if (!(other instanceof ChannelStats)) throw typeError('other', 'a ChannelStats', other);
    if (other.groups !== this.groups || other.channels !== this.channels) {
      throw new RangeError(`other: expected ${this.groups} group(s) of ${this.channels} channels, got ${other.groups} of ${other.channels}`);
    }
    const mean = new Float64Array(this.mean.length);
    const m2 = new Float64Array(this.m2.length);
    native.mergeMoments(this.count, this.mean, this.m2, other.count, other.mean, other.m2, mean, m2);
    return new ChannelStats(this.count + other.count, mean, m2, this.groups);
  }

  /** One ghost batch's statistics. */
  group(index: number): ChannelStats {
    checkInteger(index, 'index', undefined, 0, this.groups - 1);
    const c = this.channels;
    return new ChannelStats(this.count, this.mean.slice(index * c, (index + 1) * c), this.m2.slice(index * c, (index + 1) * c));
  }

  /** All ghost batches merged into one set of statistics. */
  reduceGroups(): ChannelStats {
    let all = this.group(0);
    for (let g = 1; g < this.groups; g++) all = all.merge(this.group(g));
    return all;
  }

  toJSON(): ChannelStatsJSON {
    return { count: this.count, groups: this.groups, channels: this.channels, mean: Array.from(this.mean), m2: Array.from(this.m2) };
  }

  /** Rebuilds statistics saved with `JSON.stringify(stats)`; float64 values round-trip exactly. */
  static fromJSON(json: unknown): ChannelStats {
    if (typeof json === 'string') json = JSON.parse(json);
    if (typeof json !== 'object' || json === null) throw typeError('json', 'a ChannelStats JSON object', json);
    const o = json as Partial<ChannelStatsJSON>;
    const groups = checkInteger(o.groups ?? 1, 'json.groups', undefined, 1);
    const channels = checkInteger(o.channels, 'json.channels', undefined, 1);
    const mean = float64Values(o.mean, 'json.mean', groups * channels);
    const m2 = float64Values(o.m2, 'json.m2', groups * channels);
    return new ChannelStats(o.count as number, mean, m2, groups);
  }
}

function checkNumberOfElements(count: unknown): void {
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
    throw typeError('count', 'a non-negative integer number of elements per channel', count);
  }
}
