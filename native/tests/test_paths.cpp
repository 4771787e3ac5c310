// Code paths that the shape-driven tests of test_ops.cpp do not reach:
// non-temporal output stores (forced for every size here, through
// REBATCH_STREAM_MIN_BYTES=0 set before the library first reads it), outputs
// and inputs at every alignment, NCHW runs that straddle vectors, and blocks
// whose means are far apart (the one-pass shifted moments must then fall back
// to the exact two-pass), for every ISA and thread counts 1 and 2. Tolerances
// are those of test_ops.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "configurations.h"
#include "kernels.h"
#include "rebatch/isa.h"
#include "rebatch/ops.h"
#include "rebatch/thread_pool.h"
#include "reference.h"

using namespace rebatch;

namespace {

const int kForceStreaming = [] {
#if defined(_WIN32)
  return _putenv_s("REBATCH_STREAM_MIN_BYTES", "0");
#else
  return setenv("REBATCH_STREAM_MIN_BYTES", "0", 1);
#endif
}();

std::string describe(const TensorDims& d, const char* isa, std::size_t threads, std::size_t shift) {
  return testing::describeRun(d, isa, threads) + " offset=" + std::to_string(shift);
}

using testing::allNear;
using testing::forEveryIsaAndThreads;

// The kernel tables built here that this CPU runs, for tests of single kernels.
std::vector<const KernelTable*> kernelTables() {
  std::vector<const KernelTable*> tables = {&scalar::table()};
#if defined(REBATCH_HAVE_AVX2)
  if (isaSupported("avx2")) tables.push_back(&avx2::table());
#endif
#if defined(REBATCH_HAVE_NEON)
  tables.push_back(&neon::table());
#endif
  return tables;
}

// channelMoments of x against the float64 reference, every group and channel
// (mean within 1e-6, variance within 1e-5 relative); false after a failure.
bool momentsMatchReference(const std::vector<float>& x, const TensorDims& d, const std::string& label) {
  const ref::Stats want = ref::moments(x, d);
  std::vector<double> mean(d.groups() * d.c), m2(d.groups() * d.c);
  CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
  for (std::size_t g = 0; g < d.groups(); ++g) {
    const double count = double(d.groupSamples(g) * d.spatial);
    for (std::size_t c = 0; c < d.c; ++c) {
      const std::size_t i = g * d.c + c;
      if (!CHECK_NEAR(mean[i], want.mean[i], 1e-6, 1e-6) || !CHECK_NEAR(m2[i] / count, want.var[i], 1e-5, 0))
        return check::fail(__FILE__, __LINE__, label);  // false
    }
  }
  return true;
}

}  // namespace

