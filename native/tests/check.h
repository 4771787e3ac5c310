// A minimal test harness: CHECK records failures with file:line, TEST
// registers a function, main() runs them all and prints "N passed, N failed".
#pragma once
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace check {

struct Test {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Test>& registry() {
  static std::vector<Test> r;
  return r;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

inline bool fail(const char* file, int line, const std::string& what) {
  if (++failures() <= 30) std::printf("  FAIL %s:%d: %s\n", file, line, what.c_str());
  return false;
}

// |got - want| <= atol + rtol * |want|, and NaN only where NaN is wanted.
inline bool near(double got, double want, double rtol, double atol) {
  if (std::isnan(want)) return std::isnan(got);
  return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

}  // namespace check

#define CHECK_CAT2(a, b) a##b
#define CHECK_CAT(a, b) CHECK_CAT2(a, b)
#define TEST(name)                                                           \
  static void name();                                                        \
  static check::Register CHECK_CAT(reg_, name)(#name, name);                 \
  static void name()

#define CHECK(cond) ((cond) ? true : check::fail(__FILE__, __LINE__, #cond))
#define CHECK_NEAR(got, want, rtol, atol)                                                      \
  (check::near((got), (want), (rtol), (atol))                                                  \
       ? true                                                                                  \
       : check::fail(__FILE__, __LINE__,                                                       \
                     std::string(#got " = ") + std::to_string(double(got)) + ", want " +      \
                         std::to_string(double(want))))

#define CHECK_MAIN()                                                                     \
  int main() {                                                                           \
    int passed = 0, failed = 0;                                                          \
    for (auto& t : check::registry()) {                                                  \
      const int before = check::failures();                                              \
      t.fn();                                                                            \
      if (check::failures() == before) {                                                 \
        ++passed;                                                                        \
        std::printf("ok   %s\n", t.name);                                                \
      } else {                                                                           \
        ++failed;                                                                        \
        std::printf("FAIL %s\n", t.name);                                                \
      }                                                                                  \
    }                                                                                    \
    std::printf("%d passed, %d failed\n", passed, failed);                               \
    return failed ? 1 : 0;                                                               \
  }
