// NCHW with spatial > 1. Channel c of sample n is a run of `spatial` floats at
// (n * C + c) * spatial.
//
// Reductions (moments, the backward's sums) cut each channel into blocks:
// runs of kRunBlock (moments) or kGradBlock (backward) floats and more into
// even pieces of at most kRunPiece floats; shorter runs into blocks of the
// runs of a few consecutive samples (at most kRunBlock or kGradBlock floats).
// Blocks are visited sample-block by sample-block, channel after channel
// inside one, so memory is read as a few sequential streams (short runs:
// sample by sample in memory order, see unitMoments and reduceGrads); a unit
// of work is a range of sample-blocks of one group, and each unit reduces into
// its own per-channel slot. Slots are merged in unit order, so the results
// depend on the dims only, never on the thread count.
//
// Elementwise passes (normalization, dx) walk the tensor in memory order.
//
// Training forward on tensors of 1 MiB and more, with non-temporal stores:
// one read of x from memory -- runs of 384 floats and more whose channel
// slices fit L2, pipelined channel by channel (pipelinedTraining); shorter
// runs on one thread, in stages of a few channels (stagedTraining).
// Otherwise, and for the other ISAs, the statistics pass and then the
// normalization pass. The backward of short runs with more threads, on
// tensors the two passes would stream, is staged the same way
// (stagedBackward); otherwise its sums pass, then its dx pass.
#include <algorithm>
#include <cmath>
#include <vector>

#include "channel_params.h"
#include "kernels.h"
#include "layout_ops.h"
#include "line_floats.h"
#include "rebatch/thread_pool.h"

namespace rebatch {
namespace nchw {
namespace {

// The blocking of the reductions, from the dims alone.
struct Blocking {
  std::size_t samplesPerBlock;  // consecutive samples whose runs form one block (1 for long runs)
  std::size_t piece;            // floats per block along a run (a multiple of 8; = spatial for short runs)
  std::size_t blocksPerUnit;    // sample-blocks per unit
  bool prefetch;                // whether to prefetch ahead (not for tensors that fit in L2)

