// The contract every ISA implements: small kernels over L1-sized pieces of a
// tensor. Orchestration (blocking, threads, merging, ghost batches) lives in
// the op files and is shared by all ISAs; kernels_scalar.cpp is the
// specification the SIMD versions must match.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "line_floats.h"
#include "rebatch/moments.h"

namespace rebatch {

// Floats per block of the NCHW moments of short runs (whole runs of a few
// consecutive samples), and the run length from which runs are cut into
// pieces instead (kRunPiece): 16 KiB, so the exact two-pass, when needed,
// re-reads the block from L1, and the per-block costs (horizontal sums, the
// shift check, the merge) are spread over enough values -- 4 KiB blocks
// measured 20-30% slower on 8x32x112x112. The kernels flush their float32
// partial sums to float64 every 1024 values (kFlushFloats), so the block size
// does not change their accuracy.
constexpr std::size_t kRunBlock = 4096;
// Floats per block of the NCHW reductions (moments and the backward's sums)
// over runs long enough to be cut into pieces: 64 KiB, so the rare exact
// two-pass re-reads its piece from L2. Each piece costs a call, horizontal
// sums, the shift check and a merge, and the next piece's shift waits on that
// merge: 16 KiB pieces took 8-12% more time than these in the moments of
// 8x32x112x112 and 2x16x224x224, 4 KiB pieces 3-10% more in the backward's
// sums (32x64x56x56 the most).
constexpr std::size_t kRunPiece = 16384;
// The run length from which the NCHW backward sums cut runs into pieces
// (kRunPiece). Shorter runs are summed sample by sample in memory
// order (runGradSums): blocks of a few samples' runs, read channel after
// channel, were that many scattered streams of two tensors (64x256x14x14 sums
// 0.55 ms against 0.36).
constexpr std::size_t kGradBlock = 1024;
// Rows per block on the NHWC path: each float32 lane sums at most this many
// terms. The SIMD kernels walk a block one strip of at most 32 channels at a
// time, so what must stay in L1 between the two passes is 64 rows of one
// strip (8 KiB), whatever C is.
constexpr std::size_t kMaxRowBlock = 64;
// Floats per tensor of a channels-last grad-sums call whose data comes from L2
// (0.5 MiB; with dy, 1 MiB): such calls take no software prefetch (256x512:
// 12 -> 16 us with it), and nhwc.cpp walks them from a vector-aligned float
// (larger units, streamed from L3 and memory, were 3-6% slower so: a split
// line costs little next to a miss, the left-over row's gather does not).
constexpr std::size_t kGradSumsL2Floats = std::size_t(1) << 17;
// Rows per block of the NHWC moments: the kernels flush their float32 lanes
// every kMaxRowBlock rows, and the per-block costs (the shift check and the
// merge, per channel) are spread over more rows -- 64-row blocks measured
// ~25% slower at 64x256x14x14 than 256, and 256 than 1024 7% at 64x256x14x14
// and 12% at 8x32x112x112 (4096: no faster). A block whose one pass fails its
// check is re-read (from L2 or L3). Scratch: kRowMomentsScratch floats per channel.
constexpr std::size_t kRowMomentsBlock = 1024;
constexpr std::size_t kRowMomentsScratch = 8;

// 1 / sqrt(m2 / count + eps): a channel's invstd from its M2 over count
// values (or from its variance, count 1).
inline double channelInvstd(double m2, double count, double eps) { return 1.0 / std::sqrt(m2 / count + eps); }

// One channel's normalization: y = (x - mean) * scale + shift, with the mean
// split into a float hi part and a float lo remainder so that x - mean keeps
// float64 accuracy when |mean| >> std.
struct ChannelAffine {
  float meanHi, meanLo, scale, shift;
  // shift - meanLo * scale: the SIMD kernels compute (x - meanHi) * scale + foldedShift.
  float foldedShift;
};

// Gradient coefficients for one channel: dx = a * dyMasked + b * (x - mean) + c.
struct ChannelGrad {
  float a, b, c;
  // c - b * meanLo: the SIMD kernels compute a * dy + b * (x - meanHi) + foldedC.
  float foldedC;
};

// Per-channel arrays for the channels-last kernels: each holds its C values
// repeated with period C over C + kRowsPad entries, so that a vector may start
// at any channel, and so that the arrays at +k are those of rows whose channel
// order starts at k (nhwc.cpp walks rows from an aligned float that way). The
// SIMD kernels fold the mean's lo part into the shift: foldedShift = shift -
// meanLo * scale, foldedC = c - b * meanLo (the scalar kernels use the parts).
constexpr std::size_t kRowsPad = 16;
// Rows of at most this many floats (whole vectors) are normalized two rows per
// load of their parameters when stores are plain (see twoRowWalk in
// simd_kernels.inl); wider rows load a channel's three parameters with every
// vector (which is why they stream their output sooner: layout_ops.h).
constexpr std::size_t kPairRowFloats = 64;
struct RowsAffine {
  const float* meanHi;
  const float* meanLo;
  const float* scale;
  const float* shift;
  const float* foldedShift;
};
struct RowsGrad {
  const float* a;
  const float* b;
  const float* c;
  const float* foldedC;
};

struct GradSums {
  double sumDy = 0;     // sum of dy (masked by the ReLU when fused)
  double sumDyXc = 0;   // sum of dy * (x - mean)
};

// A block's moments from its sums of x - m and (x - m)^2 (shift m, n values):
// exact in exact arithmetic for any shift, and from float32 sums as accurate
// as the two-pass when m is within a fraction of a standard deviation of the
// block's mean -- which shiftIsClose checks: n (mean - m)^2 <= M2 / 4, i.e.
// q <= 1.25 * M2, so the rounding of q costs at most 25% more than with the
// block's own mean as the shift. False for NaN, and for an infinite q: float32
// squares overflow from |x - m| ~ 1.8e19, and such sums say nothing.
inline bool shiftIsClose(double n, double dsum, double qsum) {
  return 5 * dsum * dsum <= n * qsum && std::isfinite(qsum);
}
inline Moments fromShifted(double n, float shift, double dsum, double qsum) {
  const double m2 = qsum - dsum * dsum / n;
  return {n, double(shift) + dsum / n, m2 > 0 ? m2 : 0};
}

// The floats of a run (first float at y, runLen >= kLineFloats) that the
// pipelined training forward writes when it normalizes that run, from the
// run's first float: whole cache lines, from the line boundary at or before
// its start (taking the previous run's last floats, whose line it shares) to
// the one at or before its end (leaving its last floats to the next run's
// call) -- a partly written non-temporal line costs a read-modify-write in
// memory, and masked stores are slow. At the edges of a thread's channel
// range the run's exact start (kExactHead) or end (kExactTail) instead.
constexpr unsigned kExactHead = 1, kExactTail = 2;
struct RunWindow {
  std::ptrdiff_t begin, end;
};
inline RunWindow lineWindow(const float* y, std::size_t runLen, unsigned edges) {
  return {edges & kExactHead ? 0 : -std::ptrdiff_t(phaseOf(y)),
          std::ptrdiff_t(runLen) - (edges & kExactTail ? 0 : std::ptrdiff_t(phaseOf(y + runLen)))};
}

// Scratch floats per run that runSums and runGradSums need (two vectors of the widest ISA).
constexpr std::size_t kRunSumsScratch = 16;

// Work runSums and runGradSums do between samples: the staged training
// forward and backward (nchw.cpp) write another stage's part of each sample
// there.
struct SampleHook {
  void (*after)(void* ctx, std::size_t sample);
  void* ctx;
};

struct KernelTable {
  const char* name;
  // Whether the stores asked to stream are non-temporal ones (else plain).
  bool nonTemporalStores;
  // Floats per vector (1: scalar); loads of W floats from W-aligned addresses never split a cache line.
  std::size_t vectorFloats;

