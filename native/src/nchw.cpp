// NCHW with spatial > 1: each (group, channel) is a slab of `samples` runs of
// `spatial` floats, C * spatial apart. One slab is one task, so its moments
// and its normalization run back to back while the slab is still in cache.
#include <cmath>
#include <vector>

#include "channel_params.h"
#include "kernels.h"
#include "layout_ops.h"
#include "rebatch/thread_pool.h"

namespace rebatch {
namespace nchw {
namespace {

struct Slab {
  std::size_t offset;  // of the first run
  std::size_t runLen, runs, stride;
};

Slab slabOf(const TensorDims& d, std::size_t g, std::size_t c) {
  return {(d.groupBegin(g) * d.c + c) * d.spatial, d.spatial, d.groupSamples(g), d.c * d.spatial};
}

// Calls f(offset, runLen, runs) over blocks of at most kRunBlock floats.
template <class F>
void forEachBlock(const Slab& s, F&& f) {
  if (s.runLen >= kRunBlock) {
    for (std::size_t r = 0; r < s.runs; ++r)
      for (std::size_t i = 0; i < s.runLen; i += kRunBlock)
        f(s.offset + r * s.stride + i, std::min(kRunBlock, s.runLen - i), std::size_t(1));
  } else {
    const std::size_t perBlock = kRunBlock / s.runLen;
    for (std::size_t r = 0; r < s.runs; r += perBlock)
      f(s.offset + r * s.stride, s.runLen, std::min(perBlock, s.runs - r));
  }
}

Moments slabMoments(const KernelTable& k, const float* x, const Slab& s) {
  Moments m;
  forEachBlock(s, [&](std::size_t off, std::size_t len, std::size_t runs) {
    m = chanMerge(m, k.runsMoments(x + off, len, runs, s.stride));
  });
  return m;
}

// Runs task(g, c) for every slab, in parallel when the tensor is large.
template <class F>
void forEachSlab(const TensorDims& d, F&& task) {
  const std::size_t slabs = d.groups() * d.c;
  auto one = [&](std::size_t i) { task(i / d.c, i % d.c); };
  if (d.elements() < kParallelMinElements) {
    for (std::size_t i = 0; i < slabs; ++i) one(i);
  } else {
    parallelFor(slabs, one);
  }
}

}  // namespace

void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2) {
  forEachSlab(d, [&](std::size_t g, std::size_t c) {
    const Moments m = slabMoments(k, x, slabOf(d, g, c));
    mean[g * d.c + c] = m.mean;
    m2[g * d.c + c] = m.m2;
  });
}

void training(const KernelTable& k, const float* x, float* y, const TensorDims& d, double eps,
              ForwardParams p, double* saveMean, double* saveInvstd) {
  p.mean = saveMean;
  p.invstd = saveInvstd;
  forEachSlab(d, [&](std::size_t g, std::size_t c) {
    const Slab s = slabOf(d, g, c);
    const Moments m = slabMoments(k, x, s);
    saveMean[g * d.c + c] = m.mean;
    saveInvstd[g * d.c + c] = 1.0 / std::sqrt(m.m2 / m.count + eps);
    k.runsNormalize(x + s.offset, y + s.offset, s.runLen, s.runs, s.stride, affineOf(p, g, c, d.c),
                    p.relu);
  });
}

void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p) {
  forEachSlab(d, [&](std::size_t g, std::size_t c) {
    const Slab s = slabOf(d, g, c);
    k.runsNormalize(x + s.offset, y + s.offset, s.runLen, s.runs, s.stride, affineOf(p, g, c, d.c),
                    p.relu);
  });
}

void backward(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
              BackwardParams p) {
  std::vector<GradSums> sums(d.groups() * d.c);
  forEachSlab(d, [&](std::size_t g, std::size_t c) {
    const Slab s = slabOf(d, g, c);
    const ChannelAffine a = affineOf(p.fwd, g, c, d.c);
    GradSums total;
    forEachBlock(s, [&](std::size_t off, std::size_t len, std::size_t runs) {
      const GradSums b = k.runsGradSums(dy + off, x + off, len, runs, s.stride, a, p.fwd.relu);
      total.sumDy += b.sumDy;
      total.sumDyXc += b.sumDyXc;
    });
    sums[g * d.c + c] = total;
    if (dx)
      k.runsGradApply(dy + s.offset, x + s.offset, dx + s.offset, s.runLen, s.runs, s.stride, a,
                      gradOf(p, g, c, d.c, total, double(s.runLen * s.runs)), p.fwd.relu);
  });
  reduceAffineGrads(p, d.groups(), d.c, sums);
}

void gradSums(const KernelTable& k, const float* dy, const float* x, const TensorDims& d, const double* mean,
              const double* invstd, double* sumDy, double* sumDyXhat) {
  forEachSlab(d, [&](std::size_t g, std::size_t c) {
    const Slab s = slabOf(d, g, c);
    const ChannelAffine a = centerOf(mean, g, c, d.c);
    GradSums total;
    forEachBlock(s, [&](std::size_t off, std::size_t len, std::size_t runs) {
      const GradSums b = k.runsGradSums(dy + off, x + off, len, runs, s.stride, a, false);
      total.sumDy += b.sumDy;
      total.sumDyXc += b.sumDyXc;
    });
    sumDy[g * d.c + c] = total.sumDy;
    sumDyXhat[g * d.c + c] = total.sumDyXc * invstd[g * d.c + c];
  });
}

void gradApply(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
               const double* mean, const double* a, const double* b, const double* c) {
  forEachSlab(d, [&](std::size_t g, std::size_t ch) {
    const Slab s = slabOf(d, g, ch);
    const std::size_t i = g * d.c + ch;
    k.runsGradApply(dy + s.offset, x + s.offset, dx + s.offset, s.runLen, s.runs, s.stride, centerOf(mean, g, ch, d.c),
                    {float(a[i]), float(b[i]), float(c[i])}, false);
  });
}

}  // namespace nchw
}  // namespace rebatch
