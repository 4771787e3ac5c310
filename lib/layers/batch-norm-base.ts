// What BatchNorm, GhostBatchNorm, SyncBatchNorm and DomainBatchNorm share:
// options, affine parameters and their gradients, the choice of statistics
// per mode, the running-statistics update, collecting mode and the backward.
import { updateRunningStats } from '../functional';
import { ChannelStats } from '../stats';
import { CheckedTensor, checkLayout, Layout } from '../tensor';
import { checkBoolean, checkInteger, checkKeys, checkNumber, checkObject, typeError } from '../validate';
import type { PopulationTarget, RunningStatsView, StatsSink } from './collect';
import { gradInput, layerInput } from './input';
import { LayerStateInput, NormLayer } from './layer';
import { checkStateKeys, stateArray, stateCount } from './state-check';
import {
  backwardParts, LastGroup, mergeAll, normalizeWithBatchStats, normalizeWithStats, Part, Segment, splitIntoGroups,
} from './segments';

/**
 * How running statistics are updated from a batch's statistics `s`:
 * - `'pytorch'` (PyTorch, default): running ← (1 − momentum)·running + momentum·s, with the
 *   unbiased variance of the batch;
 * - `'keras'` (Keras, TF.js, ONNX): the same blend with the biased variance. Their `momentum`
 *   (or `decay`) is the weight of the old value: pass `momentum: 1 − decay` here, or use
 *   {@link BatchNorm.keras} / {@link BatchNorm.onnx}.
 */
export type Convention = 'pytorch' | 'keras';

/** Inference statistics: `'running'` (the running / population statistics) or `'batch'` (the inference batch's own, §4.2). */
export type EvalStats = 'running' | 'batch';

export interface BatchNormLayerOptions {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Weight of the new batch in the running statistics; default 0.1; null: cumulative average over all batches. */
  momentum?: number | null;
  /** Learnable per-channel weight (γ) and bias (β); default true. */
  affine?: boolean;
  /** Keep running statistics; default true. false: batch statistics in training and inference. */
  trackRunningStats?: boolean;
  /** Memory order of inputs; default 'NCHW'. */
  layout?: Layout;
  /** Running-statistics convention; default 'pytorch'. */
  convention?: Convention;
  /** Inference with `'running'` statistics (default) or the inference batch's own (`'batch'`). */
  evalStats?: EvalStats;
  /** With batch statistics at inference: normalize groups of this many samples (null: the whole batch). */
  evalGroupSize?: number | null;
  /** How a ragged last group is treated (ghost batches, evalGroupSize); default 'auto'. */
  lastGroup?: LastGroup;
}

export const BATCHNORM_OPTION_KEYS = [
  'eps', 'momentum', 'affine', 'trackRunningStats', 'layout', 'convention', 'evalStats', 'evalGroupSize', 'lastGroup',
] as const;

/** One set of running statistics. */
export interface RunningSet {
  mean: Float32Array;
  var: Float32Array;
  numBatchesTracked: number;
}

export function newRunningSet(c: number): RunningSet {
  return { mean: new Float32Array(c), var: new Float32Array(c).fill(1), numBatchesTracked: 0 };
}

export function checkMomentum(value: unknown, name: string): number | null {
  if (value === null) return null;
  return checkNumber(value, name, undefined, 0, 1);
}

export function checkLastGroup(value: unknown, name: string): LastGroup {
  if (value === undefined) return 'auto';
  if (value !== 'auto' && value !== 'separate' && value !== 'merge') throw typeError(name, "'auto', 'separate' or 'merge'", value);
  return value;
}

function checkEvalStats(value: unknown): EvalStats {
  if (value === undefined) return 'running';
  if (value !== 'running' && value !== 'batch') throw typeError('options.evalStats', "'running' or 'batch'", value);
  return value;
}

function checkGroupSize(value: unknown, name: string): number | null {
  if (value === undefined || value === null) return null;
  return checkInteger(value, name, undefined, 1);
}

/**
 * The shared machinery of the BatchNorm layers; use {@link BatchNorm},
 * GhostBatchNorm, SyncBatchNorm or DomainBatchNorm.
 */
