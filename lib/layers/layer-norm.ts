// LayerNorm: statistics over the last dims of each sample, elementwise affine,
// the same in training and inference. A (M, K) view of the input — M rows of
// the K = prod(normalizedShape) normalized elements — is a BatchNorm problem
// twice over: (1, M, K) has one "channel" per row for the statistics and the
// backward, (M, K) has one channel per normalized element for the affine.
import { batchNorm, batchNormBackward } from '../functional';
import { TensorLike, tensorArgs } from '../tensor';
import { checkBoolean, checkInteger, checkKeys, checkNumber, checkObject, typeError } from '../validate';
import { LayerState, LayerStateInput, NormLayer } from './layer';
import { checkStateKeys, stateArray } from './state-check';

export interface LayerNormOptions {
  /** Added to the variance; default 1e-5. */
  eps?: number;
  /** Learnable weight and bias of normalizedShape; default true. */
  elementwiseAffine?: boolean;
}

/**
 * Layer normalization as torch.nn.LayerNorm(normalizedShape): each sample is
 * normalized over its last `normalizedShape.length` dims with their mean and
 * biased variance, then scaled and shifted elementwise. Independent of the batch.
 *
 * @example
 * const ln = new LayerNorm([768]);                 // like torch.nn.LayerNorm(768)
 * const y = ln.forward(x, [4, 128, 768]);
 * const dx = ln.backward(dy);
 */
export class LayerNorm extends NormLayer {
  readonly normalizedShape: readonly number[];
  readonly eps: number;
  readonly elementwiseAffine: boolean;
  readonly weight: Float32Array | null;
  readonly bias: Float32Array | null;
  readonly weightGrad: Float32Array | null;
  readonly biasGrad: Float32Array | null;
  private readonly size: number;
  private saved: { x: Float32Array; rows: number; mean: Float64Array; invstd: Float64Array } | null = null;

  constructor(normalizedShape: number | readonly number[], options?: LayerNormOptions) {
    super();
    const dims = typeof normalizedShape === 'number' ? [normalizedShape] : normalizedShape;
    if (!Array.isArray(dims) || dims.length === 0) throw typeError('normalizedShape', 'a size or a non-empty array of sizes', normalizedShape);
    this.normalizedShape = dims.map((d, i) => checkInteger(d, `normalizedShape[${i}]`, undefined, 1));
    this.size = this.normalizedShape.reduce((a, b) => a * b, 1);
    const o = checkObject<LayerNormOptions>(options, 'options');
    checkKeys(o, ['eps', 'elementwiseAffine']);
    this.eps = checkNumber(o.eps, 'options.eps', 1e-5, 0);
    this.elementwiseAffine = checkBoolean(o.elementwiseAffine, 'options.elementwiseAffine', true);
    const k = this.size;
    this.weight = this.elementwiseAffine ? new Float32Array(k).fill(1) : null;
    this.bias = this.elementwiseAffine ? new Float32Array(k) : null;
    this.weightGrad = this.elementwiseAffine ? new Float32Array(k) : null;
    this.biasGrad = this.elementwiseAffine ? new Float32Array(k) : null;
  }

  /** Normalizes x of shape [..., ...normalizedShape]. */
  forward(x: Float32Array, shape: readonly number[]): Float32Array;
  forward(x: TensorLike): Float32Array;
  forward(x: unknown, shape?: unknown): Float32Array {
    const [data, dims] = tensorArgs(x, shape, undefined);
    if (!(data instanceof Float32Array)) throw typeError('x', 'a Float32Array (float32 data)', data);
    const rows = this.rowsOf(data, dims);
    this.saved = null;
    if (this.size < 2) throw new RangeError(`normalizedShape: LayerNorm needs more than 1 normalized element, got ${this.size}`);
    const r = batchNorm(data, [1, rows, this.size], { training: true, eps: this.eps });
    if (this.elementwiseAffine) {
      batchNorm(r.y, [rows, this.size], { training: false, mean: new Float64Array(this.size), variance: new Float64Array(this.size).fill(1), eps: 0, weight: this.weight, bias: this.bias, out: r.y });
    }
    this.saved = { x: data, rows, mean: r.mean, invstd: r.invstd };
    return r.y;
  }

  /** dx; the weight and bias gradients are added to weightGrad and biasGrad. */
  backward(dy: Float32Array): Float32Array {
    if (this.saved === null) throw new Error('LayerNorm.backward: no forward to differentiate; call forward first');
    const { x, rows, mean, invstd } = this.saved;
    if (!(dy instanceof Float32Array)) throw typeError('dy', 'a Float32Array (float32 data)', dy);
    if (dy.length !== x.length) throw new RangeError(`dy: expected ${x.length} elements (as the last forward's x), got ${dy.length}`);
    const k = this.size;
    const zeros = new Float64Array(k);
    const ones = new Float64Array(k).fill(1);
    const dx = this.elementwiseAffine
      ? batchNorm(dy, [rows, k], { training: false, mean: zeros, variance: ones, eps: 0, weight: this.weight }).y
      : Float32Array.from(dy);
    batchNormBackward(dx, x, [1, rows, k], { training: true, mean, invstd, out: dx });
    if (this.weightGrad && this.biasGrad) {
      const xhat = batchNorm(x, [1, rows, k], { training: false, mean, variance: invstd.map((v) => 1 / (v * v)), eps: 0 }).y;
      const g = batchNormBackward(dy, xhat, [rows, k], { training: false, mean: zeros, invstd: ones });
      for (let i = 0; i < k; i++) {
        this.weightGrad[i] += g.dweight[i];
        this.biasGrad[i] += g.dbias[i];
      }
    }
    return dx;
  }

  override zeroGrad(): void {
    this.weightGrad?.fill(0);
    this.biasGrad?.fill(0);
  }

  state(): LayerState {
    return this.weight && this.bias ? { weight: Array.from(this.weight), bias: Array.from(this.bias) } : {};
  }

  override stateShapes(): Record<string, number[]> {
    return this.elementwiseAffine ? { weight: [...this.normalizedShape], bias: [...this.normalizedShape] } : {};
  }

  loadState(state: LayerStateInput): void {
    const s = checkStateKeys(state, this.elementwiseAffine ? ['weight', 'bias'] : []);
    if (!this.elementwiseAffine) return;
    const w = stateArray(s, 'weight', this.size);
    const b = stateArray(s, 'bias', this.size);
    this.weight!.set(w);
    this.bias!.set(b);
  }

  private rowsOf(data: Float32Array, shape: unknown): number {
    if (!Array.isArray(shape)) throw typeError('shape', 'an array of dimensions', shape);
    shape.forEach((d, i) => checkInteger(d, `shape[${i}]`, undefined, 0));
    const ns = this.normalizedShape;
    const tail = shape.slice(shape.length - ns.length);
    if (shape.length < ns.length || tail.some((d, i) => d !== ns[i])) {
      throw new RangeError(`shape: expected [..., ${ns.join(', ')}] (normalizedShape last), got [${shape.join(', ')}]`);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (elements !== data.length) throw new RangeError(`x: shape [${shape.join(', ')}] has ${elements} elements, but x has ${data.length}`);
    const rows = elements / this.size;
    if (rows === 0) throw new RangeError(`x: the input is empty (shape [${shape.join(', ')}])`);
    return rows;
  }
}