  // --- NCHW: `runs` runs of `runLen` floats, `stride` floats apart. ---
  // Moments of a block of at most kRunPiece floats: one pass of sums shifted
  // by the hint (the channel's mean so far; null: the mean of the block's
  // first values), kept only when the shift proves within half a standard
  // deviation of the block's mean (then as accurate as the exact two-pass;
  // see shiftIsClose above); else the exact two-pass.
  Moments (*runsMoments)(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride,
                         const float* hint);
  // The pipelined training forward's step (nchw.cpp): runsMoments of the
  // block at xs (whole runs; null: none, returns {}) while normalizing, in
  // the same loop, the runs of the same geometry at xn into y, each over its
  // lineWindow: floats before a run's first use p[0] (the channel before in
  // memory), the run's own p[1]; y = (x - mean) * scale + shift, ReLU when
  // relu. Streaming stores where the ISA has them: the caller calls fence
  // before y is used. next: the block the caller reads after this one (same
  // geometry, or null), for prefetching.
  Moments (*runsMomentsNormalizing)(const float* xs, std::size_t runLen, std::size_t runs, std::size_t stride,
                                    const float* hint, const float* next, const float* xn, float* y,
                                    const ChannelAffine* p, unsigned edges, bool relu);
  // `samples` samples, sampleStride floats apart, each `runs` runs of runLen
  // floats back to back (its channels): adds the sums of x - shift[r] and
  // (x - shift[r])^2 over run r of every sample into dsum[r] and qsum[r], in
  // float64. scratch: kRunSumsScratch * runs floats. The caller checks each
  // channel's block with shiftIsClose.
  // hook.after(hook.ctx, s) runs after sample s's runs (none when null).
  void (*runSums)(const float* x, std::size_t runLen, std::size_t runs, std::size_t samples,
                  std::size_t sampleStride, const float* shift, float* scratch, double* dsum, double* qsum,
                  SampleHook hook);
  // Block of at most kRunPiece floats; the ReLU mask is recomputed from x and p.
  GradSums (*runsGradSums)(const float* dy, const float* x, std::size_t runLen, std::size_t runs,
                           std::size_t stride, ChannelAffine p, bool relu);
  // The same sums in memory order, for short runs: `samples` samples,
  // sampleStride floats apart, each `runs` runs of runLen <= kFlushFloats
  // floats back to back (its channels); adds the sums of run r of every sample,
  // with p[r], into sums[r]. scratch: kRunSumsScratch * runs floats. hook:
  // as runSums'.
  void (*runGradSums)(const float* dy, const float* x, std::size_t runLen, std::size_t runs, std::size_t samples,
                      std::size_t sampleStride, const ChannelAffine* p, bool relu, float* scratch, GradSums* sums,
                      SampleHook hook);
  // A contiguous span of `runs` whole runs of runLen floats, the channels of
  // consecutive runs cycling through [0, c): run r uses p[(c0 + r) % c] (and
  // g[...]). stream: non-temporal stores where the ISA has them (then the
  // caller calls fence before the output is used).
  void (*spanNormalize)(const float* x, float* y, std::size_t runLen, std::size_t runs, const ChannelAffine* p,
                        std::size_t c0, std::size_t c, bool relu, bool stream);
  void (*spanGradApply)(const float* dy, const float* x, float* dx, std::size_t runLen, std::size_t runs,
                        const ChannelAffine* p, const ChannelGrad* g, std::size_t c0, std::size_t c, bool relu,
                        bool stream);