TEST(streamed_outputs_at_every_alignment_match_reference) {
  CHECK(kForceStreaming == 0);
  // Runs shorter than, equal to, and not a multiple of a vector; long runs; wide
  // channels-last rows (the row-major reductions).
  const std::vector<std::vector<std::size_t>> shapes = {
      {3, 5, 37}, {4, 16, 200}, {2, 8, 1031}, {5, 24, 7}, {2, 3, 8}, {6, 40, 3}, {64, 9, 1}, {3, 128, 7}, {70, 136, 1}};
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (const auto& s : shapes)
      for (Layout layout : {Layout::NCHW, Layout::NHWC})
        for (std::size_t shift : {0, 1, 3, 5}) {
          const TensorDims d{s[0], s[1], s[2], layout, 0};
          const std::string what = describe(d, isa, threads, shift);
          const std::size_t n = d.elements();
          // Inputs and outputs shift by different amounts, so no alignment is shared.
          auto xs = ref::randomFloats(n + 8, n + shift, -2, 3);
          auto dys = ref::randomFloats(n + 8, n + 2 * shift + 1);
          std::vector<float> ys(n + 8, 7.0f), dxs(n + 8, 7.0f);
          const float* x = xs.data() + (shift + 2) % 8;
          const float* dy = dys.data() + (shift + 5) % 8;
          float* y = ys.data() + shift;
          float* dx = dxs.data() + (shift + 1) % 8;
          const std::vector<float> xv(x, x + n), dyv(dy, dy + n);
          const auto w = ref::randomFloats(d.c, 3, 0.5f, 1.5f), b = ref::randomFloats(d.c, 4, -0.5f, 0.5f);
          std::vector<double> mean(d.c), invstd(d.c);
          for (bool relu : {false, true}) {
            if (!CHECK(batchNormTraining(x, y, d, w.data(), b.data(), 1e-5, relu, mean.data(), invstd.data()).ok()))
              return;
            const ref::Stats st = ref::moments(xv, d);
            std::vector<double> wantInvstd(d.c);
            for (std::size_t c = 0; c < d.c; ++c) wantInvstd[c] = 1 / std::sqrt(st.var[c] + 1e-5);
            if (!allNear(y, ref::forward(xv, d, st.mean, wantInvstd, w.data(), b.data(), relu), 1e-5, 2e-5, what + " y"))
              return;
            // Nothing written outside the output.
            for (std::size_t i = 0; i < ys.size(); ++i)
              if (ys.data() + i < y || ys.data() + i >= y + n) CHECK(ys[i] == 7.0f);
            CHECK(batchNormWithStats(x, y, d, mean.data(), invstd.data(), w.data(), b.data(), relu).ok());
            if (!allNear(y, ref::forward(xv, d, mean, invstd, w.data(), b.data(), relu), 1e-5, 2e-5, what + " eval y"))
              return;
            std::vector<float> dw(d.c), db(d.c);
            CHECK(batchNormBackward(dy, x, dx, d, mean.data(), invstd.data(), w.data(), b.data(), relu, true, dw.data(),
                                    db.data()).ok());
            const ref::Grads want = ref::backward(dyv, xv, d, mean, invstd, w.data(), b.data(), relu, true);
            double scale = 0;
            for (double v : want.dx) scale = std::max(scale, std::fabs(v));
            if (!allNear(dx, want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx")) return;
            for (std::size_t i = 0; i < dxs.size(); ++i)
              if (dxs.data() + i < dx || dxs.data() + i >= dx + n) CHECK(dxs[i] == 7.0f);
          }
        }
  });
}

TEST(blocks_with_far_apart_means_keep_the_variance_exact) {
  // Each sample's values sit 1000 apart with std ~1 inside a channel, so a
  // block's mean is a poor shift for the next block; and each channel starts
  // with outliers, so the mean of a block's first values is a poor shift too.
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (std::size_t spatial : {std::size_t(1), std::size_t(150), std::size_t(2500)})
      for (Layout layout : {Layout::NCHW, Layout::NHWC}) {
        const TensorDims d{spatial == 1 ? std::size_t(400) : std::size_t(6), 10, spatial, layout, 0};
        auto x = ref::randomFloats(d.elements(), 17, -1.7f, 1.7f);
        for (std::size_t n = 0; n < d.n; ++n)
          for (std::size_t c = 0; c < d.c; ++c)
            for (std::size_t s = 0; s < d.spatial; ++s) {
              float& v = x[ref::index(d, n, c, s)];
              v += 1000.0f * float(n % 5) + 10.0f * float(c);
              if (s < 16 && n == 0) v += 5000.0f;
            }
        if (!momentsMatchReference(x, d, describe(d, isa, threads, 0))) return;
      }
  });
}

