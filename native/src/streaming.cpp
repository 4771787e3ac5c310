// The non-temporal store policy of layout_ops.h.
#include <cstdlib>

#include "layout_ops.h"
#include "store_arms.h"

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

// Size classes of the measured choice: one per doubling of the bytes touched,
// from kMeasuredStoresMinBytes (the last holds all larger passes).
constexpr unsigned kSizeClasses = 12;

unsigned sizeClass(std::size_t bytesTouched) {
  unsigned k = 0;
  for (std::size_t b = kMeasuredStoresMinBytes; b * 2 <= bytesTouched && k + 1 < kSizeClasses; b *= 2) ++k;
  return k;
}

StoreArms& armsOf(StorePass pass, std::size_t bytesTouched, bool parallel) {
  static StoreArms arms[unsigned(StorePass::Count)][kSizeClasses][2];
  return arms[unsigned(pass)][sizeClass(bytesTouched)][parallel ? 1 : 0];
}

}  // namespace

bool streamOutput(std::size_t bytesTouched, std::size_t minBytes) {
  const long long env = envMinBytes();
  if (env >= 0) return bytesTouched >= static_cast<unsigned long long>(env);
  return bytesTouched >= minBytes;
}

StoreChoice chooseStores(StorePass pass, std::size_t bytesTouched, std::size_t minBytes, bool parallel) {
  const bool rule = streamOutput(bytesTouched, minBytes);
  if (envMinBytes() >= 0 || bytesTouched < kMeasuredStoresMinBytes) return {rule, nullptr};
  StoreArms& arms = armsOf(pass, bytesTouched, parallel);
  const StoreArms::Pick pick = arms.next(rule);
  return {pick.stream, pick.record ? &arms : nullptr};
}

void recordStores(const StoreChoice& choice, std::size_t bytesTouched, double seconds) {
  if (choice.arms) choice.arms->record(choice.stream, seconds / double(bytesTouched));
}

}  // namespace rebatch
