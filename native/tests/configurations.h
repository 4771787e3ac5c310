// What the shape-driven native tests share: the ISAs to run, the loop over
// every ISA and thread count, how a configuration is named in a failure, and
// the element-wise comparison against a float64 reference.
#pragma once
#include <string>
#include <vector>

#include "check.h"
#include "rebatch/isa.h"
#include "rebatch/thread_pool.h"
#include "rebatch/types.h"

namespace testing {

inline std::vector<const char*> isas() {
  std::vector<const char*> out;
  for (const char* name : {"scalar", "avx2", "neon"})
    if (rebatch::isaSupported(name)) out.push_back(name);
  return out;
}

// Runs body(isa, threads) for every ISA and thread counts 1 and 2, then
// restores the scalar ISA and two threads.
template <class F>
void forEveryIsaAndThreads(F&& body) {
  for (const char* isa : isas()) {
    CHECK(rebatch::selectIsa(isa));
    for (std::size_t threads : {1, 2}) {
      rebatch::setNumThreads(threads);
      body(isa, threads);
    }
  }
  rebatch::selectIsa("scalar");
  rebatch::setNumThreads(2);
}

// "avx2 threads=2 NHWC 4x3x9": the start of a failure message.
inline std::string describeRun(const rebatch::TensorDims& d, const char* isa, std::size_t threads) {
  return std::string(isa) + " threads=" + std::to_string(threads) +
         (d.layout == rebatch::Layout::NCHW ? " NCHW " : " NHWC ") + std::to_string(d.n) + "x" + std::to_string(d.c) +
         "x" + std::to_string(d.spatial);
}

// got[i] within atol + rtol * |want[i]| for every i < want.size(); reports the first element that is not.
inline bool allNear(const float* got, const std::vector<double>& want, double rtol, double atol,
                    const std::string& what) {
  for (std::size_t i = 0; i < want.size(); ++i)
    if (!check::near(got[i], want[i], rtol, atol))
      return check::fail(__FILE__, __LINE__, what + ": element " + std::to_string(i) + " = " +
                                                 std::to_string(got[i]) + ", want " + std::to_string(want[i]));
  return true;
}

}  // namespace testing
