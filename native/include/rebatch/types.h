// Plain types shared by the native core and its callers: no Node, no exceptions.
#pragma once
#include <cstddef>
#include <cstdint>

namespace rebatch {

enum class Layout : int { NCHW = 0, NHWC = 1 };

// A float32 tensor seen as (N, C, spatial) in one of two memory orders.
// NCHW: x[(n*C + c)*spatial + s]; NHWC: x[(n*spatial + s)*C + c].
// Ghost batches: `groupSize` consecutive samples along N share statistics; the
// last group may be smaller (torch.split semantics). groupSize == 0 means N.
struct TensorDims {
  std::size_t n = 0;
  std::size_t c = 0;
  std::size_t spatial = 1;
  Layout layout = Layout::NCHW;
  std::size_t groupSize = 0;

  std::size_t elements() const { return n * c * spatial; }
  std::size_t samplesPerGroup() const { return groupSize == 0 || groupSize > n ? n : groupSize; }
  std::size_t groups() const {
    std::size_t g = samplesPerGroup();
    return g == 0 ? 0 : (n + g - 1) / g;
  }
  std::size_t groupBegin(std::size_t g) const { return g * samplesPerGroup(); }
  std::size_t groupSamples(std::size_t g) const {
    std::size_t b = groupBegin(g), e = b + samplesPerGroup();
    return (e > n ? n : e) - b;
  }
};

enum class StatusCode : int { Ok = 0, InvalidArgument = 1, OutOfMemory = 2 };

// Errors cross the boundary as values; `message` points to static text.
struct Status {
  StatusCode code = StatusCode::Ok;
  const char* message = "";
  bool ok() const { return code == StatusCode::Ok; }
  static Status Ok() { return {}; }
  static Status Invalid(const char* m) { return {StatusCode::InvalidArgument, m}; }
};

}  // namespace rebatch