TEST(channel_means_that_vary_by_sample_keep_the_moments_exact) {
  // Each sample shifts each channel by up to 1.5 (the values' own spread is
  // ~1): a shift found from one sample's values misses other samples' blocks,
  // and the moments must fall back without losing accuracy. Several units per
  // group (at 256 channels of 196 values, NCHW units are 20 samples, NHWC
  // units 1024 rows), one group and two.
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (Layout layout : {Layout::NCHW, Layout::NHWC})
      for (std::size_t groupSize : {std::size_t(0), std::size_t(24)}) {
        const TensorDims d{48, 256, 196, layout, groupSize};
        auto x = ref::randomFloats(d.elements(), 23, -1.7f, 1.7f);
        const auto offsets = ref::randomFloats(d.n * d.c, 29, -1.5f, 1.5f);
        for (std::size_t n = 0; n < d.n; ++n)
          for (std::size_t c = 0; c < d.c; ++c)
            for (std::size_t s = 0; s < d.spatial; ++s) x[ref::index(d, n, c, s)] += 3.0f + offsets[n * d.c + c];
        if (!momentsMatchReference(x, d, describe(d, isa, threads, 0))) return;
      }
  });
}

TEST(short_runs_reduce_in_memory_order_across_flushes) {
  // NCHW runs shorter than a block are reduced sample by sample in memory
  // order (runSums for the moments, runGradSums for the backward), each
  // channel's float32 lanes flushed to float64 every kFlushFloats values: these
  // shapes take two to seven flushes per channel (runs of 7, 33 and 100
  // floats), with ghost groups and the fused ReLU, and values far from zero
  // (|mean| / std up to 3e4) so the shifts and the mean's hi/lo split matter.
  struct Case {
    TensorDims d;
    bool relu;
    float lo, hi;  // the range of x
  };
  const std::vector<Case> cases = {
      {{300, 2, 7, Layout::NCHW, 0}, false, 40, 46},   {{40, 3, 33, Layout::NCHW, 0}, true, 40, 46},
      {{70, 5, 100, Layout::NCHW, 0}, false, 40, 46},  {{70, 5, 100, Layout::NCHW, 35}, true, 40, 46},
      {{96, 4, 33, Layout::NCHW, 48}, false, 40, 46},  {{40, 3, 33, Layout::NCHW, 0}, false, 1e4f, 1e4f + 1}};
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (const Case& t : cases) {
      const TensorDims& d = t.d;
      const std::string what = describe(d, isa, threads, 0) + (t.relu ? " relu" : "");
      const auto x = ref::randomFloats(d.elements(), d.n + d.spatial, t.lo, t.hi);
      const auto dy = ref::randomFloats(d.elements(), d.c + 5, -1.0f, 1.0f);
      const auto w = ref::randomFloats(d.c, 6, 0.5f, 1.5f), b = ref::randomFloats(d.c, 8, -0.5f, 0.5f);
      const ref::Stats st = ref::moments(x, d);
      const std::size_t stats = d.groups() * d.c;
      std::vector<double> mean(stats), m2(stats), invstd(stats);
      CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
      for (std::size_t i = 0; i < stats; ++i) {
        invstd[i] = 1 / std::sqrt(st.var[i] + 1e-5);
        if (!CHECK_NEAR(mean[i], st.mean[i], 1e-6, 1e-6) ||
            !CHECK_NEAR(m2[i] / double(d.samplesPerGroup() * d.spatial), st.var[i], 1e-5, 1e-7)) {
          check::fail(__FILE__, __LINE__, what + " moments");
          return;
        }
      }
      const ref::Grads want = ref::backward(dy, x, d, st.mean, invstd, w.data(), b.data(), t.relu, true);
      std::vector<float> dx(d.elements()), dw(d.c), db(d.c);
      CHECK(batchNormBackward(dy.data(), x.data(), dx.data(), d, st.mean.data(), invstd.data(), w.data(), b.data(),
                              t.relu, true, dw.data(), db.data()).ok());
      double scale = 0;
      for (double v : want.dx) scale = std::max(scale, std::fabs(v));
      const double count = double(d.elements() / d.c);
      if (!allNear(dx.data(), want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx")) return;
      if (!allNear(dw.data(), want.dweight, 1e-4, 1e-6 * count, what + " dweight")) return;
      if (!allNear(db.data(), want.dbias, 1e-4, 1e-6 * count, what + " dbias")) return;
    }
  });
}

