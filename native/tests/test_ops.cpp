// Every op against the float64 reference, for every ISA compiled in and
// supported here, thread counts 1 and 2, both layouts, ghost batches and ReLU.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "check.h"
#include "configurations.h"
#include "rebatch/isa.h"
#include "rebatch/ops.h"
#include "rebatch/thread_pool.h"
#include "reference.h"

using namespace rebatch;

namespace {

struct Shape {
  std::size_t n, c, spatial;
};

// N = 1 with spatial dims, C = 1, C not a multiple of 8, odd spatial sizes,
// (N, C) without spatial dims, runs longer than a block, large N*H*W; groups
// of fewer than 256 values per channel take the float64 statistics kernels,
// so the last two shapes of the first rows repeat earlier ones with enough
// values for SIMD. The last row: channels-last rows of two to eight whole
// vectors (AVX2 and NEON), which the row kernels walk with their parameters
// in registers.
const std::vector<Shape> kShapes = {
    {1, 3, 49},  {4, 1, 100}, {3, 5, 7},   {6, 11, 1},   {16, 9, 1},    {2, 17, 33},
    {5, 8, 1025}, {2, 3, 4101}, {64, 64, 1}, {32, 13, 9}, {3, 300, 5},  {2, 5, 33153},
    {300, 7, 1}, {8, 20, 64}, {321, 64, 1}, {64, 300, 5},
    {9, 16, 129}, {7, 24, 131}, {6, 32, 130}, {5, 12, 140}};

std::string describe(const TensorDims& d, const char* isa, std::size_t threads, bool relu) {
  return testing::describeRun(d, isa, threads) + " groupSize=" + std::to_string(d.groupSize) + (relu ? " relu" : "");
}

template <class F>
void forEveryConfiguration(F&& body) {
  testing::forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (const Shape& s : kShapes)
      for (Layout layout : {Layout::NCHW, Layout::NHWC})
        for (std::size_t groupSize : {std::size_t(0), std::size_t(2), std::size_t(3)}) {
          if (groupSize && s.n < 4) continue;
          TensorDims d{s.n, s.c, s.spatial, layout, groupSize};
          body(d, isa, threads);
        }
  });
}

bool allNear(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol,
             const std::string& what) {
  return testing::allNear(got.data(), want, rtol, atol, what);
}

}  // namespace

// Runs first, before any selectIsa call, so it sees the ISA chosen at startup.
// Also prints which ISAs this binary exercises (shown by ctest -V or on failure).
TEST(default_isa_is_the_best_supported_here) {
  std::string list;
  for (const char* isa : testing::isas()) list += std::string(list.empty() ? "" : " ") + isa;
  std::printf("ISAs under test: %s; active at startup: %s\n", list.c_str(), activeIsa());
  CHECK(isaSupported("scalar"));
#if defined(__aarch64__)
  CHECK(isaSupported("neon"));
  CHECK(!isaSupported("avx2"));
  const char* best = "neon";
#elif defined(__x86_64__) || defined(_M_X64)
  CHECK(!isaSupported("neon"));
  const char* best = isaSupported("avx2") ? "avx2" : "scalar";
#else
  const char* best = "scalar";
#endif
  const char* wanted = std::getenv("REBATCH_ISA");
  if (wanted && *wanted) {
    if (isaSupported(wanted)) {
      CHECK(std::strcmp(activeIsa(), wanted) == 0);
      CHECK(std::strcmp(isaNote(), "") == 0);
    } else {
      CHECK(std::strcmp(activeIsa(), best) == 0);
      CHECK(std::strcmp(isaNote(), "") != 0);
    }
  } else {
    CHECK(std::strcmp(activeIsa(), best) == 0);
    CHECK(std::strcmp(isaNote(), "") == 0);
  }
}

