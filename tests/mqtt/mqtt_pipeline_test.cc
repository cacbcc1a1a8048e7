// The whole pipeline over Mosquitto, as separate `fanflow` processes (aggregator,
// ventilator, workers, submit --wait), with workers killed and the broker
// restarted mid-batch, and driven by the Mosquitto command-line clients.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "core/routes.h"
#include "core/bus.h"
#include "pipeline/source.h"
#include "tests/mqtt/mqtt_test_env.h"
#include "tests/mqtt/scratch_broker.h"
#include "tests/support/command_output.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::LastJsonLine;
using testing::RangeSum;

using namespace std::chrono_literals;
using mqtt::test::ScratchBroker;
using testing::BackgroundProcess;
using testing::FanflowBinary;
using testing::ProcessResult;
using testing::RunProcess;

// A chunk processor slow enough (~50 ms) that a worker holds chunks it has
// received but not finished: sums the values like `--processor sum`.
const char kSlowSum[] =
    "/usr/bin/python3 -c 'import json,sys,time; c=json.load(sys.stdin); time.sleep(0.03); "
    "print(sum(i[\"value\"] for i in c[\"items\"]))'";

// A scratch broker and the fanflow services on it; every process is stopped
// (SIGKILL by pid) when the test ends, the broker by its pid.
class MqttPipeline : public ::testing::Test {
 protected:
  explicit MqttPipeline(mqtt::test::BrokerConfig config = mqtt::test::BrokerConfig::kInherit)
      : broker_("", config) {}

  void SetUp() override {
    FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
    ASSERT_TRUE(broker_.Start());
    dir_ = testing::TempDir("mqtt-pipeline");
    auto topo = RunProcess({FanflowBinary(), "topology", "--bus", broker_.url()}, 60s);
    ASSERT_EQ(topo.exit_code, 0) << topo.err;
  }

  void TearDown() override {
    if (HasFailure())
      for (auto& [name, p] : services_) std::cerr << "---- " << name << " log ----\n" << p->Log() << "\n";
  }

  BackgroundProcess& Service(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), {FanflowBinary()});
    args.insert(args.end(), {"--bus", broker_.url()});
    services_.emplace_back(name, std::make_unique<BackgroundProcess>(args, dir_ + "/" + name + ".log"));
    return *services_.back().second;
  }

  BackgroundProcess& Worker(const std::string& name, const std::string& exec = "") {
    std::vector<std::string> args{"worker", "--concurrency", "2"};
    if (exec.empty())
      args.insert(args.end(), {"--processor", "sum"});
    else
      args.insert(args.end(), {"--exec", exec});
    return Service(name, args);
  }

  void StartServices(const std::string& exec, int lease_s) {
    Service("aggregator", {"aggregator", "--state", dir_ + "/ledger.db", "--lease", std::to_string(lease_s)});
    Service("ventilator", {"ventilator"});
    Worker("worker-a", exec);
    Worker("worker-b", exec);
  }

  std::vector<std::string> Submit(const std::string& source, int chunk_size) {
    return {FanflowBinary(), "submit", "--bus", broker_.url(), "--source", source, "--chunk-size",
            std::to_string(chunk_size), "--wait", "--json", "--timeout", "240"};
  }

  static void ExpectSucceeded(const ProcessResult& r, int64_t items, int64_t sum) {
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    auto e = LastJsonLine(r.out);
    ASSERT_TRUE(e.is_object()) << r.out;
    EXPECT_EQ(e["type"], "fanflow.batch_complete.v1");
    EXPECT_EQ(e["data"]["status"], "succeeded") << e.dump();
    EXPECT_EQ(e["data"]["items"], items);
    EXPECT_EQ(e["data"]["result"], sum);
  }

  ScratchBroker broker_;
  std::string dir_;
  std::vector<std::pair<std::string, std::unique_ptr<BackgroundProcess>>> services_;
};

TEST_F(MqttPipeline, AHundredThousandItemsOverSeparateProcessesAddUp) {
  StartServices("", 30);
  auto r = RunProcess(Submit("range:100000:11", 1000), 300s);
  ExpectSucceeded(r, 100000, RangeSum(100000, 11));
}

TEST_F(MqttPipeline, AWorkerKilledMidChunkIsMadeGoodByTheLeaseAndItsSuccessor) {
  StartServices(kSlowSum, 5);
  ProcessResult r;
  std::thread submit([&] { r = RunProcess(Submit("range:30000:3", 200), 300s); });
  std::this_thread::sleep_for(4s);  // chunks are being processed and queued
  services_[2].second->Signal(SIGKILL);  // worker-a: its taken chunks are gone
  services_[2].second->Wait(10s);
  Worker("worker-a2", kSlowSum);  // takes worker-a's slot and session
  submit.join();
  ExpectSucceeded(r, 30000, RangeSum(30000, 3));
}

