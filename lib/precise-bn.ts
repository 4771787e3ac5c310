// PreciseBN (paper §3): recompute population statistics of a model's BN
// layers by running the final model over some batches with BN in training-mode
// normalization, and aggregating every batch's statistics with
// PopulationEstimator. Also the paper's diagnostic: how far the EMA running
// statistics are from the population ones.
import { isPopulationTarget, PopulationTarget, RunningStatsView } from './layers/collect';
import { NormLayer } from './layers/layer';
import { LayerTree, namedLayers } from './layers/tree';
import { checkEstimator, PopulationEstimator, PopulationEstimatorKind, PopulationStats } from './population';
import { ChannelStats } from './stats';
import { checkBoolean, checkInteger, checkKeys, checkObject, typeError } from './validate';

export interface RecomputeOptions {
  /** 'pooled' (default, the paper's) or 'batch-average' (swa_utils.update_bn). */
  estimator?: PopulationEstimatorKind;
  /** Stop after this many batches (default: all of them). */
  maxBatches?: number;
  /** false: compute and report only, leaving the running statistics as they are. Default true. */
  write?: boolean;
}

/**
 * Distance of running (EMA) statistics from population statistics, per channel:
 * `meanShift` = |μ_ema − μ_pop| / √(σ²_pop + eps) (in population standard deviations) and
 * `logVarRatio` = |ln((σ²_ema + eps) / (σ²_pop + eps))|, with their max and mean over channels.
 */
export interface StatsDrift {
  meanShift: Float64Array;
  logVarRatio: Float64Array;
  maxMeanShift: number;
  meanMeanShift: number;
  maxLogVarRatio: number;
  meanLogVarRatio: number;
}

export interface LayerPopulation {
  /** Dotted path of the layer in the tree ('' for a root layer). */
  path: string;
  /** The statistics set: '' or a DomainBatchNorm's domain. */
  key: string;
  layer: NormLayer & PopulationTarget;
  /** The estimate (written into the layer's running statistics unless write was false). */
  stats: PopulationStats;
  /** How far the running statistics were from it before the recompute. */
  drift: StatsDrift;
}

export interface PopulationReport {
  estimator: PopulationEstimatorKind;
  /** Calls of the forward function. */
  forwards: number;
  written: boolean;
  layers: LayerPopulation[];
  /** Statistics sets never called by the forward: left as they were. */
  untouched: Array<{ path: string; key: string }>;
}

/**
 * Distance between running statistics and population statistics (see {@link StatsDrift}).
 * @example
 * const d = statsDrift(bn.runningStats('')!, population, bn.eps);
 * d.maxMeanShift; // 0.8: some channel's EMA mean is 0.8 population std away
 */
export function statsDrift(running: { mean: ArrayLike<number>; var: ArrayLike<number> }, population: { mean: ArrayLike<number>; var: ArrayLike<number> }, eps: number): StatsDrift {
  const c = population.mean.length;
  if (running.mean.length !== c || running.var.length !== c || population.var.length !== c) {
    throw new RangeError(`running: expected ${c} values per statistic like population, got ${running.mean.length} and ${running.var.length}`);
  }
  const meanShift = new Float64Array(c);
  const logVarRatio = new Float64Array(c);
  for (let i = 0; i < c; i++) {
    meanShift[i] = Math.abs(running.mean[i] - population.mean[i]) / Math.sqrt(population.var[i] + eps);
    logVarRatio[i] = Math.abs(Math.log((running.var[i] + eps) / (population.var[i] + eps)));
  }
  const max = (a: Float64Array) => a.reduce((m, v) => Math.max(m, v), 0);
  const mean = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / c;
  return { meanShift, logVarRatio, maxMeanShift: max(meanShift), meanMeanShift: mean(meanShift), maxLogVarRatio: max(logVarRatio), meanLogVarRatio: mean(logVarRatio) };
}

interface Entry {
  path: string;
  layer: NormLayer & PopulationTarget;
  estimators: Map<string, PopulationEstimator>;
  calledThisForward: Set<string>;
}

