// Per-(group, channel) scalars shared by both layouts: the float32 affine a
// kernel applies, the backward's coefficients, and the weight/bias reductions.
#pragma once
#include <cstddef>
#include <vector>

#include "kernels.h"
#include "layout_ops.h"

namespace rebatch {

inline ChannelAffine affineOf(const ForwardParams& p, std::size_t group, std::size_t c,
                              std::size_t channels) {
  const std::size_t gc = group * channels + c;
  const double mean = p.mean[gc];
  const float hi = float(mean);
  const double w = p.weight ? double(p.weight[c]) : 1.0;
  const float lo = float(mean - double(hi)), scale = float(w * p.invstd[gc]), shift = p.bias ? p.bias[c] : 0.0f;
  return {hi, lo, scale, shift, float(double(shift) - double(lo) * double(scale))};
}

// Only the mean, split as above: for kernels that need x - mean and no ReLU mask.
inline ChannelAffine centerOf(const double* mean, std::size_t group, std::size_t c, std::size_t channels) {
  const double m = mean[group * channels + c];
  const float hi = float(m);
  return {hi, float(m - double(hi)), 0.0f, 0.0f, 0.0f};
}

// dx = a * dy + b * (x - mean) + c (foldedC: see ChannelGrad). In training the batch statistics depend on
// x: dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
// dx = a * dy + b * (x - mean) + c for a channel whose mean is `mean`, with
// foldedC = c - b * meanLo for the SIMD kernels (meanLo as in affineOf).
inline ChannelGrad gradFromCoefficients(double a, double b, double c, double mean) {
  const float cb = float(b), cc = float(c);
  const double lo = double(float(mean - double(float(mean))));
  return {float(a), cb, cc, float(double(cc) - double(cb) * lo)};
}

// invCount: 1 / the number of values per channel of the group.
inline ChannelGrad gradOf(const BackwardParams& p, std::size_t group, std::size_t c,
                          std::size_t channels, const GradSums& s, double invCount) {
  const std::size_t gc = group * channels + c;
  const double invstd = p.fwd.invstd[gc];
  const double a = (p.fwd.weight ? double(p.fwd.weight[c]) : 1.0) * invstd;
  if (!p.training) return {float(a), 0.0f, 0.0f, 0.0f};
  const double ac = a * invCount;
  return gradFromCoefficients(a, -ac * invstd * invstd * s.sumDyXc, -ac * s.sumDy, p.fwd.mean[gc]);
}

// dweight = sum over groups of sum(dy * xhat); dbias = sum of dy; groups
// added in order so the result does not depend on scheduling.
inline void reduceAffineGrads(const BackwardParams& p, std::size_t groups, std::size_t channels,
                              const std::vector<GradSums>& sums) {
  for (std::size_t c = 0; c < channels; ++c) {
    double dw = 0, db = 0;
    for (std::size_t g = 0; g < groups; ++g) {
      const GradSums& s = sums[g * channels + c];
      dw += s.sumDyXc * p.fwd.invstd[g * channels + c];
      db += s.sumDy;
    }
    if (p.dweight) p.dweight[c] = float(dw);
    if (p.dbias) p.dbias[c] = float(db);
  }
}

}  // namespace rebatch