TEST_F(MqttPipeline, AMosquittoRestartMidBatchStillEndsInOneRightBatchComplete) {
  StartServices(kSlowSum, 10);
  ProcessResult r;
  std::thread submit([&] { r = RunProcess(Submit("range:30000:5", 200), 300s); });
  std::this_thread::sleep_for(4s);
  broker_.Stop();
  std::this_thread::sleep_for(2s);
  ASSERT_TRUE(broker_.Start());
  submit.join();
  ExpectSucceeded(r, 30000, RangeSum(30000, 5));
}

TEST_F(MqttPipeline, MosquittoClientsCanStartABatchAndSeePoisonDeadLettered) {
  StartServices("", 30);
  const std::string port = broker_.url().substr(broker_.url().rfind(':') + 1);
  ProcessResult done;
  std::thread watch([&] {
    done = RunProcess({"mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-t",
                       "fanflow/batch_complete", "-C", "1", "-W", "120"},
                      150s);
  });
  std::this_thread::sleep_for(1s);  // mosquitto_sub has subscribed
  const std::string event =
      R"({"specversion":"1.0","id":"interop-1/start","source":"urn:test:mosquitto_pub",)"
      R"("type":"fanflow.start_fanout.v1","subject":"interop-1","correlationid":"interop-1",)"
      R"("data":{"source":"range:5000:9","chunk_size":100}})";
  auto pub = RunProcess({"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-t",
                         "fanflow/start_fanout", "-m", event},
                        30s);
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  watch.join();
  auto complete = nlohmann::json::parse(done.out, nullptr, false);
  ASSERT_TRUE(complete.is_object()) << done.out << done.err;
  EXPECT_EQ(complete["subject"], "interop-1");
  EXPECT_EQ(complete["data"]["status"], "succeeded");
  EXPECT_EQ(complete["data"]["result"], RangeSum(5000, 9));

  auto poison = RunProcess({"mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-q", "1", "-t",
                            "fanflow/start_fanout", "-m", "this is not json {"},
                           30s);
  ASSERT_EQ(poison.exit_code, 0) << poison.err;
  auto bus = OpenBus(broker_.url());
  ASSERT_TRUE(bus.ok());
  std::vector<DeadLetter> dead;
  for (int i = 0; i < 100 && dead.empty(); ++i) {
    std::this_thread::sleep_for(100ms);
    auto list = (*bus)->ListDeadLetters(routes::kAggregatorGroup);
    ASSERT_TRUE(list.ok()) << list.status().ToString();
    dead = list.value();
  }
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].body, "this is not json {");
  EXPECT_EQ(dead[0].type, "fanflow.start_fanout.v1");
  EXPECT_FALSE(dead[0].reason.empty());
  // The same dead letter, as any MQTT client sees it.
  auto seen = RunProcess({"mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-t",
                          "fanflow/dlq/aggregator/#", "-F", "%t|%P|%p", "-W", "2"},
                         10s);
  EXPECT_NE(seen.out.find("fanflow/dlq/aggregator/start_fanout/"), std::string::npos) << seen.out;
  EXPECT_NE(seen.out.find("fanflow-reason:" + dead[0].reason), std::string::npos) << seen.out;
  EXPECT_NE(seen.out.find("|this is not json {"), std::string::npos) << seen.out;
}

// Mosquitto as a user installs it: only listeners and auth configured.
class MqttPipelineOnStockBroker : public MqttPipeline {
 protected:
  MqttPipelineOnStockBroker() : MqttPipeline(mqtt::test::BrokerConfig::kStock) {}

