// Channels last (and NCHW without spatial dims, which is the same memory): a
// tensor is rows of C floats, row = n * spatial + s. Work is cut into units of
// whole rows inside one group, sized by the dims alone; each unit reduces into
// its own slot and slots are merged in unit order, so any thread count gives
// the same bits.
#include <algorithm>
#include <vector>

#include "channel_params.h"
#include "kernels.h"
#include "layout_ops.h"
#include "rebatch/moments.h"
#include "rebatch/thread_pool.h"

namespace rebatch {
namespace nhwc {
namespace {

struct Unit {
  std::size_t group, firstRow, rows;
};

std::vector<Unit> unitsOf(const TensorDims& d) {
  const std::size_t block = rowsPerBlock(d.c);
  const std::size_t unitFloats = std::max<std::size_t>(std::size_t(1) << 14, 64 * d.c);
  const std::size_t unitRows = block * std::max<std::size_t>(1, unitFloats / (block * d.c));
  std::vector<Unit> units;
  for (std::size_t g = 0; g < d.groups(); ++g) {
    const std::size_t first = d.groupBegin(g) * d.spatial, end = first + d.groupSamples(g) * d.spatial;
    for (std::size_t r = first; r < end; r += unitRows) units.push_back({g, r, std::min(unitRows, end - r)});
  }
  return units;
}

template <class F>
void forEachUnit(const TensorDims& d, const std::vector<Unit>& units, F&& task) {
  if (d.elements() < kParallelMinElements) {
    for (std::size_t u = 0; u < units.size(); ++u) task(u);
  } else {
    parallelFor(units.size(), task);
  }
}

// Calls f(firstRow, rows) over blocks of at most rowsPerBlock(C) rows of a unit.
template <class F>
void forEachBlock(const Unit& u, std::size_t channels, F&& f) {
  const std::size_t block = rowsPerBlock(channels);
  for (std::size_t r = 0; r < u.rows; r += block) f(u.firstRow + r, std::min(block, u.rows - r));
}

// Float32 per-(group, channel) affine arrays for the row kernels.
struct AffineArrays {
  std::vector<float> meanHi, meanLo, scale, shift;
  AffineArrays(const ForwardParams& p, const TensorDims& d) {
    const std::size_t n = d.groups() * d.c;
    meanHi.resize(n), meanLo.resize(n), scale.resize(n), shift.resize(n);
    for (std::size_t g = 0; g < d.groups(); ++g)
      for (std::size_t c = 0; c < d.c; ++c) {
        const ChannelAffine a = affineOf(p, g, c, d.c);
        const std::size_t i = g * d.c + c;
        meanHi[i] = a.meanHi, meanLo[i] = a.meanLo, scale[i] = a.scale, shift[i] = a.shift;
      }
  }
  // The means only (scale and shift 0): for kernels without a ReLU mask.
  AffineArrays(const double* mean, const TensorDims& d) {
    const std::size_t n = d.groups() * d.c;
    meanHi.resize(n), meanLo.resize(n), scale.assign(n, 0.0f), shift.assign(n, 0.0f);
    for (std::size_t g = 0; g < d.groups(); ++g)
      for (std::size_t c = 0; c < d.c; ++c) {
        const ChannelAffine a = centerOf(mean, g, c, d.c);
        meanHi[g * d.c + c] = a.meanHi, meanLo[g * d.c + c] = a.meanLo;
      }
  }
  RowsAffine group(std::size_t g, std::size_t c) const {
    return {&meanHi[g * c], &meanLo[g * c], &scale[g * c], &shift[g * c]};
  }
};

}  // namespace

void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2) {
  const std::size_t C = d.c;
  const std::vector<Unit> units = unitsOf(d);
  std::vector<double> unitMean(units.size() * C), unitM2(units.size() * C);
  forEachUnit(d, units, [&](std::size_t u) {
    std::vector<float> scratch(4 * C);
    std::vector<double> blockMean(C), blockM2(C);
    double* um = &unitMean[u * C];
    double* u2 = &unitM2[u * C];
    double count = 0;
    forEachBlock(units[u], C, [&](std::size_t row, std::size_t rows) {
      k.rowsMoments(x + row * C, rows, C, scratch.data(), blockMean.data(), blockM2.data());
      mergeMomentsArrays(C, count, um, u2, double(rows), blockMean.data(), blockM2.data(), um, u2);
      count += double(rows);
    });
  });
  std::vector<double> count(d.groups(), 0.0);
  for (std::size_t u = 0; u < units.size(); ++u) {
    const std::size_t g = units[u].group;
    mergeMomentsArrays(C, count[g], mean + g * C, m2 + g * C, double(units[u].rows), &unitMean[u * C],
                       &unitM2[u * C], mean + g * C, m2 + g * C);
    count[g] += double(units[u].rows);
  }
}

void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p) {
  const AffineArrays affine(p, d);
  const std::vector<Unit> units = unitsOf(d);
  forEachUnit(d, units, [&](std::size_t u) {
    const Unit& t = units[u];
    k.rowsNormalize(x + t.firstRow * d.c, y + t.firstRow * d.c, t.rows, d.c, affine.group(t.group, d.c),
                    p.relu);
  });
}

