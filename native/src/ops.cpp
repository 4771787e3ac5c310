// Public entry points: validate, pick the layout's implementation, and keep
// exceptions (allocation failures) from crossing the boundary.
#include "rebatch/ops.h"

#include <limits>
#include <new>
#include <vector>

#include "kernels.h"
#include "layout_ops.h"
#include "rebatch/isa.h"
#include "rebatch/moments.h"

namespace rebatch {
namespace {


template <class F>
Status guarded(F&& f) {
  try {
    f();
    return Status::Ok();
  } catch (const std::bad_alloc&) {
    return {StatusCode::OutOfMemory, "out of memory"};
  } catch (...) {
    return Status::Invalid("internal error");
  }
}

// Statistics over fewer values per channel than this are computed by the
// float64 specification kernels: the float32 rounding of each x - shift in the
// SIMD kernels averages out only over many values (the mean's error is about
// u * std / sqrt(n): 1e-8 * std at n = 36, where PyTorch, accumulating in
// float64, is exact), and groups this small cost little either way.
constexpr std::size_t kExactStatsMaxValues = 256;

const KernelTable& statsKernels(const TensorDims& d) {
  return d.samplesPerGroup() * d.spatial < kExactStatsMaxValues ? scalar::table() : activeKernels();
}

bool everyGroupHasMoreThanOne(const TensorDims& d) {
  for (std::size_t g = 0; g < d.groups(); ++g)
    if (d.groupSamples(g) * d.spatial < 2) return false;
  return true;
}

}  // namespace

Status validateDims(const TensorDims& d) {
  if (d.n == 0) return Status::Invalid("the batch is empty (N = 0)");
  if (d.c == 0) return Status::Invalid("there are no channels (C = 0)");
  if (d.spatial == 0) return Status::Invalid("a spatial dimension is 0");
  if (d.layout != Layout::NCHW && d.layout != Layout::NHWC) return Status::Invalid("unknown layout");
  const std::size_t limit = std::numeric_limits<std::size_t>::max() / 8;
  if (d.c > limit / d.n || d.spatial > limit / (d.n * d.c)) return Status::Invalid("tensor too large");
  return Status::Ok();
}

Status channelMoments(const float* x, const TensorDims& d, double* mean, double* m2) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!x || !mean || !m2) return Status::Invalid("null pointer");
  return guarded([&] {
    if (rowsLayout(d)) nhwc::moments(statsKernels(d), x, d, mean, m2);
    else nchw::moments(statsKernels(d), x, d, mean, m2);
  });
}

Status batchNormTraining(const float* x, float* y, const TensorDims& d, const float* weight,
                         const float* bias, double eps, bool relu, double* saveMean,
                         double* saveInvstd) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!x || !y || !saveMean || !saveInvstd) return Status::Invalid("null pointer");
  if (!(eps >= 0)) return Status::Invalid("eps must be >= 0");
  if (!everyGroupHasMoreThanOne(d)) return Status::Invalid("Expected more than 1 value per channel when training");
  const ForwardParams p{saveMean, saveInvstd, weight, bias, relu};
  return guarded([&] {
    const KernelTable& k = activeKernels();
    if (!rowsLayout(d)) {
      nchw::training(statsKernels(d), k, x, y, d, eps, p, saveMean, saveInvstd);
      return;
    }
    // The whole tensor does not stay in cache here: statistics first, then a second pass.
    std::vector<double> m2(d.groups() * d.c);
    nhwc::moments(statsKernels(d), x, d, saveMean, m2.data());
    for (std::size_t g = 0; g < d.groups(); ++g)
      k.invstdOf(&m2[g * d.c], d.c, double(d.groupSamples(g) * d.spatial), eps, &saveInvstd[g * d.c]);
    nhwc::withStats(k, x, y, d, p);
  });
}

Status batchNormWithStats(const float* x, float* y, const TensorDims& d, const double* mean,
                          const double* invstd, const float* weight, const float* bias, bool relu) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!x || !y || !mean || !invstd) return Status::Invalid("null pointer");
  const ForwardParams p{mean, invstd, weight, bias, relu};
  return guarded([&] {
    if (rowsLayout(d)) nhwc::withStats(activeKernels(), x, y, d, p);
    else nchw::withStats(activeKernels(), x, y, d, p);
  });
}

