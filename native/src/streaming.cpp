// The non-temporal store policy of layout_ops.h.
#include <cstdlib>

#include "layout_ops.h"
#include "rebatch/thread_pool.h"

namespace rebatch {
namespace {

// Measured on the project's machine (see layout_ops.h): one thread writes
// large outputs faster with streaming stores from 25 MiB touched; two threads
// get more from the shared L3 with plain stores up to ~26 MiB, and gain from
// streaming again at ~38 MiB and beyond.
constexpr std::size_t kOneThreadMinBytes = std::size_t(16) << 20;
constexpr std::size_t kThreadsMinBytes = std::size_t(32) << 20;

long long envMinBytes() {
  static const long long bytes = [] {
    if (const char* env = std::getenv("REBATCH_STREAM_MIN_BYTES")) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(env, &end, 10);
      if (end != env && *end == '\0') return static_cast<long long>(v);
    }
    return -1LL;
  }();
  return bytes;
}

}  // namespace

bool streamOutput(std::size_t bytesTouched) {
  const long long env = envMinBytes();
  if (env >= 0) return bytesTouched >= static_cast<unsigned long long>(env);
  return bytesTouched >= (numThreads() > 1 ? kThreadsMinBytes : kOneThreadMinBytes);
}

}  // namespace rebatch
