// The choice between plain and non-temporal stores for one class of
// elementwise passes, by measuring both (streaming.cpp keeps one per pass,
// size class and thread mode). Which is faster for tensors of 8-100 MB
// depends on what else is using the L3 and the DRAM at the time, not on the
// tensor alone: on the project's VM the NCHW eval of 64x256x14x14 took 0.290
// ms with plain stores against 0.310 streamed in one state, and 0.335-0.36 ms
// against 0.30-0.31 in another; on two threads, 32x64x56x56 took 547 us with
// plain stores against 375 streamed in one state, and 575-600 against 620 in
// another. The stored values are the same either way, so only the time
// depends on the choice.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

namespace rebatch {

class StoreArms {
 public:
  // A trial runs the arm not in use for kTrials calls; then the cheaper arm
  // is used until the next. The first kSettle calls after a change of arm are
  // not recorded: the other arm left the caches in its own state, and in that
  // state plain stores measured up to 25% slower than in their own (25.7 MB,
  // two threads: 750, 736, 692 us, then 580). Trials come kFirstTrial calls
  // apart, twice as far each time the arm in use stays (up to kMaxGap), so
  // that an arm that keeps losing costs little: at most (ratio - 1) *
  // kTrials / gap of the time; and at once when the arm in use comes to cost
  // more than the other did at its last trial.
  static constexpr unsigned kTrials = 16;
  static constexpr unsigned kSettle = 8;
  static constexpr unsigned kFirstTrial = 128;
  static constexpr unsigned kMaxGap = 8192;

  struct Pick {
    bool stream;  // non-temporal stores
    bool record;  // whether to record this call's cost
  };

  // The arm for the next call; `preferred` (the fixed rule's choice) until the first trial.
  Pick next(bool preferred) {
    const std::uint64_t call = calls_.fetch_add(1, std::memory_order_relaxed);
    if (call == 0) inUse_.store(preferred, std::memory_order_relaxed);
    const bool inUse = inUse_.load(std::memory_order_relaxed);
    std::uint64_t trial = trialAt_.load(std::memory_order_relaxed);
    if (call < trial) {
      const bool settled = call >= settledAt_.load(std::memory_order_relaxed);
      if (!settled || cheaper(inUse) == inUse) return {inUse, settled};
      // The arm in use now costs more than the other did at its last trial
      // (the machine's state, or the tensors of this class, changed): try it now.
      trial = call;
      trialAt_.store(call, std::memory_order_relaxed);
    }
    if (call < trial + kTrials) return {!inUse, call >= trial + kSettle};
    if (call != trial + kTrials) return {inUse, false};  // another thread is ending the trial
    const bool best = cheaper(inUse);
    const unsigned gap = best == inUse ? std::min(2 * gap_.load(std::memory_order_relaxed), kMaxGap) : kFirstTrial;
    gap_.store(gap, std::memory_order_relaxed);
    inUse_.store(best, std::memory_order_relaxed);
    settledAt_.store(call + kSettle, std::memory_order_relaxed);
    trialAt_.store(call + gap, std::memory_order_relaxed);
    return {best, false};
  }

  // The calls an arm's cost is taken from: a trial's recorded calls.
  static constexpr unsigned kRecent = kTrials - kSettle;

  // A call's cost (seconds per byte touched).
  void record(bool stream, double cost) {
    Costs& c = costs_[stream ? 1 : 0];
    const std::uint64_t i = c.count.fetch_add(1, std::memory_order_relaxed);
    c.recent[i % kRecent].store(cost, std::memory_order_relaxed);
  }

  // An arm's cost: the median (the upper one) of its last kRecent recorded
  // calls, 0 before any; a lasting change of the machine's state shows after
  // kRecent / 2 calls. Not a running mean: single calls on this VM take up
  // to 1.4x the usual now and then, and a mean that such a call pulls up sent
  // the channels-last eval of 64x256x14x14 to its slower plain stores for
  // 26-90 calls at a time (plain 424-495 us, streamed 355-400).
  double cost(bool stream) const {
    const Costs& c = costs_[stream ? 1 : 0];
    double v[kRecent];
    std::size_t k = 0;
    for (const auto& r : c.recent)
      if (const double x = r.load(std::memory_order_relaxed); x > 0) v[k++] = x;
    if (k == 0) return 0;
    std::nth_element(v, v + k / 2, v + k);
    return v[k / 2];
  }

  // The arm to use: the other one when its cost is lower by more than
  // kMargin (a switch costs kSettle unrecorded calls, and costs this close
  // are noise), else `inUse`, also while either arm has no cost yet.
  static constexpr double kMargin = 0.02;
  bool cheaper(bool inUse) const {
    const double current = cost(inUse), other = cost(!inUse);
    if (current <= 0 || other <= 0) return inUse;
    return other < current * (1 - kMargin) ? !inUse : inUse;
  }

 private:
  // Threads race only to lose an update or to run a call on the other arm,
  // never to change a stored value. Call numbers are 64-bit: they do not wrap.
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<bool> inUse_{false};
  std::atomic<std::uint64_t> trialAt_{kFirstTrial}, settledAt_{kSettle};
  std::atomic<unsigned> gap_{kFirstTrial};
  struct Costs {
    std::atomic<double> recent[kRecent] = {};
    std::atomic<std::uint64_t> count{0};
  };
  Costs costs_[2];
};

}  // namespace rebatch