Status batchNormWithVariance(const float* x, float* y, const TensorDims& d, const double* mean,
                             const double* variance, double eps, const float* weight, const float* bias,
                             bool relu, double* invstdOut) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!x || !y || !mean || !variance || !invstdOut) return Status::Invalid("null pointer");
  if (!(eps >= 0)) return Status::Invalid("eps must be >= 0");
  s = invstdFromVariance(variance, d.groups() * d.c, eps, invstdOut);
  return s.ok() ? batchNormWithStats(x, y, d, mean, invstdOut, weight, bias, relu) : s;
}

Status batchNormBackward(const float* dy, const float* x, float* dx, const TensorDims& d,
                         const double* mean, const double* invstd, const float* weight,
                         const float* bias, bool relu, bool training, float* dweight,
                         float* dbias) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!dy || !x || !mean || !invstd) return Status::Invalid("null pointer");
  const BackwardParams p{{mean, invstd, weight, bias, relu}, training, dweight, dbias};
  return guarded([&] {
    backwardPasses(dy, x, dx, d, p);
  });
}

Status batchNormGradSums(const float* dy, const float* x, const TensorDims& d, const double* mean,
                         const double* invstd, double* sumDy, double* sumDyXhat) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!dy || !x || !mean || !invstd || !sumDy || !sumDyXhat) return Status::Invalid("null pointer");
  return guarded([&] {
    gradSumsPass(dy, x, d, mean, invstd, sumDy, sumDyXhat);
  });
}

Status batchNormGradApply(const float* dy, const float* x, float* dx, const TensorDims& d,
                          const double* mean, const double* a, const double* b, const double* c) {
  Status s = validateDims(d);
  if (!s.ok()) return s;
  if (!dy || !x || !dx || !mean || !a || !b || !c) return Status::Invalid("null pointer");
  return guarded([&] {
    gradApplyPass(dy, x, dx, d, mean, a, b, c);
  });
}

Status invstdFromVariance(const double* variance, std::size_t n, double eps, double* invstd) {
  if (!variance || !invstd) return Status::Invalid("null pointer");
  activeKernels().invstdOf(variance, n, 1.0, eps, invstd);
  return Status::Ok();
}

namespace {
template <class F>
Status updateRunning(F* runningMean, F* runningVar, std::size_t channels, const double* mean,
                     const double* m2, double count, double momentum) {
  if (!runningMean || !runningVar || !mean || !m2) return Status::Invalid("null pointer");
  if (!(count > 1)) return Status::Invalid("the unbiased variance needs more than 1 value per channel");
  if (!(momentum >= 0 && momentum <= 1)) return Status::Invalid("momentum must be in [0, 1]");
  for (std::size_t c = 0; c < channels; ++c) {
    runningMean[c] = F((1 - momentum) * double(runningMean[c]) + momentum * mean[c]);
    runningVar[c] = F((1 - momentum) * double(runningVar[c]) + momentum * m2[c] / (count - 1));
  }
  return Status::Ok();
}
}  // namespace

Status updateRunningStats(float* rm, float* rv, std::size_t c, const double* mean, const double* m2,
                          double count, double momentum) {
  return updateRunning(rm, rv, c, mean, m2, count, momentum);
}
Status updateRunningStats(double* rm, double* rv, std::size_t c, const double* mean,
                          const double* m2, double count, double momentum) {
  return updateRunning(rm, rv, c, mean, m2, count, momentum);
}

void mergeMomentsArrays(std::size_t channels, double countA, const double* meanA, const double* m2A,
                        double countB, const double* meanB, const double* m2B, double* meanOut,
                        double* m2Out) {
  for (std::size_t c = 0; c < channels; ++c) {
    const Moments m = chanMerge({countA, meanA[c], m2A[c]}, {countB, meanB[c], m2B[c]});
    meanOut[c] = m.mean;
    m2Out[c] = m.m2;
  }
}

}  // namespace rebatch