TEST(small_groups_have_float64_statistics) {
  // Under 256 values per channel the statistics come from the float64
  // kernels on every ISA: the mean of 18 or 36 values near 0 is exact to
  // float64 rounding (the float32 SIMD sums were 1e-8 off), in both the
  // moments and the training forward, with and without ghost groups.
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (Layout layout : {Layout::NCHW, Layout::NHWC})
      for (std::size_t groupSize : {std::size_t(0), std::size_t(2)}) {
        const TensorDims d{4, 3, 9, layout, groupSize};
        auto x = ref::randomFloats(d.elements(), 23, -1.9f, 1.8f);
        const ref::Stats want = ref::moments(x, d);
        const std::size_t stats = d.groups() * d.c;
        std::vector<double> mean(stats), m2(stats), saveMean(stats), invstd(stats);
        std::vector<float> y(d.elements());
        CHECK(channelMoments(x.data(), d, mean.data(), m2.data()).ok());
        CHECK(batchNormTraining(x.data(), y.data(), d, nullptr, nullptr, 1e-5, false, saveMean.data(), invstd.data()).ok());
        for (std::size_t i = 0; i < stats; ++i)
          if (!CHECK_NEAR(mean[i], want.mean[i], 0, 1e-14) || !CHECK_NEAR(saveMean[i], want.mean[i], 0, 1e-14) ||
              !CHECK_NEAR(m2[i] / double(d.samplesPerGroup() * d.spatial), want.var[i], 1e-13, 0)) {
            check::fail(__FILE__, __LINE__, describe(d, isa, threads, 0));
            return;
          }
      }
  });
}