  // --- NHWC: `rows` rows of `c` contiguous floats. ---
  // Moments of a block of at most kRowMomentsBlock rows, merged (Chan) into
  // the running per-channel mean and m2 of `count` earlier rows (start from
  // zeros with count 0): one pass over all the rows shifted by the means so
  // far (with count 0, by hint[ch], or without a hint by the means of the
  // first kMaxRowBlock rows, from a pass of plain sums), kept when every
  // channel verifies it (shiftIsClose); else, per kMaxRowBlock rows, as
  // runsMoments: shifted by the means so far when verified, or the exact
  // two-pass. scratch: kRowMomentsScratch * c floats.
  void (*rowsMoments)(const float* x, std::size_t rows, std::size_t c, float* scratch,
                      double count, double* mean, double* m2, const float* hint);
  void (*rowsNormalize)(const float* x, float* y, std::size_t rows, std::size_t c, RowsAffine p,
                        bool relu, bool stream);
  // Any number of rows (float32 sums over at most kMaxRowBlock rows each);
  // adds into sumDy and sumDyXc. scratch: 2*c floats.
  // normalize and gradApply: any number of rows, one memory-order span.
  void (*rowsGradSums)(const float* dy, const float* x, std::size_t rows, std::size_t c,
                       RowsAffine p, bool relu, float* scratch, double* sumDy, double* sumDyXc);
  void (*rowsGradApply)(const float* dy, const float* x, float* dx, std::size_t rows,
                        std::size_t c, RowsAffine p, RowsGrad g, bool relu, bool stream);
  // Orders this thread's non-temporal stores before what follows (no-op without them).
  void (*fence)();
  // Per channel, in float64: out[i] = channelInvstd(m2[i], count, eps) (count
  // 1: from a variance). Only correctly rounded operations, so every ISA
  // gives the same bits; the SIMD ones do several channels at a time (512
  // channels: 1.42 us scalar, 0.38 us with AVX2 -- the scalar loop, like
  // JavaScript's, waits on one divider per channel).
  void (*invstdOf)(const double* m2, std::size_t n, double count, double eps, double* out);

  // --- Memory-bandwidth probes (benchmarks): the simplest loops over n floats. ---
  double (*probeRead)(const float* x, std::size_t n);  // a checksum, so the reads happen
  void (*probeCopy)(const float* x, float* y, std::size_t n, bool stream);
  void (*probeTriad)(const float* a, const float* b, float* out, std::size_t n, bool stream);  // out = a + b
};

namespace scalar { const KernelTable& table(); }
#if defined(REBATCH_HAVE_AVX2)
namespace avx2 { const KernelTable& table(); }
#endif
#if defined(REBATCH_HAVE_NEON)
namespace neon { const KernelTable& table(); }
#endif

}  // namespace rebatch
