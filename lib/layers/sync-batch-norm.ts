// SyncBatchNorm (paper §6): batch statistics combined across workers before
// normalizing, so each worker's samples are normalized with the statistics of
// the whole distributed batch. Forward: all-gather per-channel (count, mean,
// M2), Chan-merged in rank order; backward: all-gather Σdy and Σdy·x̂.
import { batchNormBackwardElemt, batchNormBackwardReduce } from '../backward-halves';
import { batchNorm, moments } from '../functional';
import { Communicator } from '../communicator';
import { ChannelStats } from '../stats';
import { CheckedTensor, isTensorLike, TensorLike } from '../tensor';
import { checkInteger, typeError } from '../validate';
import { BatchNormLayerOptions } from './batch-norm-base';
import { BatchNorm } from './batch-norm';
import { gradInput } from './input';
import { layoutOf, Part, Segment } from './segments';

function checkCommunicator(value: unknown): Communicator {
  const c = value as Partial<Communicator> | null;
  if (typeof c !== 'object' || c === null || typeof c.allGather !== 'function' || !Number.isInteger(c.rank) || !Number.isInteger(c.worldSize)) {
    throw typeError('communicator', 'a Communicator ({ rank, worldSize, allGather })', value);
  }
  return c as Communicator;
}

/**
 * BatchNorm whose batch statistics are those of the batch of all workers
 * together (PyTorch's SyncBatchNorm): the output and gradients on each worker
 * equal those of one BatchNorm over the concatenated batch. Workers may hold
 * different batch sizes, including none (shape [0, C, ...]); every worker must
 * call forward and backward in the same order. Running statistics are updated
 * from the global statistics, so they stay identical on all workers; weight and
 * bias gradients are each worker's own sums (add or average them across
 * workers as data-parallel training does). At inference with running
 * statistics nothing is exchanged.
 *
 * @example
 * // in each worker_threads worker (see SharedMemoryCommunicator)
 * const comm = new SharedMemoryCommunicator(workerData.group, workerData.rank);
 * const bn = new SyncBatchNorm(64, comm);
 * const y = bn.forward(xShard, [shardSize, 64, 28, 28]);
 * const dx = bn.backward(dyShard);
 */
export class SyncBatchNorm extends BatchNorm {
  readonly communicator: Communicator;
  private globalCount = 0;
  private empty: { synced: boolean } | null = null;

  constructor(numFeatures: number, communicator: Communicator, options?: Omit<BatchNormLayerOptions, 'evalGroupSize' | 'lastGroup'>) {
    super(numFeatures, options);
    this.communicator = checkCommunicator(communicator);
    if (this.evalGroupSize !== null) throw new RangeError('options.evalGroupSize: not supported by SyncBatchNorm (its statistics are global)');
  }

  /** As BatchNorm.forward; a worker without samples passes shape [0, C, ...]. */
  override forward(x: Float32Array, shape: readonly number[]): Float32Array;
  override forward(x: TensorLike): Float32Array;
  override forward(x: unknown, shape?: unknown): Float32Array {
    this.empty = null;
    const dims = isTensorLike(x) ? x.dims : shape;
    if (Array.isArray(dims) && dims[0] === 0) return this.forwardEmpty(isTensorLike(x) ? x.data : x, dims);
    return this.forwardWith(x, shape, this.stats, '');
  }

  protected override normalizeBatch(t: CheckedTensor, segments: Segment[]): { y: Float32Array; parts: Part[]; stats: ChannelStats[] } {
    if (segments.length !== 1 || segments[0].groups !== 1) {
      throw new RangeError('SyncBatchNorm: ghost batches and evalGroupSize are not supported (its statistics are global)');
    }
    const global = this.gather(moments(t.data, t.shape, { layout: layoutOf(t) }));
    const r = batchNorm(t.data, t.shape, {
      training: false, layout: layoutOf(t), mean: global.mean, variance: global.variance(), eps: this.eps, weight: this.weight, bias: this.bias,
    });
    return { y: r.y, parts: [{ segment: segments[0], batchStats: true, mean: r.mean, invstd: r.invstd }], stats: [global] };
  }

