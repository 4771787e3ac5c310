// One process-wide pool of worker threads for the ops.
#pragma once
#include <cstddef>
#include <functional>

namespace rebatch {

// Threads the pool uses (the calling thread included): setNumThreads, else
// REBATCH_NUM_THREADS, else the CPUs this process may run on.
std::size_t numThreads();
// n >= 1. Waits for running work to finish before resizing.
void setNumThreads(std::size_t n);

// Runs task(i) for every i in [0, count) and returns when all are done. The
// caller works too. Runs inline when count == 1, when one thread is set, or
// when another thread is already using the pool (nested or concurrent calls),
// so it never deadlocks. Tasks must not throw.
void parallelFor(std::size_t count, const std::function<void(std::size_t)>& task);

// parallelFor over indices that are pieces of one walk through memory: each
// thread takes a contiguous range of them, in order, and a thread done early
// takes what is left of the others' ranges from their ends. Each core then
// streams one region, which its prefetchers follow; indices handed out one by
// one interleave the threads' pieces (on two threads, elementwise passes
// over 6-26 MB measured 15-40% slower so, but for the channels-last eval of
// 64x256x14x14, even).
void parallelForContiguous(std::size_t count, const std::function<void(std::size_t)>& task);

}  // namespace rebatch
