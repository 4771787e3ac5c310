// One measured row of the benchmark, as printed and as written with --json.
import type { Layout } from '../lib';
import type { Op, ProbeKind } from './config';
import { shapeKey, TRAFFIC } from './config';
import { median } from './timing';

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
  /**
   * The op's roofline probe, timed in each round right before rebatch's op
   * (and the peers after it): gbPerS is the median of its rounds (`rounds`),
   * and fraction the median over rounds of this row's GB/s in that round over
   * the probe's in the same round.
   */
  roofline: { probe: ProbeKind; gbPerS: number; fraction: number; rounds: number[] };
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

/** probeRounds: the op's probe (GB/s) in each round, round i next to roundMs[i]. */
export function makeRow(base: Omit<Row, 'gbPerS' | 'trafficModel' | 'trafficBytes' | 'roofline'>, tensorBytes: number,
  probeRounds: number[]): Row {
  const model = TRAFFIC[base.op];
  const bytes = model.tensors * tensorBytes;
  const gb = (ms: number) => bytes / (ms / 1e3) / 1e9;
  const roundMs = base.roundMs ?? [base.medianMs];
  const fractions = roundMs.map((ms, i) => gb(ms) / probeRounds[i]);
  return {
    ...base,
    gbPerS: gb(base.medianMs),
    trafficModel: model.description,
    trafficBytes: bytes,
    roofline: { probe: model.probe, gbPerS: median(probeRounds), fraction: median(fractions), rounds: probeRounds },
  };
}
