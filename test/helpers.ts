// Shared test helpers: closeness checks with stated tolerances, and running a
// block under every ISA this machine supports and thread counts 1 and 2.
import { setIsa, setNumThreads, supportedIsas, getNumThreads, isa } from '../lib';

/** |got - want| <= atol + rtol * |want| for every element; reports the first failure with its index. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number, what = ''): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const ok = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : Math.abs(got[i] - want[i]) <= atol + rtol * Math.abs(want[i]);
    if (!ok) throw new Error(`${what}[${i}] = ${got[i]}, want ${want[i]} (rtol ${rtol}, atol ${atol})`);
  }
}

export const configurations: Array<[string, number]> = supportedIsas().flatMap((name) => [[name, 1], [name, 2]] as Array<[string, number]>);

/** Runs fn under the given ISA and thread count, restoring the previous ones afterwards. */
export function withConfiguration<T>(name: string, threads: number, fn: () => T): T {
  const before: [string, number] = [isa(), getNumThreads()];
  setIsa(name as 'scalar');
  setNumThreads(threads);
  try {
    return fn();
  } finally {
    setIsa(before[0] as 'scalar');
    setNumThreads(before[1]);
  }
}

/** Deterministic floats in [lo, hi) (mulberry32), so failures reproduce. */
export function randomFloats(count: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  }
  return out;
}