  // Runs of blockFloats and more in pieces of at most pieceFloats (default blockFloats).
  Blocking(const TensorDims& d, std::size_t blockFloats, std::size_t pieceFloats = 0) {
    if (d.spatial >= blockFloats) {
      samplesPerBlock = 1;
      const std::size_t maxPiece = pieceFloats ? pieceFloats : blockFloats;
      const std::size_t pieces = (d.spatial + maxPiece - 1) / maxPiece;
      piece = ((d.spatial + pieces - 1) / pieces + 7) / 8 * 8;  // even pieces, whole vectors
    } else {
      samplesPerBlock = blockFloats / d.spatial;
      piece = d.spatial;
    }
    blocksPerUnit = std::max<std::size_t>(1, kReduceUnitFloats / (samplesPerBlock * d.c * d.spatial));
    prefetch = d.elements() >= kParallelMinElements;
  }
};

struct Unit {
  std::size_t group, n0, samples;
};

std::vector<Unit> unitsOf(const TensorDims& d, const Blocking& b) {
  std::vector<Unit> units;
  const std::size_t perUnit = b.samplesPerBlock * b.blocksPerUnit;
  for (std::size_t g = 0; g < d.groups(); ++g) {
    const std::size_t first = d.groupBegin(g), end = first + d.groupSamples(g);
    for (std::size_t n = first; n < end; n += perUnit) units.push_back({g, n, std::min(perUnit, end - n)});
  }
  return units;
}

// Calls f(c, offset, runLen, runs) over the unit's blocks, sample-block-major;
// base (and base2) are the tensors the blocks will read, for prefetching.
template <class F>
void forEachBlock(const TensorDims& d, const Blocking& b, const Unit& u, std::size_t c0, std::size_t c1,
                  const float* base, const float* base2, F&& f) {
  const std::size_t end = u.n0 + u.samples;
  for (std::size_t n = u.n0; n < end; n += b.samplesPerBlock) {
    const std::size_t runs = std::min(b.samplesPerBlock, end - n);
    for (std::size_t c = c0; c < c1; ++c) {
      const std::size_t off = (n * d.c + c) * d.spatial;
      if (runs > 1 && c + 2 < c1 && b.prefetch)  // the runs of the channel after next: short, scattered streams
        for (std::size_t r = 0; r < runs; ++r) {
          const std::size_t ahead = off + 2 * d.spatial + r * d.c * d.spatial;
          prefetchSpan(base + ahead, d.spatial);
          if (base2) prefetchSpan(base2 + ahead, d.spatial);
        }
      for (std::size_t i = 0; i < d.spatial; i += b.piece) f(c, off + i, std::min(b.piece, d.spatial - i), runs);
    }
  }
}

// A channel's first shift: the mean of the first values of its run.
float firstValuesMean(const float* run, std::size_t len) {
  const std::size_t n = std::min<std::size_t>(len, 16);
  double sum = 0;
  for (std::size_t i = 0; i < n; ++i) sum += run[i];
  return float(sum / double(n));
}

// Each group's first shifts for the short runs' blocks: per channel, the mean
// of 4 values from each of up to 8 samples spread evenly over the group (at
// positions spread over the run), found once for all its units; a group of
// one unit gets none (empty): its blocks take their first run's first values.
// With channel means that vary by sample (offsets of 0.5 sd), a block's first
// run, all one sample, missed the block's mean for many channels, whose blocks
// were then re-read run by run: 64x256x14x14's moments took 1.5x the time
// (233 vs 156 us). The values are a scattered gather (a cache line each), so
// all are asked for first; in a C++ loop over 64x256x14x14, 8 samples took
// 2-3 us from L2 and 14-45 us from DRAM, 16 samples (in float64) 4-15 and
// 36-80.
GroupShifts spreadValuesMeans(const float* x, const TensorDims& d, const std::vector<Unit>& units) {
  GroupShifts out(d.groups());
  const std::vector<bool> several = groupsOfSeveralUnits(units, d.groups());
  const std::size_t w = std::min<std::size_t>(4, d.spatial);
  std::vector<const float*> firsts;  // per sample taken: its channel 0's values
  std::vector<float> sum(d.c);
  for (std::size_t g = 0; g < d.groups(); ++g) {
    if (!several[g]) continue;
    const std::size_t samples = d.groupSamples(g), k = std::min<std::size_t>(8, samples);
    firsts.clear();
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t n = d.groupBegin(g) + j * samples / k;
      firsts.push_back(x + n * d.c * d.spatial + (k > 1 ? (d.spatial - w) * j / (k - 1) : 0));
      for (std::size_t c = 0; c < d.c; ++c) prefetchSpan(firsts.back() + c * d.spatial, w);
    }
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (const float* v : firsts)
      for (std::size_t c = 0; c < d.c; ++c)
        for (std::size_t i = 0; i < w; ++i) sum[c] += v[c * d.spatial + i];
    out[g].resize(d.c);
    for (std::size_t c = 0; c < d.c; ++c) out[g][c] = sum[c] / float(k * w);
  }
  return out;
}

// Scratch of blockMoments, for C channels.
struct BlockScratch {
  std::vector<float> shift;
  LineFloats lanes;
  std::vector<double> dsum, qsum;
  explicit BlockScratch(std::size_t c) : shift(c), lanes(kRunSumsScratch * c), dsum(c), qsum(c) {}
};

// Channels [c0, c1) of the sample-block of `runs` short runs from sample n,
// merged into m[c]: sample after sample in memory order, each run's shifted
// sums added to its channel's (runSums, which runs hook between samples),
// shifted by the channel's mean so far, else by first[c] (spreadValuesMeans),
// else by its first values; each channel's sums are kept when shiftIsClose,
// else its block is redone by runsMoments. Per channel the same arithmetic
// whatever [c0, c1) is.
void blockMoments(const KernelTable& k, const float* x, const TensorDims& d, std::size_t n, std::size_t runs,
                  std::size_t c0, std::size_t c1, const float* first, Moments* m, BlockScratch& s, SampleHook hook) {
  const std::size_t stride = d.c * d.spatial;
  for (std::size_t c = c0; c < c1; ++c) {
    s.shift[c] = m[c].count > 0 ? float(m[c].mean)
                 : first        ? first[c]
                                : firstValuesMean(x + (n * d.c + c) * d.spatial, d.spatial);
    s.dsum[c] = s.qsum[c] = 0;
  }
  k.runSums(x + n * stride + c0 * d.spatial, d.spatial, c1 - c0, runs, stride, &s.shift[c0], s.lanes.data(),
            &s.dsum[c0], &s.qsum[c0], hook);
  const double count = double(runs * d.spatial);
  for (std::size_t c = c0; c < c1; ++c) {
    if (shiftIsClose(count, s.dsum[c], s.qsum[c])) {
      m[c] = chanMerge(m[c], fromShifted(count, s.shift[c], s.dsum[c], s.qsum[c]));
      continue;
    }
    // Redone with the block's mean as these sums estimate it (within float32
    // rounding: one more pass, which runsMoments verifies in turn) -- a
    // channel's first shift comes from 16 values, and on normal data 4-5% of
    // first blocks missed it: their exact two-pass (two more reads) took 13%
    // of 64x256x14x14's moments.
    const float estimate = float(double(s.shift[c]) + s.dsum[c] / count);
    m[c] = chanMerge(m[c], k.runsMoments(x + (n * d.c + c) * d.spatial, d.spatial, runs, stride, &estimate));
  }
}

// One unit's moments into m[c], the channel's mean so far serving as the next
// block's shift. Long runs: block by block (pieces of a run, channel after
// channel: memory order). Short runs: blockMoments per sample-block. Walking
// the block-major order instead reads samplesPerBlock scattered streams: at
// 64x256x14x14 measured ~30% slower, and 1.75x with each channel's next runs
// prefetched (266-268 vs 146-153 us).
void unitMoments(const KernelTable& k, const float* x, const TensorDims& d, const Blocking& b, const Unit& u,
                 const float* first, Moments* m) {
  const std::size_t stride = d.c * d.spatial;
  if (b.samplesPerBlock == 1) {
    forEachBlock(d, b, u, 0, d.c, x, nullptr, [&](std::size_t c, std::size_t off, std::size_t len, std::size_t runs) {
      const float hint = float(m[c].mean);
      m[c] = chanMerge(m[c], k.runsMoments(x + off, len, runs, stride, m[c].count > 0 ? &hint : nullptr));
    });
    return;
  }
  BlockScratch s(d.c);
  const std::size_t end = u.n0 + u.samples;
  for (std::size_t n = u.n0; n < end; n += b.samplesPerBlock)
    blockMoments(k, x, d, n, std::min(b.samplesPerBlock, end - n), 0, d.c, first, m, s, {nullptr, nullptr});
}

// Per-(group, channel) moments: unit slots, then merged in unit order.
void groupMoments(const KernelTable& k, const float* x, const TensorDims& d, std::vector<Moments>& out) {
  const Blocking b(d, kRunBlock, kRunPiece);
  const std::vector<Unit> units = unitsOf(d, b);
  const GroupShifts shifts = b.samplesPerBlock > 1 ? spreadValuesMeans(x, d, units) : GroupShifts(d.groups());
  std::vector<Moments> slots(units.size() * d.c);
  forEachUnit(d.elements(), kParallelMinElements, units.size(), [&](std::size_t u) {
    unitMoments(k, x, d, b, units[u], groupShifts(shifts, units[u].group), &slots[u * d.c]);
  });
  out.assign(d.groups() * d.c, Moments());
  for (std::size_t u = 0; u < units.size(); ++u)
    for (std::size_t c = 0; c < d.c; ++c) {
      Moments& m = out[units[u].group * d.c + c];
      m = chanMerge(m, slots[u * d.c + c]);
    }
}

// An elementwise pass touching `tensors` tensors' bytes, with the stores
// chosen for its kind (withChosenStores): f(group, firstRun, runs, stream)
// over units of consecutive runs of one group (run i is channel i % C of
// sample i / C), in memory order (measured faster here than last to first,
// even right after a statistics pass), in parallel; each unit ends with the
// kernels' fence when it streamed its stores.
template <class F>
void spansPass(const KernelTable& k, const TensorDims& d, StorePass kind, std::size_t tensors, std::size_t minBytes,
               F&& f) {
  const std::size_t perUnit = std::max<std::size_t>(1, kUnitFloats / d.spatial);
  struct Span {
    std::size_t group, first, runs;
  };
  std::vector<Span> spans;
  for (std::size_t g = 0; g < d.groups(); ++g) {
    const std::size_t first = d.groupBegin(g) * d.c, end = first + d.groupSamples(g) * d.c;
    for (std::size_t r = first; r < end; r += perUnit) spans.push_back({g, r, std::min(perUnit, end - r)});
  }
  withChosenStores(kind, d.elements(), d.elements() * tensors * sizeof(float), minBytes, [&](bool stream) {
    forEachUnit(d.elements(), kParallelMinElementwise, spans.size(), [&](std::size_t i) {
      const Span& s = spans[i];
      f(s.group, s.first, s.runs, stream);
      if (stream) k.fence();
    });
  });
}

std::vector<ChannelAffine> affineTable(const ForwardParams& p, const TensorDims& d) {
  std::vector<ChannelAffine> a(d.groups() * d.c);
  for (std::size_t g = 0; g < d.groups(); ++g)
    for (std::size_t c = 0; c < d.c; ++c) a[g * d.c + c] = affineOf(p, g, c, d.c);
  return a;
}

}  // namespace

void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2) {
  std::vector<Moments> m;
  groupMoments(k, x, d, m);
  for (std::size_t i = 0; i < m.size(); ++i) mean[i] = m[i].mean, m2[i] = m[i].m2;
}

