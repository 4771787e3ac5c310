// InstanceNorm: per-(sample, channel) statistics — BatchNorm with ghost
// batches of one sample, on the same kernels.
import { ChannelStats } from '../stats';
import type { Layout } from '../tensor';
import { checkKeys, checkNumber, checkObject } from '../validate';
import type { RunningSet } from './batch-norm-base';
import type { Segment } from './segments';
import { SingleSetBatchNorm } from './single-set';

export interface InstanceNormOptions {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Weight of the new batch in the running statistics; default 0.1. */
  momentum?: number;
  /** Per-channel weight and bias; default false (PyTorch's default for InstanceNorm). */
  affine?: boolean;
  /** Keep running statistics and use them in eval mode; default false. */
  trackRunningStats?: boolean;
  layout?: Layout;
}

/**
 * Instance normalization as torch.nn.InstanceNorm1d/2d/3d: each sample's
 * channel normalized with its own mean and biased variance (more than one
 * spatial element needed). With trackRunningStats, the running statistics
 * blend in the batch's average of the per-instance means and unbiased
 * variances, and eval mode uses them, as PyTorch does. InstanceNorm is not a
 * target of recomputePopulationStats or freezeBatchNorms.
 *
 * @example
 * const inorm = new InstanceNorm(64, { affine: true });   // like torch.nn.InstanceNorm2d(64, affine=True)
 * const y = inorm.forward(x, [8, 64, 32, 32]);
 * const dx = inorm.backward(dy);
 */
export class InstanceNorm extends SingleSetBatchNorm {
  constructor(numFeatures: number, options?: InstanceNormOptions) {
    const o = checkObject<InstanceNormOptions>(options, 'options');
    checkKeys(o, ['eps', 'momentum', 'affine', 'trackRunningStats', 'layout']);
    if (o.momentum !== undefined) checkNumber(o.momentum, 'options.momentum', undefined, 0, 1);
    super(numFeatures, { affine: false, trackRunningStats: false, ...o }, ['eps', 'momentum', 'affine', 'trackRunningStats', 'layout'], 'InstanceNorm');
    this.evalGroupSize = 1; // without running statistics, eval mode uses each instance's own
  }

  protected override trainingSegments(n: number): Segment[] {
    return [{ start: 0, count: n, groups: n }];
  }

  // PyTorch updates N copies of the running statistics, one per instance, and
  // keeps their average; num_batches_tracked is not counted.
  protected override updateRunning(set: RunningSet, stats: ChannelStats[]): void {
    const s = stats[0];
    const c = this.numFeatures;
    const mean = new Float64Array(c);
    const m2 = new Float64Array(c);
    for (let g = 0; g < s.groups; g++) {
      for (let i = 0; i < c; i++) {
        mean[i] += s.mean[g * c + i] / s.groups;
        m2[i] += s.m2[g * c + i] / s.groups;
      }
    }
    const tracked = set.numBatchesTracked;
    this.blend(set, new ChannelStats(s.count, mean, m2));
    set.numBatchesTracked = tracked;
  }

  /** Not a population-statistics target: its statistics are per instance. */
  statisticsKeys(): string[] {
    return [];
  }
}