export abstract class BatchNormBase extends NormLayer implements PopulationTarget {
  readonly numFeatures: number;
  readonly eps: number;
  /** Weight of the new batch in the running statistics; null: cumulative average. May be changed between steps. */
  momentum: number | null;
  readonly affine: boolean;
  readonly trackRunningStats: boolean;
  readonly layout: Layout;
  readonly convention: Convention;
  /** Statistics at inference; may be changed at any time. */
  evalStats: EvalStats;
  /** Group size for batch statistics at inference (null: the whole batch). */
  evalGroupSize: number | null;
  /** How a ragged last group is treated. */
  lastGroup: LastGroup;
  /** γ, one per channel (null without affine). */
  readonly weight: Float32Array | null;
  /** β, one per channel (null without affine). */
  readonly bias: Float32Array | null;
  /** Accumulated gradient of the weight (PyTorch's `weight.grad`); reset with zeroGrad(). */
  readonly weightGrad: Float32Array | null;
  /** Accumulated gradient of the bias. */
  readonly biasGrad: Float32Array | null;

  protected saved: { t: CheckedTensor; parts: Part[] } | null = null;
  protected sink: StatsSink | null = null;

  protected constructor(numFeatures: unknown, options: unknown, allowedKeys: readonly string[], protected readonly who: string) {
    super();
    this.numFeatures = checkInteger(numFeatures, 'numFeatures', undefined, 1);
    const o = checkObject<BatchNormLayerOptions>(options, 'options');
    checkKeys(o, allowedKeys);
    this.eps = checkNumber(o.eps, 'options.eps', 1e-5, 0);
    this.momentum = o.momentum === undefined ? 0.1 : checkMomentum(o.momentum, 'options.momentum');
    this.affine = checkBoolean(o.affine, 'options.affine', true);
    this.trackRunningStats = checkBoolean(o.trackRunningStats, 'options.trackRunningStats', true);
    this.layout = checkLayout(o.layout);
    if (o.convention !== undefined && o.convention !== 'pytorch' && o.convention !== 'keras') {
      throw typeError('options.convention', "'pytorch' or 'keras'", o.convention);
    }
    this.convention = o.convention ?? 'pytorch';
    this.evalStats = checkEvalStats(o.evalStats);
    this.evalGroupSize = checkGroupSize(o.evalGroupSize, 'options.evalGroupSize');
    this.lastGroup = checkLastGroup(o.lastGroup, 'options.lastGroup');
    const c = this.numFeatures;
    this.weight = this.affine ? new Float32Array(c).fill(1) : null;
    this.bias = this.affine ? new Float32Array(c) : null;
    this.weightGrad = this.affine ? new Float32Array(c) : null;
    this.biasGrad = this.affine ? new Float32Array(c) : null;
  }

  /** The samples normalized together in training: the whole batch, or ghost batches. */
  protected trainingSegments(n: number): Segment[] {
    return [{ start: 0, count: n, groups: 1 }];
  }

  /** Normalizes with statistics of the batch itself (SyncBatchNorm makes them global). */
  protected normalizeBatch(t: CheckedTensor, segments: Segment[]): { y: Float32Array; parts: Part[]; stats: ChannelStats[] } {
    return normalizeWithBatchStats(t, segments, this);
  }

  /** The forward shared by every BatchNorm layer; `set` holds the running statistics to use or update. */
  protected forwardWith(x: unknown, shape: unknown, set: RunningSet | null, key: string): Float32Array {
    const t = layerInput(x, shape, this.layout, this.numFeatures, this.who);
    this.saved = null;
    const useRunning = !this.training && this.sink === null && set !== null && this.evalStats === 'running';
    if (useRunning) {
      const r = normalizeWithStats(t, set.mean, set.var, this);
      this.saved = { t, parts: r.parts };
      return r.y;
    }
    const collecting = this.sink !== null;
    const segments = this.training || collecting
      ? this.trainingSegments(t.dims.n)
      : splitIntoGroups(t.dims.n, this.evalGroupSize, this.lastGroup);
    const r = this.normalizeBatch(t, segments);
    if (this.sink !== null) this.sink(r.stats, key);
    else if (this.training && set !== null) this.updateRunning(set, r.stats);
    this.saved = { t, parts: r.parts };
    return r.y;
  }

  /** Blends a forward's statistics into the running statistics (one update per forward). */
  protected updateRunning(set: RunningSet, stats: ChannelStats[]): void {
    this.blend(set, mergeAll(stats));
  }

