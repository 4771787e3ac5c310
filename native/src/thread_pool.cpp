#include "rebatch/thread_pool.h"

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace rebatch {
namespace {

std::size_t availableCpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return std::size_t(n);
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? n : 1;
}

std::size_t initialThreads() {
  if (const char* env = std::getenv("REBATCH_NUM_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 1024) return std::size_t(v);
  }
  return availableCpus();
}

// Ops tend to come back to back (a training loop, a benchmark), and a worker
// asleep on a condition variable takes 5-25 us to wake on the project's
// machine -- as long as a whole op on a 1 MiB tensor. So a worker, and the
// caller waiting for the workers, first spin this long before sleeping.
constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpuRelax() {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Spins until done() or kSpin has passed; true when done() became true.
template <class F>
bool spinUntil(F&& done) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 0;; ++i) {
    if (done()) return true;
    cpuRelax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() >= until) return false;
  }
}

class Pool {
 public:
  Pool() { resize(initialThreads()); }
  ~Pool() { stopWorkers(); }

  // Lock-free: callable from inside a task or while another caller runs a job.
  std::size_t size() { return threadsPub_.load(std::memory_order_acquire); }

  void resize(std::size_t n) {
    std::lock_guard<std::mutex> use(useMutex_);
    // The same size keeps the workers: no thread churn for callers that set
    // the count before every op (the benchmark does).
    if (n < 1) n = 1;
    if (n == threads_) return;
    stopWorkers();
    threads_ = n;
    threadsPub_.store(threads_, std::memory_order_release);
    stop_ = false;
    stopPub_.store(false);
    for (std::size_t i = 1; i < threads_; ++i) workers_.emplace_back([this] { workerLoop(); });
  }

  void run(std::size_t count, const std::function<void(std::size_t)>& task) {
    std::unique_lock<std::mutex> use(useMutex_, std::try_to_lock);
    if (count <= 1 || !use.owns_lock() || threads_ == 1) {
      for (std::size_t i = 0; i < count; ++i) task(i);
      return;
    }
    Job job{&task, count, {0}, {count}};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
      generationPub_.store(generation_, std::memory_order_release);
    }
    wake_.notify_all();
    drain(job);
    spinUntil([&] { return job.pending.load() == 0 && activePub_.load() == 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    // `job` lives on this stack: return only when no worker can still touch it
    // (checked again under the lock: a late worker may have joined meanwhile).
    done_.wait(lock, [&] { return job.pending.load() == 0 && active_ == 0; });
    job_ = nullptr;
  }

 private:
  struct Job {
    const std::function<void(std::size_t)>* task;
    std::size_t count;
    std::atomic<std::size_t> next;
    std::atomic<std::size_t> pending;  // changed under mutex_; read without it while spinning
  };

  // Takes indices until none are left; the last finisher signals the caller.
  void drain(Job& job) {
    std::size_t finished = 0;
    for (std::size_t i; (i = job.next.fetch_add(1)) < job.count;) {
      (*job.task)(i);
      ++finished;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    job.pending -= finished;
    if (job.pending == 0) done_.notify_all();
  }

  void workerLoop() {
    std::size_t seen = 0;
    for (;;) {
      spinUntil([&] { return stopPub_.load() || generationPub_.load(std::memory_order_acquire) != seen; });
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
        if (stop_) return;
        seen = generation_;
        job = job_;
        activePub_.store(++active_);
      }
      drain(*job);
      std::lock_guard<std::mutex> lock(mutex_);
      activePub_.store(--active_);
      if (active_ == 0) done_.notify_all();
    }
  }

  void stopWorkers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      stopPub_.store(true);
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex useMutex_;  // held by the one caller that owns the workers
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  std::size_t threads_ = 1;
  Job* job_ = nullptr;
  std::size_t active_ = 0;
  std::size_t generation_ = 0;
  bool stop_ = false;
  // Copies of the fields above, written under mutex_, for the spinning reads.
  std::atomic<std::size_t> threadsPub_{1}, activePub_{0}, generationPub_{0};
  std::atomic<bool> stopPub_{false};
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static teardown order
  return *p;
}

}  // namespace

std::size_t numThreads() { return pool().size(); }
void setNumThreads(std::size_t n) { pool().resize(n); }
void parallelFor(std::size_t count, const std::function<void(std::size_t)>& task) {
  pool().run(count, task);
}

void parallelForContiguous(std::size_t count, const std::function<void(std::size_t)>& task) {
  const std::size_t lanes = std::min(count, numThreads());
  if (lanes <= 1 || count > 0xffffffffu) return parallelFor(count, task);
  // Each lane's indices left, [front, back), in one word: the owner takes
  // the front, others the back, and a compare-exchange settles a race.
  const auto pack = [](std::uint64_t front, std::uint64_t back) { return front << 32 | back; };
  std::vector<std::atomic<std::uint64_t>> left(lanes);
  for (std::size_t l = 0; l < lanes; ++l) left[l].store(pack(l * count / lanes, (l + 1) * count / lanes));
  const auto take = [&](std::size_t lane, bool fromFront, std::size_t& index) {
    std::uint64_t r = left[lane].load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t front = r >> 32, back = r & 0xffffffffu;
      if (front >= back) return false;
      const std::uint64_t next = fromFront ? pack(front + 1, back) : pack(front, back - 1);
      if (left[lane].compare_exchange_weak(r, next, std::memory_order_relaxed)) {
        index = std::size_t(fromFront ? front : back - 1);
        return true;
      }
    }
  };
  parallelFor(lanes, [&](std::size_t lane) {
    std::size_t i;
    while (take(lane, true, i)) task(i);
    for (std::size_t k = 1; k < lanes; ++k)
      while (take((lane + k) % lanes, false, i)) task(i);
  });
}

}  // namespace rebatch