// The normalization pass.
static void normalize(const KernelTable& k, const float* x, float* y, const TensorDims& d, const ForwardParams& p) {
  const std::vector<ChannelAffine> affine = affineTable(p, d);
  spansPass(k, d, StorePass::NchwNormalize, 2, kStreamMinBytes,
            [&](std::size_t g, std::size_t first, std::size_t runs, bool stream) {
              const std::size_t off = first * d.spatial;
              k.spanNormalize(x + off, y + off, d.spatial, runs, &affine[g * d.c], first % d.c, d.c, p.relu, stream);
            });
}

// The pipelined training forward: channels in units of kPipelineChannels
// (per group); inside a unit, channel c's statistics are gathered while
// channel c - 1 -- its statistics complete, its slice of x still in L2 from
// that read -- is normalized, in the same loop (runsMomentsNormalizing), so x
// comes from memory once. Blocks are the moments pass's sample-blocks of whole
// runs (one run for long runs); channel c's statistics are not bit-identical
// to channelMoments' (other units) but depend on the dims only.
//
// It needs non-temporal stores (with plain ones each output line is read into
// the cache first and evicts the slice being read back: 42-55% of a copy in a
// bare loop) and whole-line writes (lineWindow: partial lines at every run's
// ends made 64x256x14x14 2.6x slower).
//
// Measured on the project's machine, one thread, against the two passes (the
// library's C++ API, buffers from calloc): 32x64x56x56 1.00-1.04 -> 0.68-0.72
// ms, 8x32x112x112 0.39 -> 0.31-0.33 ms; two threads 0.50 -> 0.32 and
// 0.23-0.25 -> 0.16-0.17 ms. Where it pays: runs of at least kPipelineMinRun
// floats -- 128x512x7x7 35% slower, 256x256x14x14 20%, 256x64x16x16 8%,
// 64x256x14x14 5% faster, 32x256x20x20 16% faster, 128x64x28x28 18% -- and a
// group's channel slice small enough for two to stay in L2: 64x64x56x56 (802
// KiB slices) 9% slower, 16x64x112x112 and 256x32x28x28 even. Short runs gain
// little, or lose, because the statistics walk channel after channel: at
// 64x256x14x14 that walk alone (writes off) took 0.285 ms where the
// memory-order walk of channelMoments takes 0.16 (64 runs of 784 bytes on 64
// pages per channel); they take stagedTraining (below).
//
// Staged versions tried before the one kept: alternating per sample-block,
// built from the existing kernels (runSums per block, spanNormalize per
// piece), no faster than the two passes (0.48 against 0.48 ms; the
// alternation has to be per sample, and runSums then prefetched the next
// stages' data); both in one kernel, sample by sample (stages of ~400 KiB:
// 64x256x14x14 9% faster, 128x128x14x14 5% and 64x256x16x16 4% slower,
// 128x512x7x7 even; ~200 KiB: up to 25% slower); interleaved vector by vector
// (a channel switch tested per output vector: 1.7-2.9x slower); the reader's
// and the writer's runs aligned (run r of stage s read while run r of stage
// s - 1 is written by the RunWriter, in one walk): 64x256x14x14 12% faster
// with stages of 2-3 channels (0.44 against 0.50 ms) and 128x128x14x14 9%,
// but 14-25% slower at 32x256x14x14, 64x128x12x12, 64x512x14x14 and
// 32x128x16x16, 33-53% at 128x512x7x7, and 18% slower than the two passes
// with two threads: its writes alone (reads off) took 0.38-0.43 ms against
// 0.31 for a non-temporal copy.
//
// The same pipeline for the backward (the sums of channel c while writing dx
// of c - 1): 7-12% faster where a channel's x and dy slices fit L2 twice with
// long runs (4x64x112x112), 10-30% slower at 64x256x14x14, 8x32x112x112 and
// 32x64x56x56 -- two input streams per side, and slices that no longer fit --
// so the backward keeps two passes.
constexpr std::size_t kPipelineMinElements = 1 << 18;  // below: 256 KiB measured faster in two passes
constexpr std::size_t kPipelineMinRun = 384;
constexpr std::size_t kPipelineMaxSliceBytes = std::size_t(512) << 10;
constexpr std::size_t kPipelineChannels = 16;

