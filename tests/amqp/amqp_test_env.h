// The RabbitMQ the AMQP tests run against, from the environment that
// scripts/rabbitmq-start.sh exports (eval "$(scripts/rabbitmq-start.sh)").
// Without FANFLOW_TEST_AMQP_URL every test of the binary is skipped, or fails
// when CI=true.
#pragma once

#include <string>

namespace fanflow::amqp::testing {

// FANFLOW_TEST_AMQP_URL, or "amqp://unset" (the tests are skipped then).
std::string AmqpUrl();
// An environment variable, or "" when unset.
std::string Env(const char* name);
// Runs `$FANFLOW_TEST_RABBITMQCTL args` (the test node's rabbitmqctl);
// returns its exit code.
int RabbitmqCtl(const std::string& args);

}  // namespace fanflow::amqp::testing
