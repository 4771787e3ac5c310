// Float storage placed within cache lines on purpose: a 32-byte load that
// straddles two lines costs two, from L1 as from memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace rebatch {

constexpr std::size_t kLineFloats = 16;  // floats per 64-byte cache line

// Where in its cache line p (float-aligned) starts, in floats.
inline std::size_t phaseOf(const float* p) {
  return reinterpret_cast<std::uintptr_t>(p) / sizeof(float) % kLineFloats;
}

// n floats from one allocation, the first `phase` floats past a cache line:
// the kernels' scratch (phase 0), and the channels-last per-channel arrays at
// x's phase, so that their vectors are aligned exactly where x's are (see
// skipToAligned in nhwc.cpp). Measured on 256x512 at Node's buffer offset:
// the row-major moments 8.8 -> 7.9 us with their scratch line-aligned.
class LineFloats {
 public:
  explicit LineFloats(std::size_t n, std::size_t phase = 0) : storage_(new float[n + 2 * kLineFloats]) {
    const auto at = reinterpret_cast<std::uintptr_t>(storage_.get());
    const std::uintptr_t line = kLineFloats * sizeof(float);
    data_ = reinterpret_cast<float*>((at + line - 1) / line * line) + phase;
  }
  float* data() const { return data_; }

 private:
  std::unique_ptr<float[]> storage_;
  float* data_;
};

}  // namespace rebatch
