// The SIMD kernels, written once over a small vector interface `V` and
// instantiated by each ISA's file inside its own namespace (rebatch::avx2,
// rebatch::neon), compiled with that ISA's flags only. V provides:
//   T, W (lanes), zero, set1, load, loadN (zeros past n), store, storeN,
//   firstN (zero lanes >= n), add, sub, fma(a, b, c) = a*b + c, reluOf (max with 0,
//   NaN kept), keepWherePositive(y, v) (v where !(y <= 0), else 0), hsum (in float64).
// Accuracy: each float32 lane sums at most kRunBlock / (4 W) or kMaxRowBlock
// terms before it is reduced in float64; the orchestrator merges blocks with Chan.
// This file has no include guard on purpose: it is included once per ISA namespace.

using T = V::T;
constexpr std::size_t W = V::W;

inline T centered(T x, T hi, T lo) { return V::sub(V::sub(x, hi), lo); }

Moments runsMoments(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride) {
  T s0 = V::zero(), s1 = s0, s2 = s0, s3 = s0;
  for (std::size_t r = 0; r < runs; ++r) {
    const float* p = x + r * stride;
    std::size_t i = 0;
    for (; i + 4 * W <= runLen; i += 4 * W) {
      s0 = V::add(s0, V::load(p + i));
      s1 = V::add(s1, V::load(p + i + W));
      s2 = V::add(s2, V::load(p + i + 2 * W));
      s3 = V::add(s3, V::load(p + i + 3 * W));
    }
    for (; i + W <= runLen; i += W) s0 = V::add(s0, V::load(p + i));
    if (i < runLen) s1 = V::add(s1, V::loadN(p + i, runLen - i));
  }
  const double n = double(runLen * runs);
  const float approxMean = float((V::hsum(s0) + V::hsum(s1) + V::hsum(s2) + V::hsum(s3)) / n);
  const T m = V::set1(approxMean);
  T d0 = V::zero(), d1 = d0, q0 = d0, q1 = d0;
  for (std::size_t r = 0; r < runs; ++r) {
    const float* p = x + r * stride;
    std::size_t i = 0;
    for (; i + 2 * W <= runLen; i += 2 * W) {
      const T a = V::sub(V::load(p + i), m);
      const T b = V::sub(V::load(p + i + W), m);
      d0 = V::add(d0, a);
      q0 = V::fma(a, a, q0);
      d1 = V::add(d1, b);
      q1 = V::fma(b, b, q1);
    }
    for (; i + W <= runLen; i += W) {
      const T a = V::sub(V::load(p + i), m);
      d0 = V::add(d0, a);
      q0 = V::fma(a, a, q0);
    }
    if (i < runLen) {
      const T a = V::firstN(V::sub(V::loadN(p + i, runLen - i), m), runLen - i);
      d1 = V::add(d1, a);
      q1 = V::fma(a, a, q1);
    }
  }
  const double dsum = V::hsum(d0) + V::hsum(d1);
  const double m2 = V::hsum(q0) + V::hsum(q1) - dsum * dsum / n;
  return {n, double(approxMean) + dsum / n, m2 > 0 ? m2 : 0};
}

void runsNormalize(const float* x, float* y, std::size_t runLen, std::size_t runs,
                   std::size_t stride, ChannelAffine p, bool relu) {
  const T hi = V::set1(p.meanHi), lo = V::set1(p.meanLo), s = V::set1(p.scale),
          b = V::set1(p.shift);
  for (std::size_t r = 0; r < runs; ++r) {
    const float* xs = x + r * stride;
    float* ys = y + r * stride;
    std::size_t i = 0;
    if (relu) {
      for (; i + W <= runLen; i += W)
        V::store(ys + i, V::reluOf(V::fma(centered(V::load(xs + i), hi, lo), s, b)));
      if (i < runLen)
        V::storeN(ys + i, V::reluOf(V::fma(centered(V::loadN(xs + i, runLen - i), hi, lo), s, b)),
                  runLen - i);
    } else {
      for (; i + W <= runLen; i += W)
        V::store(ys + i, V::fma(centered(V::load(xs + i), hi, lo), s, b));
      if (i < runLen)
        V::storeN(ys + i, V::fma(centered(V::loadN(xs + i, runLen - i), hi, lo), s, b), runLen - i);
    }
  }
}