  /** One running-statistics update with statistics `s` (one group). */
  protected blend(set: RunningSet, s: ChannelStats): void {
    set.numBatchesTracked += 1;
    const momentum = this.momentum === null ? 1 / set.numBatchesTracked : checkMomentum(this.momentum, `${this.who}.momentum`)!;
    const batch = this.convention === 'keras' ? new ChannelStats(s.count, s.mean, s.m2.map((q) => (q * (s.count - 1)) / s.count)) : s;
    updateRunningStats(set.mean, set.var, batch, { momentum });
  }

  /**
   * Gradient with respect to the input of the last forward. The weight and bias
   * gradients are added to `weightGrad` and `biasGrad`.
   */
  backward(dy: Float32Array): Float32Array {
    const grad = gradInput(dy, this.saved?.t ?? null, this.who);
    const { t, parts } = this.saved!;
    const g = backwardParts(grad, t, parts, this.weight);
    this.accumulate(g.dweight, g.dbias);
    return g.dx;
  }

  protected accumulate(dweight: ArrayLike<number>, dbias: ArrayLike<number>): void {
    if (this.weightGrad === null || this.biasGrad === null) return;
    for (let i = 0; i < this.numFeatures; i++) {
      this.weightGrad[i] += dweight[i];
      this.biasGrad[i] += dbias[i];
    }
  }

  override zeroGrad(): void {
    this.weightGrad?.fill(0);
    this.biasGrad?.fill(0);
  }

  /** weight ← 1, bias ← 0 (PyTorch's reset_parameters without the statistics). */
  resetParameters(): void {
    this.weight?.fill(1);
    this.bias?.fill(0);
  }

  // --- population statistics (lib/precise-bn.ts) ---

  abstract statisticsKeys(): string[];
  protected abstract runningSet(key: string): RunningSet | null;

  startCollecting(sink: StatsSink): void {
    if (typeof sink !== 'function') throw typeError('sink', 'a function', sink);
    this.sink = sink;
  }

  stopCollecting(): void {
    this.sink = null;
  }

  runningStats(key: string): RunningStatsView | null {
    const set = this.runningSet(key);
    return set === null ? null : { mean: set.mean, var: set.var, eps: this.eps };
  }

  setPopulationStats(key: string, mean: Float64Array, variance: Float64Array): void {
    const set = this.runningSet(key);
    if (set === null) throw new RangeError(`key: ${this.who} keeps no running statistics for ${JSON.stringify(key)}`);
    if (mean.length !== this.numFeatures || variance.length !== this.numFeatures) {
      throw new RangeError(`mean: expected ${this.numFeatures} values (one per channel), got ${mean.length} and ${variance.length}`);
    }
    set.mean.set(mean);
    set.var.set(variance);
  }
}

/** The affine part of a state: weight and bias, when the layer has them. */
export function affineState(layer: BatchNormBase): Record<string, number[]> {
  return layer.weight && layer.bias ? { weight: Array.from(layer.weight), bias: Array.from(layer.bias) } : {};
}

/** Loads weight, bias and one set of running statistics (BatchNorm's state_dict), strictly; nothing changes on error. */
export function loadSingleSetState(layer: BatchNormBase, set: RunningSet | null, state: LayerStateInput): void {
  const keys = [...(layer.affine ? ['weight', 'bias'] : []), ...(set ? ['running_mean', 'running_var', 'num_batches_tracked'] : [])];
  const s = checkStateKeys(state, keys);
  const c = layer.numFeatures;
  const weight = layer.affine ? stateArray(s, 'weight', c) : null;
  const bias = layer.affine ? stateArray(s, 'bias', c) : null;
  const loaded = set ? { mean: stateArray(s, 'running_mean', c), var: stateArray(s, 'running_var', c), n: stateCount(s, 'num_batches_tracked') } : null;
  if (weight) layer.weight!.set(weight);
  if (bias) layer.bias!.set(bias);
  if (loaded && set) {
    set.mean.set(loaded.mean);
    set.var.set(loaded.var);
    set.numBatchesTracked = loaded.n;
  }
}

/** State entries of one set of running statistics, under `prefix`. */
export function runningState(set: RunningSet, prefix = ''): Record<string, number[] | number> {
  return {
    [`${prefix}running_mean`]: Array.from(set.mean),
    [`${prefix}running_var`]: Array.from(set.var),
    [`${prefix}num_batches_tracked`]: set.numBatchesTracked,
  };
}
