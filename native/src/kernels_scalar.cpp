// The specification: plain loops in float64. Every SIMD kernel must agree with
// these within float32 rounding; native/tests compare them.
#include <cstddef>
#include <vector>

#include "kernels.h"

namespace rebatch {
namespace scalar {
namespace {

inline double centered(float x, const ChannelAffine& p) {
  return (double(x) - double(p.meanHi)) - double(p.meanLo);
}
inline double maskedDy(float dy, double xc, const ChannelAffine& p, bool relu) {
  // PyTorch's threshold_backward: the gradient passes unless the output was <= 0.
  return relu && xc * p.scale + p.shift <= 0 ? 0.0 : double(dy);
}

// The second pass's result: n values around `mean` with deviations summing to
// dsum and squares to q; subtracting dsum^2 / n removes the first-order error
// of `mean`.
Moments fromDeviations(double n, double mean, double dsum, double q) {
  const double m2 = q - dsum * dsum / n;
  return {n, mean + dsum / n, m2 > 0 ? m2 : 0};
}

Moments runsMoments(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride, const float*) {
  const double n = double(runLen * runs);
  double sum = 0;
  for (std::size_t r = 0; r < runs; ++r)
    for (std::size_t i = 0; i < runLen; ++i) sum += x[r * stride + i];
  const double mean = sum / n;
  double m2 = 0, dsum = 0;
  for (std::size_t r = 0; r < runs; ++r)
    for (std::size_t i = 0; i < runLen; ++i) {
      const double d = x[r * stride + i] - mean;
      dsum += d;
      m2 += d * d;
    }
  return fromDeviations(n, mean, dsum, m2);
}

void runSums(const float* x, std::size_t runLen, std::size_t runs, std::size_t samples, std::size_t sampleStride,
             const float* shift, float*, double* dsum, double* qsum, SampleHook hook) {
  for (std::size_t s = 0; s < samples; ++s) {
    for (std::size_t r = 0; r < runs; ++r)
      for (std::size_t i = 0; i < runLen; ++i) {
        const double d = double(x[s * sampleStride + r * runLen + i]) - double(shift[r]);
        dsum[r] += d;
        qsum[r] += d * d;
      }
    if (hook.after) hook.after(hook.ctx, s);
  }
}

void runsNormalize(const float* x, float* y, std::size_t len, ChannelAffine p, bool relu) {
  for (std::size_t i = 0; i < len; ++i) {
    double v = centered(x[i], p) * p.scale + p.shift;
    if (relu && v < 0) v = 0;  // NaN passes through, as in torch.relu
    y[i] = float(v);
  }
}

void spanNormalize(const float* x, float* y, std::size_t runLen, std::size_t runs, const ChannelAffine* p,
                   std::size_t c0, std::size_t c, bool relu, bool) {
  for (std::size_t r = 0, ch = c0; r < runs; ++r, ch = ch + 1 == c ? 0 : ch + 1)
    runsNormalize(x + r * runLen, y + r * runLen, runLen, p[ch], relu);
}

Moments runsMomentsNormalizing(const float* xs, std::size_t runLen, std::size_t runs, std::size_t stride,
                               const float* hint, const float*, const float* xn, float* y, const ChannelAffine* p,
                               unsigned edges, bool relu) {
  for (std::size_t r = 0; r < runs; ++r) {
    const RunWindow w = lineWindow(y + r * stride, runLen, edges);
    const float* xr = xn + r * stride;
    float* yr = y + r * stride;
    if (w.begin < 0) runsNormalize(xr + w.begin, yr + w.begin, std::size_t(-w.begin), p[0], relu);
    runsNormalize(xr, yr, std::size_t(w.end), p[1], relu);
  }
  return xs ? runsMoments(xs, runLen, runs, stride, hint) : Moments{};
}

GradSums runsGradSums(const float* dy, const float* x, std::size_t runLen, std::size_t runs,
                      std::size_t stride, ChannelAffine p, bool relu) {
  GradSums s;
  for (std::size_t r = 0; r < runs; ++r)
    for (std::size_t i = 0; i < runLen; ++i) {
      const std::size_t k = r * stride + i;
      const double xc = centered(x[k], p);
      const double g = maskedDy(dy[k], xc, p, relu);
      s.sumDy += g;
      s.sumDyXc += g * xc;
    }
  return s;
}

void runGradSums(const float* dy, const float* x, std::size_t runLen, std::size_t runs, std::size_t samples,
                 std::size_t sampleStride, const ChannelAffine* p, bool relu, float*, GradSums* sums,
                 SampleHook hook) {
  for (std::size_t s = 0; s < samples; ++s) {
    for (std::size_t r = 0; r < runs; ++r) {
      const std::size_t o = s * sampleStride + r * runLen;
      const GradSums t = runsGradSums(dy + o, x + o, runLen, 1, runLen, p[r], relu);
      sums[r].sumDy += t.sumDy;
      sums[r].sumDyXc += t.sumDyXc;
    }
    if (hook.after) hook.after(hook.ctx, s);
  }
}

void runsGradApply(const float* dy, const float* x, float* dx, std::size_t len, ChannelAffine p, ChannelGrad g,
                   bool relu) {
  for (std::size_t i = 0; i < len; ++i) {
    const double xc = centered(x[i], p);
    dx[i] = float(double(g.a) * maskedDy(dy[i], xc, p, relu) + double(g.b) * xc + g.c);
  }
}

void spanGradApply(const float* dy, const float* x, float* dx, std::size_t runLen, std::size_t runs,
                   const ChannelAffine* p, const ChannelGrad* g, std::size_t c0, std::size_t c, bool relu, bool) {
  for (std::size_t r = 0, ch = c0; r < runs; ++r, ch = ch + 1 == c ? 0 : ch + 1) {
    const std::size_t o = r * runLen;
    runsGradApply(dy + o, x + o, dx + o, runLen, p[ch], g[ch], relu);
  }
}

ChannelAffine channelOf(const RowsAffine& p, std::size_t ch) {
  return {p.meanHi[ch], p.meanLo[ch], p.scale[ch], p.shift[ch], 0.0f};  // the spec does not fold
}

// The two-pass of runsMoments, row by row (a column walk per channel would
// read the block c times); exact, so it needs no shift to try.
void rowsMoments(const float* x, std::size_t rows, std::size_t c, float*, double count,
                 double* mean, double* m2, const float*) {
  std::vector<double> blockMean(c, 0.0), dsum(c, 0.0), q(c, 0.0);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t ch = 0; ch < c; ++ch) blockMean[ch] += x[r * c + ch];
  for (double& m : blockMean) m /= double(rows);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t ch = 0; ch < c; ++ch) {
      const double d = x[r * c + ch] - blockMean[ch];
      dsum[ch] += d;
      q[ch] += d * d;
    }
  for (std::size_t ch = 0; ch < c; ++ch) {
    const Moments m = chanMerge({count, mean[ch], m2[ch]}, fromDeviations(double(rows), blockMean[ch], dsum[ch], q[ch]));
    mean[ch] = m.mean;
    m2[ch] = m.m2;
  }
}

void rowsNormalize(const float* x, float* y, std::size_t rows, std::size_t c, RowsAffine p,
                   bool relu, bool) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t ch = 0; ch < c; ++ch) runsNormalize(x + r * c + ch, y + r * c + ch, 1, channelOf(p, ch), relu);
}

