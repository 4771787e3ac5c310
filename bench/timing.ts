// Median wall time of a call after warm-up, within a time budget.

export interface Timing {
  medianMs: number;
  samples: number;
}

export interface TimingOptions {
  /** Seconds to spend sampling (after warm-up); at least minSamples are taken anyway. */
  budget: number;
  minSamples?: number;
  maxSamples?: number;
  warmup?: number;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Times fn: `warmup` calls, then samples until the budget is spent (median of them). */
export function timeSync(fn: () => unknown, o: TimingOptions): Timing {
  const { minSamples = 5, maxSamples = 2000, warmup = 3 } = o;
  for (let i = 0; i < warmup; i++) fn();
  const samples: number[] = [];
  const start = nowMs();
  while (samples.length < minSamples || (nowMs() - start < o.budget * 1e3 && samples.length < maxSamples)) {
    const t0 = nowMs();
    fn();
    samples.push(nowMs() - t0);
  }
  return { medianMs: median(samples), samples: samples.length };
}

/** timeSync for calls that return a promise (each call awaited before the next). */
export async function timeAsync(fn: () => Promise<unknown>, o: TimingOptions): Promise<Timing> {
  const { minSamples = 5, maxSamples = 2000, warmup = 3 } = o;
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = nowMs();
  while (samples.length < minSamples || (nowMs() - start < o.budget * 1e3 && samples.length < maxSamples)) {
    const t0 = nowMs();
    await fn();
    samples.push(nowMs() - t0);
  }
  return { medianMs: median(samples), samples: samples.length };
}
