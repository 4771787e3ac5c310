// The functional API: moments, batchNorm, batchNormBackward and
// updateRunningStats, sync and async. Each op is planned once (checks, output
// allocation, native arguments) and then run now or on a worker thread.
import { native } from './native';
import { ChannelStats } from './stats';
import { checkLayout, checkOut, checkSameShape, checkTensor, CheckedTensor, Layout, TensorLike, tensorArgs } from './tensor';
import {
  ChannelValues, channelArrays, checkBoolean, checkChannelValues, checkInteger, checkKeys, checkNumber, checkObject, float64Values,
  optionalFloat32Values, typeError,
} from './validate';

export interface MomentsOptions {
  /** Memory order of x; default `'NCHW'`. */
  layout?: Layout;
  /** Split N into this many equal, contiguous ghost batches, each with its own statistics. Default 1. */
  groups?: number;
}

export interface BatchNormOptions {
  layout?: Layout;
  /** true: normalize with the batch's own statistics. false: with the given `mean` and `variance`. */
  training: boolean;
  /** Per-channel scale γ (default 1). */
  weight?: ChannelValues | null;
  /** Per-channel shift β (default 0). */
  bias?: ChannelValues | null;
  /** Added to the variance; default 1e-5 as in PyTorch. */
  eps?: number;
  /** Statistics to normalize with when `training` is false (e.g. running or population statistics). */
  mean?: ChannelValues;
  variance?: ChannelValues;
  /** Training only: ghost batches, each normalized with its own statistics. */
  groups?: number;
  /** Apply ReLU to the output in the same pass. */
  relu?: boolean;
  /** Write y here (may be x itself, to normalize in place). */
  out?: Float32Array;
}

export interface BatchNormResult {
  y: Float32Array;
  /** The mean used, per (group, channel): the batch's in training, the given one otherwise. */
  mean: Float64Array;
  /** 1 / sqrt(variance + eps) used, per (group, channel). */
  invstd: Float64Array;
}

export interface BatchNormBackwardOptions {
  layout?: Layout;
  /** true: mean and invstd are the batch statistics of the forward, and the gradient flows through them. */
  training: boolean;
  weight?: ChannelValues | null;
  /** Needed only with `relu`, to recompute the mask. */
  bias?: ChannelValues | null;
  /** The forward's `mean` and `invstd` (groups * C values with ghost batches). */
  mean: ChannelValues;
  invstd: ChannelValues;
  groups?: number;
  /** The forward had a fused ReLU: the mask is recomputed from x, mean, invstd, weight and bias. */
  relu?: boolean;
  /** Write dx here (may be dy itself). */
  out?: Float32Array;
  /** Accepted and unused (invstd already includes it), so forward options can be reused. */
  eps?: number;
}

export interface BatchNormGrads {
  dx: Float32Array;
  dweight: Float32Array;
  dbias: Float32Array;
}

export interface RunningStatsOptions {
  /** Weight of the new batch: running = (1 - m) * running + m * batch. null: cumulative average. */
  momentum: number | null;
  /** With momentum null: the number of batches seen, this one included (m = 1 / numBatchesTracked). */
  numBatchesTracked?: number;
}

type NativeOp = 'moments' | 'batchNormTraining' | 'batchNormWithVariance' | 'batchNormBackward';

/** A checked call: the native op, its arguments, and the result its outputs fill. */
interface Plan<R> {
  op: NativeOp;
  args: unknown[];
  result: R;
}

type AnyFn = (...args: unknown[]) => unknown;

function runNow<R>(plan: Plan<R>): R {
  (native[plan.op] as unknown as AnyFn)(...plan.args);
  return plan.result;
}

async function runLater<R>(plan: Plan<R>): Promise<R> {
  await (native[`${plan.op}Async`] as unknown as AnyFn)(...plan.args);
  return plan.result;
}

const MOMENTS_KEYS = ['layout', 'groups'] as const;
const BATCHNORM_KEYS = ['layout', 'training', 'weight', 'bias', 'eps', 'mean', 'variance', 'groups', 'relu', 'out'] as const;
// eps is accepted (and unused: invstd includes it) so one options object can serve forward and backward.
const BACKWARD_KEYS = ['layout', 'training', 'weight', 'bias', 'eps', 'mean', 'invstd', 'groups', 'relu', 'out'] as const;