void backward(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
              BackwardParams p) {
  const std::size_t C = d.c;
  const AffineArrays affine(p.fwd, d);
  const std::vector<Unit> units = unitsOf(d);
  std::vector<double> unitDy(units.size() * C, 0.0), unitDyXc(units.size() * C, 0.0);
  forEachUnit(d, units, [&](std::size_t u) {
    std::vector<float> scratch(2 * C);
    const RowsAffine a = affine.group(units[u].group, C);
    forEachBlock(units[u], C, [&](std::size_t row, std::size_t rows) {
      k.rowsGradSums(dy + row * C, x + row * C, rows, C, a, p.fwd.relu, scratch.data(), &unitDy[u * C],
                     &unitDyXc[u * C]);
    });
  });
  std::vector<GradSums> sums(d.groups() * C);
  for (std::size_t u = 0; u < units.size(); ++u)
    for (std::size_t c = 0; c < C; ++c) {
      GradSums& s = sums[units[u].group * C + c];
      s.sumDy += unitDy[u * C + c];
      s.sumDyXc += unitDyXc[u * C + c];
    }
  reduceAffineGrads(p, d.groups(), C, sums);
  if (!dx) return;
  std::vector<float> ga(sums.size()), gb(sums.size()), gc(sums.size());
  for (std::size_t g = 0; g < d.groups(); ++g)
    for (std::size_t c = 0; c < C; ++c) {
      const ChannelGrad q = gradOf(p, g, c, C, sums[g * C + c], double(d.groupSamples(g) * d.spatial));
      ga[g * C + c] = q.a, gb[g * C + c] = q.b, gc[g * C + c] = q.c;
    }
  forEachUnit(d, units, [&](std::size_t u) {
    const Unit& t = units[u];
    const std::size_t o = t.group * C;
    k.rowsGradApply(dy + t.firstRow * C, x + t.firstRow * C, dx + t.firstRow * C, t.rows, C,
                    affine.group(t.group, C), {&ga[o], &gb[o], &gc[o]}, p.fwd.relu);
  });
}

void gradSums(const KernelTable& k, const float* dy, const float* x, const TensorDims& d, const double* mean,
              const double* invstd, double* sumDy, double* sumDyXhat) {
  const std::size_t C = d.c;
  const AffineArrays affine(mean, d);
  const std::vector<Unit> units = unitsOf(d);
  std::vector<double> unitDy(units.size() * C, 0.0), unitDyXc(units.size() * C, 0.0);
  forEachUnit(d, units, [&](std::size_t u) {
    std::vector<float> scratch(2 * C);
    const RowsAffine a = affine.group(units[u].group, C);
    forEachBlock(units[u], C, [&](std::size_t row, std::size_t rows) {
      k.rowsGradSums(dy + row * C, x + row * C, rows, C, a, false, scratch.data(), &unitDy[u * C], &unitDyXc[u * C]);
    });
  });
  std::fill(sumDy, sumDy + d.groups() * C, 0.0);
  std::vector<double> dyXc(d.groups() * C, 0.0);
  for (std::size_t u = 0; u < units.size(); ++u)
    for (std::size_t c = 0; c < C; ++c) {
      sumDy[units[u].group * C + c] += unitDy[u * C + c];
      dyXc[units[u].group * C + c] += unitDyXc[u * C + c];
    }
  for (std::size_t i = 0; i < dyXc.size(); ++i) sumDyXhat[i] = dyXc[i] * invstd[i];
}

void gradApply(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
               const double* mean, const double* a, const double* b, const double* c) {
  const std::size_t C = d.c;
  const AffineArrays affine(mean, d);
  std::vector<float> ga(d.groups() * C), gb(ga.size()), gc(ga.size());
  for (std::size_t i = 0; i < ga.size(); ++i) ga[i] = float(a[i]), gb[i] = float(b[i]), gc[i] = float(c[i]);
  const std::vector<Unit> units = unitsOf(d);
  forEachUnit(d, units, [&](std::size_t u) {
    const Unit& t = units[u];
    const std::size_t o = t.group * C;
    k.rowsGradApply(dy + t.firstRow * C, x + t.firstRow * C, dx + t.firstRow * C, t.rows, C, affine.group(t.group, C),
                    {&ga[o], &gb[o], &gc[o]}, false);
  });
}

}  // namespace nhwc
}  // namespace rebatch