// Upstream gradient after the fused ReLU: zero where the forward output was <= 0.
inline T maskedDy(T dy, T xc, T s, T b, bool relu) {
  return relu ? V::keepWherePositive(V::fma(xc, s, b), dy) : dy;
}

GradSums runsGradSums(const float* dy, const float* x, std::size_t runLen, std::size_t runs,
                      std::size_t stride, ChannelAffine p, bool relu) {
  const T hi = V::set1(p.meanHi), lo = V::set1(p.meanLo), s = V::set1(p.scale),
          b = V::set1(p.shift);
  T g0 = V::zero(), g1 = g0, h0 = g0, h1 = g0;
  for (std::size_t r = 0; r < runs; ++r) {
    const float* xs = x + r * stride;
    const float* ds = dy + r * stride;
    std::size_t i = 0;
    for (; i + 2 * W <= runLen; i += 2 * W) {
      const T xa = centered(V::load(xs + i), hi, lo), xb = centered(V::load(xs + i + W), hi, lo);
      const T ga = maskedDy(V::load(ds + i), xa, s, b, relu);
      const T gb = maskedDy(V::load(ds + i + W), xb, s, b, relu);
      g0 = V::add(g0, ga);
      h0 = V::fma(ga, xa, h0);
      g1 = V::add(g1, gb);
      h1 = V::fma(gb, xb, h1);
    }
    for (; i < runLen; i += W) {  // loadN zeros dy past the end, so those lanes add nothing
      const std::size_t k = runLen - i < W ? runLen - i : W;
      const T xa = centered(V::loadN(xs + i, k), hi, lo);
      const T ga = maskedDy(V::loadN(ds + i, k), xa, s, b, relu);
      g0 = V::add(g0, ga);
      h0 = V::fma(ga, xa, h0);
    }
  }
  return {V::hsum(g0) + V::hsum(g1), V::hsum(h0) + V::hsum(h1)};
}

void runsGradApply(const float* dy, const float* x, float* dx, std::size_t runLen,
                   std::size_t runs, std::size_t stride, ChannelAffine p, ChannelGrad g,
                   bool relu) {
  const T hi = V::set1(p.meanHi), lo = V::set1(p.meanLo), s = V::set1(p.scale),
          b = V::set1(p.shift);
  const T ga = V::set1(g.a), gb = V::set1(g.b), gc = V::set1(g.c);
  for (std::size_t r = 0; r < runs; ++r) {
    const float* xs = x + r * stride;
    const float* ds = dy + r * stride;
    float* out = dx + r * stride;
    std::size_t i = 0;
    for (; i + W <= runLen; i += W) {
      const T xc = centered(V::load(xs + i), hi, lo);
      const T d = maskedDy(V::load(ds + i), xc, s, b, relu);
      V::store(out + i, V::fma(ga, d, V::fma(gb, xc, gc)));
    }
    if (i < runLen) {
      const std::size_t k = runLen - i;
      const T xc = centered(V::loadN(xs + i, k), hi, lo);
      const T d = maskedDy(V::loadN(ds + i, k), xc, s, b, relu);
      V::storeN(out + i, V::fma(ga, d, V::fma(gb, xc, gc)), k);
    }
  }
}

// Channels-last kernels: vectors run across channels, one row at a time.

void rowsMoments(const float* x, std::size_t rows, std::size_t c, float* scratch, double* mean,
                 double* m2) {
  float* sum = scratch;
  float* approx = scratch + c;
  float* dsum = scratch + 2 * c;
  float* qsum = scratch + 3 * c;
  for (std::size_t ch = 0; ch < 4 * c; ++ch) scratch[ch] = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    std::size_t ch = 0;
    for (; ch + W <= c; ch += W) V::store(sum + ch, V::add(V::load(sum + ch), V::load(xr + ch)));
    if (ch < c)
      V::storeN(sum + ch, V::add(V::loadN(sum + ch, c - ch), V::loadN(xr + ch, c - ch)), c - ch);
  }
  const double n = double(rows);
  for (std::size_t ch = 0; ch < c; ++ch) approx[ch] = float(double(sum[ch]) / n);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    std::size_t ch = 0;
    for (; ch + W <= c; ch += W) {
      const T d = V::sub(V::load(xr + ch), V::load(approx + ch));
      V::store(dsum + ch, V::add(V::load(dsum + ch), d));
      V::store(qsum + ch, V::fma(d, d, V::load(qsum + ch)));
    }
    if (ch < c) {  // both loads are zero past c, so d is too
      const std::size_t k = c - ch;
      const T d = V::sub(V::loadN(xr + ch, k), V::loadN(approx + ch, k));
      V::storeN(dsum + ch, V::add(V::loadN(dsum + ch, k), d), k);
      V::storeN(qsum + ch, V::fma(d, d, V::loadN(qsum + ch, k)), k);
    }
  }
  for (std::size_t ch = 0; ch < c; ++ch) {
    const double d = dsum[ch];
    const double q = double(qsum[ch]) - d * d / n;
    mean[ch] = double(approx[ch]) + d / n;
    m2[ch] = q > 0 ? q : 0;
  }
}