/**
 * The steps of a population-statistics recompute, for training loops that
 * drive the batches themselves: `begin()`, then `beginForward()` /
 * `endForward()` around each forward of the model, then `finish()` (or
 * `abort()` on error). {@link recomputePopulationStats} wraps it.
 *
 * @example
 * const c = new PopulationCollector(model, { estimator: 'pooled' }).begin();
 * try {
 *   for (const x of batches) { c.beginForward(); model.forward(x); c.endForward(); }
 * } catch (e) { c.abort(); throw e; }
 * const report = c.finish();
 */
export class PopulationCollector {
  readonly estimator: PopulationEstimatorKind;
  private readonly write: boolean;
  private readonly entries: Entry[];
  private forwards = 0;
  private state: 'new' | 'collecting' | 'in-forward' | 'done' = 'new';

  constructor(layers: LayerTree, options?: Omit<RecomputeOptions, 'maxBatches'>) {
    const o = checkObject<RecomputeOptions>(options, 'options');
    checkKeys(o, ['estimator', 'write']);
    this.estimator = checkEstimator(o.estimator, 'options.estimator');
    this.write = checkBoolean(o.write, 'options.write', true);
    const targets = namedLayers(layers, (l): l is NormLayer & PopulationTarget => isPopulationTarget(l));
    this.entries = targets
      .filter(([, layer]) => layer.statisticsKeys().length > 0)
      .map(([path, layer]) => ({ path, layer, estimators: new Map(), calledThisForward: new Set() }));
  }

  /** Puts the layers in collecting mode. */
  begin(): this {
    if (this.state !== 'new') throw new Error('PopulationCollector.begin: already started');
    for (const e of this.entries) e.layer.startCollecting((stats, key) => this.collect(e, stats, key));
    this.state = 'collecting';
    return this;
  }

  /** Starts a forward; returns its index (forwards completed so far). */
  beginForward(): number {
    if (this.state !== 'collecting') throw new Error(`PopulationCollector.beginForward: expected a started collector between forwards, it is ${this.state}`);
    for (const e of this.entries) e.calledThisForward.clear();
    this.state = 'in-forward';
    return this.forwards;
  }

  /** Ends the forward in progress; returns the forwards completed. */
  endForward(): number {
    if (this.state !== 'in-forward') throw new Error('PopulationCollector.endForward: no forward in progress');
    this.forwards += 1;
    this.state = 'collecting';
    return this.forwards;
  }

  /** Ends collecting mode, writes the estimates (unless write is false) and reports. */
  finish(): PopulationReport {
    if (this.state !== 'collecting') throw new Error(`PopulationCollector.finish: expected a started collector between forwards, it is ${this.state}`);
    this.stop();
    const layers: LayerPopulation[] = [];
    const untouched: Array<{ path: string; key: string }> = [];
    for (const e of this.entries) {
      for (const key of e.layer.statisticsKeys()) {
        const est = e.estimators.get(key);
        const running = e.layer.runningStats(key) as RunningStatsView;
        if (est === undefined || est.batches === 0) {
          untouched.push({ path: e.path, key });
          continue;
        }
        const stats = est.finalize();
        layers.push({ path: e.path, key, layer: e.layer, stats, drift: statsDrift(running, stats, running.eps) });
      }
    }
    if (this.write) for (const l of layers) l.layer.setPopulationStats(l.key, l.stats.mean, l.stats.var);
    return { estimator: this.estimator, forwards: this.forwards, written: this.write, layers, untouched };
  }

  /** Ends collecting mode without touching the layers' statistics. */
  abort(): void {
    this.stop();
  }

  private stop(): void {
    for (const e of this.entries) e.layer.stopCollecting();
    this.state = 'done';
  }