static bool pipelines(const KernelTable& statsK, const KernelTable& k, const TensorDims& d) {
  return &statsK == &k && k.nonTemporalStores && d.elements() >= kPipelineMinElements && d.c >= 2 &&
         d.spatial >= kPipelineMinRun && d.samplesPerGroup() * d.spatial * sizeof(float) <= kPipelineMaxSliceBytes;
}

static void pipelinedTraining(const KernelTable& k, const float* x, float* y, const TensorDims& d, double eps,
                              const ForwardParams& p, double* saveMean, double* saveInvstd) {
  const std::size_t perBlock = Blocking(d, kRunBlock).samplesPerBlock;
  const std::size_t stride = d.c * d.spatial, perGroup = (d.c + kPipelineChannels - 1) / kPipelineChannels;
  forEachUnit(d.elements(), kParallelMinElements, d.groups() * perGroup, [&](std::size_t unit) {
    const std::size_t g = unit / perGroup, c0 = unit % perGroup * kPipelineChannels;
    const std::size_t c1 = std::min(d.c, c0 + kPipelineChannels);
    const std::size_t n0 = d.groupBegin(g), n1 = n0 + d.groupSamples(g);
    // The block read after channel c's block at sample n, when it has the same
    // shape (for prefetching): the channel's next block, or the next channel's first.
    const auto nextBlock = [&](std::size_t c, std::size_t n) -> const float* {
      if (n + 2 * perBlock <= n1) return x + ((n + perBlock) * d.c + c) * d.spatial;
      if (n + perBlock >= n1 && c + 1 < c1 && n0 + perBlock <= n1) return x + (n0 * d.c + c + 1) * d.spatial;
      return nullptr;
    };
    ChannelAffine affine[2]{};  // of channels c - 2 and c - 1
    for (std::size_t c = c0; c <= c1; ++c) {  // c1: the last channel's normalization alone
      const unsigned edges = (c == c0 + 1 ? kExactHead : 0) | (c == c1 ? kExactTail : 0);
      Moments m;
      for (std::size_t n = n0; n < n1; n += perBlock) {
        const std::size_t runs = std::min(perBlock, n1 - n), at = (n * d.c + c) * d.spatial;
        const float hint = float(m.mean);
        const float* h = m.count > 0 ? &hint : nullptr;
        if (c == c0) {
          m = chanMerge(m, k.runsMoments(x + at, d.spatial, runs, stride, h));
          continue;
        }
        const Moments block = k.runsMomentsNormalizing(c < c1 ? x + at : nullptr, d.spatial, runs, stride, h,
                                                       nextBlock(c, n), x + at - d.spatial, y + at - d.spatial,
                                                       affine, edges, p.relu);
        if (c < c1) m = chanMerge(m, block);
      }
      if (c == c1) break;
      const std::size_t gc = g * d.c + c;
      saveMean[gc] = m.mean;  // = p.mean[gc]
      saveInvstd[gc] = channelInvstd(m.m2, m.count, eps);
      affine[0] = affine[1];
      affine[1] = affineOf(p, g, c, d.c);
    }
    k.fence();
  });
}

