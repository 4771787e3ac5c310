// Channels last (and NCHW without spatial dims, which is the same memory): a
// tensor is rows of C floats, row = n * spatial + s. Work is cut into units of
// whole rows inside one group, sized by the dims alone; each unit reduces into
// its own slot and slots are merged in unit order, so any thread count gives
// the same bits.
#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "channel_params.h"
#include "kernels.h"
#include "layout_ops.h"
#include "line_floats.h"
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

// Floats per group in the per-channel arrays: c + kRowsPad, in whole lines so
// that every group's arrays are at the same phase.
std::size_t groupFloats(std::size_t c) { return (c + kRowsPad + kLineFloats - 1) / kLineFloats * kLineFloats; }

// K per-(group, channel) float arrays for the row kernels, periodic
// (kernels.h) and at x's phase within a line (line_floats.h), from one
// allocation: at a few hundred channels the mallocs and frees of separate
// arrays (and zeroing: the owner writes every entry) were a measurable part
// of a small tensor's call.
template <std::size_t K>
class PeriodicArrays {
 public:
  PeriodicArrays(const TensorDims& d, const float* x)
      : c_(d.c), np_(groupFloats(d.c)), length_(d.groups() * np_), storage_(K * length_, phaseOf(x)) {}
  // Array i of group g, from channel `skip` on: the arrays of rows whose channel order starts there.
  float* at(std::size_t i, std::size_t g, std::size_t skip = 0) const {
    return storage_.data() + i * length_ + g * np_ + skip;
  }
  // Repeats group g's c values of every array over its padding.
  void extend(std::size_t g) const {
    for (std::size_t i = 0; i < K; ++i) {
      float* a = at(i, g);
      for (std::size_t j = c_; j < c_ + kRowsPad; ++j) a[j] = a[j - c_];
    }
  }

 private:
  std::size_t c_, np_, length_;
  LineFloats storage_;
};

// The float32 affine arrays (RowsAffine). The backward without the fused ReLU
// needs only the means (centered): its scale and shift arrays are zeros, and
// the per-channel float64 work of the rest is skipped (2x512 backward 4.1 ->
// 3.7 us).
class AffineArrays {
 public:
  AffineArrays(const ForwardParams& p, const TensorDims& d, const float* x, bool centered = false) : arrays_(d, x) {
    for (std::size_t g = 0; g < d.groups(); ++g) {
      float *hi = arrays_.at(0, g), *lo = arrays_.at(1, g), *scale = arrays_.at(2, g), *shift = arrays_.at(3, g);
      float* folded = arrays_.at(4, g);
      for (std::size_t ch = 0; ch < d.c; ++ch) {
        const ChannelAffine a = centered ? centerOf(p.mean, g, ch, d.c) : affineOf(p, g, ch, d.c);
        hi[ch] = a.meanHi, lo[ch] = a.meanLo, scale[ch] = a.scale, shift[ch] = a.shift, folded[ch] = a.foldedShift;
      }
      arrays_.extend(g);
    }
  }
  // Group g's arrays for rows whose channel order starts at `skip`.
  RowsAffine group(std::size_t g, std::size_t skip = 0) const {
    return {arrays_.at(0, g, skip), arrays_.at(1, g, skip), arrays_.at(2, g, skip), arrays_.at(3, g, skip),
            arrays_.at(4, g, skip)};
  }

 private:
  PeriodicArrays<5> arrays_;
};

// The float32 coefficients of dx (RowsGrad).
class GradArrays {
 public:
  GradArrays(const ChannelGrad* grad, const TensorDims& d, const float* x) : arrays_(d, x) {
    for (std::size_t g = 0; g < d.groups(); ++g) {
      float *a = arrays_.at(0, g), *b = arrays_.at(1, g), *c = arrays_.at(2, g), *folded = arrays_.at(3, g);
      for (std::size_t ch = 0; ch < d.c; ++ch) {
        const ChannelGrad& q = grad[g * d.c + ch];
        a[ch] = q.a, b[ch] = q.b, c[ch] = q.c, folded[ch] = q.foldedC;
      }
      arrays_.extend(g);
    }
  }
  RowsGrad group(std::size_t g, std::size_t skip = 0) const {
    return {arrays_.at(0, g, skip), arrays_.at(1, g, skip), arrays_.at(2, g, skip), arrays_.at(3, g, skip)};
  }

