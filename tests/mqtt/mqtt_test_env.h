// How the MQTT tests find their broker: env FANFLOW_TEST_MQTT_URL (and friends)
// as exported by scripts/mosquitto-start.sh. Unset: the test is skipped, except
// under CI=true, where a missing broker is a failure (tests/support/require_env.h).
#pragma once

#include <string>

#include "tests/support/require_env.h"

namespace fanflow::mqtt::test {

inline std::string UrlOrEmpty(const char* var) { return ::fanflow::testing::EnvOr(var); }

}  // namespace fanflow::mqtt::test

// Use at the top of a test: skips (or fails under CI=true) without a broker.
#define FANFLOW_REQUIRE_ENV(var, value)                            \
  const std::string value = ::fanflow::mqtt::test::UrlOrEmpty(var); \
  FANFLOW_REQUIRE_OR_SKIP(!value.empty(), var << " is unset: run scripts/mosquitto-start.sh and export its output")
