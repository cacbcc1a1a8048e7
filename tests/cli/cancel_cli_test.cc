// `fanflow cancel` and `fanflow schedule --run` with every role a separate
// fanflow process, on RabbitMQ (a vhost of the test's own) and on a Mosquitto
// of the test's own (scripts/test.sh starts the brokers).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <thread>

#include "core/event.h"
#include "tests/amqp/amqp_test_env.h"
#include "tests/mqtt/scratch_broker.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/command_output.h"
#include "tests/support/ledger_rows.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;
using testing::BackgroundProcess;
using testing::Eventually;
using testing::FanflowBinary;
using testing::RunProcess;

// A broker of the test's own: a scratch vhost or a scratch Mosquitto.
class Broker {
 public:
  virtual ~Broker() = default;
  virtual std::string url() const = 0;
};

class Vhost final : public Broker {
 public:
  std::string url() const override { return vhost_.url(); }

 private:
  amqp::testing::ScratchVhost vhost_{"fanflow-cancel"};
};

class Mosquitto final : public Broker {
 public:
  bool Start() { return broker_.Start(); }
  std::string url() const override { return broker_.url(); }

 private:
  mqtt::test::ScratchBroker broker_;
};

class AcrossProcesses : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "amqp") {
      FANFLOW_REQUIRE_OR_SKIP(
          !testing::EnvOr("FANFLOW_TEST_RABBITMQCTL").empty(),
          "FANFLOW_TEST_RABBITMQCTL is unset (scripts/rabbitmq-start.sh sets it)");
      broker_ = std::make_unique<Vhost>();
    }
    if (GetParam() == "mqtt") {
      FANFLOW_REQUIRE_OR_SKIP(!testing::EnvOr("FANFLOW_TEST_MQTT_URL").empty(),
                              "FANFLOW_TEST_MQTT_URL is unset: run scripts/mosquitto-start.sh");
      auto m = std::make_unique<Mosquitto>();
      ASSERT_TRUE(m->Start());
      broker_ = std::move(m);
    }
    auto topology = RunProcess({FanflowBinary(), "topology", "--bus", broker_->url()}, 60s);
    ASSERT_EQ(topology.exit_code, 0) << topology.err;
    auto bus = OpenBus(broker_->url());
    ASSERT_TRUE(bus.ok()) << bus.status().ToString();
    bus_ = std::move(bus).value();
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& [name, p] : services_)
        std::cerr << "---- " << name << " ----\n" << p->Log() << "\n";
    services_.clear();
  }

  BackgroundProcess& Service(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), FanflowBinary());
    args.insert(args.end(), {"--bus", broker_->url()});
    services_.emplace_back(name,
                           std::make_unique<BackgroundProcess>(args, dir_ + "/" + name + ".log"));
    return *services_.back().second;
  }
  void StartServices(const std::string& sleep_scale) {
    ASSERT_TRUE(Service("aggregator", {"aggregator", "--state", ledger_})
                    .WaitForLog("aggregator ready", 30s));
    ASSERT_TRUE(Service("ventilator", {"ventilator"}).WaitForLog("ventilator ready", 30s));
    ASSERT_TRUE(Service("worker", {"worker", "--processor", "sleep", "--sleep-scale", sleep_scale,
                                   "--concurrency", "2"})
                    .WaitForLog("ready", 30s));
  }
  testing::ProcessResult Fanflow(std::vector<std::string> args) {
    args.insert(args.begin(), FanflowBinary());
    args.insert(args.end(), {"--bus", broker_->url()});
    return RunProcess(args, 90s);
  }

  std::unique_ptr<Broker> broker_;
  std::unique_ptr<EventBus> bus_;
  const std::string dir_ = testing::TempDir("cancel-cli");
  const std::string ledger_ = dir_ + "/ledger.db";
  std::vector<std::pair<std::string, std::unique_ptr<BackgroundProcess>>> services_;
};

