// The addon's exports: each op parses its arguments into an Op (binding/op.h)
// and runs it now or on a worker. No numerics here: they live in native/.
#include <napi.h>

#include <chrono>
#include <memory>
#include <string>

#include "op.h"
#include "probe.h"
#include "rebatch/isa.h"
#include "rebatch/moments.h"
#include "rebatch/ops.h"
#include "rebatch/thread_pool.h"

using namespace rebatch_binding;
using rebatch::Status;
using rebatch::TensorDims;

namespace {

struct MomentsOp : Op {
  const float* x;
  TensorDims d;
  double *mean, *m2;
  template <class A>  // Napi::CallbackInfo, or ArrayArgs
  explicit MomentsOp(const A& info) {
    d = dimsArg(info[1]);
    input(info[0], "x", d.elements(), &x);
    output(info[2], "mean", d.groups() * d.c, &mean);
    output(info[3], "m2", d.groups() * d.c, &m2);
  }
  Status run() override { return rebatch::channelMoments(x, d, mean, m2); }
};

struct TrainingOp : Op {
  const float *x, *weight, *bias;
  float* y;
  TensorDims d;
  double eps;
  bool relu;
  double *mean, *invstd;
  template <class A>  // Napi::CallbackInfo, or ArrayArgs
  explicit TrainingOp(const A& info) {
    d = dimsArg(info[2]);
    input(info[0], "x", d.elements(), &x);
    output(info[1], "out", d.elements(), &y);
    input(info[3], "weight", d.c, &weight, true);
    input(info[4], "bias", d.c, &bias, true);
    eps = numberArg(info[5], "eps");
    relu = boolArg(info[6], "relu");
    output(info[7], "mean", d.groups() * d.c, &mean);
    output(info[8], "invstd", d.groups() * d.c, &invstd);
  }
  Status run() override { return rebatch::batchNormTraining(x, y, d, weight, bias, eps, relu, mean, invstd); }
};

struct WithStatsOp : Op {
  const float *x, *weight, *bias;
  float* y;
  TensorDims d;
  const double *mean, *invstd;
  bool relu;
  template <class A>  // Napi::CallbackInfo, or ArrayArgs
  explicit WithStatsOp(const A& info) {
    d = dimsArg(info[2]);
    input(info[0], "x", d.elements(), &x);
    output(info[1], "out", d.elements(), &y);
    input(info[3], "mean", d.groups() * d.c, &mean);
    input(info[4], "invstd", d.groups() * d.c, &invstd);
    input(info[5], "weight", d.c, &weight, true);
    input(info[6], "bias", d.c, &bias, true);
    relu = boolArg(info[7], "relu");
  }
  Status run() override { return rebatch::batchNormWithStats(x, y, d, mean, invstd, weight, bias, relu); }
};

struct WithVarianceOp : Op {
  const float *x, *weight, *bias;
  float* y;
  TensorDims d;
  const double *mean, *variance;
  double eps;
  bool relu;
  double* invstd;
  template <class A>  // Napi::CallbackInfo, or ArrayArgs
  explicit WithVarianceOp(const A& info) {
    d = dimsArg(info[2]);
    input(info[0], "x", d.elements(), &x);
    output(info[1], "out", d.elements(), &y);
    input(info[3], "mean", d.groups() * d.c, &mean);
    input(info[4], "variance", d.groups() * d.c, &variance);
    eps = numberArg(info[5], "eps");
    input(info[6], "weight", d.c, &weight, true);
    input(info[7], "bias", d.c, &bias, true);
    relu = boolArg(info[8], "relu");
    output(info[9], "invstd", d.groups() * d.c, &invstd);
  }
  Status run() override {
    return rebatch::batchNormWithVariance(x, y, d, mean, variance, eps, weight, bias, relu, invstd);
  }
};

struct BackwardOp : Op {
  const float *dy, *x, *weight, *bias;
  float *dx, *dweight, *dbias;
  TensorDims d;
  const double *mean, *invstd;
  bool relu, training;
  template <class A>  // Napi::CallbackInfo, or ArrayArgs
  explicit BackwardOp(const A& info) {
    d = dimsArg(info[3]);
    input(info[0], "dy", d.elements(), &dy);
    input(info[1], "x", d.elements(), &x);
    output(info[2], "out", d.elements(), &dx, true);
    input(info[4], "mean", d.groups() * d.c, &mean);
    input(info[5], "invstd", d.groups() * d.c, &invstd);
    input(info[6], "weight", d.c, &weight, true);
    input(info[7], "bias", d.c, &bias, true);
    relu = boolArg(info[8], "relu");
    training = boolArg(info[9], "training");
    output(info[10], "dweight", d.c, &dweight, true);
    output(info[11], "dbias", d.c, &dbias, true);
  }
  Status run() override {
    return rebatch::batchNormBackward(dy, x, dx, d, mean, invstd, weight, bias, relu, training, dweight, dbias);
  }
};

// batchNormGradSums(dy, x, dims, mean, invstd, sumDy, sumDyXhat)
struct GradSumsOp : Op {
  const float *dy, *x;
  TensorDims d;
  const double *mean, *invstd;
  double *sumDy, *sumDyXhat;
  explicit GradSumsOp(const Napi::CallbackInfo& info) {
    d = dimsArg(info[2]);
    input(info[0], "dy", d.elements(), &dy);
    input(info[1], "x", d.elements(), &x);
    input(info[3], "mean", d.groups() * d.c, &mean);
    input(info[4], "invstd", d.groups() * d.c, &invstd);
    output(info[5], "sumDy", d.groups() * d.c, &sumDy);
    output(info[6], "sumDyXhat", d.groups() * d.c, &sumDyXhat);
  }
  Status run() override { return rebatch::batchNormGradSums(dy, x, d, mean, invstd, sumDy, sumDyXhat); }
};

// batchNormGradApply(dy, x, dx, dims, mean, a, b, c)
struct GradApplyOp : Op {
  const float *dy, *x;
  float* dx;
  TensorDims d;
  const double *mean, *a, *b, *c;
  explicit GradApplyOp(const Napi::CallbackInfo& info) {
    d = dimsArg(info[3]);
    input(info[0], "dy", d.elements(), &dy);
    input(info[1], "x", d.elements(), &x);
    output(info[2], "out", d.elements(), &dx);
    input(info[4], "mean", d.groups() * d.c, &mean);
    input(info[5], "a", d.groups() * d.c, &a);
    input(info[6], "b", d.groups() * d.c, &b);
    input(info[7], "c", d.groups() * d.c, &c);
  }
  Status run() override { return rebatch::batchNormGradApply(dy, x, dx, d, mean, a, b, c); }
};

// The elements of a JS array, read like a CallbackInfo's arguments.
struct ArrayArgs {
  Napi::Array array;
  Napi::Value operator[](std::size_t i) const { return array.Get(uint32_t(i)); }
  Napi::Env Env() const { return array.Env(); }
};

template <class O>
Napi::Value sync(const Napi::CallbackInfo& info) {
  O op(info);
  runNow(info.Env(), op);
  return info.Env().Undefined();
}

template <class O>
Napi::Value async(const Napi::CallbackInfo& info, const char* name) {
  return runAsync(info.Env(), std::make_unique<O>(info), name);
}

template <class F>
void updateRunning(const Napi::CallbackInfo& info, std::size_t c) {
  Args op;
  F *rm, *rv;
  const double *mean, *m2;
  op.output(info[0], "runningMean", c, &rm);
  op.output(info[1], "runningVar", c, &rv);
  op.input(info[2], "mean", c, &mean);
  op.input(info[3], "m2", c, &m2);
  const Status s = rebatch::updateRunningStats(rm, rv, c, mean, m2, numberArg(info[4], "count"),
                                               numberArg(info[5], "momentum"));
  if (!s.ok()) throw Napi::RangeError::New(info.Env(), s.message);
}

Napi::Value UpdateRunningStats(const Napi::CallbackInfo& info) {
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "mean: expected a Float64Array");
  const std::size_t c = info[2].As<Napi::TypedArray>().ElementLength();
  if (info[0].IsTypedArray() && info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float64_array)
    updateRunning<double>(info, c);
  else
    updateRunning<float>(info, c);
  return info.Env().Undefined();
}

