// The promise `fanflow run` and `submit --wait` keep on SIGINT / SIGTERM, as
// one check for every test that signals them.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "tests/support/subprocess.h"

namespace fanflow::testing {

// Sends `sig` and expects `p` to exit with 128 + sig within 1.5 s; returns its log.
inline std::string ExpectStopsPromptlyOn(BackgroundProcess& p, int sig) {
  const Stopped stopped = SignalAndWait(p, sig);
  const std::string log = p.Log();
  EXPECT_EQ(stopped.exit_code, 128 + sig) << log;
  EXPECT_LT(stopped.took, std::chrono::milliseconds(1500)) << log;
  return log;
}

}  // namespace fanflow::testing
