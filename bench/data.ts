// The inputs every implementation is timed on (deterministic, so runs repeat).
import { elements } from './config';

const cache = new Map<string, Float32Array>();

// Kept for the last size asked for (the benchmark measures one shape at a time).
function cached(kind: string, count: number, make: (i: number) => number): Float32Array {
  const key = `${kind}:${count}`;
  let v = cache.get(key);
  if (!v) {
    for (const k of [...cache.keys()]) if (!k.endsWith(`:${count}`)) cache.delete(k);
    v = new Float32Array(count);
    for (let i = 0; i < count; i++) v[i] = make(i);
    cache.set(key, v);
  }
  return v;
}

/** x, never written by any implementation. */
export function inputX(count: number): Float32Array {
  return cached('x', count, (i) => Math.sin(i) * 3 + 1);
}

/** dy, never written by any implementation. */
export function inputDy(count: number): Float32Array {
  return cached('dy', count, (i) => Math.cos(i));
}

/** An output buffer (contents undefined). */
export function output(count: number): Float32Array {
  return cached('out', count, () => 0);
}

/** Per-channel parameters: weight 1.5, bias 0.25, a running mean and variance. */
export function channelParams(c: number): { weight: Float32Array; bias: Float32Array; mean: Float32Array; variance: Float32Array } {
  return {
    weight: new Float32Array(c).fill(1.5),
    bias: new Float32Array(c).fill(0.25),
    mean: new Float32Array(c).map((_, i) => 1 + 0.01 * i),
    variance: new Float32Array(c).map((_, i) => 4.5 + 0.02 * i),
  };
}

export function sizeOf(shape: readonly number[]): number {
  return elements(shape);
}
