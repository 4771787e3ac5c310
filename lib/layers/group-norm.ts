// GroupNorm (paper §5: normalization without the batch): per-sample
// statistics over groups of contiguous channels, the same computation in
// training and inference, on the native kernels.
//   NCHW (and 2-D): a sample's group is contiguous, so (N, C, *) is the
//   BatchNorm view (1, N·G, C/G·spatial) — statistics and backward run there.
//   NHWC: per-(sample, channel) sums from the kernels, merged per group here
//   (O(N·C) scalar work), then one normalization pass and one gradient pass.
import { batchNorm, batchNormBackward, moments } from '../functional';
import { batchNormBackwardElemt, batchNormBackwardReduce } from '../backward-halves';
import { native } from '../native';
import { CheckedTensor, checkLayout, Layout, TensorLike } from '../tensor';
import { checkBoolean, checkInteger, checkKeys, checkNumber, checkObject } from '../validate';
import { gradInput, layerInput } from './input';
import { LayerState, LayerStateInput, NormLayer } from './layer';
import { checkStateKeys, stateArray } from './state-check';

export interface GroupNormOptions {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Per-channel weight and bias; default true. */
  affine?: boolean;
  layout?: Layout;
}

interface Saved {
  t: CheckedTensor;
  /** Per (sample, group), sample-major. */
  mean: Float64Array;
  invstd: Float64Array;
}

/**
 * Group normalization as torch.nn.GroupNorm(numGroups, numChannels): channels
 * split into `numGroups` contiguous groups, each sample's group normalized with
 * its own mean and biased variance, then a per-channel affine. Independent of
 * the batch, so training and inference compute the same thing (paper §5).
 *
 * @example
 * const gn = new GroupNorm(32, 256);                 // like torch.nn.GroupNorm(32, 256)
 * const y = gn.forward(x, [8, 256, 14, 14]);
 * const dx = gn.backward(dy);                        // gn.weightGrad / gn.biasGrad accumulate
 */
export class GroupNorm extends NormLayer {
  readonly numGroups: number;
  readonly numChannels: number;
  readonly eps: number;
  readonly affine: boolean;
  readonly layout: Layout;
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  readonly weightGrad: Float32Array | null;
  readonly biasGrad: Float32Array | null;
  private saved: Saved | null = null;

  constructor(numGroups: number, numChannels: number, options?: GroupNormOptions) {
    super();
    this.numGroups = checkInteger(numGroups, 'numGroups', undefined, 1);
    this.numChannels = checkInteger(numChannels, 'numChannels', undefined, 1);
    if (this.numChannels % this.numGroups !== 0) {
      throw new RangeError(`numChannels: expected a multiple of numGroups = ${this.numGroups}, got ${this.numChannels}`);
    }
    const o = checkObject<GroupNormOptions>(options, 'options');
    checkKeys(o, ['eps', 'affine', 'layout']);
    this.eps = checkNumber(o.eps, 'options.eps', 1e-5, 0);
    this.affine = checkBoolean(o.affine, 'options.affine', true);
    this.layout = checkLayout(o.layout);
    const c = this.numChannels;
    this.weight = this.affine ? new Float32Array(c).fill(1) : null;
    this.bias = this.affine ? new Float32Array(c) : null;
    this.weightGrad = this.affine ? new Float32Array(c) : null;
    this.biasGrad = this.affine ? new Float32Array(c) : null;
  }

  /** y = (x − μ_{n,g})/√(σ²_{n,g} + eps)·γ_c + β_c, in both modes. */
  forward(x: Float32Array, shape: readonly number[]): Float32Array;
  forward(x: TensorLike): Float32Array;
  forward(x: unknown, shape?: unknown): Float32Array {
    const t = layerInput(x, shape, this.layout, this.numChannels, 'GroupNorm');
    this.saved = null;
    const per = (this.numChannels / this.numGroups) * t.dims.spatial;
    if (per < 2) {
      throw new RangeError(`x: GroupNorm needs more than 1 value per group, got ${per} (${this.numChannels / this.numGroups} channel(s) × ${t.dims.spatial} spatial) in shape [${t.shape.join(', ')}]`);
    }
    const r = this.contiguousGroups(t) ? this.forwardContiguous(t) : this.forwardChannelsLast(t);
    this.saved = { t, mean: r.mean, invstd: r.invstd };
    return r.y;
  }