/**
 * The checks every op begins with, in this order (the first bad argument is
 * the one reported): the tensor arguments, the options object and its keys,
 * `options.training` (required where the op has it), `options.groups`, then x
 * against its shape and layout.
 */
function checkOpArgs<O extends MomentsOptions & { training?: boolean }>(x: unknown, shapeOrOptions: unknown, maybeOptions: unknown,
  keys: readonly string[]): { o: Partial<O>; training: boolean; groups: number; t: CheckedTensor } {
  const [data, shape, rawOptions] = tensorArgs(x, shapeOrOptions, maybeOptions);
  const o = checkObject<O>(rawOptions, 'options');
  checkKeys(o, keys);
  const training = keys.includes('training') ? checkBoolean(o.training, 'options.training') : false;
  const groups = checkInteger(o.groups, 'options.groups', 1, 1);
  const t = checkTensor(data, shape, checkLayout(o.layout), 'x', groups);
  return { o, training, groups, t };
}

function planMoments(x: unknown, shapeOrOptions: unknown, maybeOptions: unknown): Plan<ChannelStats> {
  const { groups, t } = checkOpArgs<MomentsOptions>(x, shapeOrOptions, maybeOptions, MOMENTS_KEYS);
  const [mean, m2] = channelArrays(Float64Array, groups * t.dims.c, 2);
  const count = (t.dims.n / groups) * t.dims.spatial;
  return { op: 'moments', args: [t.data, t.dims, mean, m2], result: new ChannelStats(count, mean, m2, groups) };
}

function planBatchNorm(x: unknown, shapeOrOptions: unknown, maybeOptions: unknown): Plan<BatchNormResult> {
  const { o, training, groups, t } = checkOpArgs<BatchNormOptions>(x, shapeOrOptions, maybeOptions, BATCHNORM_KEYS);
  const c = t.dims.c;
  const weight = optionalFloat32Values(o.weight, 'options.weight', c);
  const bias = optionalFloat32Values(o.bias, 'options.bias', c);
  const eps = checkNumber(o.eps, 'options.eps', 1e-5, 0);
  const relu = checkBoolean(o.relu, 'options.relu', false);
  const y = checkOut(o.out, t);
  if (training) {
    for (const key of ['mean', 'variance'] as const) {
      if (o[key] !== undefined) {
        throw new TypeError(`options.${key}: not used when training is true (the batch's statistics are); ` +
          'use updateRunningStats to update running statistics');
      }
    }
    checkTrainingCount(t, groups);
    const [mean, invstd] = channelArrays(Float64Array, groups * c, 2);
    return { op: 'batchNormTraining', args: [t.data, y, t.dims, weight, bias, eps, relu, mean, invstd], result: { y, mean, invstd } };
  }
  if (groups !== 1) throw new RangeError('options.groups: ghost batches apply only when training is true (they normalize with their own statistics)');
  if (o.mean === undefined || o.variance === undefined) {
    throw typeError(o.mean === undefined ? 'options.mean' : 'options.variance', `${c} values when training is false`, undefined);
  }
  const meanIn = checkChannelValues(o.mean, 'options.mean', c);
  const varianceIn = checkChannelValues(o.variance, 'options.variance', c);
  // invstd is computed natively, several channels at a time (512 channels:
  // 1.4 us in a JavaScript loop, one divider per channel); the float64
  // copies of float32 statistics share one allocation with it.
  const [invstd, meanCopy, varianceCopy] = channelArrays(Float64Array, c, 3);
  const mean = meanIn instanceof Float64Array ? meanIn : (meanCopy.set(meanIn), meanCopy);
  const variance = varianceIn instanceof Float64Array ? varianceIn : (varianceCopy.set(varianceIn), varianceCopy);
  return {
    op: 'batchNormWithVariance',
    args: [t.data, y, t.dims, mean, variance, eps, weight, bias, relu, invstd],
    result: { y, mean, invstd },
  };
}

function checkTrainingCount(t: CheckedTensor, groups: number): void {
  if ((t.dims.n / groups) * t.dims.spatial > 1) return;
  const where = groups > 1 ? ` (groups = ${groups} leaves ${t.dims.n / groups} sample per group)` : '';
  throw new RangeError(`x: Expected more than 1 value per channel when training, got input with shape [${t.shape.join(', ')}]${where}`);
}

