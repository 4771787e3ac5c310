// Shuffle BN as a layer: GhostBatchNorm over a random permutation of the batch.
import { createRng, inversePermutation, permuteSamples, randomPermutation } from '../shuffle';
import { isTensorLike, TensorLike } from '../tensor';
import { checkInteger, checkObject, typeError } from '../validate';
import { GhostBatchNorm, GhostBatchNormOptions } from './ghost-batch-norm';

export interface ShuffleBatchNormOptions extends GhostBatchNormOptions {
  /** Seed of the permutations; the same seed gives the same sequence of groups. Default 0. */
  seed?: number;
}

/**
 * Shuffle BN (paper §6; MoCo's defence against information leakage through
 * batch statistics): each forward with batch statistics permutes the samples
 * at random, normalizes groups of `virtualBatchSize` of the permuted batch
 * (as GhostBatchNorm), and returns the output in the original sample order;
 * the backward permutes dy the same way. Reproducible with `seed`. At
 * inference with running statistics nothing is permuted.
 *
 * @example
 * const sbn = new ShuffleBatchNorm(128, { virtualBatchSize: 32, seed: 7 });
 * const y = sbn.forward(keys, [256, 128]);   // 8 random groups of 32 samples
 * sbn.lastPermutation;                       // which samples were grouped together
 */
export class ShuffleBatchNorm extends GhostBatchNorm {
  private readonly rng: () => number;
  private perm: Uint32Array | null = null;

  constructor(numFeatures: number, options: ShuffleBatchNormOptions) {
    const o = checkObject<ShuffleBatchNormOptions>(options, 'options');
    const { seed, ...rest } = o;
    super(numFeatures, rest as GhostBatchNormOptions);
    this.rng = createRng(checkInteger(seed, 'options.seed', 0, 0, 0xffffffff));
  }

  /** The permutation of the last forward (sample i of the normalized batch was input sample perm[i]), or null. */
  get lastPermutation(): Uint32Array | null {
    return this.perm;
  }

  override forward(x: Float32Array, shape: readonly number[]): Float32Array;
  override forward(x: TensorLike): Float32Array;
  override forward(x: unknown, shape?: unknown): Float32Array {
    const [data, dims] = isTensorLike(x) ? [x.data, x.dims] : [x, shape];
    this.perm = null;
    const shuffles = this.training || this.sink !== null || this.evalStats === 'batch' || !this.trackRunningStats;
    if (!shuffles || !(data instanceof Float32Array) || !Array.isArray(dims) || !(dims[0] > 0)) return super.forward(data as Float32Array, dims as number[]);
    const n = dims[0] as number;
    const perm = randomPermutation(n, this.rng);
    const y = super.forward(permuteSamples(data, n, perm), dims as number[]);
    this.perm = perm;
    return permuteSamples(y, n, inversePermutation(perm));
  }

  override backward(dy: Float32Array): Float32Array {
    if (this.perm === null) return super.backward(dy);
    if (!(dy instanceof Float32Array)) throw typeError('dy', 'a Float32Array (float32 data)', dy);
    const n = this.perm.length;
    if (dy.length !== this.saved?.t.data.length) return super.backward(dy); // reports the size error
    return permuteSamples(super.backward(permuteSamples(dy, n, this.perm)), n, inversePermutation(this.perm));
  }
}