 private:
  PeriodicArrays<4> arrays_;
};

// --- Rows walked from an aligned float ---
// Node's large typed arrays start 16 bytes past a cache line (checked with a
// calloc hook), so with 32-byte vectors every other load of a row of whole
// vectors crosses a line. At 256x512 (one thread, L2/L3) the backward's sums
// took 12.8 us at that offset against 9.3 us aligned, dx 15.9 against 14.0.
// Rows whose first float is not vector-aligned are therefore walked from the
// first one that is, `skip` floats in: from there the span is rows - 1 whole
// rows whose channel order starts at `skip` (the periodic arrays at +skip are
// their parameters), and one row is left over -- channels skip..c-1 of the
// last row and 0..skip-1 of the first -- which is gathered into an aligned
// row of its own. Decided by x's address: inputs and outputs usually share it.

// Rows below which the left-over row costs more than the aligned loads save
// (512 channels, one thread, Node's offset): the elementwise passes gain from
// 8 rows (eval of 8 x 512 6% faster, of 32 x 512 25%); the grad sums, whose
// left-over row is a kernel call of its own with a flush of every channel,
// lose 0.4 us from 2 to 32 rows, break even at 128 and gain 3 us at 256
// (and only in units from L2: kGradSumsL2Floats).
constexpr std::size_t kAlignedWalkMinRows = 8;
constexpr std::size_t kAlignedSumsMinRows = 128;

// The skip for `rows` rows of c floats at x: 0 when x is aligned, the rows
// are not whole vectors (their vectors could not all be aligned), or there
// are fewer than minRows.
std::size_t skipToAligned(const KernelTable& k, const float* x, std::size_t rows, std::size_t c,
                          std::size_t minRows) {
  const std::size_t w = k.vectorFloats;
  const auto at = reinterpret_cast<std::uintptr_t>(x);
  if (w < 2 || c % w != 0 || rows < minRows || at % sizeof(float) != 0) return 0;
  const std::size_t mis = at / sizeof(float) % w;
  return mis ? w - mis : 0;
}

// Rows of c floats from a cache line on: the left-over rows' copies.
class RowBuffer {
 public:
  RowBuffer(std::size_t rows, std::size_t c) : c_(c), storage_(rows * c) {}
  float* row(std::size_t i) const { return storage_.data() + i * c_; }

 private:
  std::size_t c_;
  LineFloats storage_;
};

void gatherLeftOver(const float* rows, std::size_t n, std::size_t c, std::size_t skip, float* row) {
  const float* last = rows + (n - 1) * c;
  std::copy(last + skip, last + c, row);
  std::copy(rows, rows + skip, row + (c - skip));
}

void scatterLeftOver(const float* row, std::size_t n, std::size_t c, std::size_t skip, float* rows) {
  float* last = rows + (n - 1) * c;
  std::copy(row, row + (c - skip), last + skip);
  std::copy(row + (c - skip), row + c, rows);
}

// Whether an elementwise pass of `bytesTouched` over rows of c floats walks
// its rows from an aligned float: not when its stores stream (storeSpan
// already walks from the output's first aligned float, and the left-over
// row's plain stores into streamed lines made dx of 64x256x14x14 NHWC 9%
// slower), nor, for rows of up to kPairRowFloats, from 16 MiB touched, where
// the data comes from memory or a crowded L3 and a split line costs little
// next to a miss (8x32x112x112 NHWC eval 3-5% slower so; 6 MB tensors' eval
// 25% faster, 2.4 MB 0-8%, 256x512 27%). Wider rows load three parameters
// per output vector, and split lines cost them more at any size: the eval of
// 64x256x14x14 with plain stores took 380 us at Node's offset, 298 aligned.
constexpr std::size_t kAlignedWalkMaxBytes = std::size_t(16) << 20;
bool walkFromAligned(bool stream, std::size_t bytesTouched, std::size_t c) {
  return !stream && (c > kPairRowFloats || bytesTouched < kAlignedWalkMaxBytes);
}