Napi::Value MergeMoments(const Napi::CallbackInfo& info) {
  Args op;
  const double *meanA, *m2A, *meanB, *m2B;
  double *meanOut, *m2Out;
  const std::size_t c = info[1].IsTypedArray() ? info[1].As<Napi::TypedArray>().ElementLength() : 0;
  const double countA = numberArg(info[0], "countA"), countB = numberArg(info[3], "countB");
  op.input(info[1], "meanA", c, &meanA);
  op.input(info[2], "m2A", c, &m2A);
  op.input(info[4], "meanB", c, &meanB);
  op.input(info[5], "m2B", c, &m2B);
  op.output(info[6], "meanOut", c, &meanOut);
  op.output(info[7], "m2Out", c, &m2Out);
  rebatch::mergeMomentsArrays(c, countA, meanA, m2A, countB, meanB, m2B, meanOut, m2Out);
  return info.Env().Undefined();
}

std::string stringArg(const Napi::Value& v, const char* name) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a string");
  return v.As<Napi::String>().Utf8Value();
}

template <class O>
Napi::Value timeOp(Napi::Env env, const ArrayArgs& args, std::size_t reps) {
  O op(args);
  Napi::Float64Array ns = Napi::Float64Array::New(env, reps);
  for (std::size_t i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const Status s = op.run();
    const auto t1 = std::chrono::steady_clock::now();
    if (!s.ok()) throw Napi::RangeError::New(env, s.message);
    ns[i] = double(std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
  }
  return ns;
}

// kernelTimes(name, reps, args): runs the named sync op `reps` times on the same
// arguments (as the op takes them) and returns each run's time in ns, measured
// around the native computation only: what the benchmark subtracts from a
// whole call to get the cost of the JavaScript layer and the binding.
Napi::Value KernelTimes(const Napi::CallbackInfo& info) {
  const std::string name = stringArg(info[0], "name");
  const std::size_t reps = sizeArg(info[1], "reps");
  if (!info[2].IsArray()) throw Napi::TypeError::New(info.Env(), "args: expected an array");
  const ArrayArgs args{info[2].As<Napi::Array>()};
  if (name == "moments") return timeOp<MomentsOp>(info.Env(), args, reps);
  if (name == "batchNormTraining") return timeOp<TrainingOp>(info.Env(), args, reps);
  if (name == "batchNormWithStats") return timeOp<WithStatsOp>(info.Env(), args, reps);
  if (name == "batchNormWithVariance") return timeOp<WithVarianceOp>(info.Env(), args, reps);
  if (name == "batchNormBackward") return timeOp<BackwardOp>(info.Env(), args, reps);
  throw Napi::RangeError::New(info.Env(), "name: unknown op " + name);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto fn = [&](const char* name, Napi::Function::Callback cb) { exports.Set(name, Napi::Function::New(env, cb, name)); };
  fn("moments", sync<MomentsOp>);
  fn("batchNormTraining", sync<TrainingOp>);
  fn("batchNormWithStats", sync<WithStatsOp>);
  fn("batchNormWithVariance", sync<WithVarianceOp>);
  fn("batchNormBackward", sync<BackwardOp>);
  fn("momentsAsync", [](const Napi::CallbackInfo& i) -> Napi::Value { return async<MomentsOp>(i, "momentsAsync"); });
  fn("batchNormTrainingAsync",
     [](const Napi::CallbackInfo& i) -> Napi::Value { return async<TrainingOp>(i, "batchNormAsync"); });
  fn("batchNormWithStatsAsync",
     [](const Napi::CallbackInfo& i) -> Napi::Value { return async<WithStatsOp>(i, "batchNormAsync"); });
  fn("batchNormWithVarianceAsync",
     [](const Napi::CallbackInfo& i) -> Napi::Value { return async<WithVarianceOp>(i, "batchNormAsync"); });
  fn("batchNormBackwardAsync",
     [](const Napi::CallbackInfo& i) -> Napi::Value { return async<BackwardOp>(i, "batchNormBackwardAsync"); });
  fn("batchNormGradSums", sync<GradSumsOp>);
  fn("batchNormGradApply", sync<GradApplyOp>);
  fn("updateRunningStats", UpdateRunningStats);
  fn("mergeMoments", MergeMoments);
  fn("kernelTimes", KernelTimes);
  registerProbes(env, exports);
  fn("isa", [](const Napi::CallbackInfo& i) -> Napi::Value { return Napi::String::New(i.Env(), rebatch::activeIsa()); });
  fn("isaNote", [](const Napi::CallbackInfo& i) -> Napi::Value { return Napi::String::New(i.Env(), rebatch::isaNote()); });
  fn("isaSupported", [](const Napi::CallbackInfo& i) -> Napi::Value {
    return Napi::Boolean::New(i.Env(), rebatch::isaSupported(stringArg(i[0], "name").c_str()));
  });
  fn("selectIsa", [](const Napi::CallbackInfo& i) -> Napi::Value {
    return Napi::Boolean::New(i.Env(), rebatch::selectIsa(stringArg(i[0], "name").c_str()));
  });
  fn("getNumThreads", [](const Napi::CallbackInfo& i) -> Napi::Value {
    return Napi::Number::New(i.Env(), double(rebatch::numThreads()));
  });
  fn("setNumThreads", [](const Napi::CallbackInfo& i) -> Napi::Value {
    const std::size_t n = sizeArg(i[0], "n");
    if (n < 1 || n > 1024) throw Napi::RangeError::New(i.Env(), "n: expected an integer from 1 to 1024");
    rebatch::setNumThreads(n);
    return i.Env().Undefined();
  });
  return exports;
}

}  // namespace

NODE_API_MODULE(rebatch, Init)
