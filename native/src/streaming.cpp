// The non-temporal store policy of layout_ops.h.
#include <cstdlib>

#include "layout_ops.h"

namespace rebatch {
namespace {

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

bool streamOutput(std::size_t bytesTouched, std::size_t minBytes) {
  const long long env = envMinBytes();
  if (env >= 0) return bytesTouched >= static_cast<unsigned long long>(env);
  return bytesTouched >= minBytes;
}

}  // namespace rebatch
