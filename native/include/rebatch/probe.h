// Memory-bandwidth probes, for benchmarks: the simplest read, copy and triad
// loops with the active ISA's vectors, split in contiguous chunks over the
// thread pool (so a probe uses the same threads as the ops). They measure the
// roofline an op's effective bandwidth is compared with.
#pragma once
#include <cstddef>

namespace rebatch {

// Reads x[0, n); returns a checksum (so the reads cannot be optimized away).
double probeRead(const float* x, std::size_t n);
// y = x. stream: non-temporal stores where the ISA has them.
void probeCopy(const float* x, float* y, std::size_t n, bool stream);
// out = a + b: two reads and a write, the traffic of a backward pass.
void probeTriad(const float* a, const float* b, float* out, std::size_t n, bool stream);

}  // namespace rebatch
