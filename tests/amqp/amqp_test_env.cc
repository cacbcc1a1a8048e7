#include "tests/amqp/amqp_test_env.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace fanflow::amqp::testing {
namespace {

// Skips (or, in CI, fails) every test when no broker was provided.
class RequireBroker : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!Env("FANFLOW_TEST_AMQP_URL").empty()) return;
    const char* how = "FANFLOW_TEST_AMQP_URL is unset: start a test node with "
                      "eval \"$(scripts/rabbitmq-start.sh)\"";
    if (Env("CI") == "true") FAIL() << how << " (CI=true: a missing broker is a failure)";
    GTEST_SKIP() << how;
  }
};

const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new RequireBroker);

}  // namespace

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string AmqpUrl() {
  std::string url = Env("FANFLOW_TEST_AMQP_URL");
  return url.empty() ? "amqp://unset" : url;
}

int RabbitmqCtl(const std::string& args) {
  std::string ctl = Env("FANFLOW_TEST_RABBITMQCTL");
  if (ctl.empty()) return -1;
  int rc = std::system((ctl + " " + args + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace fanflow::amqp::testing
