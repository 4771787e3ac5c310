// The BatchNorm layers that keep one set of running statistics — BatchNorm
// (and GhostBatchNorm, SyncBatchNorm, ShuffleBatchNorm) and InstanceNorm: the
// set, its accessors, the forward over it and its PyTorch state_dict.
// DomainBatchNorm keeps one set per domain and extends BatchNormBase directly.
import type { TensorLike } from '../tensor';
import { affineState, BatchNormBase, loadSingleSetState, newRunningSet, RunningSet, runningState } from './batch-norm-base';
import type { LayerState, LayerStateInput } from './layer';

export abstract class SingleSetBatchNorm extends BatchNormBase {
  /** The running statistics, or null with trackRunningStats false. */
  protected readonly stats: RunningSet | null;

  protected constructor(numFeatures: unknown, options: unknown, allowedKeys: readonly string[], who: string) {
    super(numFeatures, options, allowedKeys, who);
    this.stats = this.trackRunningStats ? newRunningSet(this.numFeatures) : null;
  }

  /** Running mean (PyTorch's `running_mean`), or null with trackRunningStats false. Update it in place. */
  get runningMean(): Float32Array | null {
    return this.stats?.mean ?? null;
  }

  /** Running variance (`running_var`), or null with trackRunningStats false. */
  get runningVar(): Float32Array | null {
    return this.stats?.var ?? null;
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

  /** Loads a state from `state()` or PyTorch's state_dict of the same layer; strict. */
  loadState(state: LayerStateInput): void {
    loadSingleSetState(this, this.stats, state);
  }
}
