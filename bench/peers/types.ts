// What every peer implementation of BatchNorm offers the benchmark.
import type { Layout } from '../../lib';
import type { Op } from '../config';

export interface Case {
  op: Op;
  layout: Layout;
  /** Logical shape [N, C, ...spatial]. */
  shape: number[];
  threads: number;
  /** Seconds of sampling per measurement. */
  budget: number;
}

export interface PeerTiming {
  medianMs: number;
  samples: number;
  /** Threads the peer actually used (single-threaded peers report 1). */
  threads: number;
  note?: string;
}

export interface Peer {
  readonly name: string;
  /** Why the peer cannot run here, or null when it can. Called once before any measure. */
  init(): Promise<string | null>;
  /** Why this case is not measured (e.g. the op or layout is unsupported), or null. */
  skip(c: Case): string | null;
  measure(c: Case): Promise<PeerTiming>;
  close(): Promise<void>;
  /** Version string for the results. */
  version(): string;
}