// The staged training forward for short runs: channels in stages of a few
// (stageChannels); while stage s's statistics are gathered sample by sample in
// memory order (each sample's part of a stage is one contiguous piece:
// blockMoments, whose runSums prefetches the next sample's piece), stage
// s - 1 -- its statistics complete, its slice of x still in L2 -- is
// normalized piece by piece between the samples (runSums' hook), with
// non-temporal stores to whole lines. x comes from memory once, and the
// stage's reads overlap the other's writes. The statistics are blockMoments
// over groupMoments' own sample-blocks and units, merged in the same order:
// bit-identical to channelMoments, so this path may depend on the thread
// count (a thread takes a range of stages).
//
// Measured on the project's machine, one thread, C++ API, against the two
// passes: 64x256x14x14 0.44-0.46 -> 0.33-0.35 ms, 128x128x14x14 0.43 ->
// 0.38, 32x128x16x16 0.126 -> 0.099-0.103, 64x128x12x12 0.131 -> 0.117,
// 32x256x14x14 0.174 -> 0.159, 64x512x14x14 (25.7 MB) 1.17 -> 1.07. The piece
// must alternate with the sample: normalizing after every sample-block of ~20
// samples instead measured no faster than two passes (a bare loop at
// 64x256x14x14: per sample 0.37 ms, per 4 samples 0.43, per 20 0.47). Stage
// slices over kPipelineMaxSliceBytes are not staged (256x256x14x14, 1.6 MB
// slices: 2.75 -> 3.7 ms), nor stages whose piece is not whole cache lines
// (runs of 49 floats: even with an aligned output, 20% slower with the 16-byte
// offset of Node's large buffers: partly written lines at every piece's ends).
constexpr std::size_t kStageChannels[] = {8, 4};

