// The non-temporal store policy of layout_ops.h.
#include <cstdlib>

#include "layout_ops.h"

namespace rebatch {
namespace {

constexpr std::size_t kDefaultStreamMinBytes = std::size_t(16) << 20;

std::size_t streamMinBytes() {
  static const std::size_t bytes = [] {
    if (const char* env = std::getenv("REBATCH_STREAM_MIN_BYTES")) {
      char* end = nullptr;
      const unsigned long long v = std::strtoull(env, &end, 10);
      if (end != env && *end == '\0') return std::size_t(v);
    }
    return kDefaultStreamMinBytes;
  }();
  return bytes;
}

}  // namespace

bool streamOutput(std::size_t bytesTouched) { return bytesTouched >= streamMinBytes(); }

}  // namespace rebatch
