// Channels last (and NCHW without spatial dims, which is the same memory): a
// tensor is rows of C floats, row = n * spatial + s. Work is cut into units of
// whole rows inside one group, sized by the dims alone; each unit reduces into
// its own slot and slots are merged in unit order, so any thread count gives
// the same bits.
#include <algorithm>
#include <memory>
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
  const std::size_t block = kMaxRowBlock;
  const std::size_t unitFloats = std::max<std::size_t>(kReduceUnitFloats, 4 * block * d.c);
  const std::size_t unitRows = block * std::max<std::size_t>(1, unitFloats / (block * d.c));
  std::vector<Unit> units;
  for (std::size_t g = 0; g < d.groups(); ++g) {
    const std::size_t first = d.groupBegin(g) * d.spatial, end = first + d.groupSamples(g) * d.spatial;
    for (std::size_t r = first; r < end; r += unitRows) units.push_back({g, r, std::min(unitRows, end - r)});
  }
  return units;
}

// The elementwise passes' units: about kUnitFloats of whole rows (a multiple of
// 4) of one group, in memory order (measured 5-20% faster here than last to
// first, even right after a statistics pass).
std::vector<Unit> chunksOf(const TensorDims& d) {
  const std::size_t rowsPer = std::max<std::size_t>(4, kUnitFloats / d.c / 4 * 4);
  std::vector<Unit> chunks;
  for (std::size_t g = 0; g < d.groups(); ++g) {
    const std::size_t first = d.groupBegin(g) * d.spatial, end = first + d.groupSamples(g) * d.spatial;
    for (std::size_t r = first; r < end; r += rowsPer) chunks.push_back({g, r, std::min(rowsPer, end - r)});
  }
  return chunks;
}

// Calls f(firstRow, rows) over blocks of at most `block` rows of a unit.
template <class F>
void forEachBlock(const Unit& u, std::size_t block, F&& f) {
  for (std::size_t r = 0; r < u.rows; r += block) f(u.firstRow + r, std::min(block, u.rows - r));
}

// Repeats v (length c) with period c over c + kRowsPad entries.
void padPeriodic(const float* v, std::size_t c, float* out) {
  std::copy(v, v + c, out);
  for (std::size_t i = c; i < c + kRowsPad; ++i) out[i] = out[i - c];
}

// Float arrays of the given lengths carved from one allocation: an op needs
// several per-channel arrays, and at a few hundred channels their mallocs and
// frees (and zeroing: the owner writes every entry) were a measurable part of
// a small tensor's call. at(i) is array i.
template <std::size_t K>
class FloatArrays {
 public:
  explicit FloatArrays(const std::size_t (&lengths)[K]) {
    std::size_t total = 0;
    for (std::size_t i = 0; i < K; ++i) offsets_[i] = total, total += lengths[i];
    storage_.reset(new float[total]);
  }
  float* at(std::size_t i) { return storage_.get() + offsets_[i]; }

 private:
  std::size_t offsets_[K];
  std::unique_ptr<float[]> storage_;
};

// Float32 per-(group, channel) affine arrays for the row kernels. The
// backward without the fused ReLU needs only the means (centered): its scale
// and shift arrays are zeros, and the per-channel float64 work of the rest is
// skipped (2x512 backward 4.1 -> 3.7 us).
struct AffineArrays {
  std::size_t c, n, np;  // channels; groups * c; groups * (c + kRowsPad)
  FloatArrays<8> arrays{{n, n, n, n, np, np, np, c}};
  float *meanHi = arrays.at(0), *meanLo = arrays.at(1), *scale = arrays.at(2), *shift = arrays.at(3);
  float *hiP = arrays.at(4), *scaleP = arrays.at(5), *shiftP = arrays.at(6), *folded = arrays.at(7);
  AffineArrays(const ForwardParams& p, const TensorDims& d, bool centered = false)
      : c(d.c), n(d.groups() * d.c), np(d.groups() * (d.c + kRowsPad)) {
    if (centered) {
      std::fill(scale, scale + n, 0.0f), std::fill(shift, shift + n, 0.0f);
      std::fill(scaleP, scaleP + np, 0.0f), std::fill(shiftP, shiftP + np, 0.0f);
    }
    for (std::size_t g = 0; g < d.groups(); ++g) {
      for (std::size_t ch = 0; ch < c; ++ch) {
        const std::size_t i = g * c + ch;
        if (centered) {
          const ChannelAffine a = centerOf(p.mean, g, ch, c);
          meanHi[i] = a.meanHi, meanLo[i] = a.meanLo;
          continue;
        }
        const ChannelAffine a = affineOf(p, g, ch, c);
        meanHi[i] = a.meanHi, meanLo[i] = a.meanLo, scale[i] = a.scale, shift[i] = a.shift;
        folded[ch] = a.foldedShift;
      }
      const std::size_t o = g * (c + kRowsPad);
      padPeriodic(&meanHi[g * c], c, &hiP[o]);
      if (centered) continue;
      padPeriodic(&scale[g * c], c, &scaleP[o]);
      padPeriodic(folded, c, &shiftP[o]);
    }
  }
  RowsAffine group(std::size_t g) const {
    const std::size_t o = g * (c + kRowsPad);
    return {&meanHi[g * c], &meanLo[g * c], &scale[g * c], &shift[g * c], &hiP[o], &scaleP[o], &shiftP[o]};
  }
};

}  // namespace

