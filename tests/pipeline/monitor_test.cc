// The monitor on every bus: alarms raised as a backlog builds and resolved as
// it drains, rates, metrics; stalled batches from the aggregator's ledger.
#include "pipeline/monitor.h"

#include <gtest/gtest.h>

#include <atomic>

#include "core/routes.h"
#include "pipeline/metrics_server.h"
#include "tests/pipeline/ledger_test_util.h"
#include "tests/pipeline/metrics_scrape.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::EventCollector;
using testing::Unique;

std::set<std::string> Names(const std::vector<Event>& alarms, const std::string& state) {
  std::set<std::string> out;
  for (const Event& e : alarms)
    if (e.data["state"] == state) out.insert(e.data["alarm"].get<std::string>());
  return out;
}

class MonitorTest : public testing::EveryBus {};

TEST_P(MonitorTest, RaisesBacklogAlarmsAsAQueueFillsAndResolvesThemAsItDrains) {
  auto bus = Open();
  ASSERT_TRUE(bus);
  const std::string group = Unique("opsmon");
  const std::string type = "fanflow." + Unique("opsmon") + ".v1";
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  std::string queue;  // the watched queue's name, as Stats tells it
  EventCollector alarms(*bus, kAlarm,
                        [&](const Event& e) { return e.subject.find(group) != std::string::npos; });

  AlarmSpecs specs;
  specs.depth = {group + "=20"};
  specs.growth = {group + "=5"};
  specs.oldest_age = {group + "=1"};
  specs.dead_letters = {"100000"};  // on every queue, never reached here
  MonitorOptions o;
  o.group = group;
  o.rate_window = std::chrono::milliseconds(1000);
  o.rules = AlarmRules::Parse(specs).value();
  auto metrics = std::make_shared<Metrics>();
  auto monitor = Monitor::Start(*bus, o, metrics);
  ASSERT_TRUE(monitor.ok()) << monitor.status().ToString();

  auto quiet = monitor.value()->Sample();
  ASSERT_TRUE(quiet.ok()) << quiet.status().ToString();
  ASSERT_EQ(quiet->queues.size(), 1u);
  queue = quiet->queues[0].stats.queue;
  EXPECT_TRUE(quiet->alarms.empty());

  std::vector<Message> backlog;
  for (int i = 0; i < 50; ++i)
    backlog.push_back(Message{type, group + "-" + std::to_string(i), "{}"});
  ASSERT_TRUE(bus->Publish(backlog).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));  // ages the head past 1 s
  auto full = monitor.value()->Sample();
  ASSERT_TRUE(full.ok()) << full.status().ToString();
  const QueueRow& row = full->queues.at(0);
  EXPECT_EQ(row.stats.depth, 50);
  ASSERT_TRUE(row.in_rate && row.growth_rate);
  EXPECT_GT(*row.in_rate, 10) << "the tap saw 50 messages in ~2 s";
  EXPECT_GT(*row.growth_rate, 10);
  EXPECT_EQ(std::set<std::string>(row.alarms.begin(), row.alarms.end()),
            (std::set<std::string>{"queue_depth", "growth_rate", "oldest_age"}));
  ASSERT_TRUE(alarms.WaitFor(3));
  EXPECT_EQ(Names(alarms.events(), "raised"),
            (std::set<std::string>{"queue_depth", "growth_rate", "oldest_age"}));
  const std::string text = metrics->Render();
  EXPECT_NE(text.find("fanflow_alarm_active{alarm=\"queue_depth\",subject=\"" + queue + "\"} 1"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("fanflow_queue_depth_messages{queue=\"" + queue + "\""), std::string::npos);
  testing::ExpectPromtoolAccepts(text);

  // A consumer drains the queue; the next samples resolve every alarm.
  std::atomic<int> consumed{0};
  auto consumer = bus->Subscribe({group, {type}, 4}, [&](const Delivery&) {
    ++consumed;
    return Verdict::Ack();
  });
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE(testing::EveryBus::HasFailure() || [&] {
    for (int i = 0; i < 600 && consumed < 50; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return consumed >= 50;
  }());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a window with the backlog gone
  auto drained = monitor.value()->Sample();
  ASSERT_TRUE(drained.ok());
  EXPECT_EQ(drained->queues.at(0).stats.depth, 0);
  EXPECT_TRUE(drained->alarms.empty());
  ASSERT_TRUE(alarms.WaitFor(6));
  EXPECT_EQ(Names(alarms.events(), "resolved"),
            (std::set<std::string>{"queue_depth", "growth_rate", "oldest_age"}));
  for (const Event& e : alarms.events()) {
    EXPECT_TRUE(ValidateEventData(kAlarm, e.data).ok()) << e.data.dump();
    EXPECT_EQ(e.subject, queue);
    if (e.data["state"] != "resolved") continue;
    // The resolution carries the id of the raise it ends, with /resolved.
    const std::string raised_id = e.id.substr(0, e.id.rfind('/')) + "/raised";
    bool paired = false;
    for (const Event& r : alarms.events()) paired |= r.id == raised_id;
    EXPECT_TRUE(paired) << e.id;
  }
  EXPECT_NE(metrics->Render().find(
                "fanflow_alarm_transitions_total{alarm=\"queue_depth\",state=\"resolved\"} 1"),
            std::string::npos);
}

FANFLOW_ON_EVERY_BUS(MonitorTest);

// Batches come from the aggregator's ledger: the same on every bus, so one bus.
TEST(MonitorBatchTest, RaisesAStalledBatchAlarmAndResolvesItWhenTheBatchMovesAgain) {
  const std::string path = fanflow::testing::TempDir("stalled") + "/ledger.db";
  auto ledger = Ledger::Open(path, Durability::kNormal).value();
  ChunkOutcome c{"b-stall", "corr-stall", 0, true, 10, 1, 5, ""};
  fanflow::testing::AdmitBatch(*ledger, "b-stall", "corr-stall", 3);
  ASSERT_TRUE(ledger->RecordChunk(c).ok());

  auto bus = OpenBus("inproc://" + Unique("stall")).value();
  EventCollector alarms(*bus, kAlarm, [](const Event&) { return true; });
  AlarmSpecs specs;
  specs.stalled_s = 0.3;
  MonitorOptions o;
  o.state_path = path;
  o.rules = AlarmRules::Parse(specs).value();
  auto metrics = std::make_shared<Metrics>();
  auto monitor = Monitor::Start(*bus, o, metrics).value();
  auto first = monitor->Sample();
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->batches.size(), 1u);
  EXPECT_EQ(first->batches[0].succeeded, 1);
  EXPECT_EQ(first->batches[0].total_chunks, 3);
  EXPECT_TRUE(first->alarms.empty());

  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto stalled = monitor->Sample();
  ASSERT_EQ(stalled->alarms.size(), 1u);
  EXPECT_EQ(stalled->alarms[0].check.alarm, "batch_stalled");
  ASSERT_TRUE(alarms.WaitFor(1));
  const Event raised = alarms.events()[0];
  EXPECT_EQ(raised.subject, "b-stall");
  EXPECT_EQ(raised.correlation_id, "corr-stall");
  EXPECT_NE(raised.data["message"].get<std::string>().find("1/3 chunks done"), std::string::npos);
  EXPECT_NE(metrics->Render().find("fanflow_batch_progress_ratio{batch=\"b-stall\"} 0.333333333"),
            std::string::npos)
      << metrics->Render();

  c.chunk_index = 1;
  ASSERT_TRUE(ledger->RecordChunk(c).ok());
  auto moving = monitor->Sample();
  EXPECT_TRUE(moving->alarms.empty());
  ASSERT_TRUE(alarms.WaitFor(2));
  EXPECT_EQ(alarms.events()[1].data["state"], "resolved");
  EXPECT_EQ(SnapshotToJson(*moving)["batches"][0]["succeeded"], 2);

  MonitorOptions missing;
  missing.state_path = path + ".missing";
  EXPECT_FALSE(Monitor::Start(*bus, missing, nullptr).ok())
      << "a missing ledger is an error, not an empty one";
}

