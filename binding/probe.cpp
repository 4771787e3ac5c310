#include "probe.h"

#include <string>

#include "op.h"
#include "rebatch/probe.h"

namespace rebatch_binding {
namespace {

std::size_t lengthOf(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a Float32Array");
  return v.As<Napi::TypedArray>().ElementLength();
}

Napi::Value ProbeRead(const Napi::CallbackInfo& info) {
  Args op;
  const float* x;
  const std::size_t n = lengthOf(info[0], "x");
  op.input(info[0], "x", n, &x);
  return Napi::Number::New(info.Env(), rebatch::probeRead(x, n));
}

Napi::Value ProbeCopy(const Napi::CallbackInfo& info) {
  Args op;
  const float* x;
  float* y;
  const std::size_t n = lengthOf(info[0], "x");
  op.input(info[0], "x", n, &x);
  op.output(info[1], "y", n, &y);
  rebatch::probeCopy(x, y, n, boolArg(info[2], "stream"));
  return info.Env().Undefined();
}

Napi::Value ProbeTriad(const Napi::CallbackInfo& info) {
  Args op;
  const float *a, *b;
  float* out;
  const std::size_t n = lengthOf(info[0], "a");
  op.input(info[0], "a", n, &a);
  op.input(info[1], "b", n, &b);
  op.output(info[2], "out", n, &out);
  rebatch::probeTriad(a, b, out, n, boolArg(info[3], "stream"));
  return info.Env().Undefined();
}

}  // namespace

void registerProbes(Napi::Env env, Napi::Object exports) {
  exports.Set("probeRead", Napi::Function::New(env, ProbeRead, "probeRead"));
  exports.Set("probeCopy", Napi::Function::New(env, ProbeCopy, "probeCopy"));
  exports.Set("probeTriad", Napi::Function::New(env, ProbeTriad, "probeTriad"));
}

}  // namespace rebatch_binding
