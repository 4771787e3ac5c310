// One native call: its typed-array arguments and the kernel to run. The same
// Op serves the sync entry points (zero-copy views of the caller's arrays) and
// the async ones (inputs copied at the call, outputs copied back when done),
// so a caller that detaches or transfers an array meanwhile cannot make the
// worker read or write freed memory.
#pragma once
#include <napi.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "rebatch/types.h"

namespace rebatch_binding {

struct ArrayArg {
  const char* name;
  Napi::Value array;  // a typed array
  void** slot;        // where the op keeps its pointer to the data
  std::size_t bytes;
  bool output;
  Napi::Reference<Napi::Value> keepAlive;  // async only
  std::vector<std::uint8_t> owned;         // async only
};

// The registered arrays, in order (a view of an Op's fixed storage).
struct ArrayArgRange {
  ArrayArg* first;
  ArrayArg* last;
  ArrayArg* begin() const { return first; }
  ArrayArg* end() const { return last; }
};

class Op {
 public:
  virtual ~Op() = default;
  virtual rebatch::Status run() = 0;

  // Registers a typed array, checking element type and length; throws a
  // TypeError or RangeError naming the argument. Optional arrays may be null
  // or undefined, which leaves *slot null.
  template <class T>
  void input(const Napi::Value& v, const char* name, std::size_t length, const T** slot, bool optional = false) {
    add(v, name, length, const_cast<void**>(reinterpret_cast<const void**>(slot)), typeOf<T>(), optional, false);
  }
  template <class T>
  void output(const Napi::Value& v, const char* name, std::size_t length, T** slot, bool optional = false) {
    add(v, name, length, reinterpret_cast<void**>(slot), typeOf<T>(), optional, true);
  }

  ArrayArgRange arrays() { return {arrays_.data(), arrays_.data() + count_}; }

 private:
  template <class T>
  static napi_typedarray_type typeOf();
  void add(const Napi::Value& v, const char* name, std::size_t length, void** slot, napi_typedarray_type type,
           bool optional, bool output);
  // The most any op takes. Fixed storage: a vector's allocation was ~10% of
  // a small tensor's binding overhead.
  static constexpr std::size_t kMaxArrays = 12;
  std::array<ArrayArg, kMaxArrays> arrays_{};
  std::size_t count_ = 0;
};

// Argument checking only, for the small synchronous helpers that run inline.
struct Args : Op {
  rebatch::Status run() override { return rebatch::Status::Ok(); }
};

template <>
inline napi_typedarray_type Op::typeOf<float>() { return napi_float32_array; }
template <>
inline napi_typedarray_type Op::typeOf<double>() { return napi_float64_array; }

// Reads {n, c, spatial, layout, groupSize} as prepared by lib/.
rebatch::TensorDims dimsArg(const Napi::Value& v);
std::size_t sizeArg(const Napi::Value& v, const char* name);
double numberArg(const Napi::Value& v, const char* name);
bool boolArg(const Napi::Value& v, const char* name);

// Runs the op now and throws on failure (RangeError for invalid input).
void runNow(Napi::Env env, Op& op);
// Runs the op on a libuv worker; the promise settles with undefined.
Napi::Promise runAsync(Napi::Env env, std::unique_ptr<Op> op, const char* name);

}  // namespace rebatch_binding