function planBackward(dy: unknown, x: unknown, shapeOrOptions: unknown, maybeOptions: unknown): Plan<BatchNormGrads> {
  const { o, training, groups, t } = checkOpArgs<BatchNormBackwardOptions>(x, shapeOrOptions, maybeOptions, BACKWARD_KEYS);
  const [dyData] = tensorArgs(dy, undefined, undefined, 'dy');
  const grad = checkSameShape(dyData, t, 'dy');
  const c = t.dims.c;
  if (!training && groups !== 1) throw new RangeError('options.groups: ghost batches apply only when training is true');
  const mean = float64Values(o.mean, 'options.mean', groups * c);
  const invstd = float64Values(o.invstd, 'options.invstd', groups * c);
  const weight = optionalFloat32Values(o.weight, 'options.weight', c);
  const bias = optionalFloat32Values(o.bias, 'options.bias', c);
  const relu = checkBoolean(o.relu, 'options.relu', false);
  if (training) checkTrainingCount(t, groups);
  const dx = checkOut(o.out, t, 'options.out', [t.data, grad]);
  const [dweight, dbias] = channelArrays(Float32Array, c, 2);
  return {
    op: 'batchNormBackward',
    args: [grad, t.data, dx, t.dims, mean, invstd, weight, bias, relu, training, dweight, dbias],
    result: { dx, dweight, dbias },
  };
}

/**
 * Per-channel count, mean and M2 of a batch, in float64 (shifted sums verified
 * per cache-sized block, exact two-pass where the check fails, blocks merged
 * with Chan's formula).
 *
 * @example
 * const x = new Float32Array(2 * 3 * 4 * 4).map(Math.random);
 * const stats = moments(x, [2, 3, 4, 4]);            // NCHW
 * stats.mean;                                         // Float64Array(3)
 * moments(x, [2, 4, 4, 3], { layout: 'NHWC' });       // channels last
 * moments(x, [2, 3, 4, 4], { groups: 2 }).mean;       // Float64Array(6): per ghost batch
 */
export function moments(x: Float32Array, shape: readonly number[], options?: MomentsOptions): ChannelStats;
export function moments(x: TensorLike, options?: MomentsOptions): ChannelStats;
export function moments(x: unknown, shapeOrOptions?: unknown, options?: unknown): ChannelStats {
  return runNow(planMoments(x, shapeOrOptions, options));
}

/** {@link moments} on a worker thread; the promise rejects instead of throwing. */
export function momentsAsync(x: Float32Array, shape: readonly number[], options?: MomentsOptions): Promise<ChannelStats>;
export function momentsAsync(x: TensorLike, options?: MomentsOptions): Promise<ChannelStats>;
export async function momentsAsync(x: unknown, shapeOrOptions?: unknown, options?: unknown): Promise<ChannelStats> {
  return runLater(planMoments(x, shapeOrOptions, options));
}

/**
 * Batch normalization forward. Training: y = (x − μ_B)·γ/√(σ²_B + eps) + β with
 * the batch's mean and biased variance. Otherwise the given mean and variance
 * are used. The mean and invstd used are returned for the backward.
 *
 * @example
 * const { y, mean, invstd } = batchNorm(x, [8, 16, 32, 32], { training: true, weight, bias });
 * const yEval = batchNorm(x, [8, 16, 32, 32], { training: false, mean: runningMean, variance: runningVar }).y;
 * batchNorm(x, [8, 16, 32, 32], { training: true, groups: 4, relu: true, out: x }); // ghost batches, in place
 */
export function batchNorm(x: Float32Array, shape: readonly number[], options: BatchNormOptions): BatchNormResult;
export function batchNorm(x: TensorLike, options: BatchNormOptions): BatchNormResult;
export function batchNorm(x: unknown, shapeOrOptions: unknown, options?: unknown): BatchNormResult {
  return runNow(planBatchNorm(x, shapeOrOptions, options));
}

/**
 * {@link batchNorm} on a worker thread. Inputs are copied when the call is made and
 * the outputs are written when it settles, so the arrays may be used meanwhile;
 * an array detached while pending makes the promise reject.
 */
