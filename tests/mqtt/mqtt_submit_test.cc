// `fanflow submit --wait` on Mosquitto: the broker does not tell about other
// clients' subscriptions, so submit warns only where it can tell (no group
// declared for start_fanout; starts waiting in a parked session no consumer
// took over) and stays quiet while a ventilator runs. SIGINT / SIGTERM stop
// the wait within a second with 130 / 143. Each test on a scratch broker.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/mqtt/mqtt_test_env.h"
#include "tests/mqtt/scratch_broker.h"
#include "tests/support/stops_on_signal.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;
using mqtt::test::ScratchBroker;
using testing::BackgroundProcess;

class MqttSubmitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);  // the scratch broker needs mosquitto too
    ASSERT_TRUE(broker_.Start());
  }

  std::unique_ptr<BackgroundProcess> Fanflow(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), testing::FanflowBinary());
    args.insert(args.end(), {"--bus", broker_.url()});
    return std::make_unique<BackgroundProcess>(args, dir_ + "/" + name + ".log");
  }
  std::unique_ptr<BackgroundProcess> Submit() {
    return Fanflow("submit", {"submit", "--source", "range:100", "--chunk-size", "10", "--wait"});
  }
  int Topology() {
    return testing::RunProcess({testing::FanflowBinary(), "topology", "--bus", broker_.url()}, 60s).exit_code;
  }

  ScratchBroker broker_;
  const std::string dir_ = testing::TempDir("mqtt-submit");
};

TEST_F(MqttSubmitTest, WarnsWhenTheStartWaitsInAParkedSessionAndStopsOnSigint) {
  ASSERT_EQ(Topology(), 0);  // declares the aggregator's group; no aggregator runs
  auto submit = Submit();
  ASSERT_TRUE(submit->WaitForLog("nothing has picked up batch", 15s)) << submit->Log();
  EXPECT_NE(submit->Log().find("wait for group 'aggregator'"), std::string::npos) << submit->Log();
  const std::string log = testing::ExpectStopsPromptlyOn(*submit, SIGINT);
  EXPECT_NE(log.find("goes on on the bus"), std::string::npos) << log;
}

TEST_F(MqttSubmitTest, WarnsWhenNoGroupTakesTheStartAndStopsOnSigterm) {
  auto submit = Submit();
  ASSERT_TRUE(submit->WaitForLog("nothing has picked up batch", 15s)) << submit->Log();
  EXPECT_NE(submit->Log().find("no queue of group 'aggregator'"), std::string::npos) << submit->Log();
  testing::ExpectStopsPromptlyOn(*submit, SIGTERM);
}

TEST_F(MqttSubmitTest, StaysQuietWhileTheServicesTakeTheBatch) {
  ASSERT_EQ(Topology(), 0);
  auto ventilator = Fanflow("ventilator", {"ventilator"});
  auto worker = Fanflow("worker", {"worker", "--processor", "sleep", "--sleep-scale", "10"});
  auto aggregator = Fanflow("aggregator", {"aggregator", "--state", dir_ + "/ledger.db"});
  ASSERT_TRUE(ventilator->WaitForLog("ventilator ready", 30s)) << ventilator->Log();
  ASSERT_TRUE(aggregator->WaitForLog("aggregator ready", 30s)) << aggregator->Log();
  ASSERT_TRUE(worker->WaitForLog("worker ready", 30s)) << worker->Log();
  auto submit = Submit();
  ASSERT_TRUE(submit->WaitForLog("submitted", 30s)) << submit->Log();
  std::this_thread::sleep_for(6s);  // past the check
  const std::string log = testing::ExpectStopsPromptlyOn(*submit, SIGINT);
  EXPECT_EQ(log.find("nothing has picked up"), std::string::npos) << log;
}

}  // namespace
}  // namespace fanflow