  /** As BatchNorm.backward; with batch statistics the two gradient sums are all-gathered first. */
  override backward(dy: Float32Array): Float32Array {
    if (this.empty !== null) return this.backwardEmpty(dy);
    const saved = this.saved;
    if (saved === null || !saved.parts[0].batchStats) return super.backward(dy);
    const grad = gradInput(dy, saved.t, 'SyncBatchNorm');
    const { t } = saved;
    const { mean, invstd } = saved.parts[0];
    const local = batchNormBackwardReduce(grad, t.data, t.shape, { layout: layoutOf(t), mean, invstd });
    const [sumDy, sumDyXhat] = this.gatherSums(local.sumDy, local.sumDyXhat);
    const n = this.globalCount;
    const a = invstd.map((v, i) => (this.weight ? this.weight[i] : 1) * v);
    const dx = batchNormBackwardElemt(grad, t.data, t.shape, {
      layout: layoutOf(t), mean, a, b: a.map((v, i) => (-v * invstd[i] * sumDyXhat[i]) / n), c: a.map((v, i) => (-v * sumDy[i]) / n),
    });
    this.accumulate(local.sumDyXhat, local.sumDy);
    return dx;
  }

  // A worker without samples still takes part in every exchange.
  private forwardEmpty(data: unknown, dims: unknown[]): Float32Array {
    if (!(data instanceof Float32Array)) throw typeError('x', 'a Float32Array (float32 data)', data);
    dims.forEach((d, i) => checkInteger(d, `shape[${i}]`, undefined, 0));
    const c = this.layout === 'NCHW' ? dims[1] : dims[dims.length - 1];
    if (dims.length < 2 || c !== this.numFeatures) {
      throw new RangeError(`x: SyncBatchNorm expects ${this.numFeatures} channels, got shape [${dims.join(', ')}] (${this.layout})`);
    }
    if (data.length !== 0) throw new RangeError(`x: shape [${dims.join(', ')}] has 0 elements, but x has ${data.length}`);
    this.saved = null;
    const useRunning = !this.training && this.sink === null && this.stats !== null && this.evalStats === 'running';
    this.empty = { synced: !useRunning };
    if (useRunning) return new Float32Array(0);
    const global = this.gather(new ChannelStats(0, new Float64Array(this.numFeatures), new Float64Array(this.numFeatures)));
    if (this.sink !== null) this.sink([global], '');
    else if (this.training && this.stats !== null) this.updateRunning(this.stats, [global]);
    return new Float32Array(0);
  }

  private backwardEmpty(dy: Float32Array): Float32Array {
    if (!(dy instanceof Float32Array) || dy.length !== 0) throw new RangeError(`dy: expected 0 elements (the last forward had no samples), got ${(dy as Float32Array)?.length}`);
    if (this.empty!.synced) this.gatherSums(new Float64Array(this.numFeatures), new Float64Array(this.numFeatures));
    return new Float32Array(0);
  }

  /** All workers' (count, mean, M2), merged in rank order. */
  private gather(local: ChannelStats): ChannelStats {
    const c = this.numFeatures;
    const message = new Float64Array(1 + 2 * c);
    message[0] = local.count;
    message.set(local.mean, 1);
    message.set(local.m2, 1 + c);
    let global: ChannelStats | null = null;
    for (const m of this.communicator.allGather(message)) {
      if (m.length !== message.length) throw new RangeError(`communicator: a rank sent ${m.length} values, expected ${message.length} (same numFeatures on every rank?)`);
      if (m[0] === 0) continue;
      const s = new ChannelStats(m[0], m.slice(1, 1 + c), m.slice(1 + c));
      global = global === null ? s : global.merge(s);
    }
    if (global === null || global.count < 2) {
      throw new RangeError(`x: Expected more than 1 value per channel when training, got ${global?.count ?? 0} over all ${this.communicator.worldSize} workers`);
    }
    this.globalCount = global.count;
    return global;
  }

  /** Σdy and Σdy·x̂ summed over all workers, in rank order. */
  private gatherSums(sumDy: Float64Array, sumDyXhat: Float64Array): [Float64Array, Float64Array] {
    const c = this.numFeatures;
    const message = new Float64Array(2 * c);
    message.set(sumDy);
    message.set(sumDyXhat, c);
    const total = new Float64Array(2 * c);
    for (const m of this.communicator.allGather(message)) for (let i = 0; i < 2 * c; i++) total[i] += m[i];
    return [total.subarray(0, c), total.subarray(c)];
  }
}
