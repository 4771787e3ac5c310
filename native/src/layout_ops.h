// Each layout's implementation of the ops, called by ops.cpp after validation.
// nchw.cpp walks blocks of strided runs per channel; nhwc.cpp walks fixed
// row ranges with vectors across channels. Both split work by the tensor's
// dims only, never by the thread count, so results do not depend on it.
#pragma once
#include <chrono>
#include <vector>

#include "kernels.h"
#include "rebatch/thread_pool.h"
#include "rebatch/types.h"

namespace rebatch {

struct KernelTable;

// What a forward needs per (group, channel), already in float32 form.
struct ForwardParams {
  const double* mean;    // groups * C
  const double* invstd;  // groups * C
  const float* weight;   // C or null
  const float* bias;     // C or null
  bool relu;
};

struct BackwardParams {
  ForwardParams fwd;
  bool training;
  float* dweight;  // C or null
  float* dbias;    // C or null
};

// Below this many elements (1 MiB of floats) a reduction runs on the calling
// thread: on the project's machine two threads were measured slower than one
// on a 0.5 MiB tensor (256x512: ~20 us per op, of which a pool dispatch and the
// merge of partial results take a good part), and faster from 3 MiB on.
constexpr std::size_t kParallelMinElements = 1 << 18;
// The elementwise passes (normalization, dx) have nothing to merge: two
// threads measured faster than one from 64k elements (256x512 eval kernel:
// 12.6 us on one thread, 6.3 us on two).
constexpr std::size_t kParallelMinElementwise = 1 << 16;

// Whether a pass over `elements` floats with that parallel threshold runs on
// the calling thread alone.
inline bool onCallingThread(std::size_t elements, std::size_t minElements) {
  return elements < minElements || numThreads() == 1;
}

// Runs task(i) for i in [0, count), units of a walk in memory order: on the
// pool, each thread a contiguous range of them (parallelForContiguous), when
// the tensor has at least minElements elements and the pool more than one
// thread, else on the calling thread.
template <class F>
void forEachUnit(std::size_t elements, std::size_t minElements, std::size_t count, F&& task) {
  if (onCallingThread(elements, minElements)) {
    for (std::size_t i = 0; i < count; ++i) task(i);
  } else {
    parallelForContiguous(count, task);
  }
}
// Floats per unit of work when a tensor is walked in memory order (measured:
// 64k beats 16k by up to 10% with two threads, equal with one).
constexpr std::size_t kUnitFloats = 1 << 16;
// Asks for the cache lines of p[0, n) ahead of use (a hint; no-op where unsupported).
inline void prefetchSpan(const float* p, std::size_t n) {
#if defined(__GNUC__)
  for (std::size_t i = 0; i < n; i += 16) __builtin_prefetch(p + i);
#else
  (void)p, (void)n;
#endif
}

// Whether an op touching this many bytes (inputs and output) writes its output
// with non-temporal stores: for tensors too large for the output to stay in
// cache anyway, where skipping the read-for-ownership of every output line
// saves a third of the traffic. On the project's machine (a VM whose 32 MiB L3
// is shared with its neighbours), from 32 MiB touched: below it plain stores
// measured faster for one thread as for two (25 MiB touched, 12.8 MB tensors:
// eval NCHW 0.86-0.90 -> 0.90-1.07 of the copy probe, training forward 5-8%
// faster; the copy probe itself: plain 91-97 GB/s, non-temporal 80-85), and
// streaming wins from ~38 MiB (50 MiB touched: non-temporal copy 73 GB/s,
// plain 63). On one thread, passes that load more than one vector per output
// vector -- dx (dy and x), and the channels-last rows wider than
// kPairRowFloats (three parameters per vector) -- stream from 16 MiB: the
// read-for-ownership of plain stores comes on top of their loads (NHWC
// normalization of 8-13 MB tensors, C = 96-512: eval 10-22% faster streaming,
// training forward 5-15%, 6.4 MB 10% slower; NCHW dx of 2.4-6.4 MB tensors
// 5-20% faster, wide NHWC rows 6-8%; narrow NHWC rows 7-9% slower, as they
// lose the two-row walk). Not with more threads: there non-temporal stores
// are capped by the DRAM write bandwidth the VM gets, which varies (dx of
// 6.4 MB tensors 22-39% slower streaming; 64x256x14x14 eval 7% faster in one
// state of the machine, 1.7x slower in another). What the op gains, the next
// op may lose: a streamed output is in memory, not partly in L3 (not
// measured by the bench, which times each op alone). Cache sizes reported
// inside VMs are not trustworthy, hence fixed values; REBATCH_STREAM_MIN_BYTES
// overrides both. The elementwise passes start from this rule and then
// measure (withChosenStores, below); the staged and pipelined passes always
// stream, and whether to stage is still decided by this rule.
constexpr std::size_t kStreamMinBytes = std::size_t(32) << 20;
constexpr std::size_t kStreamMinBytesLoadBound = std::size_t(16) << 20;
bool streamOutput(std::size_t bytesTouched, std::size_t minBytes = kStreamMinBytes);
// The threshold for a pass over `elements` floats: kStreamMinBytesLoadBound
// when it is load-bound and runs on one thread, else kStreamMinBytes.
inline std::size_t streamMinBytes(bool loadBound, std::size_t elements) {
  return loadBound && onCallingThread(elements, kParallelMinElementwise) ? kStreamMinBytesLoadBound : kStreamMinBytes;
}

// The elementwise passes whose stores are chosen by measurement, each with
// its own records (store_arms.h). Channels-last rows of up to kPairRowFloats
// floats and wider ones are walked by different loops, so they are apart.
enum class StorePass : unsigned {
  NchwNormalize,
  NchwGradApply,
  NarrowRowsNormalize,
  WideRowsNormalize,
  NarrowRowsGradApply,
  WideRowsGradApply,
  Count
};
class StoreArms;
// From this many bytes touched, an elementwise pass times its calls and uses
// the faster of plain and non-temporal stores for its kind, size class (a
// doubling of bytes) and thread mode, trying the other now and then
// (StoreArms); smaller ones use plain stores, as streamOutput says. The fixed
// rule above is what they start with; REBATCH_STREAM_MIN_BYTES turns the
// measuring off.
constexpr std::size_t kMeasuredStoresMinBytes = std::size_t(8) << 20;
struct StoreChoice {
  bool stream;
  StoreArms* arms;  // where to record the call's time, or null
};
StoreChoice chooseStores(StorePass pass, std::size_t bytesTouched, std::size_t minBytes, bool parallel);
void recordStores(const StoreChoice& choice, std::size_t bytesTouched, double seconds);

// Runs pass(stream), an elementwise pass over `elements` floats touching
// bytesTouched bytes, with the stores chooseStores picks, timing it when the
// choice wants the time.
template <class Pass>
void withChosenStores(StorePass kind, std::size_t elements, std::size_t bytesTouched, std::size_t minBytes,
                      Pass&& pass) {
  const bool parallel = !onCallingThread(elements, kParallelMinElementwise);
  const StoreChoice choice = chooseStores(kind, bytesTouched, minBytes, parallel);
  if (!choice.arms) return pass(choice.stream);
  const auto start = std::chrono::steady_clock::now();
  pass(choice.stream);
  recordStores(choice, bytesTouched, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

// Target floats per unit of the NCHW reductions (whole sample-blocks).
constexpr std::size_t kReduceUnitFloats = 1 << 18;

// Per group, the first shifts of its units' moments (the means of values spread
// over the group: nchw.cpp, nhwc.cpp), found only for groups of two units or
// more -- a group of one unit finds its own; empty: none.
using GroupShifts = std::vector<std::vector<float>>;
// Which groups have two units or more (Unit: either layout's, with .group).
template <class Unit>
std::vector<bool> groupsOfSeveralUnits(const std::vector<Unit>& units, std::size_t groups) {
  std::vector<std::size_t> count(groups, 0);
  for (const Unit& u : units) ++count[u.group];
  std::vector<bool> several(groups);
  for (std::size_t g = 0; g < groups; ++g) several[g] = count[g] > 1;
  return several;
}
// Group g's first shifts, or null when it has none.
inline const float* groupShifts(const GroupShifts& shifts, std::size_t g) {
  return shifts[g].empty() ? nullptr : shifts[g].data();
}

// NCHW without spatial dims is rows of C floats, exactly like channels last: nhwc:: serves both.
inline bool rowsLayout(const TensorDims& d) { return d.layout == Layout::NHWC || d.spatial == 1; }

// backward.cpp: the backward and its halves over either layout (called by ops.cpp after validation).
void backwardPasses(const float* dy, const float* x, float* dx, const TensorDims& d, const BackwardParams& p);
void gradSumsPass(const float* dy, const float* x, const TensorDims& d, const double* mean, const double* invstd,
                  double* sumDy, double* sumDyXhat);
void gradApplyPass(const float* dy, const float* x, float* dx, const TensorDims& d, const double* mean,
                   const double* a, const double* b, const double* c);

namespace nchw {
void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2);
// Statistics by statsK, normalization by k.
void training(const KernelTable& statsK, const KernelTable& k, const float* x, float* y, const TensorDims& d,
              double eps, ForwardParams p, double* saveMean, double* saveInvstd);
void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p);
// The backward's two passes (composed in backward.cpp): per-(group, channel)
// sums of dy and dy * (x - mean), ReLU-masked when p.relu; then
// dx = a * dy + b * (x - mean) + c with grad[g * C + c].
std::vector<GradSums> reduceGrads(const KernelTable& k, const float* dy, const float* x, const TensorDims& d,
                                  const ForwardParams& p);
void applyGrads(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
                const ForwardParams& p, const ChannelGrad* grad);
// The whole backward in stages of a few channels where it pays (true: dx
// written, sums filled), else nothing (false).
bool stagedBackward(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
                    const BackwardParams& p, std::vector<GradSums>& sums);
}  // namespace nchw

namespace nhwc {
void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2);
void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p);
// The backward's two passes (composed in backward.cpp): per-(group, channel)
// sums of dy and dy * (x - mean), ReLU-masked when p.relu; then
// dx = a * dy + b * (x - mean) + c with grad[g * C + c].
std::vector<GradSums> reduceGrads(const KernelTable& k, const float* dy, const float* x, const TensorDims& d,
                                  const ForwardParams& p);
void applyGrads(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
                const ForwardParams& p, const ChannelGrad* grad);
}  // namespace nhwc

}  // namespace rebatch