  private collect(e: Entry, stats: ChannelStats[], key: string): void {
    if (this.state !== 'in-forward') {
      throw new Error(`recomputePopulationStats: layer '${e.path}' was called outside a forward of the recompute`);
    }
    if (e.calledThisForward.has(key)) {
      const what = key === '' ? '' : ` with domain '${key}'`;
      throw new Error(`recomputePopulationStats: layer '${e.path}' was called twice in one forward${what}; ` +
        'population statistics need each layer (and domain) called once per batch — give each use its own layer');
    }
    e.calledThisForward.add(key);
    let est = e.estimators.get(key);
    if (est === undefined) e.estimators.set(key, (est = new PopulationEstimator({ estimator: this.estimator })));
    for (const s of stats) est.add(s);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/**
 * The argument checks the async and sync entry points share (all before any
 * layer is touched), and a collector begun on the layers.
 */
function startRecompute<B>(layers: LayerTree, forward: unknown, batches: unknown, options: unknown, allowAsync: boolean):
  { run: (batch: B, index: number) => unknown; max: number; collector: PopulationCollector } {
  if (typeof forward !== 'function') throw typeError('forward', 'a function (batch, index) => any that runs the model', forward);
  const o = checkObject<RecomputeOptions>(options, 'options');
  checkKeys(o, ['estimator', 'maxBatches', 'write']);
  const { maxBatches, ...rest } = o;
  const max = maxBatches === undefined ? Infinity : checkInteger(maxBatches, 'options.maxBatches', undefined, 1);
  checkIterable(batches, allowAsync);
  return { run: forward as (batch: B, index: number) => unknown, max, collector: new PopulationCollector(layers, rest).begin() };
}

/**
 * PreciseBN: recomputes the population statistics of every BatchNorm layer in
 * `layers` (GhostBatchNorm, SyncBatchNorm and DomainBatchNorm included) by
 * calling `forward(batch, index)` on each batch — sync or async iterables,
 * sync or async forward — with the layers normalizing as in training but not
 * updating their running statistics. Every batch's statistics are merged
 * (weighted by elements per channel with 'pooled') and written into the
 * running statistics. Layers the forward never calls are left alone and listed
 * in `untouched`; a layer called twice in one forward is an error. The report
 * gives each layer's drift: how far its EMA statistics were from the
 * population ones.
 *
 * @example
 * const report = await recomputePopulationStats(model, (x) => model.forward(x), trainBatches(200));
 * for (const l of report.layers) console.log(l.path, l.drift.maxMeanShift);
 */
export async function recomputePopulationStats<B>(layers: LayerTree, forward: (batch: B, index: number) => unknown,
  batches: Iterable<B> | AsyncIterable<B>, options?: RecomputeOptions): Promise<PopulationReport> {
  const { run, max, collector } = startRecompute<B>(layers, forward, batches, options, true);
  try {
    for await (const batch of batches as AsyncIterable<B>) {
      const r = run(batch, collector.beginForward());
      if (isThenable(r)) await r;
      if (collector.endForward() >= max) break;
    }
  } catch (e) {
    collector.abort();
    throw e;
  }
  return collector.finish();
}

/**
 * {@link recomputePopulationStats} for a synchronous forward and a synchronous iterable.
 * @example
 * const report = recomputePopulationStatsSync([bn1, bn2], (x) => net.forward(x), batches, { estimator: 'batch-average' });
 */
export function recomputePopulationStatsSync<B>(layers: LayerTree, forward: (batch: B, index: number) => unknown,
  batches: Iterable<B>, options?: RecomputeOptions): PopulationReport {
  const { run, max, collector } = startRecompute<B>(layers, forward, batches, options, false);
  try {
    for (const batch of batches) {
      if (isThenable(run(batch, collector.beginForward()))) {
        throw new TypeError('forward: expected a synchronous function, got one that returned a Promise; use recomputePopulationStats');
      }
      if (collector.endForward() >= max) break;
    }
  } catch (e) {
    collector.abort();
    throw e;
  }
  return collector.finish();
}

function checkIterable(value: unknown, allowAsync: boolean): void {
  const v = value as { [Symbol.iterator]?: unknown; [Symbol.asyncIterator]?: unknown } | null;
  const ok = typeof v === 'object' && v !== null &&
    (typeof v[Symbol.iterator] === 'function' || (allowAsync && typeof v[Symbol.asyncIterator] === 'function'));
  if (!ok) throw typeError('batches', allowAsync ? 'an iterable or async iterable of batches' : 'an iterable of batches', value);
}
