// The inputs every implementation is timed on (deterministic, so runs repeat).
import { elements } from './config';

export function inputX(count: number): Float32Array {
  return new Float32Array(count).map((_, i) => Math.sin(i) * 3 + 1);
}

export function inputDy(count: number): Float32Array {
  return new Float32Array(count).map((_, i) => Math.cos(i));
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
