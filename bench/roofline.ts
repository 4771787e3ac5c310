// The machine's roofline, measured in the same run on buffers of the same size
// as the tensor (so with the same cache behaviour as the ops), with the same
// thread count: read (sum of x), copy (x -> y) and triad (out = a + b, the
// traffic of a backward). Copy and triad take the best of plain and
// non-temporal stores, and copy also of Float32Array.prototype.set (memmove),
// so the roofline is never an easy target.
import { native } from '../lib/native';
import type { ProbeKind } from './config';
import { median, timeSync } from './timing';

export interface ProbeResult {
  gbPerS: number;
  /** Each variant's effective GB/s; the probe's value is the best of them. */
  variants: Record<string, number>;
}

export type Roofline = Record<ProbeKind, ProbeResult>;

// The probes' buffers, kept for the last size asked for (the bench measures one shape at a time).
let buffers: { count: number; a: Float32Array; b: Float32Array; out: Float32Array } | undefined;

function buffersOf(count: number): { a: Float32Array; b: Float32Array; out: Float32Array } {
  if (buffers?.count !== count) {
    buffers = undefined;  // the old ones may be collected before the new ones are made
    buffers = {
      count,
      a: new Float32Array(count).map((_, i) => (i % 7) * 0.5),
      b: new Float32Array(count).map((_, i) => (i % 5) * 0.25),
      out: new Float32Array(count),
    };
  }
  return buffers;
}

/** One probe on `count`-float buffers; bytes counted as read + written. */
export function measureProbe(kind: ProbeKind, count: number, budget: number): ProbeResult {
  const { a, b, out } = buffersOf(count);
  const bytes = count * 4;
  const gb = (traffic: number, fn: () => unknown) => traffic / (timeSync(fn, { budget }).medianMs / 1e3) / 1e9;
  const variants: Record<ProbeKind, () => Record<string, number>> = {
    read: () => ({ simd: gb(bytes, () => native.probeRead(a)) }),
    copy: () => ({
      simd: gb(2 * bytes, () => native.probeCopy(a, out, false)),
      'simd-nontemporal': gb(2 * bytes, () => native.probeCopy(a, out, true)),
      'Float32Array.set': gb(2 * bytes, () => out.set(a)),
    }),
    triad: () => ({
      simd: gb(3 * bytes, () => native.probeTriad(a, b, out, false)),
      'simd-nontemporal': gb(3 * bytes, () => native.probeTriad(a, b, out, true)),
    }),
  };
  const v = variants[kind]();
  return { gbPerS: Math.max(...Object.values(v)), variants: v };
}

/** Several measurements of one probe as one: each variant's median, the best of them. */
export function medianProbe(results: readonly ProbeResult[]): ProbeResult {
  const variants: Record<string, number> = {};
  for (const v of Object.keys(results[0].variants)) variants[v] = median(results.map((r) => r.variants[v]));
  return { gbPerS: Math.max(...Object.values(variants)), variants };
}