TEST(single_read_training_forwards_match_reference) {
  // NCHW tensors of 1 MiB and more read x from memory once in the training
  // forward on ISAs with non-temporal stores. Runs of 384 floats and more: the
  // pipelined forward, statistics of channel c while channel c - 1 is written,
  // whole cache lines each -- runs under kRunBlock (blocks of several samples,
  // a ragged last one), long runs (one run per block), runs that are not a
  // multiple of a line, channel ranges of 16 per unit with a ragged last one.
  // Shorter runs: the staged forward (on one thread, and here, streaming
  // forced, on two), a stage's statistics while the stage before is written
  // sample by sample, with statistics bit-identical to channelMoments' --
  // stages of 8 channels with a ragged last one, per-sample offsets 1000
  // apart that fail the blocks' first shifts, several units per channel.
  // Both: ghost groups with a ragged last group, outputs at every offset
  // within a line and in place.
  struct Case {
    TensorDims d;
    std::size_t yOffset;  // floats; the input sits at another offset, or in place
    bool inPlace;
    bool staged;  // statistics must equal channelMoments'
    bool offsets;  // sample n's values shifted by 1000 * (n % 5)
  };
  const std::vector<Case> cases = {
      {{24, 40, 400, Layout::NCHW, 0}, 0, false, false, false},
      {{24, 40, 400, Layout::NCHW, 0}, 13, false, false, false},
      {{4, 40, 1700, Layout::NCHW, 0}, 5, false, false, false},
      {{4, 40, 1700, Layout::NCHW, 0}, 8, true, false, false},
      {{2, 3, 50000, Layout::NCHW, 0}, 11, false, false, false},
      {{18, 33, 450, Layout::NCHW, 4}, 3, false, false, false},
      {{18, 33, 450, Layout::NCHW, 4}, 15, true, false, false},
      {{12, 37, 600, Layout::NCHW, 0}, 7, false, false, false},
      {{24, 56, 196, Layout::NCHW, 0}, 0, false, true, false},
      {{24, 56, 196, Layout::NCHW, 0}, 4, false, true, true},
      {{24, 56, 196, Layout::NCHW, 0}, 9, true, true, false},
      {{30, 52, 170, Layout::NCHW, 7}, 3, false, true, true},
      {{30, 52, 170, Layout::NCHW, 7}, 6, true, true, false},
      {{100, 20, 144, Layout::NCHW, 0}, 11, false, true, false}};
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (const Case& t : cases) {
      const TensorDims& d = t.d;
      const std::string what = describe(d, isa, threads, t.yOffset) + (t.inPlace ? " in place" : "");
      const std::size_t n = d.elements(), stats = d.groups() * d.c;
      auto xv = ref::randomFloats(n, n + t.yOffset, -2, 3);
      if (t.offsets)
        for (std::size_t i = 0; i < n; ++i) xv[i] += 1000.0f * float(i / (d.c * d.spatial) % 5);
      std::vector<float> ys(n + 32, 7.0f), xs(n + 32);
      float* y = ys.data() + t.yOffset;
      float* x = t.inPlace ? y : xs.data() + (t.yOffset + 6) % 16;
      std::copy(xv.begin(), xv.end(), x);
      const auto w = ref::randomFloats(d.c, 3, 0.5f, 1.5f), b = ref::randomFloats(d.c, 4, -0.5f, 0.5f);
      std::vector<double> mean(stats), invstd(stats);
      const bool relu = t.yOffset % 2 == 1;
      std::vector<double> momentsMean(stats), momentsM2(stats);
      if (t.staged && !CHECK(channelMoments(x, d, momentsMean.data(), momentsM2.data()).ok())) return;
      if (!CHECK(batchNormTraining(x, y, d, w.data(), b.data(), 1e-5, relu, mean.data(), invstd.data()).ok())) return;
      for (std::size_t i = 0; i < (t.staged ? stats : 0); ++i) {
        const double count = double(d.groupSamples(i / d.c) * d.spatial);
        if (!CHECK(mean[i] == momentsMean[i]) || !CHECK(invstd[i] == 1.0 / std::sqrt(momentsM2[i] / count + 1e-5)))
          return (void)check::fail(__FILE__, __LINE__, what + " statistics differ from channelMoments' at " + std::to_string(i));
      }
      if (t.staged && !t.inPlace) {  // the same normalization as with these statistics given, bit for bit
        std::vector<float> given(n);
        if (!CHECK(batchNormWithStats(x, given.data(), d, mean.data(), invstd.data(), w.data(), b.data(), relu).ok())) return;
        for (std::size_t i = 0; i < n; ++i)
          if (!CHECK(std::memcmp(&given[i], &y[i], sizeof(float)) == 0))
            return (void)check::fail(__FILE__, __LINE__, what + " y differs from batchNormWithStats' at " + std::to_string(i));
      }
      const ref::Stats st = ref::moments(xv, d);
      std::vector<double> wantInvstd(stats);
      for (std::size_t i = 0; i < stats; ++i) {
        wantInvstd[i] = 1 / std::sqrt(st.var[i] + 1e-5);
        if (!CHECK_NEAR(mean[i], st.mean[i], 1e-6, 1e-7) || !CHECK_NEAR(invstd[i], wantInvstd[i], 1e-5, 0))
          return (void)check::fail(__FILE__, __LINE__, what + " statistics of " + std::to_string(i));
      }
      if (!allNear(y, ref::forward(xv, d, st.mean, wantInvstd, w.data(), b.data(), relu), 1e-5, 2e-5, what + " y"))
        return;
      for (std::size_t i = 0; i < ys.size(); ++i)
        if (ys.data() + i < y || ys.data() + i >= y + n)
          if (!CHECK(ys[i] == 7.0f)) return (void)check::fail(__FILE__, __LINE__, what + " wrote outside y");
    }
  });
}

