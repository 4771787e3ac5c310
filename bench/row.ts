// One measured row of the benchmark, as printed and as written with --json.
import type { Layout } from '../lib';
import type { Op, ProbeKind } from './config';
import { shapeKey, TRAFFIC } from './config';

export interface Row {
  op: Op;
  layout: Layout;
  shape: number[];
  /** Threads asked for; peerThreads is what a peer actually used. */
  threads: number;
  impl: string;
  medianMs: number;
  /** Each round's median; medianMs is the median of these (slow peers: the first round only). */
  roundMs?: number[];
  samples: number;
  /** Effective bandwidth: the traffic model's bytes over the median time. */
  gbPerS: number;
  trafficModel: string;
  trafficBytes: number;
  roofline: { probe: ProbeKind; gbPerS: number; fraction: number };
  /** rebatch: the native computation alone, and what the call adds to it. */
  kernelMs?: number;
  overheadUs?: number;
  /** rebatch: each peer's median time over rebatch's (same op, layout, shape; with all threads the peer's faster of 1 and all threads); > 1 = rebatch faster. */
  ratios?: Record<string, number>;
  peerThreads?: number;
}

export function rowKey(r: Pick<Row, 'op' | 'layout' | 'shape' | 'threads'>): string {
  return `${r.op} ${r.layout} ${shapeKey(r.shape)} t${r.threads}`;
}

export function makeRow(base: Omit<Row, 'gbPerS' | 'trafficModel' | 'trafficBytes' | 'roofline'>, tensorBytes: number,
  probeGbPerS: number): Row {
  const model = TRAFFIC[base.op];
  const bytes = model.tensors * tensorBytes;
  const gbPerS = bytes / (base.medianMs / 1e3) / 1e9;
  return {
    ...base,
    gbPerS,
    trafficModel: model.description,
    trafficBytes: bytes,
    roofline: { probe: model.probe, gbPerS: probeGbPerS, fraction: gbPerS / probeGbPerS },
  };
}
