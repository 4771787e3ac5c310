// Shuffle BN (paper §6, MoCo): samples permuted into random normalization
// groups, so a sample's batch-mates — and what a model could learn from them —
// change at random; the output is put back in the original order. Permuting is
// a copy of whole samples (N is outermost in both layouts).
import { checkInteger, typeError } from './validate';

/**
 * A seeded pseudo-random generator (mulberry32): numbers in [0, 1), the same
 * sequence for the same seed.
 * @example const rng = createRng(42); rng(); // 0.6011…
 */
export function createRng(seed: number): () => number {
  let s = checkInteger(seed, 'seed', undefined, 0, 0xffffffff) >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A uniformly random permutation of 0..n−1 (Fisher–Yates).
 * @example randomPermutation(4, createRng(1)); // Uint32Array [2, 0, 3, 1] (for example)
 */
export function randomPermutation(n: number, rng: () => number): Uint32Array {
  checkInteger(n, 'n', undefined, 0);
  if (typeof rng !== 'function') throw typeError('rng', 'a function returning numbers in [0, 1)', rng);
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/**
 * The permutation that undoes `perm`.
 * @example inversePermutation(Uint32Array.of(2, 0, 1)); // Uint32Array [1, 2, 0]
 */
export function inversePermutation(perm: Uint32Array): Uint32Array {
  const inv = new Uint32Array(perm.length);
  for (let i = 0; i < perm.length; i++) inv[perm[i]] = i;
  return inv;
}

function checkPermutation(perm: unknown, n: number): Uint32Array {
  if (!(perm instanceof Uint32Array)) throw typeError('perm', `a Uint32Array permutation of 0..${n - 1}`, perm);
  if (perm.length !== n) throw new RangeError(`perm: expected ${n} entries (one per sample), got ${perm.length}`);
  const seen = new Uint8Array(n);
  for (const v of perm) {
    if (v >= n || seen[v]) throw new RangeError(`perm: not a permutation of 0..${n - 1} (entry ${v})`);
    seen[v] = 1;
  }
  return perm;
}

/**
 * Sample i of the output is sample perm[i] of x (N is the first dim in both
 * layouts; each sample is copied whole).
 * @example
 * const perm = randomPermutation(8, createRng(1));
 * const xs = permuteSamples(x, 8, perm);                          // x: 8 samples
 * const back = permuteSamples(xs, 8, inversePermutation(perm));   // == x
 */
export function permuteSamples(x: Float32Array, n: number, perm: Uint32Array): Float32Array {
  if (!(x instanceof Float32Array)) throw typeError('x', 'a Float32Array', x);
  checkInteger(n, 'n', undefined, 1);
  if (x.length % n !== 0) throw new RangeError(`x: ${x.length} elements do not split into n = ${n} samples`);
  checkPermutation(perm, n);
  const size = x.length / n;
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++) out.set(x.subarray(perm[i] * size, (perm[i] + 1) * size), i * size);
  return out;
}