TEST_P(AcrossProcesses, CancelStopsTheBatchWithOneCancelledCompleteAndWorkersSkipTheRest) {
  testing::EventCollector completes(*bus_, kBatchComplete, [](const Event&) { return true; });
  testing::EventCollector done(*bus_, kChunkDone,
                               [](const Event& e) { return e.subject == "slow"; });
  StartServices("0.02");  // about 100 ms a chunk of 10: 100 chunks take 5 s on 2 slots
  auto submit =
      Fanflow({"submit", "--batch-id", "slow", "--source", "range:1000", "--chunk-size", "10"});
  ASSERT_EQ(submit.exit_code, 0) << submit.err;
  ASSERT_TRUE(done.WaitFor(4, 60s));

  auto cancel = Fanflow({"cancel", "slow", "--reason", "operator", "--json", "--wait", "60"});
  ASSERT_EQ(cancel.exit_code, 0) << cancel.out << cancel.err;
  const nlohmann::json answer = testing::LastJsonLine(cancel.out);
  ASSERT_TRUE(answer.is_object()) << cancel.out;
  EXPECT_EQ(answer["data"]["status"], "cancelled");
  EXPECT_EQ(answer["data"]["reason"], "operator");
  const int64_t counted =
      answer["data"]["succeeded"].get<int64_t>() + answer["data"]["failed"].get<int64_t>();
  EXPECT_LT(counted, 100);

  // The worker skips the queued chunks instead of sleeping through them.
  BackgroundProcess& worker = *services_[2].second;
  ASSERT_TRUE(worker.WaitForLog("skipped: the batch was cancelled", 20s)) << worker.Log();
  ASSERT_TRUE(Eventually(
      [&] {
        const size_t before = done.size();
        std::this_thread::sleep_for(1s);
        return done.size() == before;
      },
      30s));
  EXPECT_LT(done.size(), 100u);

  // A late chunk_done (here: one the test makes) changes nothing.
  const int64_t late = answer["data"]["missing_chunks"].back().get<int64_t>();
  ASSERT_TRUE(bus_->Publish(testing::ToMessage(testing::ChunkDone("slow", late, 1))).ok());
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(testing::LedgerChunkRows(ledger_, "slow"), counted);
  size_t announced = 0;
  for (const Event& e : completes.events()) announced += e.subject == "slow";
  EXPECT_EQ(announced, 1u);

  // Cancelling again: the same decision, exit 0; an unknown batch: no answer, exit 1.
  auto again = Fanflow({"cancel", "slow", "--json"});
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(testing::LastJsonLine(again.out)["data"], answer["data"]);
  auto unknown = Fanflow({"cancel", "nobody", "--wait", "2"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("dlq list --group aggregator"), std::string::npos) << unknown.err;
}

TEST_P(AcrossProcesses, TwoSchedulerProcessesRunTheCaughtUpSlotOnce) {
  testing::EventCollector completes(*bus_, kBatchComplete, [](const Event&) { return true; });
  testing::EventCollector chunks(*bus_, kProcessChunk, [](const Event&) { return true; });
  StartServices("0");
  const std::string schedule = dir_ + "/schedule.json";
  std::ofstream(schedule)
      << R"([{"name": "minutely", "cron": "* * * * *", "source": "range:50", "chunk_size": 10}])";
  BackgroundProcess& a = Service("scheduler-a", {"schedule", "--run", schedule});
  BackgroundProcess& b = Service("scheduler-b", {"schedule", "--run", schedule});
  ASSERT_TRUE(completes.WaitFor(1, 60s));
  ASSERT_TRUE(a.WaitForLog("submitted for schedule", 30s));
  ASSERT_TRUE(b.WaitForLog("submitted for schedule", 30s));
  std::this_thread::sleep_for(2s);  // room for a second fan-out to show
  std::map<std::string, int> fanned, announced;
  for (const Event& e : chunks.events()) ++fanned[e.subject];
  for (const Event& e : completes.events()) ++announced[e.subject];
  ASSERT_FALSE(announced.empty());
  for (const auto& [batch, n] : announced) {
    EXPECT_EQ(batch.rfind("minutely/", 0), 0u) << batch;
    EXPECT_EQ(fanned[batch], 5) << batch << " fanned out more than once";
  }
}

INSTANTIATE_TEST_SUITE_P(Broker, AcrossProcesses, ::testing::Values("amqp", "mqtt"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace fanflow