void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2) {
  const std::size_t C = d.c;
  const std::vector<Unit> units = unitsOf(d);
  std::vector<double> unitMean(units.size() * C, 0.0), unitM2(units.size() * C, 0.0);
  forEachUnit(d.elements(), kParallelMinElements, units.size(), [&](std::size_t u) {
    std::vector<float> scratch(kRowMomentsScratch * C);
    double* um = &unitMean[u * C];
    double* u2 = &unitM2[u * C];
    double count = 0;
    forEachBlock(units[u], kRowMomentsBlock, [&](std::size_t row, std::size_t rows) {
      k.rowsMoments(x + row * C, rows, C, scratch.data(), count, um, u2);
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
  const std::vector<Unit> chunks = chunksOf(d);
  const bool stream =
      streamOutput(d.elements() * 2 * sizeof(float), streamMinBytes(d.c > kPairRowFloats, d.elements()));
  forEachUnit(d.elements(), kParallelMinElementwise, chunks.size(), [&](std::size_t i) {
    const Unit& t = chunks[i];
    k.rowsNormalize(x + t.firstRow * d.c, y + t.firstRow * d.c, t.rows, d.c, affine.group(t.group), p.relu, stream);
    if (stream) k.fence();
  });
}

// Per-(group, channel) sums of dy and dy * (x - mean), masked by the ReLU when fused.
std::vector<GradSums> reduceGrads(const KernelTable& k, const float* dy, const float* x, const TensorDims& d,
                                  const ForwardParams& p) {
  const AffineArrays affine(p, d, !p.relu);
  const bool relu = p.relu;
  const std::size_t C = d.c;
  const std::vector<Unit> units = unitsOf(d);
  std::vector<double> unitDy(units.size() * C, 0.0), unitDyXc(units.size() * C, 0.0);
  forEachUnit(d.elements(), kParallelMinElements, units.size(), [&](std::size_t u) {
    std::vector<float> scratch(2 * C);
    const RowsAffine a = affine.group(units[u].group);
    const std::size_t row = units[u].firstRow;
    k.rowsGradSums(dy + row * C, x + row * C, units[u].rows, C, a, relu, scratch.data(), &unitDy[u * C], &unitDyXc[u * C]);
  });
  std::vector<GradSums> sums(d.groups() * C);
  for (std::size_t u = 0; u < units.size(); ++u)
    for (std::size_t c = 0; c < C; ++c) {
      GradSums& s = sums[units[u].group * C + c];
      s.sumDy += unitDy[u * C + c];
      s.sumDyXc += unitDyXc[u * C + c];
    }
  return sums;
}

// dx = a * dy + b * (x - mean) + c per (group, channel), in memory order.
void applyGrads(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
                const ForwardParams& p, const std::vector<ChannelGrad>& grad) {
  const AffineArrays affine(p, d, !p.relu);
  const bool relu = p.relu;
  const std::size_t C = d.c;
  const std::size_t n = grad.size(), np = d.groups() * (C + kRowsPad);
  FloatArrays<7> arrays{{n, n, n, np, np, np, C}};
  float *ga = arrays.at(0), *gb = arrays.at(1), *gc = arrays.at(2);
  float *gaP = arrays.at(3), *gbP = arrays.at(4), *gcP = arrays.at(5), *folded = arrays.at(6);
  for (std::size_t g = 0; g < d.groups(); ++g) {
    for (std::size_t c = 0; c < C; ++c) {
      const ChannelGrad& q = grad[g * C + c];
      ga[g * C + c] = q.a, gb[g * C + c] = q.b, gc[g * C + c] = q.c;
      folded[c] = q.foldedC;
    }
    const std::size_t o = g * (C + kRowsPad);
    padPeriodic(&ga[g * C], C, &gaP[o]);
    padPeriodic(&gb[g * C], C, &gbP[o]);
    padPeriodic(folded, C, &gcP[o]);
  }
  const bool stream =
      streamOutput(d.elements() * 3 * sizeof(float), streamMinBytes(d.c > kPairRowFloats, d.elements()));
  const std::vector<Unit> chunks = chunksOf(d);
  forEachUnit(d.elements(), kParallelMinElementwise, chunks.size(), [&](std::size_t i) {
    const Unit& t = chunks[i];
    const std::size_t o = t.group * C, oP = t.group * (C + kRowsPad);
    k.rowsGradApply(dy + t.firstRow * C, x + t.firstRow * C, dx + t.firstRow * C, t.rows, C, affine.group(t.group),
                    {&ga[o], &gb[o], &gc[o], &gaP[oP], &gbP[oP], &gcP[oP]}, relu, stream);
    if (stream) k.fence();
  });
}

}  // namespace nhwc
}  // namespace rebatch
