// Each layout's implementation of the ops, called by ops.cpp after validation.
// nchw.cpp walks (group, channel) slabs of strided runs; nhwc.cpp walks fixed
// row ranges with vectors across channels. Both split work by the tensor's
// dims only, never by the thread count, so results do not depend on it.
#pragma once
#include "rebatch/types.h"

namespace rebatch {

struct KernelTable;

// What a forward needs per (group, channel), already in float32 form.
struct ForwardParams {
  const double* mean;    // groups * C
  const double* invstd;  // groups * C
  const float* weight;   // C or null
  const float* bias;     // C or null
  bool relu;
};

struct BackwardParams {
  ForwardParams fwd;
  bool training;
  float* dweight;  // C or null
  float* dbias;    // C or null
};

// Below this many elements an op runs on the calling thread.
constexpr std::size_t kParallelMinElements = 1 << 15;

namespace nchw {
void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2);
void training(const KernelTable& k, const float* x, float* y, const TensorDims& d, double eps,
              ForwardParams p, double* saveMean, double* saveInvstd);
void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p);
void backward(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
              BackwardParams p);
// The backward's two halves (ops.h: batchNormGradSums / batchNormGradApply).
void gradSums(const KernelTable& k, const float* dy, const float* x, const TensorDims& d, const double* mean,
              const double* invstd, double* sumDy, double* sumDyXhat);
void gradApply(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
               const double* mean, const double* a, const double* b, const double* c);
}  // namespace nchw

namespace nhwc {
void moments(const KernelTable& k, const float* x, const TensorDims& d, double* mean, double* m2);
void withStats(const KernelTable& k, const float* x, float* y, const TensorDims& d, ForwardParams p);
void backward(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
              BackwardParams p);
// The backward's two halves (ops.h: batchNormGradSums / batchNormGradApply).
void gradSums(const KernelTable& k, const float* dy, const float* x, const TensorDims& d, const double* mean,
              const double* invstd, double* sumDy, double* sumDyXhat);
void gradApply(const KernelTable& k, const float* dy, const float* x, float* dx, const TensorDims& d,
               const double* mean, const double* a, const double* b, const double* c);
}  // namespace nhwc

}  // namespace rebatch