// What a broker that acks on receipt cannot tell (MQTT): the chunks published
// and not yet done, from the aggregator's leases.
// One sample of a monitor that reads the ledger at `path`, its metrics in `metrics`.
Result<MonitorSnapshot> SampleLedger(const std::string& path, const std::shared_ptr<Metrics>& metrics) {
  auto bus = OpenBus("inproc://" + Unique("ledger-sample")).value();
  MonitorOptions o;
  o.state_path = path;
  auto monitor = Monitor::Start(*bus, o, metrics).value();
  return monitor->Sample();
}

TEST(MonitorBatchTest, ShowsTheChunksOutstandingInTheLedgerAndTheAgeOfTheOldest) {
  const std::string path = fanflow::testing::TempDir("outstanding") + "/ledger.db";
  auto ledger = Ledger::Open(path, Durability::kNormal).value();
  fanflow::testing::AdmitBatch(*ledger, "b-out", "corr-out", 3);
  ASSERT_TRUE(ledger->LeasePage("b-out", 0, 3, "{}").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(ledger->RecordChunk(ChunkOutcome{"b-out", "corr-out", 0, true, 10, 1, 5, ""}).ok());

  auto metrics = std::make_shared<Metrics>();
  auto snap = SampleLedger(path, metrics);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  ASSERT_EQ(snap->batches.size(), 1u);
  EXPECT_EQ(snap->batches[0].outstanding, 2);
  ASSERT_TRUE(snap->batches[0].oldest_outstanding_s.has_value());
  EXPECT_GE(*snap->batches[0].oldest_outstanding_s, 0.3);
  EXPECT_EQ(SnapshotToJson(*snap)["batches"][0]["outstanding"], 2);
  EXPECT_NE(metrics->Render().find("fanflow_batch_outstanding_chunks{batch=\"b-out\"} 2"), std::string::npos)
      << metrics->Render();
}

TEST(MonitorBatchTest, CountsTheConflictingChunkDoneOfABatch) {
  const std::string path = fanflow::testing::TempDir("conflicts") + "/ledger.db";
  auto ledger = Ledger::Open(path, Durability::kNormal).value();
  fanflow::testing::AdmitBatch(*ledger, "b-conf", "corr-conf", 3);
  ASSERT_TRUE(ledger->RecordChunk(ChunkOutcome{"b-conf", "corr-conf", 0, true, 10, 1, 5, ""}).ok());
  ASSERT_EQ(ledger->RecordChunk(ChunkOutcome{"b-conf", "corr-conf", 0, true, 10, 1, 6, ""}).value(),
            ChunkRecorded::kConflict);

  auto metrics = std::make_shared<Metrics>();
  auto snap = SampleLedger(path, metrics);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(SnapshotToJson(*snap)["batches"][0]["conflicts"], 1);
  EXPECT_NE(metrics->Render().find("fanflow_batch_conflicts{batch=\"b-conf\"} 1"), std::string::npos)
      << metrics->Render();
}

}  // namespace
}  // namespace fanflow