void rowsGradSums(const float* dy, const float* x, std::size_t rows, std::size_t c, RowsAffine p,
                  bool relu, float*, double* sumDy, double* sumDyXc) {
  for (std::size_t ch = 0; ch < c; ++ch) {
    const GradSums s = runsGradSums(dy + ch, x + ch, 1, rows, c, channelOf(p, ch), relu);
    sumDy[ch] += s.sumDy;
    sumDyXc[ch] += s.sumDyXc;
  }
}

void rowsGradApply(const float* dy, const float* x, float* dx, std::size_t rows, std::size_t c,
                   RowsAffine p, RowsGrad g, bool relu, bool) {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t ch = 0; ch < c; ++ch) {
      const std::size_t k = r * c + ch;
      runsGradApply(dy + k, x + k, dx + k, 1, channelOf(p, ch), {g.a[ch], g.b[ch], g.c[ch], 0.0f}, relu);
    }
}

void fence() {}

void invstdOf(const double* m2, std::size_t n, double count, double eps, double* out) {
  for (std::size_t i = 0; i < n; ++i) out[i] = channelInvstd(m2[i], count, eps);
}

double probeRead(const float* x, std::size_t n) {
  double s = 0;
  for (std::size_t i = 0; i < n; ++i) s += x[i];
  return s;
}

void probeCopy(const float* x, float* y, std::size_t n, bool) {
  for (std::size_t i = 0; i < n; ++i) y[i] = x[i];
}

void probeTriad(const float* a, const float* b, float* out, std::size_t n, bool) {
  for (std::size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace

const KernelTable& table() {
  static const KernelTable t{"scalar",      false,         1,         runsMoments,   runsMomentsNormalizing, runSums, runsGradSums, runGradSums, spanNormalize,
                             spanGradApply, rowsMoments,   rowsNormalize, rowsGradSums,
                             rowsGradApply, fence,         invstdOf,      probeRead,
                             probeCopy,     probeTriad};
  return t;
}

}  // namespace scalar
}  // namespace rebatch