  // Starts `fanflow <role>` and returns its log once it says it is ready.
  std::string ReadyLog(const std::string& name, std::vector<std::string> args) {
    BackgroundProcess& p = Service(name, std::move(args));
    for (int i = 0; i < 100; ++i) {
      if (p.Log().find(" ready on ") != std::string::npos) return p.Log();
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << name << " not ready in 10 s:\n" << p.Log();
    return p.Log();
  }
};

// One of two workers SIGKILLed mid-batch and never restarted: its session
// leaves the shared subscription within the elastic Session Expiry (2 s), so
// the lease's redrive reaches the live worker only, once, and the batch
// succeeds about a lease later (before: `partial` after ~4 minutes, the dead
// session taking its share of each of 6 redrives).
TEST_F(MqttPipelineOnStockBroker, AWorkerKilledForGoodCostsOneRedriveAndTheBatchSucceeds) {
  constexpr int kLease = 3;
  StartServices(kSlowSum, kLease);
  ProcessResult r;
  std::atomic<bool> finished{false};
  const auto started = std::chrono::steady_clock::now();
  std::thread submit([&] {
    r = RunProcess(Submit("range:20000:7", 100), 120s);
    finished = true;
  });
  std::this_thread::sleep_for(2s);  // both workers hold chunks by now
  ASSERT_FALSE(finished.load()) << "the batch ended before the fault: " << r.out;
  services_[2].second->Signal(SIGKILL);  // worker-a, for good
  const auto killed = std::chrono::steady_clock::now();
  submit.join();
  const double after_kill = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ExpectSucceeded(r, 20000, RangeSum(20000, 7));
  const std::string aggregator = services_[0].second->Log();
  EXPECT_NE(aggregator.find("redrive #1"), std::string::npos) << "the kill lost no chunk?\n" << aggregator;
  EXPECT_EQ(aggregator.find("redrive #2"), std::string::npos) << aggregator;
  EXPECT_EQ(aggregator.find("counting it failed"), std::string::npos) << aggregator;
  // 200 chunks of ~0.1 s on 4 slots take ~5 s; half the slots after the kill,
  // plus the lease before the redrive: ~12 s here, against minutes before.
  EXPECT_LT(after_kill, 30.0) << "total " << total << " s";
}

// What fanflow can tell of a stock broker's settings it says at start-up,
// naming the setting: max_inflight_messages from the CONNACK's Receive
// Maximum, and drops ($SYS) that max_queued_messages caused.
TEST_F(MqttPipelineOnStockBroker, StartUpNamesTheSettingsThatCostThroughputOrLoseMessages) {
  std::string log = ReadyLog("ventilator", {"ventilator"});
  EXPECT_NE(log.find("max_inflight_messages"), std::string::npos) << log;
  EXPECT_EQ(log.find("max_queued_messages"), std::string::npos) << log;  // nothing dropped yet

  // An offline session fed past the stock queue limit of 1000.
  auto bus = OpenBus(broker_.url());
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  const std::string type = "fanflow.overflow.v1";
  ASSERT_TRUE((*bus)->DeclareGroup("offline", {type}).ok());
  std::vector<Message> burst;
  for (int i = 0; i < 1100; ++i) burst.push_back(Message{type, "m" + std::to_string(i), "{}"});
  ASSERT_TRUE((*bus)->Publish(burst).ok());
  // The stock sys_interval is 10 s: $SYS shows the drops within it.
  int64_t dropped = 0;
  for (int i = 0; i < 30 && dropped == 0; ++i) {
    std::this_thread::sleep_for(500ms);
    auto stats = (*bus)->Stats("offline");
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    for (const QueueStats& q : stats.value()) dropped = std::max(dropped, q.dropped);
  }
  ASSERT_GE(dropped, 100);
  log = ReadyLog("worker", {"worker", "--processor", "sum"});
  EXPECT_NE(log.find("has dropped " + std::to_string(dropped)), std::string::npos) << log;
  EXPECT_NE(log.find("max_queued_messages"), std::string::npos) << log;
}

// A broker that drops publishes (here: a queue limit left at a low value) is
// loud: `fanflow monitor` raises messages_dropped and shows the store count.
TEST(MqttMonitor, ABrokerThatDropsPublishesRaisesTheDroppedAlarm) {
  FANFLOW_REQUIRE_ENV("FANFLOW_TEST_MQTT_URL", url);
  ScratchBroker broker("max_queued_messages 10", mqtt::test::BrokerConfig::kTuned);  // $SYS every second
  ASSERT_TRUE(broker.Start());
  auto bus = OpenBus(broker.url());
  ASSERT_TRUE(bus.ok()) << bus.status().ToString();
  const std::string type = "fanflow.dropme.v1";
  ASSERT_TRUE((*bus)->DeclareGroup("offline", {type}).ok());  // a session nobody reads
  std::vector<Message> burst;
  for (int i = 0; i < 50; ++i) burst.push_back(Message{type, "m" + std::to_string(i), "{}"});
  ASSERT_TRUE((*bus)->Publish(burst).ok());

  nlohmann::json snap;
  bool alarmed = false;
  // $SYS is refreshed every second; a few snapshots at most.
  for (int i = 0; i < 10 && !alarmed; ++i) {
    auto r = RunProcess({FanflowBinary(), "monitor", "--bus", broker.url(), "--once", "--json", "--interval",
                         "0.5", "--group", "offline"},
                        30s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    snap = LastJsonLine(r.out);
    for (const auto& a : snap["alarms"]) alarmed = alarmed || a["alarm"] == "messages_dropped";
  }
  ASSERT_TRUE(alarmed) << snap.dump();
  ASSERT_FALSE(snap["queues"].empty()) << snap.dump();
  EXPECT_GE(snap["queues"][0]["dropped"].get<int64_t>(), 40) << snap.dump();
  EXPECT_GE(snap["queues"][0]["broker_stored"].get<int64_t>(), 10) << snap.dump();
  bool named = false;
  for (const auto& a : snap["alarms"])
    named = named || a["message"].get<std::string>().find("those events are lost") != std::string::npos;
  EXPECT_TRUE(named) << snap.dump();
}

}  // namespace
}  // namespace fanflow