  /** dx; the weight and bias gradients are added to weightGrad and biasGrad. */
  backward(dy: Float32Array): Float32Array {
    const grad = gradInput(dy, this.saved?.t ?? null, 'GroupNorm');
    const s = this.saved!;
    const g = this.contiguousGroups(s.t) ? this.backwardContiguous(grad, s) : this.backwardChannelsLast(grad, s);
    if (this.weightGrad && this.biasGrad) {
      for (let c = 0; c < this.numChannels; c++) {
        this.weightGrad[c] += g.dweight[c];
        this.biasGrad[c] += g.dbias[c];
      }
    }
    return g.dx;
  }

  override zeroGrad(): void {
    this.weightGrad?.fill(0);
    this.biasGrad?.fill(0);
  }

  state(): LayerState {
    return this.weight && this.bias ? { weight: Array.from(this.weight), bias: Array.from(this.bias) } : {};
  }

  loadState(state: LayerStateInput): void {
    const s = checkStateKeys(state, this.affine ? ['weight', 'bias'] : []);
    if (!this.affine) return;
    const w = stateArray(s, 'weight', this.numChannels);
    const b = stateArray(s, 'bias', this.numChannels);
    this.weight!.set(w);
    this.bias!.set(b);
  }

  // NCHW, or no spatial dims: each (sample, group) is one contiguous run.
  private contiguousGroups(t: CheckedTensor): boolean {
    return t.dims.layout === 0 || t.dims.spatial === 1;
  }

  /** The (1, N·G, C/G·spatial) view in which each (sample, group) is a channel. */
  private groupView(t: CheckedTensor): number[] {
    return [1, t.dims.n * this.numGroups, (this.numChannels / this.numGroups) * t.dims.spatial];
  }

  /** The (N, C, spatial) view of the same memory, NCHW. */
  private channelView(t: CheckedTensor): number[] {
    return [t.dims.n, this.numChannels, t.dims.spatial];
  }

  private forwardContiguous(t: CheckedTensor): { y: Float32Array; mean: Float64Array; invstd: Float64Array } {
    const r = batchNorm(t.data, this.groupView(t), { training: true, eps: this.eps });
    if (this.affine) {
      batchNorm(r.y, this.channelView(t), { training: false, mean: new Float64Array(this.numChannels), variance: new Float64Array(this.numChannels).fill(1), eps: 0, weight: this.weight, bias: this.bias, out: r.y });
    }
    return r;
  }

  private backwardContiguous(dy: Float32Array, s: Saved): { dx: Float32Array; dweight: Float32Array; dbias: Float32Array } {
    const t = s.t;
    const c = this.numChannels;
    const zeros = new Float64Array(c);
    const ones = new Float64Array(c).fill(1);
    // g = dy·γ, then the BatchNorm training backward in the group view
    const dx = this.affine
      ? batchNorm(dy, this.channelView(t), { training: false, mean: zeros, variance: ones, eps: 0, weight: this.weight }).y
      : Float32Array.from(dy);
    batchNormBackward(dx, t.data, this.groupView(t), { training: true, mean: s.mean, invstd: s.invstd, out: dx });
    if (!this.affine) return { dx, dweight: new Float32Array(c), dbias: new Float32Array(c) };
    // dγ = Σ dy·x̂, dβ = Σ dy over (n, spatial): x̂ recomputed in the group view
    const xhat = batchNorm(t.data, this.groupView(t), { training: false, mean: s.mean, variance: s.invstd.map((v) => 1 / (v * v)), eps: 0 }).y;
    const g = batchNormBackward(dy, xhat, this.channelView(t), { training: false, mean: zeros, invstd: ones });
    return { dx, dweight: g.dweight, dbias: g.dbias };
  }

