#include "op.h"

#include <cstring>
#include <string>

#include "rebatch/ops.h"

namespace rebatch_binding {
namespace {

const char* typeName(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    default: return "another typed array";
  }
}

Napi::Error errorFor(Napi::Env env, const rebatch::Status& s) {
  if (s.code == rebatch::StatusCode::InvalidArgument) return Napi::RangeError::New(env, s.message);
  return Napi::Error::New(env, s.message);
}

}  // namespace

// One napi_get_typedarray_info call per array: node-addon-api's accessors
// make one each (type, length, buffer, offset, byte length), and at a dozen
// arrays they were ~1 us of a small tensor's call.
void Op::add(const Napi::Value& v, const char* name, std::size_t length, void** slot, napi_typedarray_type type,
             bool optional, bool output) {
  Napi::Env env = v.Env();
  *slot = nullptr;
  if (optional && (v.IsNull() || v.IsUndefined())) return;
  napi_typedarray_type actual;
  std::size_t elements = 0;
  void* data = nullptr;
  // napi_invalid_arg for anything but a typed array
  if (napi_get_typedarray_info(env, v, &actual, &elements, &data, nullptr, nullptr) != napi_ok || actual != type)
    throw Napi::TypeError::New(env, std::string(name) + ": expected a " + typeName(type));
  if (elements != length)
    throw Napi::RangeError::New(env, std::string(name) + ": expected " + std::to_string(length) + " elements, got " +
                                         std::to_string(elements));
  *slot = length ? data : nullptr;  // data already includes the view's byte offset
  if (length && !*slot) throw Napi::TypeError::New(env, std::string(name) + ": its ArrayBuffer is detached");
  const std::size_t elementBytes = type == napi_float64_array ? 8 : 4;
  if (count_ == kMaxArrays) throw Napi::Error::New(env, std::string(name) + ": more arrays than an op can take");
  arrays_[count_++] = {name, v, slot, length * elementBytes, output, {}, {}};
}

static Napi::Value propertyOf(const Napi::Object& o, const char* key) {
  napi_value v = nullptr;
  if (napi_get_named_property(o.Env(), o, key, &v) != napi_ok) throw Napi::Error::New(o.Env());
  return Napi::Value(o.Env(), v);
}

rebatch::TensorDims dimsArg(const Napi::Value& v) {
  if (!v.IsObject()) throw Napi::TypeError::New(v.Env(), "dims: expected an object");
  const Napi::Object o = v.As<Napi::Object>();
  rebatch::TensorDims d;
  d.n = sizeArg(propertyOf(o, "n"), "dims.n");
  d.c = sizeArg(propertyOf(o, "c"), "dims.c");
  d.spatial = sizeArg(propertyOf(o, "spatial"), "dims.spatial");
  const std::size_t layout = sizeArg(propertyOf(o, "layout"), "dims.layout");
  if (layout > 1) throw Napi::RangeError::New(v.Env(), "dims.layout: expected 0 (NCHW) or 1 (NHWC)");
  d.layout = layout == 0 ? rebatch::Layout::NCHW : rebatch::Layout::NHWC;
  d.groupSize = sizeArg(propertyOf(o, "groupSize"), "dims.groupSize");
  const rebatch::Status s = rebatch::validateDims(d);
  if (!s.ok()) throw Napi::RangeError::New(v.Env(), std::string("x: ") + s.message);
  return d;
}

// The readers below make one N-API call each where they can (it fails for
// a value of the wrong type): at a dozen arguments, every call counts.
std::size_t sizeArg(const Napi::Value& v, const char* name) {
  double d = -1;
  if (napi_get_value_double(v.Env(), v, &d) != napi_ok || !(d >= 0 && d <= 9007199254740991.0))
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a non-negative integer");
  return std::size_t(d);
}

double numberArg(const Napi::Value& v, const char* name) {
  double d = 0;
  if (napi_get_value_double(v.Env(), v, &d) != napi_ok)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a number");
  return d;
}

bool boolArg(const Napi::Value& v, const char* name) {
  bool b = false;
  if (napi_get_value_bool(v.Env(), v, &b) != napi_ok)
    throw Napi::TypeError::New(v.Env(), std::string(name) + ": expected a boolean");
  return b;
}

void runNow(Napi::Env env, Op& op) {
  const rebatch::Status s = op.run();
  if (!s.ok()) throw errorFor(env, s);
}

namespace {

class AsyncOp : public Napi::AsyncWorker {
 public:
  AsyncOp(Napi::Env env, std::unique_ptr<Op> op, const char* name)
      : Napi::AsyncWorker(env, name), op_(std::move(op)), deferred_(Napi::Promise::Deferred::New(env)), name_(name) {
    for (ArrayArg& a : op_->arrays()) {
      a.keepAlive = Napi::Persistent(a.array);
      a.owned.resize(a.bytes);
      if (!a.output && a.bytes) std::memcpy(a.owned.data(), *a.slot, a.bytes);
      *a.slot = a.bytes ? a.owned.data() : nullptr;
    }
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override { status_ = op_->run(); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.ok()) return deferred_.Reject(errorFor(env, status_).Value());
    for (ArrayArg& a : op_->arrays()) {
      Napi::TypedArray t = a.keepAlive.Value().As<Napi::TypedArray>();
      if (a.bytes && (t.ArrayBuffer().IsDetached() || t.ByteLength() != a.bytes))
        return deferred_.Reject(Napi::TypeError::New(env, std::string(a.name) + ": its ArrayBuffer was detached while " +
                                                              name_ + " was pending")
                                    .Value());
    }
    for (ArrayArg& a : op_->arrays()) {
      if (!a.output || !a.bytes) continue;
      Napi::TypedArray t = a.keepAlive.Value().As<Napi::TypedArray>();
      std::memcpy(static_cast<std::uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset(), a.owned.data(), a.bytes);
    }
    deferred_.Resolve(env.Undefined());
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::unique_ptr<Op> op_;
  Napi::Promise::Deferred deferred_;
  std::string name_;
  rebatch::Status status_;
};

}  // namespace

Napi::Promise runAsync(Napi::Env env, std::unique_ptr<Op> op, const char* name) {
  auto* worker = new AsyncOp(env, std::move(op), name);  // deletes itself when done
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

}  // namespace rebatch_binding
