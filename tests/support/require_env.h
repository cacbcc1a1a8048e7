// One rule for what a test needs from its machine (a broker's URL, promtool, a
// Python module): without it the test is skipped, except under CI=true, where
// a test that cannot run is a failure, so a suite cannot pass by not running.
// Skips by design (a feature an adapter does not have) stay plain GTEST_SKIP.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace fanflow::testing {

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

// An environment variable, or "" when unset.
inline std::string EnvOr(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace fanflow::testing

// Returns from the calling function (a test body, SetUp, an Environment's
// SetUp) unless `cond` holds: a fatal failure under CI=true (a fixture's test
// body does not run then), else a skip. `why` may
// be a stream expression: FANFLOW_REQUIRE_OR_SKIP(!url.empty(), var << " is unset").
#define FANFLOW_REQUIRE_OR_SKIP(cond, why)                              \
  do {                                                                  \
    if (!(cond)) {                                                      \
      if (::fanflow::testing::InCi())                                   \
        GTEST_FAIL() << why << " (CI=true: a test that cannot run fails)"; \
      GTEST_SKIP() << why;                                              \
    }                                                                   \
  } while (0)
