// Normalization over contiguous groups of samples ("ghost batches"), with a
// ragged last group, on the functional ops. A batch is cut into segments;
// each segment is one native call whose samples split into `groups` equal
// groups. The forward records what the backward replays.
import { batchNorm, batchNormBackward, moments } from '../functional';
import { ChannelStats } from '../stats';
import { CheckedTensor } from '../tensor';
import { samples, shapeWithN } from './input';

/**
 * How a last group smaller than the group size is treated:
 * - `'separate'`: it is normalized on its own (torch.split / torch.chunk semantics);
 * - `'merge'`: it joins the previous group;
 * - `'auto'` (default): separate when it holds at least half a group, else merged,
 *   so every group has between ⌈size/2⌉ and ⌈1.5·size⌉ − 1 samples when N ≥ size.
 */
export type LastGroup = 'auto' | 'separate' | 'merge';

/** Samples [start, start + count), normalized as `groups` equal groups. */
export interface Segment {
  start: number;
  count: number;
  groups: number;
}

/**
 * Cuts N samples into contiguous groups of `groupSize` (null: one group).
 * @example
 * splitIntoGroups(8, 3, 'separate'); // [{start 0, count 6, groups 2}, {start 6, count 2, groups 1}]
 * splitIntoGroups(7, 3, 'auto');     // [{start 0, count 3, groups 1}, {start 3, count 4, groups 1}]
 */
export function splitIntoGroups(n: number, groupSize: number | null, lastGroup: LastGroup): Segment[] {
  if (groupSize === null || groupSize >= n) return [{ start: 0, count: n, groups: 1 }];
  const full = Math.floor(n / groupSize);
  const rest = n - full * groupSize;
  if (rest === 0) return [{ start: 0, count: n, groups: full }];
  const separate = lastGroup === 'separate' || (lastGroup === 'auto' && 2 * rest >= groupSize);
  if (separate) return [{ start: 0, count: full * groupSize, groups: full }, { start: full * groupSize, count: rest, groups: 1 }];
  if (full === 1) return [{ start: 0, count: n, groups: 1 }];
  const head = (full - 1) * groupSize;
  return [{ start: 0, count: head, groups: full - 1 }, { start: head, count: n - head, groups: 1 }];
}

/** One native call of a forward, kept for the backward. */
export interface Part {
  segment: Segment;
  /** true: normalized with its own batch statistics (the gradient flows through them). */
  batchStats: boolean;
  mean: Float64Array;
  invstd: Float64Array;
}

export interface AffineParams {
  weight: Float32Array | null;
  bias: Float32Array | null;
  eps: number;
}

/**
 * Normalizes every segment with its own batch statistics and returns the
 * output, the parts for the backward and each segment's statistics (one set
 * per group).
 */
export function normalizeWithBatchStats(t: CheckedTensor, segments: Segment[], p: AffineParams):
  { y: Float32Array; parts: Part[]; stats: ChannelStats[] } {
  const y = new Float32Array(t.data.length);
  const parts: Part[] = [];
  const stats: ChannelStats[] = [];
  for (const segment of segments) {
    const x = samples(t.data, t, segment.start, segment.count);
    const shape = shapeWithN(t, segment.count);
    const r = batchNorm(x, shape, {
      training: true, layout: layoutOf(t), groups: segment.groups,
      weight: p.weight, bias: p.bias, eps: p.eps, out: samples(y, t, segment.start, segment.count),
    });
    parts.push({ segment, batchStats: true, mean: r.mean, invstd: r.invstd });
    stats.push(statsOf(x, shape, t, segment, r.mean, r.invstd, p.eps));
  }
  return { y, parts, stats };
}

/** Normalizes the whole batch with given statistics. */
export function normalizeWithStats(t: CheckedTensor, mean: ArrayLike<number>, variance: ArrayLike<number>, p: AffineParams):
  { y: Float32Array; parts: Part[] } {
  const r = batchNorm(t.data, t.shape, {
    training: false, layout: layoutOf(t), mean: mean as Float32Array, variance: variance as Float32Array,
    weight: p.weight, bias: p.bias, eps: p.eps,
  });
  return { y: r.y, parts: [{ segment: { start: 0, count: t.dims.n, groups: 1 }, batchStats: false, mean: r.mean, invstd: r.invstd }] };
}

/** Replays the parts of a forward backwards: dx, and dweight / dbias summed over the parts. */
export function backwardParts(dy: Float32Array, t: CheckedTensor, parts: Part[], weight: Float32Array | null):
  { dx: Float32Array; dweight: Float64Array; dbias: Float64Array } {
  const dx = new Float32Array(t.data.length);
  const c = t.dims.c;
  const dweight = new Float64Array(c);
  const dbias = new Float64Array(c);
  for (const part of parts) {
    const { start, count, groups } = part.segment;
    const g = batchNormBackward(samples(dy, t, start, count), samples(t.data, t, start, count), shapeWithN(t, count), {
      training: part.batchStats, layout: layoutOf(t), groups, weight, mean: part.mean, invstd: part.invstd,
      out: samples(dx, t, start, count),
    });
    for (let i = 0; i < c; i++) {
      dweight[i] += g.dweight[i];
      dbias[i] += g.dbias[i];
    }
  }
  return { dx, dweight, dbias };
}

/** The layout of a checked tensor (NativeDims stores it as 0 / 1). */
export function layoutOf(t: CheckedTensor): 'NCHW' | 'NHWC' {
  return t.dims.layout === 0 ? 'NCHW' : 'NHWC';
}

/** All statistics of a forward merged into one set (Chan's formula, float64). */
export function mergeAll(stats: ChannelStats[]): ChannelStats {
  let all = stats[0].reduceGroups();
  for (let i = 1; i < stats.length; i++) all = all.merge(stats[i].reduceGroups());
  return all;
}

// The training forward returns invstd = 1/√(σ² + eps) in float64, from which
// σ² = 1/invstd² − eps is recovered with a relative error of about
// 1e-15·(σ² + eps)/σ². Where σ² < 1e-6·eps that bound exceeds 1e-9 and the
// segment's moments are computed again exactly (one more read of it).
function statsOf(x: Float32Array, shape: number[], t: CheckedTensor, segment: Segment, mean: Float64Array,
  invstd: Float64Array, eps: number): ChannelStats {
  const count = (segment.count / segment.groups) * t.dims.spatial;
  const m2 = new Float64Array(mean.length);
  for (let i = 0; i < mean.length; i++) {
    const variance = 1 / (invstd[i] * invstd[i]) - eps;
    if (!(variance >= 1e-6 * eps)) return moments(x, shape, { layout: layoutOf(t), groups: segment.groups });
    m2[i] = variance * count;
  }
  return new ChannelStats(count, mean.slice(), m2, segment.groups);
}
