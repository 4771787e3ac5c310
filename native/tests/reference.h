// Float64 reference BatchNorm over logical (n, c, s) indices, independent of
// the kernels' blocking and layouts: what every op is compared against.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rebatch/types.h"

namespace ref {

using rebatch::Layout;
using rebatch::TensorDims;

inline std::size_t index(const TensorDims& d, std::size_t n, std::size_t c, std::size_t s) {
  return d.layout == Layout::NCHW ? (n * d.c + c) * d.spatial + s : (n * d.spatial + s) * d.c + c;
}

// Deterministic pseudo-random floats in [lo, hi) (xorshift; no <random> quirks across libstdc++).
inline std::vector<float> randomFloats(std::size_t count, std::uint64_t seed, float lo = -1, float hi = 1) {
  std::vector<float> v(count);
  std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x = lo + (hi - lo) * float(double(s >> 11) / double(1ull << 53));
  }
  return v;
}

struct Stats {
  std::vector<double> mean, var;  // groups * C, biased variance
};

inline Stats moments(const std::vector<float>& x, const TensorDims& d) {
  Stats st{std::vector<double>(d.groups() * d.c), std::vector<double>(d.groups() * d.c)};
  for (std::size_t g = 0; g < d.groups(); ++g)
    for (std::size_t c = 0; c < d.c; ++c) {
      double sum = 0, count = 0;
      for (std::size_t n = d.groupBegin(g); n < d.groupBegin(g) + d.groupSamples(g); ++n)
        for (std::size_t s = 0; s < d.spatial; ++s) sum += x[index(d, n, c, s)], ++count;
      const double mean = sum / count;
      double q = 0;
      for (std::size_t n = d.groupBegin(g); n < d.groupBegin(g) + d.groupSamples(g); ++n)
        for (std::size_t s = 0; s < d.spatial; ++s) {
          const double dv = x[index(d, n, c, s)] - mean;
          q += dv * dv;
        }
      st.mean[g * d.c + c] = mean;
      st.var[g * d.c + c] = q / count;
    }
  return st;
}

inline std::size_t groupOf(const TensorDims& d, std::size_t n) { return n / d.samplesPerGroup(); }

// y = relu?((x - mean) * invstd * w + b) with per-(group, channel) mean/invstd.
inline std::vector<double> forward(const std::vector<float>& x, const TensorDims& d,
                                   const std::vector<double>& mean, const std::vector<double>& invstd,
                                   const float* w, const float* b, bool relu) {
  std::vector<double> y(x.size());
  for (std::size_t n = 0; n < d.n; ++n)
    for (std::size_t c = 0; c < d.c; ++c)
      for (std::size_t s = 0; s < d.spatial; ++s) {
        const std::size_t i = index(d, n, c, s), gc = groupOf(d, n) * d.c + c;
        double v = (x[i] - mean[gc]) * invstd[gc] * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
        y[i] = relu && v < 0 ? 0 : v;
      }
  return y;
}

struct Grads {
  std::vector<double> dx, dweight, dbias;
};

// Autograd-style backward written from the definition, per group and channel.
inline Grads backward(const std::vector<float>& dy, const std::vector<float>& x, const TensorDims& d,
                      const std::vector<double>& mean, const std::vector<double>& invstd,
                      const float* w, const float* b, bool relu, bool training) {
  Grads r{std::vector<double>(x.size()), std::vector<double>(d.c), std::vector<double>(d.c)};
  for (std::size_t g = 0; g < d.groups(); ++g)
    for (std::size_t c = 0; c < d.c; ++c) {
      const std::size_t gc = g * d.c + c;
      const double wc = w ? w[c] : 1.0, bc = b ? b[c] : 0.0, is = invstd[gc];
      double sdy = 0, sdyx = 0, count = 0;
      auto masked = [&](std::size_t i) {
        const double xh = (x[i] - mean[gc]) * is;
        return relu && xh * wc + bc <= 0 ? 0.0 : double(dy[i]);
      };
      for (std::size_t n = d.groupBegin(g); n < d.groupBegin(g) + d.groupSamples(g); ++n)
        for (std::size_t s = 0; s < d.spatial; ++s) {
          const std::size_t i = index(d, n, c, s);
          const double gi = masked(i), xh = (x[i] - mean[gc]) * is;
          sdy += gi, sdyx += gi * xh, ++count;
        }
      r.dbias[c] += sdy;
      r.dweight[c] += sdyx;
      for (std::size_t n = d.groupBegin(g); n < d.groupBegin(g) + d.groupSamples(g); ++n)
        for (std::size_t s = 0; s < d.spatial; ++s) {
          const std::size_t i = index(d, n, c, s);
          const double gi = masked(i), xh = (x[i] - mean[gc]) * is;
          r.dx[i] = training ? wc * is * (gi - sdy / count - xh * sdyx / count) : wc * is * gi;
        }
    }
  return r;
}

}  // namespace ref
