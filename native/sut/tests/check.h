// A tiny check macro for the native unit tests (plain executables run by ctest; no test framework to
// download: only the package index is reachable from the build machines). A failed check prints where and
// what, and the test exits 1 at the end.
#ifndef HARNESS_NATIVE_SUT_TESTS_CHECK_H_
#define HARNESS_NATIVE_SUT_TESTS_CHECK_H_

#include <cstdio>

inline int& CheckFailures() {
  static int failures = 0;
  return failures;
}

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++CheckFailures();                                                         \
    }                                                                            \
  } while (0)

#define RUN(test)                                   \
  do {                                              \
    const int before = CheckFailures();             \
    test();                                         \
    std::fprintf(stderr, "%s %s\n", CheckFailures() == before ? "ok  " : "FAIL", #test); \
  } while (0)

#endif  // HARNESS_NATIVE_SUT_TESTS_CHECK_H_
