// How the MQTT tests find their broker: env FANFLOW_TEST_MQTT_URL (and friends)
// as exported by scripts/mosquitto-start.sh. Unset: the test is skipped, except
// under CI=true, where a missing broker is a failure.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace fanflow::mqtt::test {

inline std::string UrlOrEmpty(const char* var) {
  const char* v = std::getenv(var);
  return v ? v : "";
}

inline bool InCi() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

}  // namespace fanflow::mqtt::test

// Use at the top of a test: skips (or fails under CI=true) without a broker.
#define FANFLOW_REQUIRE_ENV(var, value)                                                  \
  const std::string value = ::fanflow::mqtt::test::UrlOrEmpty(var);                     \
  if (value.empty()) {                                                                 \
    if (::fanflow::mqtt::test::InCi()) FAIL() << var << " is unset under CI=true";       \
    GTEST_SKIP() << var << " is unset: run scripts/mosquitto-start.sh and export its output"; \
  }
