// A plain-JavaScript BatchNorm: what one writes without a library. Loops over
// Float32Arrays in memory order, per-channel sums in float64 (two passes:
// mean, then squared deviations), output into a preallocated array.
import type { Case, Peer, PeerTiming } from './types';
import { channelParams, inputDy, inputX, output, sizeOf } from '../data';
import { timeSync } from '../timing';

// Every loop walks memory order; the channel changes every `run` elements
// (spatial for NCHW, 1 for channels last) and wraps at c.

function moments(x: Float32Array, run: number, c: number, mean: Float64Array, variance: Float64Array): void {
  const count = x.length / c;
  mean.fill(0);
  variance.fill(0);
  for (let i = 0, k = 0, left = run; i < x.length; i++) {
    mean[k] += x[i];
    if (--left === 0) { left = run; if (++k === c) k = 0; }
  }
  for (let k = 0; k < c; k++) mean[k] /= count;
  for (let i = 0, k = 0, left = run; i < x.length; i++) {
    const d = x[i] - mean[k];
    variance[k] += d * d;
    if (--left === 0) { left = run; if (++k === c) k = 0; }
  }
  for (let k = 0; k < c; k++) variance[k] /= count;
}

function normalize(x: Float32Array, y: Float32Array, run: number, c: number, mean: Float64Array, scale: Float64Array,
  bias: Float32Array): void {
  for (let i = 0, k = 0, left = run; i < x.length; i++) {
    y[i] = (x[i] - mean[k]) * scale[k] + bias[k];
    if (--left === 0) { left = run; if (++k === c) k = 0; }
  }
}

export class PlainJsPeer implements Peer {
  readonly name = 'js';

  async init(): Promise<string | null> {
    return null;
  }

  skip(): string | null {
    return null;
  }

  async measure(c: Case): Promise<PeerTiming> {
    const size = sizeOf(c.shape);
    const C = c.shape[1];
    const run = c.layout === 'NHWC' ? 1 : size / (c.shape[0] * C);
    const x = inputX(size), dy = inputDy(size), out = output(size);
    const p = channelParams(C);
    const mean = new Float64Array(C), variance = new Float64Array(C), scale = new Float64Array(C);
    const sumDy = new Float64Array(C), sumDyXc = new Float64Array(C);
    const count = size / C;
    const setScale = (v: ArrayLike<number>) => {
      for (let k = 0; k < C; k++) scale[k] = p.weight[k] / Math.sqrt(v[k] + 1e-5);
    };
    const fns: Record<string, () => void> = {
      moments: () => moments(x, run, C, mean, variance),
      'forward-train': () => {
        moments(x, run, C, mean, variance);
        setScale(variance);
        normalize(x, out, run, C, mean, scale, p.bias);
      },
      'forward-eval': () => {
        for (let k = 0; k < C; k++) mean[k] = p.mean[k];
        setScale(p.variance);
        normalize(x, out, run, C, mean, scale, p.bias);
      },
      'backward-train': () => {
        // mean and variance hold the forward's batch statistics (computed once below).
        sumDy.fill(0);
        sumDyXc.fill(0);
        for (let i = 0, k = 0, left = run; i < size; i++) {
          sumDy[k] += dy[i];
          sumDyXc[k] += dy[i] * (x[i] - mean[k]);
          if (--left === 0) { left = run; if (++k === C) k = 0; }
        }
        for (let k = 0; k < C; k++) {
          const invstd = 1 / Math.sqrt(variance[k] + 1e-5);
          scale[k] = p.weight[k] * invstd;  // dx = scale * (dy - sumDy/n - (x - mean) * sumDyXc * invstd^2 / n)
          sumDy[k] /= count;
          sumDyXc[k] *= invstd * invstd / count;
        }
        for (let i = 0, k = 0, left = run; i < size; i++) {
          out[i] = scale[k] * (dy[i] - sumDy[k] - (x[i] - mean[k]) * sumDyXc[k]);
          if (--left === 0) { left = run; if (++k === C) k = 0; }
        }
      },
    };
    if (c.op === 'backward-train') moments(x, run, C, mean, variance);
    return { ...timeSync(fns[c.op], { budget: c.budget, minSamples: 3, warmup: 1 }), threads: 1 };
  }

  async close(): Promise<void> {}

  version(): string {
    return `plain JavaScript loops (Node ${process.version})`;
  }
}
