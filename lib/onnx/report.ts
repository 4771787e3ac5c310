// Per-layer results of a recompute: stored (EMA) and new statistics, and how
// far apart they are.
import { BnNode, storedStats } from './batchnorm';
import { OnnxModel } from './model';
import { PopulationEstimator } from '../population';

/** One BN layer's result, as `--stats-out` writes it. */
export interface LayerReport {
  name: string;
  channels: number;
  eps: number;
  /** Samples the layer's statistics come from. */
  samples: number;
  /** Elements per channel (samples × spatial positions). */
  elements: number;
  batches: number;
  stored: { mean: number[]; var: number[] };
  new: { mean: number[]; var: number[] };
  /**
   * Mean over channels of |Δmean| / std_new + |ln(std_stored / std_new)|, stds
   * including eps: how differently the stored statistics normalize (0: same).
   */
  drift: number;
  /** RMS over channels of (mean_stored − mean_new) / std_new. */
  meanShift: number;
  /** Geometric mean over channels of std_stored / std_new. */
  stdRatio: number;
}

/** Drift figures between stored and new statistics (see {@link LayerReport}). */
export function driftOf(storedMean: ArrayLike<number>, storedVar: ArrayLike<number>, mean: ArrayLike<number>,
  variance: ArrayLike<number>, eps: number): { drift: number; meanShift: number; stdRatio: number } {
  let drift = 0;
  let shift2 = 0;
  let logRatio = 0;
  const c = mean.length;
  for (let i = 0; i < c; i++) {
    const std = Math.sqrt(Math.max(variance[i], 0) + eps);
    const stdStored = Math.sqrt(Math.max(storedVar[i], 0) + eps);
    const z = (storedMean[i] - mean[i]) / std;
    const lr = Math.log(stdStored / std);
    drift += Math.abs(z) + Math.abs(lr);
    shift2 += z * z;
    logRatio += lr;
  }
  return { drift: drift / c, meanShift: Math.sqrt(shift2 / c), stdRatio: Math.exp(logRatio / c) };
}

/** The report of every layer, from the pass's statistics over `samples` samples. */
export function layerReports(model: OnnxModel, bns: BnNode[], populations: PopulationEstimator[], samples: number): LayerReport[] {
  return bns.map((bn, k) => {
    const stored = storedStats(model, bn);
    const est = populations[k].finalize();
    return {
      name: bn.label,
      channels: bn.channels,
      eps: Number(bn.eps.toPrecision(7)),
      samples,
      elements: est.count,
      batches: est.batches,
      stored: { mean: Array.from(stored.mean), var: Array.from(stored.variance) },
      new: { mean: Array.from(est.mean), var: Array.from(est.var) },
      ...driftOf(stored.mean, stored.variance, est.mean, est.var, bn.eps),
    };
  });
}
