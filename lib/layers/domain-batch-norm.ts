// Domain-specific BatchNorm (paper §5): one set of running statistics per
// named domain, shared affine parameters.
import { isTensorLike, TensorLike } from '../tensor';
import { typeError } from '../validate';
import { affineState, BATCHNORM_OPTION_KEYS, BatchNormBase, BatchNormLayerOptions, newRunningSet, RunningSet, runningState } from './batch-norm-base';
import type { LayerState, LayerStateInput } from './layer';
import { checkStateKeys, stateArray, stateCount } from './state-check';

const DOMAIN_NAME = /^[A-Za-z0-9_-]+$/;

function checkDomainName(value: unknown, name: string): string {
  if (typeof value !== 'string' || !DOMAIN_NAME.test(value)) throw typeError(name, 'a domain name of letters, digits, _ and -', value);
  return value;
}

/**
 * BatchNorm with one set of running statistics per domain and one shared
 * weight and bias (paper §5): each batch is normalized — in training, in
 * population-statistics recomputes and at inference — with the statistics of
 * its own domain. State names are PyTorch's with the domain as a prefix:
 * `weight`, `bias`, `<domain>.running_mean`, `<domain>.running_var`,
 * `<domain>.num_batches_tracked`.
 *
 * AdaBN is a recompute on unlabeled target-domain data: only the domain the
 * forward uses is recomputed.
 *
 * @example
 * const dbn = new DomainBatchNorm(64, ['synthetic', 'real']);
 * dbn.forward(xSynthetic, shape, 'synthetic');     // training: that domain's batch statistics and EMA
 * dbn.forward(xReal, shape, 'real');
 * // AdaBN: population statistics of the target domain from unlabeled batches
 * await recomputePopulationStats(dbn, (x) => dbn.forward(x, shape, 'real'), unlabeledReal);
 * dbn.eval().forward(x, shape, 'real');
 */
export class DomainBatchNorm extends BatchNormBase {
  private readonly sets = new Map<string, RunningSet>();
  private readonly names: string[] = [];

  constructor(numFeatures: number, domains: readonly string[], options?: BatchNormLayerOptions) {
    super(numFeatures, options, BATCHNORM_OPTION_KEYS, 'DomainBatchNorm');
    if (!Array.isArray(domains) || domains.length === 0) throw typeError('domains', 'a non-empty array of domain names', domains);
    domains.forEach((d, i) => this.addDomain(checkDomainName(d, `domains[${i}]`)));
  }

  /** The domains, in the order they were added. */
  get domains(): readonly string[] {
    return this.names;
  }

  /**
   * Adds a domain, with fresh statistics or a copy of another domain's (a
   * starting point before an AdaBN recompute).
   * @example dbn.addDomain('night', { from: 'day' });
   */
  addDomain(domain: string, options?: { from?: string }): void {
    checkDomainName(domain, 'domain');
    if (this.names.includes(domain)) throw new RangeError(`domain: '${domain}' already exists`);
    const from = options?.from;
    const set = newRunningSet(this.numFeatures);
    if (from !== undefined) {
      const source = this.set(from, 'options.from');
      set.mean.set(source.mean);
      set.var.set(source.var);
    }
    this.names.push(domain);
    if (this.trackRunningStats) this.sets.set(domain, set);
  }

  /** A domain's running statistics (null with trackRunningStats false). Update them in place. */
  runningStatsOf(domain: string): { runningMean: Float32Array; runningVar: Float32Array; numBatchesTracked: number } | null {
    this.checkDomain(domain, 'domain');
    const s = this.sets.get(domain);
    return s ? { runningMean: s.mean, runningVar: s.var, numBatchesTracked: s.numBatchesTracked } : null;
  }

  /** Normalizes a batch of one domain (see BatchNorm.forward). */
  forward(x: Float32Array, shape: readonly number[], domain: string): Float32Array;
  forward(x: TensorLike, domain: string): Float32Array;
  forward(x: unknown, shapeOrDomain: unknown, maybeDomain?: unknown): Float32Array {
    const [shape, domain] = isTensorLike(x) ? [undefined, shapeOrDomain] : [shapeOrDomain, maybeDomain];
    this.checkDomain(domain, 'domain');
    return this.forwardWith(x, shape, this.sets.get(domain as string) ?? null, domain as string);
  }

  statisticsKeys(): string[] {
    return this.trackRunningStats ? [...this.names] : [];
  }

  protected runningSet(key: string): RunningSet | null {
    return this.sets.get(key) ?? null;
  }

  state(): LayerState {
    const s: LayerState = { ...affineState(this) };
    for (const [d, set] of this.sets) Object.assign(s, runningState(set, `${d}.`));
    return s;
  }

  loadState(state: LayerStateInput): void {
    const keys = [...(this.affine ? ['weight', 'bias'] : []),
      ...[...this.sets.keys()].flatMap((d) => ['running_mean', 'running_var', 'num_batches_tracked'].map((k) => `${d}.${k}`))];
    const s = checkStateKeys(state, keys);
    const c = this.numFeatures;
    const weight = this.affine ? stateArray(s, 'weight', c) : null;
    const bias = this.affine ? stateArray(s, 'bias', c) : null;
    const loaded = [...this.sets.keys()].map((d) => [d, stateArray(s, `${d}.running_mean`, c), stateArray(s, `${d}.running_var`, c),
      stateCount(s, `${d}.num_batches_tracked`)] as const);
    if (weight) this.weight!.set(weight);
    if (bias) this.bias!.set(bias);
    for (const [d, mean, variance, n] of loaded) {
      const set = this.sets.get(d)!;
      set.mean.set(mean);
      set.var.set(variance);
      set.numBatchesTracked = n;
    }
  }

  private checkDomain(domain: unknown, name: string): void {
    if (typeof domain !== 'string' || !this.names.includes(domain)) {
      throw new RangeError(`${name}: expected one of ${this.names.map((d) => `'${d}'`).join(', ')}, got ${typeof domain === 'string' ? `'${domain}'` : String(domain)}`);
    }
  }

  private set(domain: unknown, name: string): RunningSet {
    this.checkDomain(domain, name);
    const s = this.sets.get(domain as string);
    if (!s) throw new RangeError(`${name}: the layer keeps no running statistics (trackRunningStats is false)`);
    return s;
  }
}
