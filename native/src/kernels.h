// The contract every ISA implements: small kernels over L1-sized pieces of a
// tensor. Orchestration (blocking, threads, merging, ghost batches) lives in
// the op files and is shared by all ISAs; kernels_scalar.cpp is the
// specification the SIMD versions must match.
#pragma once
#include <cstddef>

#include "rebatch/moments.h"

namespace rebatch {

// Floats per moments block on the NCHW path: 4 KiB, so the second pass of the
// exact two-pass reads from L1 and each float32 lane sums few enough terms.
constexpr std::size_t kRunBlock = 1024;
// Upper bound on rows per block on the NHWC path, for the same two reasons.
constexpr std::size_t kMaxRowBlock = 64;
constexpr std::size_t kRowBlockFloats = 4096;

inline std::size_t rowsPerBlock(std::size_t channels) {
  std::size_t r = kRowBlockFloats / (channels ? channels : 1);
  return r < 1 ? 1 : (r > kMaxRowBlock ? kMaxRowBlock : r);
}

// One channel's normalization: y = (x - mean) * scale + shift, with the mean
// split into a float hi part and a float lo remainder so that x - mean keeps
// float64 accuracy when |mean| >> std.
struct ChannelAffine {
  float meanHi, meanLo, scale, shift;
};

// Gradient coefficients for one channel: dx = a * dyMasked + b * (x - mean) + c.
struct ChannelGrad {
  float a, b, c;
};

// Per-channel arrays (length C) for the channels-last kernels.
struct RowsAffine {
  const float* meanHi;
  const float* meanLo;
  const float* scale;
  const float* shift;
};
struct RowsGrad {
  const float* a;
  const float* b;
  const float* c;
};

struct GradSums {
  double sumDy = 0;     // sum of dy (masked by the ReLU when fused)
  double sumDyXc = 0;   // sum of dy * (x - mean)
};

struct KernelTable {
  const char* name;

  // --- NCHW: `runs` runs of `runLen` floats, `stride` floats apart. ---
  // Exact two-pass moments of a block of at most kRunBlock floats.
  Moments (*runsMoments)(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride);
  void (*runsNormalize)(const float* x, float* y, std::size_t runLen, std::size_t runs,
                        std::size_t stride, ChannelAffine p, bool relu);
  // Block of at most kRunBlock floats; the ReLU mask is recomputed from x and p.
  GradSums (*runsGradSums)(const float* dy, const float* x, std::size_t runLen, std::size_t runs,
                           std::size_t stride, ChannelAffine p, bool relu);
  void (*runsGradApply)(const float* dy, const float* x, float* dx, std::size_t runLen,
                        std::size_t runs, std::size_t stride, ChannelAffine p, ChannelGrad g,
                        bool relu);

  // --- NHWC: `rows` rows of `c` contiguous floats. ---
  // Exact two-pass moments of a block of at most rowsPerBlock(c) rows.
  // scratch: 4*c floats. Writes per-channel mean and m2 (count = rows).
  void (*rowsMoments)(const float* x, std::size_t rows, std::size_t c, float* scratch,
                      double* mean, double* m2);
  void (*rowsNormalize)(const float* x, float* y, std::size_t rows, std::size_t c, RowsAffine p,
                        bool relu);
  // Block of at most rowsPerBlock(c) rows; adds into sumDy and sumDyXc. scratch: 2*c floats.
  void (*rowsGradSums)(const float* dy, const float* x, std::size_t rows, std::size_t c,
                       RowsAffine p, bool relu, float* scratch, double* sumDy, double* sumDyXc);
  void (*rowsGradApply)(const float* dy, const float* x, float* dx, std::size_t rows,
                        std::size_t c, RowsAffine p, RowsGrad g, bool relu);
};

namespace scalar { const KernelTable& table(); }
#if defined(REBATCH_HAVE_AVX2)
namespace avx2 { const KernelTable& table(); }
#endif
#if defined(REBATCH_HAVE_NEON)
namespace neon { const KernelTable& table(); }
#endif

}  // namespace rebatch