// An elementwise pass over n rows of c floats: run(in, out, rows, skip) with
// `in` the N inputs' pointers at out's offsets (x last), walked as above when
// `aligned` (walkFromAligned).
template <std::size_t N, class Run>
void elementwiseRows(const KernelTable& k, std::array<const float*, N> in, float* out, std::size_t n,
                     std::size_t c, bool aligned, Run&& run) {
  const std::size_t skip = aligned ? skipToAligned(k, in[N - 1], n, c, kAlignedWalkMinRows) : 0;
  if (!skip) return run(in, out, n, 0);
  std::array<const float*, N> shifted;
  for (std::size_t i = 0; i < N; ++i) shifted[i] = in[i] + skip;
  run(shifted, out + skip, n - 1, skip);
  // The left-over row's floats are none of those just written: in place is fine.
  const RowBuffer buffer(N + 1, c);
  std::array<const float*, N> gathered;
  for (std::size_t i = 0; i < N; ++i) gatherLeftOver(in[i], n, c, skip, buffer.row(i)), gathered[i] = buffer.row(i);
  run(gathered, buffer.row(N), 1, skip);
  scatterLeftOver(buffer.row(N), n, c, skip, out);
}

// An elementwise pass over the tensor's rows (N inputs at out's offsets, x
// last), unit by unit, with the stores chosen for its kind -- `narrow` or
// `wide` by the width of the rows -- and each unit walked by elementwiseRows:
// run(in, out, rows, group, skip, stream).
template <std::size_t N, class Run>
void rowsPass(const KernelTable& k, const TensorDims& d, StorePass narrow, StorePass wide,
              std::array<const float*, N> in, float* out, Run&& run) {
  const std::size_t touched = d.elements() * (N + 1) * sizeof(float);
  const bool wideRows = d.c > kPairRowFloats;
  const std::vector<Unit> chunks = chunksOf(d);
  withChosenStores(wideRows ? wide : narrow, d.elements(), touched, streamMinBytes(wideRows, d.elements()),
                   [&](bool stream) {
                     const bool aligned = walkFromAligned(stream, touched, d.c);
                     forEachUnit(d.elements(), kParallelMinElementwise, chunks.size(), [&](std::size_t i) {
                       const Unit& t = chunks[i];
                       const std::size_t at = t.firstRow * d.c;
                       std::array<const float*, N> unitIn;
                       for (std::size_t j = 0; j < N; ++j) unitIn[j] = in[j] + at;
                       elementwiseRows<N>(k, unitIn, out + at, t.rows, d.c, aligned,
                                          [&](auto from, float* to, std::size_t rows, std::size_t skip) {
                                            run(from, to, rows, t.group, skip, stream);
                                          });
                       if (stream) k.fence();
                     });
                   });
}

// Each group's first shift for the moments: the means of kMaxRowBlock rows
// spread evenly over it, found once for all its units (a group of one unit
// gets none, empty: the unit finds its own from its first rows). Units
// finding their own took 6% of 64x256x14x14's moments (1024-row units), and
// where channel means vary from sample to sample (offsets of 0.5 sd) a unit's
// first rows, all from one sample, missed and the strips took 3.3x the time.
GroupShifts spreadRowsMeans(const KernelTable& k, const float* x, const TensorDims& d, const std::vector<Unit>& units) {
  GroupShifts out(d.groups());
  const std::vector<bool> several = groupsOfSeveralUnits(units, d.groups());
  if (std::find(several.begin(), several.end(), true) == several.end()) return out;
  LineFloats rows(kMaxRowBlock * d.c);
  const LineFloats scratch(kRowMomentsScratch * d.c);
  std::vector<double> mean(d.c), m2(d.c);
  for (std::size_t g = 0; g < d.groups(); ++g) {
    if (!several[g]) continue;
    const std::size_t groupRows = d.groupSamples(g) * d.spatial;
    const std::size_t n = std::min(kMaxRowBlock, groupRows);
    const float* first = x + d.groupBegin(g) * d.spatial * d.c;
    const auto row = [&](std::size_t r) { return first + (r * groupRows / n) * d.c; };
    for (std::size_t r = 0; r < n; ++r) prefetchSpan(row(r), d.c);  // scattered rows: every line asked for first
    for (std::size_t r = 0; r < n; ++r) std::copy_n(row(r), d.c, rows.data() + r * d.c);
    std::fill(mean.begin(), mean.end(), 0.0), std::fill(m2.begin(), m2.end(), 0.0);
    k.rowsMoments(rows.data(), n, d.c, scratch.data(), 0, mean.data(), m2.data(), nullptr);
    out[g].assign(mean.begin(), mean.end());
  }
  return out;
}

}  // namespace