  // Channels last with spatial dims: per-(sample, channel) statistics from the
  // kernels (ghost batches of one sample), merged over each group's channels.
  private forwardChannelsLast(t: CheckedTensor): { y: Float32Array; mean: Float64Array; invstd: Float64Array } {
    const { n, spatial } = t.dims;
    const G = this.numGroups;
    const cg = this.numChannels / G;
    const per = moments(t.data, t.shape, { layout: 'NHWC', groups: n });
    const mean = new Float64Array(n * G);
    const invstd = new Float64Array(n * G);
    for (let i = 0; i < n * G; i++) {
      let count = 0;
      let mu = 0;
      let m2 = 0;
      for (let j = i * cg; j < (i + 1) * cg; j++) { // Chan's merge of the group's channels
        const delta = per.mean[j] - mu;
        const total = count + spatial;
        mu += (delta * spatial) / total;
        m2 += per.m2[j] + (delta * delta * count * spatial) / total;
        count = total;
      }
      mean[i] = mu;
      invstd[i] = 1 / Math.sqrt(m2 / count + this.eps);
    }
    const y = new Float32Array(t.data.length);
    native.batchNormWithStats(t.data, y, this.perSampleDims(t), this.expand(mean, n), this.expand(invstd, n), this.weight, this.bias, false);
    return { y, mean, invstd };
  }

  private backwardChannelsLast(dy: Float32Array, s: Saved): { dx: Float32Array; dweight: Float64Array; dbias: Float64Array } {
    const t = s.t;
    const n = t.dims.n;
    const C = this.numChannels;
    const cg = C / this.numGroups;
    const count = cg * t.dims.spatial;
    const mean = this.expand(s.mean, n);
    const invstd = this.expand(s.invstd, n);
    const { sumDy, sumDyXhat } = batchNormBackwardReduce(dy, t.data, t.shape, { layout: 'NHWC', groups: n, mean, invstd });
    const a = new Float64Array(n * C);
    const b = new Float64Array(n * C);
    const c = new Float64Array(n * C);
    const dweight = new Float64Array(C);
    const dbias = new Float64Array(C);
    for (let i = 0; i < n * this.numGroups; i++) {
      let meanDy = 0;
      let meanDyXhat = 0;
      for (let j = i * cg; j < (i + 1) * cg; j++) {
        const w = this.weight ? this.weight[j % C] : 1;
        meanDy += w * sumDy[j];
        meanDyXhat += w * sumDyXhat[j];
        dweight[j % C] += sumDyXhat[j];
        dbias[j % C] += sumDy[j];
      }
      meanDy /= count;
      meanDyXhat /= count;
      const is = s.invstd[i];
      for (let j = i * cg; j < (i + 1) * cg; j++) {
        a[j] = (this.weight ? this.weight[j % C] : 1) * is;
        b[j] = -is * is * meanDyXhat;
        c[j] = -is * meanDy;
      }
    }
    const dx = batchNormBackwardElemt(dy, t.data, t.shape, { layout: 'NHWC', groups: n, mean, a, b, c });
    return { dx, dweight, dbias };
  }

  /** Per-(sample, group) values repeated for each channel of the group: per (sample, channel). */
  private expand(values: Float64Array, n: number): Float64Array {
    const cg = this.numChannels / this.numGroups;
    const out = new Float64Array(n * this.numChannels);
    for (let i = 0; i < values.length; i++) out.fill(values[i], i * cg, (i + 1) * cg);
    return out;
  }

  /** The tensor as N ghost batches of one sample (per-sample statistics in the native kernels). */
  private perSampleDims(t: CheckedTensor) {
    return { ...t.dims, groupSize: 1 };
  }
}
