#include <atomic>
#include <thread>
#include <vector>

#include "check.h"
#include "rebatch/thread_pool.h"

using namespace rebatch;

TEST(parallel_for_runs_every_index_once) {
  for (std::size_t threads : {1, 2, 3, 8}) {
    setNumThreads(threads);
    CHECK(numThreads() == threads);
    for (std::size_t count : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(count);
      parallelFor(count, [&](std::size_t i) { hits[i].fetch_add(1); });
      for (auto& h : hits) CHECK(h.load() == 1);
    }
  }
}

// Contiguity is a matter of speed (the bench); what must hold is that every
// index runs exactly once, whatever the threads' timing and steals.
TEST(contiguous_parallel_for_runs_every_index_once) {
  for (std::size_t threads : {1, 2, 3, 8}) {
    setNumThreads(threads);
    for (std::size_t count : {0, 1, 2, 3, 7, 64, 1001}) {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<std::atomic<int>> hits(count);
        parallelForContiguous(count, [&](std::size_t i) { hits[i].fetch_add(1); });
        for (auto& h : hits) CHECK(h.load() == 1);
      }
    }
  }
}

TEST(concurrent_and_nested_callers_do_not_deadlock) {
  setNumThreads(2);
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep)
        parallelFor(16, [&](std::size_t) { parallelForContiguous(3, [&](std::size_t) { total.fetch_add(1); }); });
    });
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int rep = 0; rep < 200; ++rep)
        parallelForContiguous(16, [&](std::size_t) { parallelFor(3, [&](std::size_t) { total.fetch_add(1); }); });
    });
  for (auto& c : callers) c.join();
  CHECK(total.load() == 8L * 200 * 16 * 3);
}

CHECK_MAIN()
