// NEON kernels (AArch64, where NEON is always present).
#include <arm_neon.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <cstring>

#include "kernels.h"

namespace rebatch {
namespace neon {
namespace {

struct V {
  using T = float32x4_t;
  static constexpr std::size_t W = 4;
  static constexpr const char* kName = "neon";

  static T zero() { return vdupq_n_f32(0.0f); }
  static T set1(float v) { return vdupq_n_f32(v); }
  static T load(const float* p) { return vld1q_f32(p); }
  static T pin(T v) { return v; }
  // NEON has no masked load: go through a zeroed stack buffer (tails only).
  static T loadN(const float* p, std::size_t n) {
    float t[4] = {0, 0, 0, 0};
    std::memcpy(t, p, n * sizeof(float));
    return vld1q_f32(t);
  }
  static void store(float* p, T v) { vst1q_f32(p, v); }
  static void storeN(float* p, T v, std::size_t n) {
    float t[4];
    vst1q_f32(t, v);
    std::memcpy(p, t, n * sizeof(float));
  }
  static constexpr bool kStream = false;  // plain stores only
  static void stream(float* p, T v) { vst1q_f32(p, v); }
  static void fence() {}
  static T firstN(T v, std::size_t n) {
    static const std::uint32_t bits[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), vld1q_u32(bits + 4 - n)));
  }
  static T selectFirst(std::size_t n, T a, T b) {
    static const std::uint32_t bits[8] = {~0u, ~0u, ~0u, ~0u, 0, 0, 0, 0};
    return vbslq_f32(vld1q_u32(bits + 4 - n), a, b);
  }
  static bool allLessEqual(T a, T b) { return vminvq_u32(vcleq_f32(a, b)) != 0; }
  static void prefetch(const float* p) { __builtin_prefetch(p); }
  static T add(T a, T b) { return vaddq_f32(a, b); }
  static T sub(T a, T b) { return vsubq_f32(a, b); }
  static T mul(T a, T b) { return vmulq_f32(a, b); }
  static T fma(T a, T b, T c) { return vfmaq_f32(c, a, b); }
  static T reluOf(T v) {
    // Keep NaN (vmaxq would too) and match the scalar spec's sign of zero.
    return vbslq_f32(vcltq_f32(v, vdupq_n_f32(0.0f)), vdupq_n_f32(0.0f), v);
  }
  static T keepWherePositive(T y, T v) {
    return vreinterpretq_f32_u32(
        vbicq_u32(vreinterpretq_u32_f32(v), vcleq_f32(y, vdupq_n_f32(0.0f))));
  }
  static double hsum(T v) {
    return vaddvq_f64(vaddq_f64(vcvt_f64_f32(vget_low_f32(v)), vcvt_high_f64_f32(v)));
  }
};

// KernelTable::invstdOf, two channels at a time.
void invstdOf(const double* m2, std::size_t n, double count, double eps, double* out) {
  const float64x2_t c = vdupq_n_f64(count), e = vdupq_n_f64(eps), one = vdupq_n_f64(1.0);
  std::size_t i = 0;
  for (; i + 2 <= n; i += 2) vst1q_f64(out + i, vdivq_f64(one, vsqrtq_f64(vaddq_f64(vdivq_f64(vld1q_f64(m2 + i), c), e))));
  for (; i < n; ++i) out[i] = channelInvstd(m2[i], count, eps);
}

#include "simd_kernels.inl"

}  // namespace

const KernelTable& table() { return simdTable(); }

}  // namespace neon
}  // namespace rebatch