export function batchNormAsync(x: Float32Array, shape: readonly number[], options: BatchNormOptions): Promise<BatchNormResult>;
export function batchNormAsync(x: TensorLike, options: BatchNormOptions): Promise<BatchNormResult>;
export async function batchNormAsync(x: unknown, shapeOrOptions: unknown, options?: unknown): Promise<BatchNormResult> {
  return runLater(planBatchNorm(x, shapeOrOptions, options));
}

/**
 * Gradients of {@link batchNorm}. In training, dx = γ·invstd·(dy − mean(dy) − x̂·mean(dy·x̂));
 * with given statistics, dx = dy·γ·invstd. dweight = Σ dy·x̂ and dbias = Σ dy per channel.
 *
 * @example
 * const fwd = batchNorm(x, shape, { training: true, weight, bias });
 * const { dx, dweight, dbias } = batchNormBackward(dy, x, shape, { training: true, weight, mean: fwd.mean, invstd: fwd.invstd });
 */
export function batchNormBackward(dy: Float32Array, x: Float32Array, shape: readonly number[], options: BatchNormBackwardOptions): BatchNormGrads;
export function batchNormBackward(dy: Float32Array | TensorLike, x: TensorLike, options: BatchNormBackwardOptions): BatchNormGrads;
export function batchNormBackward(dy: unknown, x: unknown, shapeOrOptions: unknown, options?: unknown): BatchNormGrads {
  return runNow(planBackward(dy, x, shapeOrOptions, options));
}

/** {@link batchNormBackward} on a worker thread. */
export function batchNormBackwardAsync(dy: Float32Array, x: Float32Array, shape: readonly number[], options: BatchNormBackwardOptions): Promise<BatchNormGrads>;
export function batchNormBackwardAsync(dy: Float32Array | TensorLike, x: TensorLike, options: BatchNormBackwardOptions): Promise<BatchNormGrads>;
export async function batchNormBackwardAsync(dy: unknown, x: unknown, shapeOrOptions: unknown, options?: unknown): Promise<BatchNormGrads> {
  return runLater(planBackward(dy, x, shapeOrOptions, options));
}

/**
 * Updates running statistics in place with PyTorch's convention:
 * running = (1 − m)·running + m·batch, the variance taking the unbiased batch variance.
 * momentum null gives the cumulative average (m = 1 / numBatchesTracked).
 *
 * @example
 * const runningMean = new Float32Array(16), runningVar = new Float32Array(16).fill(1);
 * updateRunningStats(runningMean, runningVar, moments(x, shape), { momentum: 0.1 });
 */
export function updateRunningStats(runningMean: Float32Array | Float64Array, runningVar: Float32Array | Float64Array,
  stats: ChannelStats, options: RunningStatsOptions): void {
  if (!(stats instanceof ChannelStats)) throw typeError('stats', 'a ChannelStats (from moments)', stats);
  if (stats.groups !== 1) {
    throw new RangeError(`stats: expected one set of statistics, got ${stats.groups} groups; merge them with stats.reduceGroups() first`);
  }
  const c = stats.channels;
  for (const [name, v] of [['runningMean', runningMean], ['runningVar', runningVar]] as const) {
    if (!(v instanceof Float32Array || v instanceof Float64Array)) throw typeError(name, `a Float32Array or Float64Array of ${c} values`, v);
    if (v.length !== c) throw new RangeError(`${name}: expected ${c} values (one per channel), got ${v.length}`);
  }
  if (runningMean.constructor !== runningVar.constructor) {
    throw typeError('runningVar', `a ${runningMean.constructor.name} like runningMean`, runningVar);
  }
  const o = checkObject<RunningStatsOptions>(options, 'options');
  checkKeys(o, ['momentum', 'numBatchesTracked']);
  let momentum: number;
  if (o.momentum === null) {
    momentum = 1 / checkInteger(o.numBatchesTracked, 'options.numBatchesTracked', undefined, 1);
  } else {
    momentum = checkNumber(o.momentum, 'options.momentum', undefined, 0, 1);
  }
  if (stats.count < 2) {
    throw new RangeError(`stats: the unbiased variance needs more than 1 value per channel, got count = ${stats.count}`);
  }
  native.updateRunningStats(runningMean, runningVar, stats.mean, stats.m2, stats.count, momentum);
}
