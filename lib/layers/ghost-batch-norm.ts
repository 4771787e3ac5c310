// Ghost batches (paper §4.1): the normalization batch size as a
// hyper-parameter of its own, smaller than the SGD batch.
import { ChannelStats } from '../stats';
import { checkInteger, checkObject, typeError } from '../validate';
import { BatchNormLayerOptions, RunningSet } from './batch-norm-base';
import { BatchNorm } from './batch-norm';
import { Segment, splitIntoGroups } from './segments';

export interface GhostBatchNormOptions extends BatchNormLayerOptions {
  /** Samples per normalization group in training (required). */
  virtualBatchSize: number;
  /**
   * `'batch'` (default): one running-statistics update per forward, with the statistics of
   * the whole batch (all groups pooled) — the same update a BatchNorm over the batch makes.
   * `'groups'`: one update per group, in order, as a BatchNorm called on each chunk does
   * (TabNet's GBN); num_batches_tracked then counts groups.
   */
  runningStatsFrom?: 'batch' | 'groups';
}

/**
 * BatchNorm whose training statistics come from contiguous groups of
 * `virtualBatchSize` samples ("ghost batches", paper §4.1). Inference is the
 * same as BatchNorm's.
 *
 * Two choices, made deliberately:
 * - running statistics are updated once per forward from the whole batch
 *   (pooled over the groups), so the EMA's time constant and target do not
 *   depend on the group size and a ghost BN's running statistics equal those
 *   of a BatchNorm fed the same batches; `runningStatsFrom: 'groups'` updates
 *   once per group instead;
 * - a ragged last group (N not a multiple of virtualBatchSize) is normalized on
 *   its own if it holds at least half a group, else it joins the previous
 *   group (`lastGroup: 'auto'`); `'separate'` always keeps it apart
 *   (torch.split), `'merge'` always joins it.
 *
 * Inference is BatchNorm's: running statistics, or with `evalStats: 'batch'` the
 * inference batch's — set `evalGroupSize` (for example to virtualBatchSize) to
 * normalize inference groups of the training size (paper §4.2).
 *
 * @example
 * const gbn = new GhostBatchNorm(64, { virtualBatchSize: 32 });
 * const y = gbn.forward(x, [256, 64, 8, 8]);   // 8 groups of 32, each with its own statistics
 * gbn.backward(dy);
 */
export class GhostBatchNorm extends BatchNorm {
  /** Samples per normalization group in training. */
  virtualBatchSize: number;
  readonly runningStatsFrom: 'batch' | 'groups';

  constructor(numFeatures: number, options: GhostBatchNormOptions) {
    const o = checkObject<GhostBatchNormOptions>(options, 'options');
    const { virtualBatchSize, runningStatsFrom, ...rest } = o;
    super(numFeatures, rest);
    this.virtualBatchSize = checkInteger(virtualBatchSize, 'options.virtualBatchSize', undefined, 1);
    if (runningStatsFrom !== undefined && runningStatsFrom !== 'batch' && runningStatsFrom !== 'groups') {
      throw typeError('options.runningStatsFrom', "'batch' or 'groups'", runningStatsFrom);
    }
    this.runningStatsFrom = runningStatsFrom ?? 'batch';
  }

  protected override trainingSegments(n: number): Segment[] {
    return splitIntoGroups(n, checkInteger(this.virtualBatchSize, 'virtualBatchSize', undefined, 1), this.lastGroup);
  }

  protected override updateRunning(set: RunningSet, stats: ChannelStats[]): void {
    if (this.runningStatsFrom === 'batch') {
      super.updateRunning(set, stats);
      return;
    }
    for (const s of stats) for (let g = 0; g < s.groups; g++) this.blend(set, s.group(g));
  }
}

