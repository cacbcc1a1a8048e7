// `fanflow submit --wait` on RabbitMQ as a person uses it: it warns when
// nothing takes its batch up, and SIGINT / SIGTERM stop the wait (not the
// batch) within a second with 130 / 143. Each test in a vhost of its own.
#include <gtest/gtest.h>
#include <signal.h>

#include "tests/amqp/amqp_test_env.h"
#include "tests/support/stops_on_signal.h"

namespace fanflow::amqp::testing {
namespace {

namespace ft = fanflow::testing;

class AmqpSubmitTest : public ::testing::Test {
 protected:
  void SetUp() override { FANFLOW_REQUIRE_RABBITMQCTL(); }

  std::unique_ptr<ft::BackgroundProcess> Fanflow(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), ft::FanflowBinary());
    args.insert(args.end(), {"--bus", vhost_.url()});
    return std::make_unique<ft::BackgroundProcess>(args, dir_ + "/" + name + ".log");
  }
  std::unique_ptr<ft::BackgroundProcess> Submit() {
    return Fanflow("submit", {"submit", "--source", "range:100", "--chunk-size", "10", "--wait"});
  }
  int Topology() {
    return ft::RunProcess({ft::FanflowBinary(), "topology", "--bus", vhost_.url()}, 60s).exit_code;
  }

  const ScratchVhost vhost_{"fanflow-submit"};
  const std::string dir_ = ft::TempDir("amqp-submit");
};

TEST_F(AmqpSubmitTest, WarnsWhenTheAdmittingQueueHasNoConsumerAndStopsOnSigint) {
  ASSERT_EQ(Topology(), 0);
  auto submit = Submit();
  ASSERT_TRUE(submit->WaitForLog("nothing has picked up batch", 10s)) << submit->Log();
  EXPECT_TRUE(submit->WaitForLog("still waiting", 1s));
  EXPECT_NE(submit->Log().find("group 'aggregator' has no consumer"), std::string::npos) << submit->Log();
  const std::string log = ft::ExpectStopsPromptlyOn(*submit, SIGINT);
  EXPECT_NE(log.find("SIGINT: stopped waiting; batch"), std::string::npos) << log;
  EXPECT_NE(log.find("goes on on the bus"), std::string::npos) << log;
  size_t first = log.find("nothing has picked up");
  EXPECT_EQ(log.find("nothing has picked up", first + 1), std::string::npos) << "warned twice:\n" << log;
}

TEST_F(AmqpSubmitTest, WarnsWhenNoQueueTakesTheStartAndStopsOnSigterm) {
  auto submit = Submit();  // no topology: the start_fanout is routed nowhere
  ASSERT_TRUE(submit->WaitForLog("nothing has picked up batch", 10s)) << submit->Log();
  EXPECT_NE(submit->Log().find("no queue of group 'aggregator'"), std::string::npos) << submit->Log();
  ft::ExpectStopsPromptlyOn(*submit, SIGTERM);
}

TEST_F(AmqpSubmitTest, StaysQuietWhileTheServicesTakeTheBatchAndStopsOnSigint) {
  ASSERT_EQ(Topology(), 0);
  auto ventilator = Fanflow("ventilator", {"ventilator"});
  auto worker = Fanflow("worker", {"worker", "--processor", "sleep", "--sleep-scale", "10"});
  auto aggregator = Fanflow("aggregator", {"aggregator", "--state", dir_ + "/ledger.db"});
  ASSERT_TRUE(ventilator->WaitForLog("ventilator ready", 30s)) << ventilator->Log();
  ASSERT_TRUE(worker->WaitForLog("worker ready", 30s)) << worker->Log();
  ASSERT_TRUE(aggregator->WaitForLog("aggregator ready", 30s)) << aggregator->Log();
  auto submit = Submit();
  ASSERT_TRUE(submit->WaitForLog("submitted", 30s)) << submit->Log();
  std::this_thread::sleep_for(5s);  // past the check
  const std::string log = ft::ExpectStopsPromptlyOn(*submit, SIGINT);
  EXPECT_EQ(log.find("nothing has picked up"), std::string::npos) << log;
}

}  // namespace
}  // namespace fanflow::amqp::testing
