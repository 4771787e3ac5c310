// The BatchNorm backward in two halves, for statistics that span more than
// one call — SyncBatchNorm (sums over workers) and GroupNorm (sums over the
// channels of a group): PyTorch's batch_norm_backward_reduce / _elemt.
import { native } from './native';
import { checkLayout, checkOut, checkSameShape, checkTensor, Layout, tensorArgs } from './tensor';
import { ChannelValues, checkInteger, checkKeys, checkObject, float64Values } from './validate';

export interface BackwardReduceOptions {
  layout?: Layout;
  /** Equal contiguous groups of samples, each with its own statistics and sums (default 1). */
  groups?: number;
  /** The statistics x was normalized with: groups·C values each. */
  mean: ChannelValues;
  invstd: ChannelValues;
}

export interface BackwardElemtOptions {
  layout?: Layout;
  groups?: number;
  /** groups·C values: the mean x is centered on, and the coefficients of dx = a·dy + b·(x − mean) + c. */
  mean: ChannelValues;
  a: ChannelValues;
  b: ChannelValues;
  c: ChannelValues;
  /** Write dx here (may be dy itself). */
  out?: Float32Array;
}

function plan(dy: unknown, x: unknown, shape: unknown, options: unknown, keys: readonly string[]) {
  const [data, dims, raw] = tensorArgs(x, shape, options);
  const o = checkObject<BackwardElemtOptions>(raw, 'options');
  checkKeys(o, keys);
  const groups = checkInteger(o.groups, 'options.groups', 1, 1);
  const t = checkTensor(data, dims, checkLayout(o.layout), 'x', groups);
  const [dyData] = tensorArgs(dy, undefined, undefined, 'dy');
  const grad = checkSameShape(dyData, t, 'dy');
  const n = groups * t.dims.c;
  return { t, grad, o, n, values: (key: 'mean' | 'a' | 'b' | 'c' | 'invstd') => float64Values((o as Record<string, unknown>)[key], `options.${key}`, n) };
}

/**
 * Per-(group, channel) sums of the backward, in float64: Σdy and Σdy·x̂ with
 * x̂ = (x − mean)·invstd. For a BatchNorm, Σdy is dbias and Σdy·x̂ is dweight.
 *
 * @example
 * const { sumDy, sumDyXhat } = batchNormBackwardReduce(dy, x, shape, { mean, invstd });
 * // SyncBatchNorm: all-reduce both over workers, then batchNormBackwardElemt
 */
export function batchNormBackwardReduce(dy: Float32Array, x: Float32Array, shape: readonly number[], options: BackwardReduceOptions):
  { sumDy: Float64Array; sumDyXhat: Float64Array } {
  const p = plan(dy, x, shape, options, ['layout', 'groups', 'mean', 'invstd']);
  const sumDy = new Float64Array(p.n);
  const sumDyXhat = new Float64Array(p.n);
  native.batchNormGradSums(p.grad, p.t.data, p.t.dims, p.values('mean'), p.values('invstd'), sumDy, sumDyXhat);
  return { sumDy, sumDyXhat };
}

/**
 * dx = a·dy + b·(x − mean) + c with per-(group, channel) coefficients, in one
 * pass. With global sums over n elements, the BatchNorm training backward is
 * a = γ·invstd, b = −a·invstd·Σdy·x̂/n, c = −a·Σdy/n.
 *
 * @example
 * const a = weight.map((w, i) => w * invstd[i]);
 * const dx = batchNormBackwardElemt(dy, x, shape, {
 *   mean, a, b: a.map((v, i) => -v * invstd[i] * sumDyXhat[i] / n), c: a.map((v, i) => -v * sumDy[i] / n) });
 */
export function batchNormBackwardElemt(dy: Float32Array, x: Float32Array, shape: readonly number[], options: BackwardElemtOptions): Float32Array {
  const p = plan(dy, x, shape, options, ['layout', 'groups', 'mean', 'a', 'b', 'c', 'out']);
  const dx = checkOut(p.o.out, p.t, 'options.out', [p.t.data, p.grad]);
  native.batchNormGradApply(p.grad, p.t.data, dx, p.t.dims, p.values('mean'), p.values('a'), p.values('b'), p.values('c'));
  return dx;
}
