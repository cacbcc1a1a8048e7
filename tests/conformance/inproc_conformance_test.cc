#include "tests/conformance/bus_conformance.h"

INSTANTIATE_TEST_SUITE_P(Inproc, BusConformance, ::testing::Values("inproc://"));

#include "core/bus.h"

namespace fanflow {
namespace {

TEST(InprocBus, AnEphemeralGroupsQueuesGoAwayWithItsSubscription) {
  auto bus = OpenBus("inproc://ephemeral-test?capacity=10");
  ASSERT_TRUE(bus.ok());
  const std::string type = "fanflow.ephemeral_test.v1";
  {
    auto sub = bus.value()->Subscribe({"waiter", {type}, 1, /*ephemeral=*/true},
                                      [](const Delivery&) { return Verdict::Ack(); });
    ASSERT_TRUE(sub.ok());
  }
  // With the queue kept, the 11th publish would block forever on its capacity.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(bus.value()->Publish(Message{type, "", "{}"}).ok());
  auto stats = bus.value()->Stats("waiter");
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE(stats->empty());
}

TEST(InprocBus, SaysItLivesInOneProcessAndHoldsRetryDelaysOffTheHandlers) {
  auto bus = OpenBus("inproc://caps-test");
  ASSERT_TRUE(bus.ok());
  const BusCapabilities c = bus.value()->Capabilities();
  EXPECT_FALSE(c.acks_on_receipt);
  EXPECT_FALSE(c.message_ttl);
  EXPECT_TRUE(c.delayed_retry);
  EXPECT_FALSE(c.shared_between_processes);
  EXPECT_TRUE(c.counts_all_consumers);
  EXPECT_FALSE(c.publish_then_ack);
}

}  // namespace
}  // namespace fanflow