TEST(staged_backward_matches_reference_and_two_passes) {
  // NCHW short runs, with more threads and streaming (forced here): the
  // backward in stages of a few channels, dx of a stage written between the
  // samples of the next one's sums. Against the float64 reference, and bit for
  // bit against the two passes (one thread): the same sums, the same dx kernel.
  // Stages of 8 channels with a ragged last one, ghost groups with a ragged last
  // group, the fused ReLU, dx at several offsets within a line, dx in place of dy.
  struct Case {
    TensorDims d;
    std::size_t dxOffset;
    bool relu;
    bool inPlace;  // dx is dy
  };
  const std::vector<Case> cases = {{{24, 56, 196, Layout::NCHW, 0}, 0, false, false},
                                   {{24, 56, 196, Layout::NCHW, 0}, 5, true, false},
                                   {{30, 52, 170, Layout::NCHW, 7}, 3, true, false},
                                   {{30, 52, 170, Layout::NCHW, 7}, 9, false, true},
                                   {{100, 20, 144, Layout::NCHW, 0}, 11, false, false}};
  forEveryIsaAndThreads([&](const char* isa, std::size_t threads) {
    for (const Case& t : cases) {
      const TensorDims& d = t.d;
      const std::string what = describe(d, isa, threads, t.dxOffset) + (t.relu ? " relu" : "");
      const std::size_t n = d.elements(), stats = d.groups() * d.c;
      const auto x = ref::randomFloats(n, d.n + d.spatial, -2, 3);
      const auto dy = ref::randomFloats(n, d.c + 5, -1.0f, 1.0f);
      const auto w = ref::randomFloats(d.c, 6, 0.5f, 1.5f), b = ref::randomFloats(d.c, 8, -0.5f, 0.5f);
      const ref::Stats st = ref::moments(x, d);
      std::vector<double> invstd(stats);
      for (std::size_t i = 0; i < stats; ++i) invstd[i] = 1 / std::sqrt(st.var[i] + 1e-5);
      std::vector<float> dxs(n + 32, 7.0f), dw(d.c), db(d.c);
      float* dx = dxs.data() + t.dxOffset;
      if (t.inPlace) std::copy(dy.begin(), dy.end(), dx);
      if (!CHECK(batchNormBackward(t.inPlace ? dx : dy.data(), x.data(), dx, d, st.mean.data(), invstd.data(),
                                   w.data(), b.data(), t.relu, true, dw.data(), db.data()).ok()))
        return;
      const ref::Grads want = ref::backward(dy, x, d, st.mean, invstd, w.data(), b.data(), t.relu, true);
      double scale = 0;
      for (double v : want.dx) scale = std::max(scale, std::fabs(v));
      const double count = double(n / d.c);
      if (!allNear(dx, want.dx, 1e-4, 1e-4 * scale + 1e-6, what + " dx")) return;
      if (!allNear(dw.data(), want.dweight, 1e-4, 1e-6 * count, what + " dweight")) return;
      if (!allNear(db.data(), want.dbias, 1e-4, 1e-6 * count, what + " dbias")) return;
      for (std::size_t i = 0; i < dxs.size(); ++i)
        if ((dxs.data() + i < dx || dxs.data() + i >= dx + n) && !CHECK(dxs[i] == 7.0f))
          return (void)check::fail(__FILE__, __LINE__, what + " wrote outside dx");
      setNumThreads(1);
      std::vector<float> dx1(dy), dw1(d.c), db1(d.c);
      const bool ok = batchNormBackward(t.inPlace ? dx1.data() : dy.data(), x.data(), dx1.data(), d, st.mean.data(),
                                        invstd.data(), w.data(), b.data(), t.relu, true, dw1.data(), db1.data()).ok();
      setNumThreads(threads);
      if (!CHECK(ok)) return;
      if (!CHECK(std::memcmp(dx1.data(), dx, n * sizeof(float)) == 0) ||
          !CHECK(std::memcmp(dw1.data(), dw.data(), d.c * sizeof(float)) == 0) ||
          !CHECK(std::memcmp(db1.data(), db.data(), d.c * sizeof(float)) == 0))
        return (void)check::fail(__FILE__, __LINE__, what + " differs from the two passes on one thread");
    }
  });
}

