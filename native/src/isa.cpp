#include "rebatch/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace rebatch {
namespace {

#if defined(REBATCH_HAVE_AVX2)
// AVX2 and FMA in the CPU, and the OS saving YMM state (OSXSAVE + XCR0 bits 1-2).
bool cpuHasAvx2Fma() {
  unsigned a = 0, b = 0, c = 0, d = 0;
#if defined(_MSC_VER)
  int r[4];
  __cpuid(r, 1);
  c = unsigned(r[2]);
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!(fma && osxsave && avx)) return false;
  if ((_xgetbv(0) & 6) != 6) return false;
  __cpuidex(r, 7, 0);
  b = unsigned(r[1]);
#else
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!(fma && osxsave && avx)) return false;
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 6) != 6) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
#endif
  return b & (1u << 5);
}
#endif

const KernelTable* tableFor(const char* name) {
  if (std::strcmp(name, "scalar") == 0) return &scalar::table();
#if defined(REBATCH_HAVE_AVX2)
  if (std::strcmp(name, "avx2") == 0) {
    static const bool ok = cpuHasAvx2Fma();
    return ok ? &avx2::table() : nullptr;
  }
#endif
#if defined(REBATCH_HAVE_NEON)
  if (std::strcmp(name, "neon") == 0) return &neon::table();
#endif
  return nullptr;
}

const KernelTable* bestTable() {
  for (const char* name : {"avx2", "neon"})
    if (const KernelTable* t = tableFor(name)) return t;
  return &scalar::table();
}

const char* gNote = "";

const KernelTable* initialTable() {
  const char* wanted = std::getenv("REBATCH_ISA");
  if (wanted && *wanted) {
    if (const KernelTable* t = tableFor(wanted)) return t;
    gNote = "REBATCH_ISA names an ISA this build or CPU does not support; using the best available";
  }
  return bestTable();
}

std::atomic<const KernelTable*>& current() {
  static std::atomic<const KernelTable*> t{initialTable()};
  return t;
}

}  // namespace

const KernelTable& activeKernels() { return *current().load(std::memory_order_acquire); }
const char* activeIsa() { return activeKernels().name; }
const char* isaNote() {
  current();
  return gNote;
}
bool isaSupported(const char* name) { return tableFor(name) != nullptr; }
bool selectIsa(const char* name) {
  const KernelTable* t = tableFor(name);
  if (!t) return false;
  current().store(t, std::memory_order_release);
  return true;
}

}  // namespace rebatch
