// A float64 BatchNorm written from the definitions over logical (n, c, s)
// indices: what the random-shape tests compare the kernels against.
import type { Layout } from '../lib';

export interface Geometry {
  n: number; c: number; spatial: number[]; layout: Layout; groups: number;
}

export function shapeOf(g: Geometry): number[] {
  return g.layout === 'NCHW' ? [g.n, g.c, ...g.spatial] : [g.n, ...g.spatial, g.c];
}

export function indexer(g: Geometry): (n: number, c: number, s: number) => number {
  const S = g.spatial.reduce((a, b) => a * b, 1);
  return g.layout === 'NCHW' ? (n, c, s) => (n * g.c + c) * S + s : (n, c, s) => (n * S + s) * g.c + c;
}

export function refMoments(x: Float32Array, g: Geometry): { mean: number[]; variance: number[]; count: number } {
  const S = g.spatial.reduce((a, b) => a * b, 1);
  const at = indexer(g);
  const per = g.n / g.groups;
  const mean: number[] = [];
  const variance: number[] = [];
  for (let grp = 0; grp < g.groups; grp++) {
    for (let c = 0; c < g.c; c++) {
      let sum = 0;
      for (let n = grp * per; n < (grp + 1) * per; n++) for (let s = 0; s < S; s++) sum += x[at(n, c, s)];
      const m = sum / (per * S);
      let q = 0;
      for (let n = grp * per; n < (grp + 1) * per; n++) for (let s = 0; s < S; s++) q += (x[at(n, c, s)] - m) ** 2;
      mean.push(m);
      variance.push(q / (per * S));
    }
  }
  return { mean, variance, count: per * S };
}

export function refForward(x: Float32Array, g: Geometry, mean: ArrayLike<number>, invstd: ArrayLike<number>,
  weight: ArrayLike<number> | null, bias: ArrayLike<number> | null, relu: boolean): Float64Array {
  const S = g.spatial.reduce((a, b) => a * b, 1);
  const at = indexer(g);
  const per = g.n / g.groups;
  const y = new Float64Array(x.length);
  for (let n = 0; n < g.n; n++) {
    for (let c = 0; c < g.c; c++) {
      const gc = Math.floor(n / per) * g.c + c;
      for (let s = 0; s < S; s++) {
        const i = at(n, c, s);
        const v = (x[i] - mean[gc]) * invstd[gc] * (weight ? weight[c] : 1) + (bias ? bias[c] : 0);
        y[i] = relu && v < 0 ? 0 : v;
      }
    }
  }
  return y;
}

export function refBackward(dy: Float32Array, x: Float32Array, g: Geometry, mean: ArrayLike<number>,
  invstd: ArrayLike<number>, weight: ArrayLike<number> | null, bias: ArrayLike<number> | null, relu: boolean,
  training: boolean): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const S = g.spatial.reduce((a, b) => a * b, 1);
  const at = indexer(g);
  const per = g.n / g.groups;
  const dx = new Float64Array(x.length);
  const dweight = new Float64Array(g.c);
  const dbias = new Float64Array(g.c);
  for (let grp = 0; grp < g.groups; grp++) {
    for (let c = 0; c < g.c; c++) {
      const gc = grp * g.c + c;
      const w = weight ? weight[c] : 1;
      const b = bias ? bias[c] : 0;
      const xhat = (i: number) => (x[i] - mean[gc]) * invstd[gc];
      const grad = (i: number) => (relu && xhat(i) * w + b <= 0 ? 0 : dy[i]);
      let sdy = 0;
      let sdyx = 0;
      for (let n = grp * per; n < (grp + 1) * per; n++) {
        for (let s = 0; s < S; s++) {
          const i = at(n, c, s);
          sdy += grad(i);
          sdyx += grad(i) * xhat(i);
        }
      }
      dbias[c] += sdy;
      dweight[c] += sdyx;
      const count = per * S;
      for (let n = grp * per; n < (grp + 1) * per; n++) {
        for (let s = 0; s < S; s++) {
          const i = at(n, c, s);
          dx[i] = training ? w * invstd[gc] * (grad(i) - sdy / count - xhat(i) * sdyx / count) : w * invstd[gc] * grad(i);
        }
      }
    }
  }
  return { dx, dweight, dbias };
}