TEST(pipeline_kernel_writes_its_line_windows) {
  // runsMomentsNormalizing: the moments are runsMoments' (bit for bit), and y
  // is written over each run's lineWindow only -- the floats before a run's
  // first with p[0], the rest with p[1] -- for every output offset in a line
  // and every pair of edges; without xs it only writes.
  const std::vector<const KernelTable*> tables = kernelTables();
  const ChannelAffine p[2] = {{-0.25f, 1e-9f, 2.0f, 0.5f, 0.5f - 1e-9f * 2.0f}, {0.75f, -2e-9f, -1.5f, 0.25f, 0.25f - 2e-9f * 1.5f}};
  for (const KernelTable* k : tables)
    for (std::size_t runLen : {std::size_t(16), std::size_t(37), std::size_t(196), std::size_t(3000)})
      for (std::size_t runs : {std::size_t(1), std::size_t(3)}) {
        const std::size_t stride = 2 * runLen + 5, total = runs * stride + 64;
        const auto x = ref::randomFloats(total, runLen + runs, -1, 2);
        for (std::size_t offset = 16; offset < 32; ++offset)
          for (unsigned edges = 0; edges < 4; ++edges)
            for (bool stats : {true, false}) {
              const std::string what = std::string(k->name) + " runLen=" + std::to_string(runLen) + " runs=" +
                                       std::to_string(runs) + " offset=" + std::to_string(offset) + " edges=" +
                                       std::to_string(edges) + (stats ? "" : " no stats");
              std::vector<float> ys(total + 32, 7.0f);
              float* y = ys.data() + offset;  // its floats before offset - 16 are never in a window
              const float* xn = x.data() + offset;
              const float* xs = stats ? x.data() + 40 : nullptr;
              const Moments got = k->runsMomentsNormalizing(xs, runLen, runs, stride, nullptr, nullptr, xn, y, p, edges, false);
              k->fence();
              if (stats) {
                const Moments want = k->runsMoments(xs, runLen, runs, stride, nullptr);
                if (!CHECK(got.count == want.count && got.mean == want.mean && got.m2 == want.m2))
                  return (void)check::fail(__FILE__, __LINE__, what + " moments");
              }
              std::vector<char> written(ys.size(), 0);
              for (std::size_t r = 0; r < runs; ++r) {
                const RunWindow win = lineWindow(y + r * stride, runLen, edges);
                for (std::ptrdiff_t i = win.begin; i < win.end; ++i) {
                  const std::size_t at = offset + r * stride + std::size_t(std::ptrdiff_t(i));
                  const ChannelAffine& a = p[i < 0 ? 0 : 1];
                  const double want = ((double(x[at]) - a.meanHi) - a.meanLo) * a.scale + a.shift;
                  written[at] = 1;
                  if (!CHECK_NEAR(ys[at], want, 1e-6, 1e-6)) return (void)check::fail(__FILE__, __LINE__, what);
                }
              }
              for (std::size_t i = 0; i < ys.size(); ++i)
                if (!written[i] && !CHECK(ys[i] == 7.0f)) return (void)check::fail(__FILE__, __LINE__, what + " outside");
            }
      }
}

TEST(invstd_kernels_give_the_formulas_bits) {
  // Every ISA's invstdOf against 1 / sqrt(m2 / count + eps) computed here, bit
  // for bit (correctly rounded operations only), at every tail length; zero
  // with eps 0 gives inf, a negative variance NaN.
  for (const KernelTable* k : kernelTables())
    for (std::size_t n : {0, 1, 2, 3, 4, 5, 7, 8, 9, 13, 512})
      for (double count : {1.0, 37.0})
        for (double eps : {0.0, 1e-5}) {
          const auto f = ref::randomFloats(n, n + 3, 0, 3);
          std::vector<double> m2(f.begin(), f.end()), got(n, 7.0);
          if (n > 2) m2[1] = 0, m2[2] = -0.5;
          k->invstdOf(m2.data(), n, count, eps, got.data());
          for (std::size_t i = 0; i < n; ++i) {
            const double want = 1.0 / std::sqrt(m2[i] / count + eps);
            if (!CHECK(std::memcmp(&got[i], &want, sizeof want) == 0 || (std::isnan(got[i]) && std::isnan(want))))
              return (void)check::fail(__FILE__, __LINE__, std::string(k->name) + " n=" + std::to_string(n) + " i=" +
                                                               std::to_string(i));
          }
        }
}