TEST(moments_match_float64_reference) {
  forEveryConfiguration([](const TensorDims& d, const char* isa, std::size_t threads) {
    const auto x = ref::randomFloats(d.elements(), d.n * 31 + d.c, -3, 5);
    const ref::Stats want = ref::moments(x, d);
    std::vector<double> mean(d.groups() * d.c), m2(d.groups() * d.c);
    CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
    for (std::size_t g = 0; g < d.groups(); ++g)
      for (std::size_t c = 0; c < d.c; ++c) {
        const std::size_t i = g * d.c + c;
        const double count = double(d.groupSamples(g) * d.spatial);
        if (!CHECK_NEAR(mean[i], want.mean[i], 1e-6, 1e-6) || !CHECK_NEAR(m2[i] / count, want.var[i], 1e-5, 1e-7)) {
          check::fail(__FILE__, __LINE__, describe(d, isa, threads, false));
          return;
        }
      }
  });
}

TEST(training_forward_and_backward_match_reference) {
  forEveryConfiguration([](const TensorDims& d, const char* isa, std::size_t threads) {
    for (bool relu : {false, true}) {
      const std::string what = describe(d, isa, threads, relu);
      const auto x = ref::randomFloats(d.elements(), d.n + 7 * d.c, -2, 3);
      const auto dy = ref::randomFloats(d.elements(), d.spatial + 11);
      const auto w = ref::randomFloats(d.c, 3, 0.5f, 1.5f), b = ref::randomFloats(d.c, 4, -0.5f, 0.5f);
      std::vector<float> y(x.size());
      std::vector<double> mean(d.groups() * d.c), invstd(d.groups() * d.c);
      const Status s = batchNormTraining(x.data(), y.data(), d, w.data(), b.data(), 1e-5, relu, mean.data(), invstd.data());
      bool singleValue = false;
      for (std::size_t g = 0; g < d.groups(); ++g) singleValue |= d.groupSamples(g) * d.spatial < 2;
      if (singleValue) {
        CHECK(!s.ok());
        return;
      }
      if (!CHECK(s.ok())) return;
      const ref::Stats st = ref::moments(x, d);
      std::vector<double> wantInvstd(st.var.size());
      for (std::size_t i = 0; i < st.var.size(); ++i) {
        wantInvstd[i] = 1 / std::sqrt(st.var[i] + 1e-5);
        if (!CHECK_NEAR(mean[i], st.mean[i], 1e-6, 1e-6) || !CHECK_NEAR(invstd[i], wantInvstd[i], 1e-5, 0)) {
          check::fail(__FILE__, __LINE__, what);
          return;
        }
      }
      if (!allNear(y, ref::forward(x, d, st.mean, wantInvstd, w.data(), b.data(), relu), 1e-5, 2e-5, what + " y")) return;

      const ref::Grads want = ref::backward(dy, x, d, st.mean, wantInvstd, w.data(), b.data(), relu, true);
      std::vector<float> dx(x.size()), dw(d.c), db(d.c);
      CHECK(batchNormBackward(dy.data(), x.data(), dx.data(), d, mean.data(), invstd.data(), w.data(), b.data(), relu,
                              true, dw.data(), db.data()).ok());
      double scale = 0;
      for (double v : want.dx) scale = std::max(scale, std::fabs(v));
      if (!allNear(dx, want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx")) return;
      const double count = double(d.elements() / d.c);
      allNear(dw, want.dweight, 1e-4, 1e-6 * count, what + " dweight");
      allNear(db, want.dbias, 1e-4, 1e-6 * count, what + " dbias");
    }
  });
}

TEST(forward_and_backward_with_given_statistics_match_reference) {
  forEveryConfiguration([](const TensorDims& d, const char* isa, std::size_t threads) {
    for (bool relu : {false, true}) {
      const std::string what = describe(d, isa, threads, relu);
      const auto x = ref::randomFloats(d.elements(), d.c + 5, -2, 3);
      const auto dy = ref::randomFloats(d.elements(), d.n + 9);
      const auto meanF = ref::randomFloats(d.groups() * d.c, 21, -0.5f, 0.5f);
      const auto varF = ref::randomFloats(d.groups() * d.c, 22, 0.2f, 2.0f);
      std::vector<double> mean(meanF.begin(), meanF.end()), var(varF.begin(), varF.end()), invstd(var.size());
      CHECK(invstdFromVariance(var.data(), var.size(), 1e-3, invstd.data()).ok());
      const float* w = d.c % 2 ? nullptr : ref::randomFloats(d.c, 5).data();
      const auto wv = ref::randomFloats(d.c, 5, 0.5f, 2.0f);
      w = d.c % 2 ? nullptr : wv.data();  // odd C: no weight, exercising the null default
      for (std::size_t i = 0; i < var.size(); ++i)
        if (!CHECK(invstd[i] == 1.0 / std::sqrt(var[i] + 1e-3))) return (void)check::fail(__FILE__, __LINE__, what + " invstd");
      std::vector<float> y(x.size());
      CHECK(batchNormWithStats(x.data(), y.data(), d, mean.data(), invstd.data(), w, nullptr, relu).ok());
      if (!allNear(y, ref::forward(x, d, mean, invstd, w, nullptr, relu), 1e-5, 2e-5, what + " y")) return;
      // From the variance: the same invstd and the same y, bit for bit.
      std::vector<float> yv(x.size());
      std::vector<double> invstdOut(var.size());
      CHECK(batchNormWithVariance(x.data(), yv.data(), d, mean.data(), var.data(), 1e-3, w, nullptr, relu,
                                  invstdOut.data()).ok());
      if (!CHECK(invstdOut == invstd && yv == y)) return (void)check::fail(__FILE__, __LINE__, what + " from variance");
      const ref::Grads want = ref::backward(dy, x, d, mean, invstd, w, nullptr, relu, false);
      std::vector<float> dx(x.size()), dw(d.c), db(d.c);
      CHECK(batchNormBackward(dy.data(), x.data(), dx.data(), d, mean.data(), invstd.data(), w, nullptr, relu, false,
                              dw.data(), db.data()).ok());
      const double count = double(d.elements() / d.c);
      allNear(dx, want.dx, 1e-5, 1e-6, what + " dx");
      allNear(dw, want.dweight, 1e-4, 1e-6 * count, what + " dweight");
      allNear(db, want.dbias, 1e-4, 1e-6 * count, what + " dbias");
    }
  });
}

// From kMeasuredStoresMinBytes touched, elementwise passes time their calls
// and use the faster of plain and non-temporal stores, trying the other arm
// from their 128th call (store_arms.h): 160 calls of each pass run both arms
// (no other test makes passes this large), with the best ISA here, and every
// call must give the same bits, matching the float64 reference.
TEST(measured_store_choice_keeps_outputs) {
  CHECK(selectIsa(testing::isas().back()));
  setNumThreads(1);
  for (Layout layout : {Layout::NCHW, Layout::NHWC}) {
    const TensorDims d{4, 24, 24600, layout, 0};  // 9.4 MB: 18.9 MB touched by the forward, 28 by dx
    const std::string what = layout == Layout::NCHW ? "NCHW" : "NHWC";
    const auto x = ref::randomFloats(d.elements(), 31, -2, 3);
    const auto dy = ref::randomFloats(d.elements(), 32);
    std::vector<double> mean(d.c), invstd(d.c), ga(d.c, 0.5), gb(d.c, -0.25), gc(d.c, 0.125);
    for (std::size_t c = 0; c < d.c; ++c) mean[c] = 0.5 - 0.01 * double(c), invstd[c] = 0.8 + 0.02 * double(c);
    std::vector<float> first(x.size()), y(x.size());
    CHECK(batchNormWithStats(x.data(), first.data(), d, mean.data(), invstd.data(), nullptr, nullptr, false).ok());
    if (!allNear(first, ref::forward(x, d, mean, invstd, nullptr, nullptr, false), 1e-5, 2e-5, what + " y")) continue;
    bool same = true;
    for (int call = 1; call < 160 && same; ++call) {
      std::fill(y.begin(), y.end(), -1.0f);
      CHECK(batchNormWithStats(x.data(), y.data(), d, mean.data(), invstd.data(), nullptr, nullptr, false).ok());
      same = y == first;
    }
    if (!CHECK(same)) check::fail(__FILE__, __LINE__, what + ": y changed between calls");
    CHECK(batchNormGradApply(dy.data(), x.data(), first.data(), d, mean.data(), ga.data(), gb.data(), gc.data()).ok());
    for (std::size_t i = 0; i < x.size(); i += 997) {
      const std::size_t c = layout == Layout::NCHW ? i / d.spatial % d.c : i % d.c;
      const double want = ga[c] * dy[i] + gb[c] * (double(x[i]) - mean[c]) + gc[c];
      if (!CHECK_NEAR(first[i], want, 1e-5, 1e-6)) break;
    }
    same = true;
    for (int call = 1; call < 160 && same; ++call) {
      std::fill(y.begin(), y.end(), -1.0f);
      CHECK(batchNormGradApply(dy.data(), x.data(), y.data(), d, mean.data(), ga.data(), gb.data(), gc.data()).ok());
      same = y == first;
    }
    if (!CHECK(same)) check::fail(__FILE__, __LINE__, what + ": dx changed between calls");
  }
  selectIsa("scalar");
  setNumThreads(2);
}

TEST(backward_halves_match_reference) {
  // batchNormGradSums + batchNormGradApply with the training coefficients is the
  // training backward; the apply with arbitrary coefficients is a*dy + b*(x - mean) + c.
  forEveryConfiguration([](const TensorDims& d, const char* isa, std::size_t threads) {
    const std::string what = describe(d, isa, threads, false);
    const auto x = ref::randomFloats(d.elements(), d.c * 3 + d.n, -2, 3);
    const auto dy = ref::randomFloats(d.elements(), d.spatial + 17);
    const auto w = ref::randomFloats(d.c, 6, 0.5f, 1.5f);
    const ref::Stats st = ref::moments(x, d);
    const std::size_t gc = d.groups() * d.c;
    std::vector<double> invstd(gc);
    for (std::size_t i = 0; i < gc; ++i) invstd[i] = 1 / std::sqrt(st.var[i] + 1e-5);
    std::vector<double> sumDy(gc), sumDyXhat(gc);
    if (!CHECK(batchNormGradSums(dy.data(), x.data(), d, st.mean.data(), invstd.data(), sumDy.data(), sumDyXhat.data()).ok())) return;
    std::vector<double> a(gc), b(gc), c(gc), ra(gc), rb(gc), rc(gc);
    const auto rand = ref::randomFloats(3 * gc, 77, -1, 1);
    for (std::size_t g = 0; g < d.groups(); ++g)
      for (std::size_t ch = 0; ch < d.c; ++ch) {
        const std::size_t i = g * d.c + ch;
        double s1 = 0, s2 = 0;
        for (std::size_t n = d.groupBegin(g); n < d.groupBegin(g) + d.groupSamples(g); ++n)
          for (std::size_t sp = 0; sp < d.spatial; ++sp) {
            const std::size_t k = ref::index(d, n, ch, sp);
            s1 += dy[k];
            s2 += dy[k] * (x[k] - st.mean[i]) * invstd[i];
          }
        const double count = double(d.groupSamples(g) * d.spatial);
        if (!CHECK_NEAR(sumDy[i], s1, 1e-5, 1e-6 * count) || !CHECK_NEAR(sumDyXhat[i], s2, 1e-5, 1e-6 * count)) {
          check::fail(__FILE__, __LINE__, what);
          return;
        }
        a[i] = w[ch] * invstd[i];
        b[i] = -a[i] * invstd[i] * sumDyXhat[i] / count;
        c[i] = -a[i] * sumDy[i] / count;
        ra[i] = rand[i], rb[i] = rand[gc + i], rc[i] = rand[2 * gc + i];
      }
    std::vector<float> dx(x.size());
    CHECK(batchNormGradApply(dy.data(), x.data(), dx.data(), d, st.mean.data(), a.data(), b.data(), c.data()).ok());
    const ref::Grads want = ref::backward(dy, x, d, st.mean, invstd, w.data(), nullptr, false, true);
    double scale = 0;
    for (double v : want.dx) scale = std::max(scale, std::fabs(v));
    if (!allNear(dx, want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx via halves")) return;
    CHECK(batchNormGradApply(dy.data(), x.data(), dx.data(), d, st.mean.data(), ra.data(), rb.data(), rc.data()).ok());
    std::vector<double> direct(x.size());
    for (std::size_t n = 0; n < d.n; ++n)
      for (std::size_t ch = 0; ch < d.c; ++ch)
        for (std::size_t sp = 0; sp < d.spatial; ++sp) {
          const std::size_t k = ref::index(d, n, ch, sp), i = ref::groupOf(d, n) * d.c + ch;
          direct[k] = ra[i] * dy[k] + rb[i] * (x[k] - st.mean[i]) + rc[i];
        }
    allNear(dx, direct, 1e-5, 1e-5, what + " a*dy + b*(x - mean) + c");
  });
}

TEST(large_mean_offset_keeps_variance_accurate) {
  // |mean| / std = 1e4: the variance must stay within 1e-5 relative of float64.
  for (const char* isa : testing::isas()) {
    selectIsa(isa);
    // 64 channels by 1000 rows: channels-last walks its rows in memory order, in flushes of 128 rows.
    for (const auto& [n, c, spatial, layout] : {std::tuple{8, 3, 1000, Layout::NCHW}, {8, 3, 1000, Layout::NHWC},
                                                {4, 64, 250, Layout::NCHW}, {4, 64, 250, Layout::NHWC}}) {
      TensorDims d{std::size_t(n), std::size_t(c), std::size_t(spatial), layout, 0};
      auto x = ref::randomFloats(d.elements(), 99, -1.7f, 1.7f);  // std ~ 1
      for (auto& v : x) v += 1e4f;
      const ref::Stats want = ref::moments(x, d);
      std::vector<double> mean(d.c), m2(d.c), invstd(d.c);
      CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
      for (std::size_t c = 0; c < d.c; ++c) CHECK_NEAR(m2[c] / double(d.n * d.spatial), want.var[c], 1e-5, 0);
      std::vector<float> y(x.size());
      CHECK(batchNormTraining(x.data(), y.data(), d, nullptr, nullptr, 0, false, mean.data(), invstd.data()).ok());
      std::vector<double> wantInvstd(d.c);
      for (std::size_t c = 0; c < d.c; ++c) wantInvstd[c] = 1 / std::sqrt(want.var[c]);
      allNear(y, ref::forward(x, d, want.mean, wantInvstd, nullptr, nullptr, false), 0, 1e-4, std::string(isa) + " y");
    }
  }
  selectIsa("scalar");
}

TEST(known_vector_from_pytorch_issue_60528) {
  // x[n, c, l] = 4c + n + l + 1, shape [4, 3, 4]; BatchNorm1d(3), momentum 0.1.
  TensorDims d{4, 3, 4, Layout::NCHW, 0};
  std::vector<float> x(d.elements()), y(d.elements());
  for (std::size_t n = 0; n < 4; ++n)
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t l = 0; l < 4; ++l) x[(n * 3 + c) * 4 + l] = float(4 * c + n + l + 1);
  std::vector<double> mean(3), invstd(3), m2(3);
  CHECK(batchNormTraining(x.data(), y.data(), d, nullptr, nullptr, 1e-5, false, mean.data(), invstd.data()).ok());
  CHECK_NEAR(y[0], -1.8974, 0, 1e-4);
  CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
  std::vector<float> rm(3, 0.0f), rv(3, 1.0f);
  CHECK(updateRunningStats(rm.data(), rv.data(), 3, mean.data(), m2.data(), 16, 0.1).ok());
  CHECK_NEAR(rm[0], 0.4, 1e-6, 0);
  CHECK_NEAR(rv[0], 1.16667, 0, 1e-5);
}

TEST(errors_are_reported_before_any_work) {
  std::vector<float> x(12, 1.0f), y(12, 7.0f);
  std::vector<double> mean(12), invstd(12), m2(12);
  CHECK(!channelMoments(x.data(), TensorDims{0, 3, 4, Layout::NCHW, 0}, mean.data(), m2.data()).ok());
  CHECK(!channelMoments(x.data(), TensorDims{3, 0, 4, Layout::NCHW, 0}, mean.data(), m2.data()).ok());
  CHECK(!channelMoments(x.data(), TensorDims{3, 4, 0, Layout::NCHW, 0}, mean.data(), m2.data()).ok());
  // One value per channel in training: PyTorch's error, and y untouched.
  const Status s = batchNormTraining(x.data(), y.data(), TensorDims{1, 12, 1, Layout::NCHW, 0}, nullptr, nullptr, 1e-5,
                                     false, mean.data(), invstd.data());
  CHECK(!s.ok());
  CHECK(std::string(s.message).find("more than 1 value per channel") != std::string::npos);
  CHECK(y[0] == 7.0f);
  // A ghost batch of one sample without spatial dims is the same error.
  CHECK(!batchNormTraining(x.data(), y.data(), TensorDims{3, 4, 1, Layout::NCHW, 2}, nullptr, nullptr, 1e-5, false,
                           mean.data(), invstd.data()).ok());
  CHECK(!batchNormGradSums(x.data(), x.data(), TensorDims{0, 3, 4, Layout::NCHW, 0}, mean.data(), invstd.data(), mean.data(),
                           m2.data()).ok());
  CHECK(!batchNormGradApply(x.data(), x.data(), nullptr, TensorDims{3, 4, 1, Layout::NCHW, 0}, mean.data(), mean.data(),
                            mean.data(), mean.data()).ok());
  // From a variance: invstd and y untouched on a bad eps or a null input.
  std::vector<double> invstdOut(12, 7.0);
  CHECK(!batchNormWithVariance(x.data(), y.data(), TensorDims{3, 4, 1, Layout::NCHW, 0}, mean.data(), m2.data(), -1,
                               nullptr, nullptr, false, invstdOut.data()).ok());
  CHECK(!batchNormWithVariance(nullptr, y.data(), TensorDims{3, 4, 1, Layout::NCHW, 0}, mean.data(), m2.data(), 1e-5,
                               nullptr, nullptr, false, invstdOut.data()).ok());
  CHECK(invstdOut[0] == 7.0 && y[0] == 7.0f);
  std::vector<float> rm(3), rv(3);
  CHECK(!updateRunningStats(rm.data(), rv.data(), 3, mean.data(), m2.data(), 1, 0.1).ok());
  CHECK(!updateRunningStats(rm.data(), rv.data(), 3, mean.data(), m2.data(), 4, 1.5).ok());
}

// A float array of n values starting `offset` floats past a cache line, the
// floats around it set to `fill` (so that writes outside it show).
class LineOffsetFloats {
 public:
  LineOffsetFloats(std::size_t n, std::size_t offset, float fill = 7.0f) : n_(n), storage_(n + 48, fill) {
    const auto at = reinterpret_cast<std::uintptr_t>(storage_.data());
    data_ = storage_.data() + ((64 - at % 64) % 64) / sizeof(float) + offset;
  }
  float* data() { return data_; }
  void assign(const std::vector<float>& v) { std::copy(v.begin(), v.end(), data_); }
  // Whether every float outside the array still holds `fill`.
  bool untouchedAround(float fill = 7.0f) const {
    for (std::size_t i = 0; i < storage_.size(); ++i)
      if ((storage_.data() + i < data_ || storage_.data() + i >= data_ + n_) && storage_[i] != fill) return false;
    return true;
  }

 private:
  std::size_t n_;
  std::vector<float> storage_;
  float* data_;
};

TEST(tensors_at_every_offset_match_reference) {
  // Rows of whole vectors whose first float is not vector-aligned are walked
  // from the first aligned one, the row left over gathered apart (nhwc.cpp);
  // NCHW spans place their vectors from the output's first aligned float
  // (spanRuns), so that runs straddle vectors (the last three cases).
  // Every offset within a cache line, x, dy and the outputs sharing it (as
  // Node's buffers do) or not, in place; rows in several chunks (300 x 512)
  // and units (17000 x 16), one unit from L2 (200 x 512), two or three rows,
  // ghost groups (a ragged one),
  // ReLU; the grad sums walk so from kAlignedSumsMinRows rows, the rest from
  // kAlignedWalkMinRows; the moments (which walk as they are) at every offset too.
  struct Case {
    Shape shape;
    Layout layout;
    std::size_t groupSize;
  };
  const std::vector<Case> cases = {{{2, 8, 1}, Layout::NCHW, 0},      {{3, 16, 1}, Layout::NCHW, 0},
                                   {{7, 24, 3}, Layout::NHWC, 2},     {{300, 512, 1}, Layout::NCHW, 0},
                                   {{5, 64, 41}, Layout::NHWC, 2},    {{9, 136, 7}, Layout::NHWC, 3},
                                   {{17000, 16, 1}, Layout::NCHW, 0}, {{4, 32, 2}, Layout::NHWC, 2},
                                   {{6, 32, 100}, Layout::NHWC, 2},   {{4, 64, 160}, Layout::NHWC, 3},
                                   {{200, 512, 1}, Layout::NCHW, 0},  {{16, 16, 64}, Layout::NCHW, 0},
                                   {{3, 5, 37}, Layout::NCHW, 0},     {{6, 8, 200}, Layout::NCHW, 2}};
  testing::forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (const Case& k : cases) {
      const TensorDims d{k.shape.n, k.shape.c, k.shape.spatial, k.layout, k.groupSize};
      const std::size_t n = d.elements(), gc = d.groups() * d.c;
      const auto xv = ref::randomFloats(n, d.c + 3, -2, 3), dyv = ref::randomFloats(n, d.n + 5);
      const auto w = ref::randomFloats(d.c, 3, 0.5f, 1.5f), b = ref::randomFloats(d.c, 4, -0.5f, 0.5f);
      const ref::Stats st = ref::moments(xv, d);
      std::vector<double> wantInvstd(gc);
      for (std::size_t i = 0; i < gc; ++i) wantInvstd[i] = 1 / std::sqrt(st.var[i] + 1e-5);
      for (bool relu : {false, true}) {
        const std::vector<double> wantY = ref::forward(xv, d, st.mean, wantInvstd, w.data(), b.data(), relu);
        const ref::Grads want = ref::backward(dyv, xv, d, st.mean, wantInvstd, w.data(), b.data(), relu, true);
        double scale = 0;
        for (double v : want.dx) scale = std::max(scale, std::fabs(v));
        const std::size_t step = n > 100000 ? 5 : 1;
        for (std::size_t offset = 0; offset < 16; offset += step)
          for (bool shared : {true, false}) {
            const std::string what = describe(d, isa, threads, relu) + " offset=" + std::to_string(offset) +
                                     (shared ? " shared" : " apart");
            LineOffsetFloats x(n, offset), dy(n, shared ? offset : (offset + 3) % 16);
            LineOffsetFloats y(n, shared ? offset : (offset + 5) % 16), dx(n, shared ? offset : (offset + 9) % 16);
            x.assign(xv), dy.assign(dyv);
            std::vector<double> mean(gc), invstd(gc), m2(gc);
            std::vector<float> dw(d.c), db(d.c);
            CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
            for (std::size_t i = 0; i < gc; ++i) {
              const double count = double(d.groupSamples(i / d.c) * d.spatial);
              if (!CHECK_NEAR(mean[i], st.mean[i], 1e-6, 1e-6) || !CHECK_NEAR(m2[i] / count, st.var[i], 1e-5, 1e-7))
                return check::fail(__FILE__, __LINE__, what + " moments"), void();
            }
            CHECK(batchNormTraining(x.data(), y.data(), d, w.data(), b.data(), 1e-5, relu, mean.data(), invstd.data()).ok());
            if (!testing::allNear(y.data(), wantY, 1e-5, 2e-5, what + " y") || !CHECK(y.untouchedAround())) return;
            CHECK(batchNormWithStats(x.data(), y.data(), d, mean.data(), invstd.data(), w.data(), b.data(), relu).ok());
            if (!testing::allNear(y.data(), ref::forward(xv, d, mean, invstd, w.data(), b.data(), relu), 1e-5, 2e-5,
                                  what + " eval y"))
              return;
            CHECK(batchNormBackward(dy.data(), x.data(), dx.data(), d, mean.data(), invstd.data(), w.data(), b.data(),
                                    relu, true, dw.data(), db.data()).ok());
            if (!testing::allNear(dx.data(), want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx") ||
                !CHECK(dx.untouchedAround()))
              return;
            const double count = double(d.elements() / d.c);
            if (!allNear(dw, want.dweight, 1e-4, 1e-6 * count, what + " dweight") ||
                !allNear(db, want.dbias, 1e-4, 1e-6 * count, what + " dbias"))
              return;
            if (!shared) continue;
            // In place: dx over dy, then y over x (the inputs last).
            CHECK(batchNormBackward(dy.data(), x.data(), dy.data(), d, mean.data(), invstd.data(), w.data(), b.data(),
                                    relu, true, dw.data(), db.data()).ok());
            if (!testing::allNear(dy.data(), want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx in place")) return;
            CHECK(batchNormWithStats(x.data(), x.data(), d, mean.data(), invstd.data(), w.data(), b.data(), relu).ok());
            if (!testing::allNear(x.data(), ref::forward(xv, d, mean, invstd, w.data(), b.data(), relu), 1e-5, 2e-5,
                                  what + " y in place") ||
                !CHECK(x.untouchedAround()) || !CHECK(dy.untouchedAround()))
              return;
          }
      }
    }
  });
}

TEST(results_do_not_depend_on_thread_count) {
  // Bit for bit, on every ISA: moments, the training forward (the pipelined
  // one for NCHW on ISAs with non-temporal stores: 345k elements) and the
  // backward, with one thread and with two.
  struct Outputs {
    std::vector<double> mean, m2, saveMean, invstd;
    std::vector<float> y, dx, dw, db;
    bool operator==(const Outputs& o) const {
      return mean == o.mean && m2 == o.m2 && saveMean == o.saveMean && invstd == o.invstd && y == o.y && dx == o.dx &&
             dw == o.dw && db == o.db;
    }
  };
  for (const char* isa : testing::isas())
    for (Layout layout : {Layout::NHWC, Layout::NCHW}) {
      CHECK(selectIsa(isa));
      const TensorDims d{16, 24, 31 * 29, layout, 0};
      const auto x = ref::randomFloats(d.elements(), 5), dy = ref::randomFloats(d.elements(), 6);
      Outputs out[2];
      for (std::size_t threads : {1, 2}) {
        setNumThreads(threads);
        Outputs& o = out[threads - 1];
        o.mean.resize(d.c), o.m2.resize(d.c), o.saveMean.resize(d.c), o.invstd.resize(d.c);
        o.y.resize(d.elements()), o.dx.resize(d.elements()), o.dw.resize(d.c), o.db.resize(d.c);
        CHECK(channelMoments(x.data(), d, o.mean.data(), o.m2.data()).ok());
        CHECK(batchNormTraining(x.data(), o.y.data(), d, nullptr, nullptr, 1e-5, true, o.saveMean.data(),
                                o.invstd.data()).ok());
        CHECK(batchNormBackward(dy.data(), x.data(), o.dx.data(), d, o.saveMean.data(), o.invstd.data(), nullptr,
                                nullptr, true, true, o.dw.data(), o.db.data()).ok());
      }
      if (!CHECK(out[0] == out[1])) check::fail(__FILE__, __LINE__, testing::describeRun(d, isa, 2));
    }
  selectIsa("scalar");
  setNumThreads(2);
}

CHECK_MAIN()