// The channels per stage of the staged forward (blockFloats kRunBlock, one
// input) or backward (kGradBlock, two inputs), from the geometry alone; 0:
// not staged.
static std::size_t stageChannels(const KernelTable& k, const TensorDims& d, std::size_t blockFloats,
                                 std::size_t inputs) {
  if (!k.nonTemporalStores || d.elements() < kPipelineMinElements || Blocking(d, blockFloats).samplesPerBlock == 1)
    return 0;
  for (std::size_t g : kStageChannels)
    if (d.c >= 2 * g && g * d.spatial % kLineFloats == 0 &&
        inputs * d.samplesPerGroup() * g * d.spatial * sizeof(float) <= kPipelineMaxSliceBytes)
      return g;
  return 0;
}

// A staged pass's plan: each group's channels in stages of G, the stages
// split in `parts` ranges (one per thread; a range's first stage is only
// gathered, its last only written).
struct StagePlan {
  std::size_t G, stages, parts;
  StagePlan(const TensorDims& d, std::size_t g)
      : G(g),
        stages((d.c + g - 1) / g),
        parts(onCallingThread(d.elements(), kParallelMinElements) ? 1 : std::min(stages, numThreads())) {}
  std::size_t items(const TensorDims& d) const { return d.groups() * parts; }
};

// The hook of a stage's kernel calls (runSums, runGradSums): after sample s of
// a call from sample n0, writes the stage before's piece of sample n0 + s.
template <class Write>
struct PieceHook {
  Write& write;
  std::size_t g, c0, c1, n0;  // the stage before: channels [c0, c1); c0 == c1: none
  static void after(void* self, std::size_t s) {
    auto& h = *static_cast<PieceHook*>(self);
    h.write(h.g, h.c0, h.c1, h.n0 + s);
  }
  // For a call whose first sample is n.
  SampleHook from(std::size_t n) {
    n0 = n;
    return {c0 < c1 ? &after : nullptr, this};
  }
};

// Runs the plan's items (in parallel): item i, group g, stage after stage of
// its range: gather(i, g, c0, c1, hook) reads stage [c0, c1) sample by sample
// with kernels taking hook.from(n), then done(g, c0, c1) completes its
// per-channel results; write(g, c0, c1, n) writes channels [c0, c1) of sample
// n (the non-temporal stores fenced at the end).
template <class Gather, class Done, class Write>
void stagedPass(const KernelTable& k, const TensorDims& d, const StagePlan& plan, Gather&& gather, Done&& done,
                Write&& write) {
  forEachUnit(d.elements(), kParallelMinElements, plan.items(d), [&](std::size_t item) {
    const std::size_t g = item / plan.parts, part = item % plan.parts;
    const std::size_t s0 = plan.stages * part / plan.parts, s1 = plan.stages * (part + 1) / plan.parts;
    const auto channels = [&](std::size_t st) { return std::min(d.c, st * plan.G); };  // stage st's first
    for (std::size_t st = s0; st <= s1; ++st) {
      PieceHook<Write> hook{write, g, st > s0 ? channels(st - 1) : 0, st > s0 ? channels(st) : 0, 0};
      if (st == s1) {  // the range's last stage alone
        for (std::size_t n = d.groupBegin(g); n < d.groupBegin(g) + d.groupSamples(g); ++n)
          write(g, hook.c0, hook.c1, n);
        break;
      }
      gather(item, g, channels(st), channels(st + 1), hook);
      done(g, channels(st), channels(st + 1));
    }
    k.fence();
  });
}

