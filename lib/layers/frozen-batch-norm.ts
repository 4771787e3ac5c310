// FrozenBN (paper §4.3): fixed statistics and affine parameters in training
// and inference alike, as detectron2's FrozenBatchNorm2d.
import { batchNorm, batchNormBackward } from '../functional';
import type { Layout, TensorLike } from '../tensor';
import { CheckedTensor, checkLayout } from '../tensor';
import { checkInteger, checkKeys, checkNumber, checkObject, typeError } from '../validate';
import { BatchNorm } from './batch-norm';
import { gradInput, layerInput } from './input';
import { LayerState, LayerStateInput, NormLayer } from './layer';
import { layoutOf } from './segments';
import { checkStateKeys, stateArray } from './state-check';
import { LayerTree, replaceLayers } from './tree';

export interface FrozenBatchNormOptions {
  /** Added to running_var; default 1e-5. */
  eps?: number;
  layout?: Layout;
}

/**
 * BatchNorm with fixed statistics and affine parameters, in both modes:
 * y = (x − running_mean)·a + bias with a = weight/√(running_var + eps); the
 * backward is dx = dy·a and nothing is learned. A new FrozenBatchNorm is the
 * identity (running_var = 1 − eps, as detectron2's). Use it for the last part
 * of training with population statistics (paper §4.3): see {@link freeze} and
 * {@link freezeBatchNorms}.
 *
 * @example
 * const f = new FrozenBatchNorm(16);
 * f.loadState(bnState);                  // weight, bias, running_mean, running_var (num_batches_tracked is ignored)
 * const y = f.forward(x, [8, 16, 32, 32]);
 * const dx = f.backward(dy);             // dy·a
 */
export class FrozenBatchNorm extends NormLayer {
  readonly numFeatures: number;
  readonly eps: number;
  readonly layout: Layout;
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly runningMean: Float32Array;
  readonly runningVar: Float32Array;
  private saved: { t: CheckedTensor; mean: Float64Array; invstd: Float64Array } | null = null;

  constructor(numFeatures: number, options?: FrozenBatchNormOptions) {
    super();
    this.numFeatures = checkInteger(numFeatures, 'numFeatures', undefined, 1);
    const o = checkObject<FrozenBatchNormOptions>(options, 'options');
    checkKeys(o, ['eps', 'layout']);
    this.eps = checkNumber(o.eps, 'options.eps', 1e-5, 0);
    this.layout = checkLayout(o.layout);
    const c = this.numFeatures;
    this.weight = new Float32Array(c).fill(1);
    this.bias = new Float32Array(c);
    this.runningMean = new Float32Array(c);
    this.runningVar = new Float32Array(c).fill(1 - this.eps);
  }

  /** y = (x − running_mean)·weight/√(running_var + eps) + bias, in training and inference. */
  forward(x: Float32Array, shape: readonly number[]): Float32Array;
  forward(x: TensorLike): Float32Array;
  forward(x: unknown, shape?: unknown): Float32Array {
    const t = layerInput(x, shape, this.layout, this.numFeatures, 'FrozenBatchNorm');
    const r = batchNorm(t.data, t.shape, {
      training: false, layout: this.layout, mean: this.runningMean, variance: this.runningVar, eps: this.eps,
      weight: this.weight, bias: this.bias,
    });
    this.saved = { t, mean: r.mean, invstd: r.invstd };
    return r.y;
  }

  /** dx = dy·weight/√(running_var + eps). */
  backward(dy: Float32Array): Float32Array {
    const grad = gradInput(dy, this.saved?.t ?? null, 'FrozenBatchNorm');
    const { t, mean, invstd } = this.saved!;
    return batchNormBackward(grad, t.data, t.shape, { training: false, layout: layoutOf(t), weight: this.weight, mean, invstd }).dx;
  }

  /** `{ weight, bias, running_mean, running_var }` as detectron2's FrozenBatchNorm2d. */
  state(): LayerState {
    return {
      weight: Array.from(this.weight), bias: Array.from(this.bias),
      running_mean: Array.from(this.runningMean), running_var: Array.from(this.runningVar),
    };
  }

  /** Loads a FrozenBatchNorm or BatchNorm state (num_batches_tracked is accepted and ignored). */
  loadState(state: LayerStateInput): void {
    const s = checkStateKeys(state, ['weight', 'bias', 'running_mean', 'running_var'], ['num_batches_tracked']);
    const c = this.numFeatures;
    const v = [stateArray(s, 'weight', c), stateArray(s, 'bias', c), stateArray(s, 'running_mean', c), stateArray(s, 'running_var', c)];
    this.weight.set(v[0]);
    this.bias.set(v[1]);
    this.runningMean.set(v[2]);
    this.runningVar.set(v[3]);
  }
}

/**
 * A FrozenBatchNorm with a BatchNorm's current running statistics, affine
 * parameters (1 and 0 without affine), eps and layout. eps is copied, not
 * added to the variance, so the output equals the BatchNorm's in eval mode.
 * @example
 * const frozen = freeze(bn);
 * frozen.forward(x, shape);   // == bn.eval().forward(x, shape)
 */
export function freeze(bn: BatchNorm): FrozenBatchNorm {
  if (!(bn instanceof BatchNorm)) throw typeError('bn', 'a BatchNorm (or GhostBatchNorm / SyncBatchNorm)', bn);
  if (bn.runningMean === null || bn.runningVar === null) {
    throw new RangeError('bn: has no running statistics to freeze (trackRunningStats is false)');
  }
  const f = new FrozenBatchNorm(bn.numFeatures, { eps: bn.eps, layout: bn.layout });
  if (bn.weight && bn.bias) {
    f.weight.set(bn.weight);
    f.bias.set(bn.bias);
  }
  f.runningMean.set(bn.runningMean);
  f.runningVar.set(bn.runningVar);
  f.training = bn.training;
  return f;
}

/**
 * Replaces every BatchNorm (GhostBatchNorm and SyncBatchNorm included) in a
 * layer, array, Map or object tree by its {@link freeze}d copy, in place, and
 * returns the new root and the dotted paths replaced — for the last part of
 * training with population statistics (paper §4.3, detectron2's
 * `FrozenBatchNorm2d.convert_frozen_batchnorm`). Layers without running
 * statistics are left as they are.
 * @example
 * await recomputePopulationStats(model, (x) => model.forward(x), batches);
 * const { replaced } = freezeBatchNorms(model);   // ['stem.bn', 'blocks.0.bn', ...]
 */
export function freezeBatchNorms<T>(layers: T): { tree: T; replaced: string[] } {
  const r = replaceLayers(layers as LayerTree, (layer) =>
    (layer instanceof BatchNorm && layer.runningMean !== null ? freeze(layer) : undefined));
  return { tree: r.tree as T, replaced: r.replaced };
}
