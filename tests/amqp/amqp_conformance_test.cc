// The bus conformance suite, unchanged, against the RabbitMQ test node.
#include "tests/amqp/amqp_test_env.h"
#include "tests/conformance/bus_conformance.h"

// Named, not numbered by URL: a test name must not carry credentials.
INSTANTIATE_TEST_SUITE_P(Amqp, BusConformance, ::testing::Values(fanflow::amqp::testing::AmqpUrl()),
                         [](const auto&) { return std::string("RabbitMQ"); });