void rowsNormalize(const float* x, float* y, std::size_t rows, std::size_t c, RowsAffine p,
                   bool relu) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    for (std::size_t ch = 0; ch < c; ch += W) {
      const std::size_t k = c - ch < W ? c - ch : W;
      const bool full = k == W;
      const T xv = full ? V::load(xr + ch) : V::loadN(xr + ch, k);
      const T hi = full ? V::load(p.meanHi + ch) : V::loadN(p.meanHi + ch, k);
      const T lo = full ? V::load(p.meanLo + ch) : V::loadN(p.meanLo + ch, k);
      const T s = full ? V::load(p.scale + ch) : V::loadN(p.scale + ch, k);
      const T b = full ? V::load(p.shift + ch) : V::loadN(p.shift + ch, k);
      T v = V::fma(centered(xv, hi, lo), s, b);
      if (relu) v = V::reluOf(v);
      if (full) V::store(yr + ch, v); else V::storeN(yr + ch, v, k);
    }
  }
}

void rowsGradSums(const float* dy, const float* x, std::size_t rows, std::size_t c, RowsAffine p,
                  bool relu, float* scratch, double* sumDy, double* sumDyXc) {
  float* g = scratch;
  float* h = scratch + c;
  for (std::size_t ch = 0; ch < 2 * c; ++ch) scratch[ch] = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    const float* dr = dy + r * c;
    for (std::size_t ch = 0; ch < c; ch += W) {
      const std::size_t k = c - ch < W ? c - ch : W;
      const T xc = centered(V::loadN(xr + ch, k), V::loadN(p.meanHi + ch, k), V::loadN(p.meanLo + ch, k));
      const T d = maskedDy(V::loadN(dr + ch, k), xc, V::loadN(p.scale + ch, k),
                           V::loadN(p.shift + ch, k), relu);
      V::storeN(g + ch, V::add(V::loadN(g + ch, k), d), k);
      V::storeN(h + ch, V::fma(d, xc, V::loadN(h + ch, k)), k);
    }
  }
  for (std::size_t ch = 0; ch < c; ++ch) {
    sumDy[ch] += g[ch];
    sumDyXc[ch] += h[ch];
  }
}

void rowsGradApply(const float* dy, const float* x, float* dx, std::size_t rows, std::size_t c,
                   RowsAffine p, RowsGrad g, bool relu) {
  for (std::size_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    const float* dr = dy + r * c;
    float* out = dx + r * c;
    for (std::size_t ch = 0; ch < c; ch += W) {
      const std::size_t k = c - ch < W ? c - ch : W;
      const T xc = centered(V::loadN(xr + ch, k), V::loadN(p.meanHi + ch, k), V::loadN(p.meanLo + ch, k));
      const T d = maskedDy(V::loadN(dr + ch, k), xc, V::loadN(p.scale + ch, k),
                           V::loadN(p.shift + ch, k), relu);
      V::storeN(out + ch, V::fma(V::loadN(g.a + ch, k), d, V::fma(V::loadN(g.b + ch, k), xc, V::loadN(g.c + ch, k))), k);
    }
  }
}

const KernelTable& simdTable() {
  static const KernelTable t{V::kName,      runsMoments,   runsNormalize, runsGradSums,
                             runsGradApply, rowsMoments,   rowsNormalize, rowsGradSums,
                             rowsGradApply};
  return t;
}
