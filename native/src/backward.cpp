// The backward, and its two halves used alone by SyncBN and GroupNorm, composed
// once over each layout's two passes (layout_ops.h: reduceGrads, applyGrads).
#include <memory>
#include <vector>

#include "channel_params.h"
#include "kernels.h"
#include "layout_ops.h"
#include "rebatch/isa.h"
#include "rebatch/ops.h"

namespace rebatch {
namespace {


std::vector<GradSums> reduceGrads(const float* dy, const float* x, const TensorDims& d, const ForwardParams& p) {
  return rowsLayout(d) ? nhwc::reduceGrads(activeKernels(), dy, x, d, p) : nchw::reduceGrads(activeKernels(), dy, x, d, p);
}

void applyGrads(const float* dy, const float* x, float* dx, const TensorDims& d, const ForwardParams& p,
                const ChannelGrad* grad) {
  if (rowsLayout(d)) nhwc::applyGrads(activeKernels(), dy, x, dx, d, p, grad);
  else nchw::applyGrads(activeKernels(), dy, x, dx, d, p, grad);
}

// The means alone (no scale, no shift, no ReLU): what the halves need for x - mean.
struct Centered {
  std::vector<double> noScale;
  ForwardParams params;
  Centered(const double* mean, const TensorDims& d)
      : noScale(d.groups() * d.c, 0.0), params{mean, noScale.data(), nullptr, nullptr, false} {}
};

}  // namespace

void backwardPasses(const float* dy, const float* x, float* dx, const TensorDims& d, const BackwardParams& p) {
  std::vector<GradSums> staged;
  if (dx && !rowsLayout(d) && nchw::stagedBackward(activeKernels(), dy, x, dx, d, p, staged)) {
    reduceAffineGrads(p, d.groups(), d.c, staged);
    return;
  }
  const std::vector<GradSums> sums = reduceGrads(dy, x, d, p.fwd);
  reduceAffineGrads(p, d.groups(), d.c, sums);
  if (!dx) return;
  const std::unique_ptr<ChannelGrad[]> grad(new ChannelGrad[sums.size()]);  // every entry written below
  for (std::size_t g = 0; g < d.groups(); ++g)
    gradsOf(p, g, 0, d.c, d.c, sums.data(), 1.0 / double(d.groupSamples(g) * d.spatial), grad.get());
  applyGrads(dy, x, dx, d, p.fwd, grad.get());
}

void gradSumsPass(const float* dy, const float* x, const TensorDims& d, const double* mean, const double* invstd,
                  double* sumDy, double* sumDyXhat) {
  const Centered centered(mean, d);
  const std::vector<GradSums> sums = reduceGrads(dy, x, d, centered.params);
  for (std::size_t i = 0; i < sums.size(); ++i) {
    sumDy[i] = sums[i].sumDy;
    sumDyXhat[i] = sums[i].sumDyXc * invstd[i];
  }
}

void gradApplyPass(const float* dy, const float* x, float* dx, const TensorDims& d, const double* mean,
                   const double* a, const double* b, const double* c) {
  std::vector<ChannelGrad> grad(d.groups() * d.c);
  for (std::size_t i = 0; i < grad.size(); ++i) grad[i] = gradFromCoefficients(a[i], b[i], c[i], mean[i]);
  applyGrads(dy, x, dx, d, Centered(mean, d).params, grad.data());
}

}  // namespace rebatch
