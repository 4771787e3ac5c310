// The one place the compiled addon is loaded, and the shape of what it exports.
// Everything else in lib/ talks to the addon through `native`.
//
// Where the addon comes from, in order: REBATCH_ADDON_PATH; a local build
// (build/Release/rebatch.node, from `npm run build:native` or
// `npx rebatch build-from-source`); the prebuilt binary shipped in the package
// (prebuilds/<platform>-<arch>[-musl]/rebatch.node).
import * as fs from 'fs';
import { addonCandidates, platformTag } from './addon-location';

/** Tensor geometry as binding/ reads it: layout 0 = NCHW, 1 = NHWC; groupSize 0 = N. */
export interface NativeDims {
  n: number;
  c: number;
  spatial: number;
  layout: 0 | 1;
  groupSize: number;
}

type F32 = Float32Array;
type F64 = Float64Array;

export interface NativeAddon {
  moments(x: F32, dims: NativeDims, mean: F64, m2: F64): void;
  momentsAsync(x: F32, dims: NativeDims, mean: F64, m2: F64): Promise<void>;
  batchNormTraining(x: F32, out: F32, dims: NativeDims, weight: F32 | null, bias: F32 | null, eps: number,
    relu: boolean, mean: F64, invstd: F64): void;
  batchNormTrainingAsync(x: F32, out: F32, dims: NativeDims, weight: F32 | null, bias: F32 | null, eps: number,
    relu: boolean, mean: F64, invstd: F64): Promise<void>;
  batchNormWithStats(x: F32, out: F32, dims: NativeDims, mean: F64, invstd: F64, weight: F32 | null,
    bias: F32 | null, relu: boolean): void;
  batchNormWithStatsAsync(x: F32, out: F32, dims: NativeDims, mean: F64, invstd: F64, weight: F32 | null,
    bias: F32 | null, relu: boolean): Promise<void>;
  batchNormWithVariance(x: F32, out: F32, dims: NativeDims, mean: F64, variance: F64, eps: number, weight: F32 | null,
    bias: F32 | null, relu: boolean, invstd: F64): void;
  batchNormWithVarianceAsync(x: F32, out: F32, dims: NativeDims, mean: F64, variance: F64, eps: number,
    weight: F32 | null, bias: F32 | null, relu: boolean, invstd: F64): Promise<void>;
  batchNormBackward(dy: F32, x: F32, dx: F32 | null, dims: NativeDims, mean: F64, invstd: F64,
    weight: F32 | null, bias: F32 | null, relu: boolean, training: boolean, dweight: F32, dbias: F32): void;
  batchNormBackwardAsync(dy: F32, x: F32, dx: F32 | null, dims: NativeDims, mean: F64, invstd: F64,
    weight: F32 | null, bias: F32 | null, relu: boolean, training: boolean, dweight: F32, dbias: F32): Promise<void>;
  batchNormGradSums(dy: F32, x: F32, dims: NativeDims, mean: F64, invstd: F64, sumDy: F64, sumDyXhat: F64): void;
  batchNormGradApply(dy: F32, x: F32, dx: F32, dims: NativeDims, mean: F64, a: F64, b: F64, c: F64): void;
  updateRunningStats(runningMean: F32 | F64, runningVar: F32 | F64, mean: F64, m2: F64, count: number,
    momentum: number): void;
  mergeMoments(countA: number, meanA: F64, m2A: F64, countB: number, meanB: F64, m2B: F64, meanOut: F64,
    m2Out: F64): void;
  /** Benchmarks only: each run's time in ns of the named sync op on `args`, native computation only. */
  kernelTimes(name: 'moments' | 'batchNormTraining' | 'batchNormWithStats' | 'batchNormWithVariance' | 'batchNormBackward',
    reps: number,
    args: unknown[]): Float64Array;
  /** Benchmarks only: memory-bandwidth probes over the thread pool (native/include/rebatch/probe.h). */
  probeRead(x: F32): number;
  probeCopy(x: F32, y: F32, stream: boolean): void;
  probeTriad(a: F32, b: F32, out: F32, stream: boolean): void;
  isa(): string;
  isaNote(): string;
  isaSupported(name: string): boolean;
  selectIsa(name: string): boolean;
  getNumThreads(): number;
  setNumThreads(n: number): void;
}

function load(): NativeAddon {
  const tried: string[] = [];
  for (const { from, file } of addonCandidates()) {
    if (!fs.existsSync(file)) {
      tried.push(`  ${from}: ${file} (not found)`);
      continue;
    }
    try {
      return require(file) as NativeAddon;
    } catch (e) {
      tried.push(`  ${from}: ${file} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  throw new Error(
    `rebatch: no native addon for ${platformTag()} (Node ${process.version}, Node-API ${process.versions.napi}).\n` +
    `Tried:\n${tried.join('\n')}\n` +
    'Fixes: build it from source with `npx rebatch build-from-source` (needs cmake and a C++17 compiler), ' +
    'or point REBATCH_ADDON_PATH at a rebatch.node built for this platform.');
}

export const native: NativeAddon = load();
