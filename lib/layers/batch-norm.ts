// BatchNorm with PyTorch's semantics (torch.nn.BatchNorm1d/2d/3d in one
// class: any number of spatial dims), plus the Keras / ONNX running-statistics
// convention and batch statistics at inference.
import type { Layout, TensorLike } from '../tensor';
import { checkInteger, checkKeys, checkNumber, checkObject } from '../validate';
import {
  affineState, BATCHNORM_OPTION_KEYS, BatchNormBase, BatchNormLayerOptions, loadSingleSetState, newRunningSet, RunningSet, runningState,
} from './batch-norm-base';
import type { LayerState, LayerStateInput } from './layer';

/**
 * Batch normalization with PyTorch's conventions (DESIGN.md §2).
 *
 * Training: y = (x − μ_B)·γ/√(σ²_B + eps) + β with the batch's mean and biased
 * variance; the running statistics are blended with momentum (unbiased
 * variance), `momentum: null` gives the cumulative average. Inference: the
 * running statistics — or, with `evalStats: 'batch'`, the statistics of the
 * inference batch or of groups of `evalGroupSize` samples of it (paper §4.2).
 * With `trackRunningStats: false` batch statistics are used in both modes.
 *
 * @example
 * const bn = new BatchNorm(16);                       // like torch.nn.BatchNorm2d(16)
 * const y = bn.forward(x, [8, 16, 32, 32]);            // training: batch statistics, EMA update
 * const dx = bn.backward(dy);                          // bn.weightGrad / bn.biasGrad accumulate
 * bn.eval();
 * const yEval = bn.forward(x, [8, 16, 32, 32]);        // running statistics
 * bn.evalStats = 'batch'; bn.evalGroupSize = 4;        // or: statistics of groups of 4 inference samples
 */
export class BatchNorm extends BatchNormBase {
  protected stats: RunningSet | null;

  constructor(numFeatures: number, options?: BatchNormLayerOptions) {
    super(numFeatures, options, BATCHNORM_OPTION_KEYS, new.target.name);
    this.stats = this.trackRunningStats ? newRunningSet(this.numFeatures) : null;
  }

  /**
   * A BatchNorm with Keras' / TF.js' conventions: `momentum` is Keras' (the
   * weight of the old value, default 0.99), `epsilon` defaults to 1e-3, the
   * variance blended into the moving variance is the biased one, and the layout
   * defaults to channels last.
   * @example
   * const bn = BatchNorm.keras(32);                       // keras.layers.BatchNormalization()
   * bn.loadState({ weight: gamma, bias: beta, running_mean: movingMean, running_var: movingVariance, num_batches_tracked: 0 });
   */
  static keras(numFeatures: number, options?: { momentum?: number; epsilon?: number; layout?: Layout }): BatchNorm {
    const o = checkObject<{ momentum: number; epsilon: number; layout: Layout }>(options, 'options');
    checkKeys(o, ['momentum', 'epsilon', 'layout']);
    const decay = checkNumber(o.momentum, 'options.momentum', 0.99, 0, 1);
    return new BatchNorm(numFeatures, { momentum: 1 - decay, eps: checkNumber(o.epsilon, 'options.epsilon', 1e-3, 0), layout: o.layout ?? 'NHWC', convention: 'keras' });
  }

  /**
   * A BatchNorm with the conventions of ONNX BatchNormalization in training
   * mode: `momentum` is ONNX's (weight of the old value, default 0.9), epsilon
   * 1e-5, biased variance in the running variance.
   * @example
   * const bn = BatchNorm.onnx(64, { momentum: 0.9, epsilon: 1e-5 });
   */
  static onnx(numFeatures: number, options?: { momentum?: number; epsilon?: number; layout?: Layout }): BatchNorm {
    const o = checkObject<{ momentum: number; epsilon: number; layout: Layout }>(options, 'options');
    checkKeys(o, ['momentum', 'epsilon', 'layout']);
    const decay = checkNumber(o.momentum, 'options.momentum', 0.9, 0, 1);
    return new BatchNorm(numFeatures, { momentum: 1 - decay, eps: checkNumber(o.epsilon, 'options.epsilon', 1e-5, 0), layout: o.layout, convention: 'keras' });
  }

  /** Running mean (PyTorch's `running_mean`), or null with trackRunningStats false. Update it in place. */
  get runningMean(): Float32Array | null {
    return this.stats?.mean ?? null;
  }

  /** Running variance (`running_var`), or null with trackRunningStats false. */
  get runningVar(): Float32Array | null {
    return this.stats?.var ?? null;
  }

  /** Training forwards seen (`num_batches_tracked`); 0 with trackRunningStats false. */
  get numBatchesTracked(): number {
    return this.stats?.numBatchesTracked ?? 0;
  }

  set numBatchesTracked(value: number) {
    const n = checkInteger(value, 'numBatchesTracked', undefined, 0);
    if (this.stats) this.stats.numBatchesTracked = n;
  }

  /**
   * Normalizes x (`[N, C, ...spatial]`, or channels last with layout 'NHWC').
   * Keeps x for the backward: do not modify it before calling backward.
   */
  forward(x: Float32Array, shape: readonly number[]): Float32Array;
  forward(x: TensorLike): Float32Array;
  forward(x: unknown, shape?: unknown): Float32Array {
    return this.forwardWith(x, shape, this.stats, '');
  }

  /** running_mean ← 0, running_var ← 1, num_batches_tracked ← 0. */
  resetRunningStats(): void {
    if (!this.stats) return;
    this.stats.mean.fill(0);
    this.stats.var.fill(1);
    this.stats.numBatchesTracked = 0;
  }

  statisticsKeys(): string[] {
    return this.stats ? [''] : [];
  }

  protected runningSet(key: string): RunningSet | null {
    return key === '' ? this.stats : null;
  }

  /**
   * `{ weight, bias, running_mean, running_var, num_batches_tracked }` as in
   * PyTorch's state_dict (entries absent without affine / running statistics).
   */
  state(): LayerState {
    return { ...affineState(this), ...(this.stats ? runningState(this.stats) : {}) };
  }

  /** Loads a state from `state()` or PyTorch's state_dict of the same BatchNorm; strict. */
  loadState(state: LayerStateInput): void {
    loadSingleSetState(this, this.stats, state);
  }
}
