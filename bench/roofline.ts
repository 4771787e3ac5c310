// The machine's roofline, measured in the same run on buffers of the same size
// as the tensor (so with the same cache behaviour as the ops), with the same
// thread count: read (sum of x), copy (x -> y) and triad (out = a + b, the
// traffic of a backward). Copy and triad take the best of plain and
// non-temporal stores, and copy also of Float32Array.prototype.set (memmove),
// so the roofline is never an easy target.
import { native } from '../lib/native';
import type { ProbeKind } from './config';
import { timeSync } from './timing';

export interface ProbeResult {
  gbPerS: number;
  /** Each variant's effective GB/s; the probe's value is the best of them. */
  variants: Record<string, number>;
}

export type Roofline = Record<ProbeKind, ProbeResult>;

function best(variants: Record<string, number>): ProbeResult {
  return { gbPerS: Math.max(...Object.values(variants)), variants };
}

/** Probes with `count`-float buffers; bytes counted as read + written. */
export function measureRoofline(count: number, budget: number): Roofline {
  const bytes = count * 4;
  const a = new Float32Array(count).map((_, i) => (i % 7) * 0.5);
  const b = new Float32Array(count).map((_, i) => (i % 5) * 0.25);
  const out = new Float32Array(count);
  const gb = (traffic: number, fn: () => unknown) => traffic / (timeSync(fn, { budget }).medianMs / 1e3) / 1e9;
  return {
    read: best({ simd: gb(bytes, () => native.probeRead(a)) }),
    copy: best({
      simd: gb(2 * bytes, () => native.probeCopy(a, out, false)),
      'simd-nontemporal': gb(2 * bytes, () => native.probeCopy(a, out, true)),
      'Float32Array.set': gb(2 * bytes, () => out.set(a)),
    }),
    triad: best({
      simd: gb(3 * bytes, () => native.probeTriad(a, b, out, false)),
      'simd-nontemporal': gb(3 * bytes, () => native.probeTriad(a, b, out, true)),
    }),
  };
}
