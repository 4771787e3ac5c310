#include "rebatch/probe.h"

#include <algorithm>
#include <vector>

#include "kernels.h"
#include "layout_ops.h"
#include "rebatch/isa.h"
#include "rebatch/thread_pool.h"

namespace rebatch {
namespace {

constexpr std::size_t kChunk = std::size_t(1) << 16;

template <class F>
void chunked(std::size_t n, F&& f) {
  const std::size_t chunks = (n + kChunk - 1) / kChunk;
  forEachUnit(n, kParallelMinElements, chunks, [&](std::size_t i) { f(i * kChunk, std::min(kChunk, n - i * kChunk)); });
}

}  // namespace

double probeRead(const float* x, std::size_t n) {
  const KernelTable& k = activeKernels();
  std::vector<double> sums((n + kChunk - 1) / kChunk);
  chunked(n, [&](std::size_t at, std::size_t len) { sums[at / kChunk] = k.probeRead(x + at, len); });
  double s = 0;
  for (double v : sums) s += v;
  return s;
}

void probeCopy(const float* x, float* y, std::size_t n, bool stream) {
  const KernelTable& k = activeKernels();
  chunked(n, [&](std::size_t at, std::size_t len) {
    k.probeCopy(x + at, y + at, len, stream);
    if (stream) k.fence();
  });
}

void probeTriad(const float* a, const float* b, float* out, std::size_t n, bool stream) {
  const KernelTable& k = activeKernels();
  chunked(n, [&](std::size_t at, std::size_t len) {
    k.probeTriad(a + at, b + at, out + at, len, stream);
    if (stream) k.fence();
  });
}

}  // namespace rebatch