void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2) {
  const std::size_t C = d.c;
  const std::vector<Unit> units = unitsOf(d);
  const GroupShifts shifts = spreadRowsMeans(k, x, d, units);
  std::vector<double> unitMean(units.size() * C, 0.0), unitM2(units.size() * C, 0.0);
  forEachUnit(d.elements(), kParallelMinElements, units.size(), [&](std::size_t u) {
    const LineFloats scratch(kRowMomentsScratch * C);
    double* um = &unitMean[u * C];
    double* u2 = &unitM2[u * C];
    const float* shift = groupShifts(shifts, units[u].group);
    double count = 0;
    forEachBlock(units[u], kRowMomentsBlock, [&](std::size_t row, std::size_t rows) {
      k.rowsMoments(x + row * C, rows, C, scratch.data(), count, um, u2, shift);
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
  const AffineArrays affine(p, d, x);
  rowsPass<1>(k, d, StorePass::NarrowRowsNormalize, StorePass::WideRowsNormalize, {x}, y,
              [&](auto in, float* out, std::size_t rows, std::size_t g, std::size_t skip, bool stream) {
                k.rowsNormalize(in[0], out, rows, d.c, affine.group(g, skip), p.relu, stream);
              });
}

// Per-(group, channel) sums of dy and dy * (x - mean), masked by the ReLU when fused.
std::vector<GradSums> reduceGrads(const KernelTable& k, const float* dy, const float* x, const TensorDims& d,
                                  const ForwardParams& p) {
  const AffineArrays affine(p, d, x, !p.relu);
  const bool relu = p.relu;
  const std::size_t C = d.c;
  const std::vector<Unit> units = unitsOf(d);
  std::vector<double> unitDy(units.size() * C, 0.0), unitDyXc(units.size() * C, 0.0);
  forEachUnit(d.elements(), kParallelMinElements, units.size(), [&](std::size_t u) {
    const LineFloats scratch(2 * C);
    const Unit& t = units[u];
    const std::size_t at = t.firstRow * C;
    double *sumDy = &unitDy[u * C], *sumDyXc = &unitDyXc[u * C];
    const std::size_t skip = t.rows * C <= kGradSumsL2Floats ? skipToAligned(k, x + at, t.rows, C, kAlignedSumsMinRows) : 0;
    if (!skip) {
      k.rowsGradSums(dy + at, x + at, t.rows, C, affine.group(t.group), relu, scratch.data(), sumDy, sumDyXc);
      return;
    }
    // Walked from an aligned float (see skipToAligned): the sums come in the rotated channel order.
    std::vector<double> rotated(2 * C, 0.0);
    const RowsAffine a = affine.group(t.group, skip);
    k.rowsGradSums(dy + at + skip, x + at + skip, t.rows - 1, C, a, relu, scratch.data(), &rotated[0], &rotated[C]);
    const RowBuffer leftOver(2, C);
    gatherLeftOver(dy + at, t.rows, C, skip, leftOver.row(0));
    gatherLeftOver(x + at, t.rows, C, skip, leftOver.row(1));
    k.rowsGradSums(leftOver.row(0), leftOver.row(1), 1, C, a, relu, scratch.data(), &rotated[0], &rotated[C]);
    for (std::size_t i = 0; i < C; ++i) {
      const std::size_t ch = i < C - skip ? i + skip : i + skip - C;
      sumDy[ch] += rotated[i], sumDyXc[ch] += rotated[C + i];
    }
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
                const ForwardParams& p, const ChannelGrad* grad) {
  const AffineArrays affine(p, d, x, !p.relu);
  const GradArrays coefficients(grad, d, x);
  rowsPass<2>(k, d, StorePass::NarrowRowsGradApply, StorePass::WideRowsGradApply, {dy, x}, dx,
              [&](auto in, float* out, std::size_t rows, std::size_t g, std::size_t skip, bool stream) {
                k.rowsGradApply(in[0], in[1], out, rows, d.c, affine.group(g, skip), coefficients.group(g, skip),
                                p.relu, stream);
              });
}

}  // namespace nhwc
}  // namespace rebatch