static void stagedTraining(const KernelTable& k, const float* x, float* y, const TensorDims& d, double eps,
                           const ForwardParams& p, double* saveMean, double* saveInvstd, std::size_t G) {
  const Blocking b(d, kRunBlock);
  const std::vector<Unit> units = unitsOf(d, b);
  const GroupShifts shifts = spreadValuesMeans(x, d, units);  // as groupMoments: the same statistics, bit for bit
  const StagePlan plan(d, G);
  const std::size_t C = d.c;
  std::vector<Moments> total(d.groups() * C), m(d.groups() * C);  // a channel's belong to one item
  std::vector<BlockScratch> scratch;
  for (std::size_t i = 0; i < plan.items(d); ++i) scratch.emplace_back(C);
  std::vector<ChannelAffine> affine(d.groups() * C);
  stagedPass(
      k, d, plan,
      [&](std::size_t item, std::size_t g, std::size_t c0, std::size_t c1, auto& hook) {
        Moments* mg = &m[g * C];
        for (std::size_t c = c0; c < c1; ++c) total[g * C + c] = Moments();
        for (const Unit& u : units) {
          if (u.group != g) continue;
          for (std::size_t c = c0; c < c1; ++c) mg[c] = Moments();
          for (std::size_t n = u.n0; n < u.n0 + u.samples; n += b.samplesPerBlock)
            blockMoments(k, x, d, n, std::min(b.samplesPerBlock, u.n0 + u.samples - n), c0, c1,
                         groupShifts(shifts, g), mg, scratch[item], hook.from(n));
          for (std::size_t c = c0; c < c1; ++c) total[g * C + c] = chanMerge(total[g * C + c], mg[c]);  // groupMoments' order
        }
      },
      [&](std::size_t g, std::size_t c0, std::size_t c1) {
        for (std::size_t c = c0; c < c1; ++c) {
          const Moments& t = total[g * C + c];
          saveMean[g * C + c] = t.mean;
          saveInvstd[g * C + c] = channelInvstd(t.m2, t.count, eps);
          affine[g * C + c] = affineOf(p, g, c, C);
        }
      },
      [&](std::size_t g, std::size_t c0, std::size_t c1, std::size_t n) {
        const std::size_t off = (n * C + c0) * d.spatial;
        k.spanNormalize(x + off, y + off, d.spatial, c1 - c0, &affine[g * C], c0, C, p.relu, true);
      });
}

void training(const KernelTable& statsK, const KernelTable& k, const float* x, float* y, const TensorDims& d,
              double eps, ForwardParams p, double* saveMean, double* saveInvstd) {
  p.mean = saveMean;
  p.invstd = saveInvstd;
  if (pipelines(statsK, k, d)) return pipelinedTraining(k, x, y, d, eps, p, saveMean, saveInvstd);
  // Staged on one thread, and with more threads only where the two passes
  // would stream too: elsewhere their plain stores beat the non-temporal
  // ones, capped by the DRAM write bandwidth the VM gets (two threads:
  // 64x256x14x14 0.25 -> 0.31 ms, 32x256x14x14 0.106 -> 0.150; but
  // 64x512x14x14, 51 MB touched, 0.95 -> 0.72).
  const bool oneThread = onCallingThread(d.elements(), kParallelMinElements);
  if (&statsK == &k && (oneThread || streamOutput(d.elements() * 2 * sizeof(float))))
    if (const std::size_t G = stageChannels(k, d, kRunBlock, 1))
      return stagedTraining(k, x, y, d, eps, p, saveMean, saveInvstd, G);
  std::vector<Moments> m;
  groupMoments(statsK, x, d, m);
  for (std::size_t i = 0; i < m.size(); ++i) {
    saveMean[i] = m[i].mean;
    saveInvstd[i] = channelInvstd(m[i].m2, m[i].count, eps);
  }
  normalize(k, x, y, d, p);
}

void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p) {
  normalize(k, x, y, d, p);
}

// Per-(group, channel) sums of dy and dy * (x - mean), masked by the ReLU when fused.
std::vector<GradSums> reduceGrads(const KernelTable& k, const float* dy, const float* x, const TensorDims& d,
                                  const ForwardParams& p) {
  const std::vector<ChannelAffine> affine = affineTable(p, d);
  const bool relu = p.relu;
  const Blocking b(d, kGradBlock, kRunPiece);
  const std::vector<Unit> units = unitsOf(d, b);
  std::vector<GradSums> slots(units.size() * d.c);
  const std::size_t stride = d.c * d.spatial;
  forEachUnit(d.elements(), kParallelMinElements, units.size(), [&](std::size_t u) {
    GradSums* s = &slots[u * d.c];
    const ChannelAffine* a = &affine[units[u].group * d.c];
    if (b.samplesPerBlock > 1) {  // short runs: in memory order, as unitMoments
      const LineFloats scratch(kRunSumsScratch * d.c);
      const std::size_t n0 = units[u].n0;
      k.runGradSums(dy + n0 * stride, x + n0 * stride, d.spatial, d.c, units[u].samples, stride, a, relu,
                    scratch.data(), s, {nullptr, nullptr});
      return;
    }
    forEachBlock(d, b, units[u], 0, d.c, x, dy, [&](std::size_t c, std::size_t off, std::size_t len, std::size_t runs) {
      const GradSums t = k.runsGradSums(dy + off, x + off, len, runs, stride, a[c], relu);
      s[c].sumDy += t.sumDy;
      s[c].sumDyXc += t.sumDyXc;
    });
  });
  std::vector<GradSums> sums(d.groups() * d.c);
  for (std::size_t u = 0; u < units.size(); ++u)
    for (std::size_t c = 0; c < d.c; ++c) {
      GradSums& s = sums[units[u].group * d.c + c];
      s.sumDy += slots[u * d.c + c].sumDy;
      s.sumDyXc += slots[u * d.c + c].sumDyXc;
    }
  return sums;
}

