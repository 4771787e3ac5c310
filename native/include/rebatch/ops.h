// The native core's operations. Plain pointers and structs, no exceptions:
// every function validates what it can and returns a Status before touching
// any data. Statistics are float64; tensors are float32.
//
// Per-(group, channel) arrays are group-major: entry g * C + c.
// A null `weight` means 1, a null `bias` means 0.
#pragma once
#include <cstddef>

#include "rebatch/types.h"

namespace rebatch {

// Elements per channel in group g: groupSamples(g) * spatial.
Status channelMoments(const float* x, const TensorDims& d, double* mean, double* m2);

// Training forward: normalizes each group with its own batch statistics
// (biased variance) and returns them as saveMean / saveInvstd (groups * C).
// Groups with one value per channel are an error, as in PyTorch.
Status batchNormTraining(const float* x, float* y, const TensorDims& d, const float* weight,
                         const float* bias, double eps, bool relu, double* saveMean,
                         double* saveInvstd);

// Forward with given statistics (eval, frozen, population): mean and invstd
// hold groups * C entries.
Status batchNormWithStats(const float* x, float* y, const TensorDims& d, const double* mean,
                          const double* invstd, const float* weight, const float* bias,
                          bool relu);

// Forward with a given mean and variance, as running statistics hold them:
// invstdOut = 1 / sqrt(variance + eps) (returned for the backward), then
// batchNormWithStats. mean, variance and invstdOut hold groups * C entries.
Status batchNormWithVariance(const float* x, float* y, const TensorDims& d, const double* mean,
                             const double* variance, double eps, const float* weight, const float* bias,
                             bool relu, double* invstdOut);

// Backward. training: mean/invstd are the saved batch statistics and the
// gradient flows through them; otherwise they are constants. dx, dweight and
// dbias may each be null when not wanted. With relu the mask is recomputed
// from x, mean, invstd, weight and bias.
Status batchNormBackward(const float* dy, const float* x, float* dx, const TensorDims& d,
                         const double* mean, const double* invstd, const float* weight,
                         const float* bias, bool relu, bool training, float* dweight,
                         float* dbias);

// The backward in two halves, for statistics that span more than one call:
// SyncBatchNorm sums over workers, GroupNorm over the channels of a group
// (PyTorch's batch_norm_backward_reduce / batch_norm_backward_elemt).
// Sums per (group, channel), in float64: sumDy = sum(dy), sumDyXhat =
// sum(dy * (x - mean) * invstd). No ReLU, no weight.
Status batchNormGradSums(const float* dy, const float* x, const TensorDims& d, const double* mean,
                         const double* invstd, double* sumDy, double* sumDyXhat);
// dx = a * dy + b * (x - mean) + c with per-(group, channel) coefficients
// (groups * C each); x - mean is formed as in the other kernels (float32
// hi/lo mean). The training backward is a = w*invstd, b = -a*invstd*mean(dy*xhat),
// c = -a*mean(dy).
Status batchNormGradApply(const float* dy, const float* x, float* dx, const TensorDims& d,
                          const double* mean, const double* a, const double* b, const double* c);

// invstd[i] = 1 / sqrt(variance[i] + eps).
Status invstdFromVariance(const double* variance, std::size_t n, double eps, double* invstd);

// PyTorch's running statistics: running = (1 - m) * running + m * batch, with
// the unbiased batch variance m2 / (count - 1). count must exceed 1.
Status updateRunningStats(float* runningMean, float* runningVar, std::size_t channels,
                          const double* mean, const double* m2, double count, double momentum);
Status updateRunningStats(double* runningMean, double* runningVar, std::size_t channels,
                          const double* mean, const double* m2, double count, double momentum);

// Checks a TensorDims: positive sizes, no overflow. Used by every op above.
Status validateDims(const TensorDims& d);

}  // namespace rebatch
