// Per-channel moments (count, mean, M2) and Chan's merge of two of them.
#pragma once
#include <cstddef>

namespace rebatch {

// M2 is the sum of squared deviations from the mean: biased variance = m2 / count.
struct Moments {
  double count = 0;
  double mean = 0;
  double m2 = 0;
};

// Chan, Golub & LeVeque's pairwise update: exact in exact arithmetic, and it
// never subtracts two large sums, so it keeps float64 accuracy at any offset.
inline Moments chanMerge(const Moments& a, const Moments& b) {
  if (b.count == 0) return a;
  if (a.count == 0) return b;
  const double n = a.count + b.count;
  const double delta = b.mean - a.mean;
  const double wb = b.count / n;
  return {n, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

// Array form over `channels` entries; counts are per set (shared by all channels).
// Safe when `out` aliases either input.
void mergeMomentsArrays(std::size_t channels, double countA, const double* meanA, const double* m2A,
                        double countB, const double* meanB, const double* m2B, double* meanOut,
                        double* m2Out);

}  // namespace rebatch
