// AVX2 + FMA kernels. Only this file is compiled with -mavx2 -mfma; it is
// called only after isa.cpp has checked cpuid and xgetbv.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "kernels.h"

namespace rebatch {
namespace avx2 {
namespace {

struct V {
  using T = __m256;
  static constexpr std::size_t W = 8;
  static constexpr const char* kName = "avx2";

  static __m256i mask(std::size_t n) {
    alignas(32) static const std::int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                       0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bits + 8 - n));
  }
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  // A loaded value the compiler must keep in a register: without this GCC
  // folds the same load into every instruction that uses it, and the load
  // ports (two vector loads per cycle) become the bottleneck.
  static T pin(T v) {
#if defined(__GNUC__)
    __asm__("" : "+x"(v));
#endif
    return v;
  }
  static T loadN(const float* p, std::size_t n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static void storeN(float* p, T v, std::size_t n) { _mm256_maskstore_ps(p, mask(n), v); }
  static constexpr bool kStream = true;
  static void stream(float* p, T v) { _mm256_stream_ps(p, v); }
  static void fence() { _mm_sfence(); }
  static T firstN(T v, std::size_t n) { return _mm256_and_ps(v, _mm256_castsi256_ps(mask(n))); }
  static T selectFirst(std::size_t n, T a, T b) { return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(mask(n))); }
  static bool allLessEqual(T a, T b) { return _mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_LE_OQ)) == 0xFF; }
  static void prefetch(const float* p) { _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  // maxps returns its second operand when either is NaN: NaN stays NaN, as in PyTorch.
  static T reluOf(T v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  static T keepWherePositive(T y, T v) {
    return _mm256_and_ps(v, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_NLE_UQ));
  }
  static double hsum(T v) {
    const __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                    _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

// KernelTable::invstdOf, four channels at a time.
void invstdOf(const double* m2, std::size_t n, double count, double eps, double* out) {
  const __m256d c = _mm256_set1_pd(count), e = _mm256_set1_pd(eps), one = _mm256_set1_pd(1.0);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    _mm256_storeu_pd(out + i, _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_add_pd(_mm256_div_pd(_mm256_loadu_pd(m2 + i), c), e))));
  for (; i < n; ++i) out[i] = channelInvstd(m2[i], count, eps);
}

#include "simd_kernels.inl"

}  // namespace

const KernelTable& table() { return simdTable(); }

}  // namespace avx2
}  // namespace rebatch
