// rebatch itself: each op through the public API (what a user pays, argument
// checks included), and the same op's native computation alone (kernelTimes)
// to show what the JavaScript layer and the binding add.
import { batchNorm, batchNormBackward, moments } from '../lib';
import { native } from '../lib/native';
import type { Op } from './config';
import { physicalShape } from './config';
import { channelParams, inputDy, inputX, output, sizeOf } from './data';
import type { Case } from './peers/types';
import { median, timeSync } from './timing';

export interface RebatchTiming {
  medianMs: number;
  samples: number;
  /** Median time of the native computation alone (when asked for). */
  kernelMs?: number;
}

const NATIVE_NAME: Record<Op, Parameters<typeof native.kernelTimes>[0]> = {
  moments: 'moments',
  'forward-train': 'batchNormTraining',
  'forward-eval': 'batchNormWithVariance',
  'backward-train': 'batchNormBackward',
};

export function measureRebatch(c: Case, timeKernel: boolean): RebatchTiming {
  const dims = physicalShape(c.shape, c.layout);
  const size = sizeOf(c.shape);
  const C = c.shape[1];
  const layout = c.layout;
  const x = inputX(size), dy = inputDy(size), out = output(size);
  const p = channelParams(C);
  const { weight, bias } = p;
  // Into `out`: only the statistics are needed (by the backward); a fresh y per
  // measurement was garbage of up to 51 MB for V8 to collect between timings.
  const fwd = batchNorm(x, dims, { layout, training: true, weight, bias, out });
  const variance = Float64Array.from(p.variance);
  const calls: Record<Op, () => unknown> = {
    moments: () => moments(x, dims, { layout }),
    'forward-train': () => batchNorm(x, dims, { layout, training: true, weight, bias, out }),
    'forward-eval': () => batchNorm(x, dims, { layout, training: false, mean: p.mean, variance, weight, bias, out }),
    'backward-train': () => batchNormBackward(dy, x, dims, { layout, training: true, weight, mean: fwd.mean, invstd: fwd.invstd, out }),
  };
  const t = timeSync(calls[c.op], { budget: c.budget });
  if (!timeKernel) return t;

  // The same computation without the JavaScript layer: the op's native arguments, run repeatedly.
  const nd = { n: c.shape[0], c: C, spatial: size / (c.shape[0] * C), layout: layout === 'NCHW' ? 0 : 1, groupSize: 0 };
  const f64 = () => new Float64Array(C);
  const args: Record<Op, unknown[]> = {
    moments: [x, nd, f64(), f64()],
    'forward-train': [x, out, nd, weight, bias, 1e-5, false, f64(), f64()],
    'forward-eval': [x, out, nd, Float64Array.from(p.mean), variance, 1e-5, weight, bias, false, f64()],
    'backward-train': [dy, x, out, nd, fwd.mean, fwd.invstd, weight, bias, false, true, new Float32Array(C), new Float32Array(C)],
  };
  const reps = Math.max(5, Math.min(2000, Math.round((c.budget * 1e3) / Math.max(t.medianMs, 1e-3))));
  native.kernelTimes(NATIVE_NAME[c.op], 3, args[c.op]);  // warm-up
  const kernelMs = median(Array.from(native.kernelTimes(NATIVE_NAME[c.op], reps, args[c.op]))) / 1e6;
  return { medianMs: t.medianMs, samples: t.samples, kernelMs };
}
