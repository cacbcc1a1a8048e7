// The bus conformance suite, unchanged, against the RabbitMQ test node.
#include "tests/amqp/amqp_test_env.h"
#include "tests/conformance/bus_conformance.h"

// Named, not numbered by URL: a test name must not carry credentials.
INSTANTIATE_TEST_SUITE_P(Amqp, BusConformance, ::testing::Values(fanflow::amqp::testing::AmqpUrl()),
                         [](const auto&) { return std::string("RabbitMQ"); });

namespace fanflow::amqp::testing {
namespace {

TEST(AmqpBus, SaysItAcksAfterTheHandlerAndHasQueueRetention) {
  auto bus = MustOpen(AmqpUrl());
  ASSERT_TRUE(bus);
  const BusCapabilities c = bus->Capabilities();
  EXPECT_FALSE(c.acks_on_receipt);
  EXPECT_TRUE(c.message_ttl);
  EXPECT_FALSE(c.delayed_retry);
  EXPECT_TRUE(c.shared_between_processes);
  EXPECT_TRUE(c.counts_all_consumers);
  EXPECT_TRUE(c.publish_then_ack);
}

}  // namespace
}  // namespace fanflow::amqp::testing