TEST(moments_kernels_reject_a_far_shift) {
  // The kernels try one pass shifted by a hint and must notice when the hint is
  // far from the block's mean (here 1e6 for data of mean 3 and std 1): the
  // result must still be the block's exact moments.
  const std::vector<const KernelTable*> tables = kernelTables();
  auto x = ref::randomFloats(kRowMomentsBlock * 64, 5, 1.3f, 4.7f);
  const float farHint = 1e6f;
  for (const KernelTable* k : tables) {
    const std::string isa = k->name;
    for (std::size_t runLen : {std::size_t(5), std::size_t(37), std::size_t(1000)}) {
      const std::size_t runs = runLen == 1000 ? 1 : 7, stride = runLen + 3;
      std::vector<float> block;
      for (std::size_t r = 0; r < runs; ++r) block.insert(block.end(), x.begin() + r * stride, x.begin() + r * stride + runLen);
      double mean = 0, m2 = 0;
      for (float v : block) mean += v;
      mean /= double(block.size());
      for (float v : block) m2 += (v - mean) * (v - mean);
      const Moments got = k->runsMoments(x.data(), runLen, runs, stride, &farHint);
      if (!CHECK_NEAR(got.mean, mean, 1e-6, 0) || !CHECK_NEAR(got.m2, m2, 1e-5, 0))
        check::fail(__FILE__, __LINE__, isa + " runsMoments runLen=" + std::to_string(runLen));
    }
    // A whole call's rows, so the one pass over several flushed blocks (strip
    // by strip, and in memory order at c = 64) must fail its check as a whole.
    for (std::size_t c : {std::size_t(3), std::size_t(8), std::size_t(37), std::size_t(64)}) {
      const std::size_t rows = kRowMomentsBlock;
      std::vector<float> scratch(kRowMomentsScratch * c);
      // A running mean of 1e6 over a negligible count: the merged result is the block's own moments.
      std::vector<double> mean(c, 1e6), m2(c, 0.0);
      k->rowsMoments(x.data(), rows, c, scratch.data(), 1e-300, mean.data(), m2.data(), nullptr);
      const auto blockMomentsMatch = [&](const std::string& what) {
        for (std::size_t ch = 0; ch < c; ++ch) {
          double mu = 0, q = 0;
          for (std::size_t r = 0; r < rows; ++r) mu += x[r * c + ch];
          mu /= double(rows);
          for (std::size_t r = 0; r < rows; ++r) q += (x[r * c + ch] - mu) * (x[r * c + ch] - mu);
          if (!CHECK_NEAR(mean[ch], mu, 1e-6, 0) || !CHECK_NEAR(m2[ch], q, 1e-5, 0))
            return (void)check::fail(__FILE__, __LINE__, isa + " rowsMoments c=" + std::to_string(c) + " " + what);
        }
      };
      blockMomentsMatch("far running mean");
      // A first shift given as a hint: 1e6 misses and is retried with the
      // means that pass estimates; 1e30 squares past float32's range (a pass
      // whose squares overflow must not count as close) and leaves no usable
      // estimate, so the exact two-pass by strips answers.
      for (float hint : {1e6f, 1e30f}) {
        const std::vector<float> hints(c, hint);
        std::fill(mean.begin(), mean.end(), 0.0), std::fill(m2.begin(), m2.end(), 0.0);
        k->rowsMoments(x.data(), rows, c, scratch.data(), 0, mean.data(), m2.data(), hints.data());
        blockMomentsMatch("hint " + std::to_string(hint));
      }
    }
  }
}

CHECK_MAIN()
