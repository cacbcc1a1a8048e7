// The bus conformance suite, unchanged, against the Mosquitto test broker
// (scripts/mosquitto-start.sh exports FANFLOW_TEST_MQTT_URL).
#include "core/bus.h"
#include "tests/conformance/bus_conformance.h"
#include "tests/mqtt/mqtt_test_env.h"

namespace {

// Without a broker every test of the suite is skipped (a failure under CI=true).
class BrokerRequired : public ::testing::Environment {
 public:
  void SetUp() override { FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url); }
};

const auto* const kBrokerRequired = ::testing::AddGlobalTestEnvironment(new BrokerRequired);

}  // namespace

INSTANTIATE_TEST_SUITE_P(Mqtt, BusConformance,
                         ::testing::Values(fanflow::mqtt::test::UrlOrEmpty("FANFLOW_TEST_MQTT_URL")));

namespace {

TEST(MqttBus, SaysItAcksOnReceiptAndCannotCountOtherClientsConsumers) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  auto bus = fanflow::OpenBus(url);
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  const fanflow::BusCapabilities c = bus.value()->Capabilities();
  EXPECT_TRUE(c.acks_on_receipt);
  EXPECT_FALSE(c.message_ttl);
  EXPECT_TRUE(c.delayed_retry);
  EXPECT_TRUE(c.shared_between_processes);
  EXPECT_FALSE(c.counts_all_consumers);
  EXPECT_TRUE(c.publish_then_ack);
}

}  // namespace