// dx = a * dy + b * (x - mean) + c per (group, channel), in memory order.
void applyGrads(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
                const ForwardParams& p, const ChannelGrad* grad) {
  const std::vector<ChannelAffine> affine = affineTable(p, d);
  const bool relu = p.relu;
  spansPass(k, d, StorePass::NchwGradApply, 3, streamMinBytes(true, d.elements()),
            [&](std::size_t g, std::size_t first, std::size_t runs, bool stream) {
              const std::size_t off = first * d.spatial;
              k.spanGradApply(dy + off, x + off, dx + off, d.spatial, runs, &affine[g * d.c], &grad[g * d.c],
                              first % d.c, d.c, relu, stream);
            });
}

// The staged backward for short runs, as stagedTraining: while a stage's
// sums are gathered sample by sample in memory order (runGradSums, as
// reduceGrads: the same units, so the sums are bit-identical), dx of the
// stage before -- its sums complete, its slices of dy and x still in L2 -- is
// written piece by piece between the samples. dy and x come from memory once
// instead of twice. Only with more threads where the two passes stream (38
// MB touched and more), where the traffic saved is what bounds them: two
// threads, 64x256x14x14 0.42-0.60 -> 0.31-0.47 ms, 32x512x14x14 0.55 -> 0.42,
// 96x256x12x12 -7%, 64x512x14x14 -4%, 128x128x14x14 +2%. On one thread it
// measured slower where the two passes run from L3 (64x256x14x14 0.88 ->
// 0.93-1.0 ms, 64x512x14x14 2.3 -> 2.9; stages of 2 to 16 channels, without
// the prefetch of the next sample's piece up to 2x slower still), faster only
// at 32x256x14x14 (-8%) and 32x128x16x16 (-17%).
bool stagedBackward(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
                    const BackwardParams& p, std::vector<GradSums>& sums) {
  if (onCallingThread(d.elements(), kParallelMinElements) || !streamOutput(d.elements() * 3 * sizeof(float)))
    return false;
  const std::size_t G = stageChannels(k, d, kGradBlock, 2);
  if (!G) return false;
  const std::vector<ChannelAffine> affine = affineTable(p.fwd, d);
  const Blocking b(d, kGradBlock);
  const std::vector<Unit> units = unitsOf(d, b);
  const StagePlan plan(d, G);
  const std::size_t C = d.c, stride = C * d.spatial;
  sums.assign(d.groups() * C, GradSums());
  std::vector<GradSums> slots(d.groups() * C);  // a channel's belong to one item
  std::vector<LineFloats> scratch;
  for (std::size_t i = 0; i < plan.items(d); ++i) scratch.emplace_back(kRunSumsScratch * C);
  std::vector<ChannelGrad> grad(d.groups() * C);
  stagedPass(
      k, d, plan,
      [&](std::size_t item, std::size_t g, std::size_t c0, std::size_t c1, auto& hook) {
        GradSums* slot = &slots[g * C];
        for (const Unit& u : units) {
          if (u.group != g) continue;
          for (std::size_t c = c0; c < c1; ++c) slot[c] = GradSums();
          const std::size_t at = u.n0 * stride + c0 * d.spatial;
          k.runGradSums(dy + at, x + at, d.spatial, c1 - c0, u.samples, stride, &affine[g * C + c0], p.fwd.relu,
                        scratch[item].data(), &slot[c0], hook.from(u.n0));
          for (std::size_t c = c0; c < c1; ++c) {  // reduceGrads' order
            sums[g * C + c].sumDy += slot[c].sumDy;
            sums[g * C + c].sumDyXc += slot[c].sumDyXc;
          }
        }
      },
      [&](std::size_t g, std::size_t c0, std::size_t c1) {
        const double invCount = 1.0 / double(d.groupSamples(g) * d.spatial);
        gradsOf(p, g, c0, c1, C, sums.data(), invCount, grad.data());
      },
      [&](std::size_t g, std::size_t c0, std::size_t c1, std::size_t n) {
        const std::size_t off = (n * C + c0) * d.spatial;
        k.spanGradApply(dy + off, x + off, dx + off, d.spatial, c1 - c0, &affine[g * C], &grad[g * C], c0, C,
                        p.fwd.relu, true);
      });
  return true;
}

}  // namespace nchw
}  // namespace rebatch
