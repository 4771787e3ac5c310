// BatchNorm with PyTorch's semantics (torch.nn.BatchNorm1d/2d/3d in one
// class: any number of spatial dims), plus the Keras / ONNX running-statistics
// convention and batch statistics at inference.
import type { Layout } from '../tensor';
import { checkInteger, checkKeys, checkNumber, checkObject } from '../validate';
import { BATCHNORM_OPTION_KEYS, BatchNormLayerOptions } from './batch-norm-base';
import { SingleSetBatchNorm } from './single-set';

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
export class BatchNorm extends SingleSetBatchNorm {
  constructor(numFeatures: number, options?: BatchNormLayerOptions) {
    super(numFeatures, options, BATCHNORM_OPTION_KEYS, new.target.name);
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

  /** Training forwards seen (`num_batches_tracked`); 0 with trackRunningStats false. */
  get numBatchesTracked(): number {
    return this.stats?.numBatchesTracked ?? 0;
  }

  set numBatchesTracked(value: number) {
    const n = checkInteger(value, 'numBatchesTracked', undefined, 0);
    if (this.stats) this.stats.numBatchesTracked = n;
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
}
