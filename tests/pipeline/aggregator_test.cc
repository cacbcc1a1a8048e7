#include "pipeline/aggregator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <set>

#include "core/routes.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::ChunkDone;
using testing::Eventually;
using testing::Sealed;
using testing::ToMessage;

// Collects every batch_complete on the bus.
class CompletionLog {
 public:
  explicit CompletionLog(EventBus& bus) {
    auto sub = bus.Subscribe({"completion-log", {kBatchComplete}, 1}, [this](const Delivery& d) {
      auto e = DecodeEvent(d.message.body);
      std::lock_guard<std::mutex> l(mu_);
      if (e.ok()) events_.push_back(e.value());
      return Verdict::Ack();
    });
    EXPECT_TRUE(sub.ok());
    sub_ = std::move(sub).value();
  }
  std::vector<Event> events() {
    std::lock_guard<std::mutex> l(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::vector<Event> events_;
  std::unique_ptr<Subscription> sub_;
};

class AggregatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Aggregator> StartAggregator(std::chrono::milliseconds lease = {}) {
    AggregatorOptions o;
    o.state_path = state_;
    o.lease = lease;
    auto a = Aggregator::Start(*bus_, o);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? std::move(a).value() : nullptr;
  }
  void Publish(const Event& e) { ASSERT_TRUE(bus_->Publish(ToMessage(e)).ok()); }
  // Admits batch `b` of `chunks` chunks of 10 items and reports it sealed, as
  // the ventilator does once the aggregator has handed it the first step.
  void Admit(const std::string& b, int64_t chunks) {
    Publish(testing::Start(b, chunks));
    ASSERT_TRUE(Eventually([&] { return StepsOf(b) > 0; })) << "no fan-out step for " << b;
    Publish(Sealed(b, chunks));
  }
  int StepsOf(const std::string& b) {
    std::lock_guard<std::mutex> l(steps_mu_);
    return static_cast<int>(steps_.count(b));
  }

  std::unique_ptr<EventBus> bus_ = testing::PrivateBus();
  std::mutex steps_mu_;
  std::multiset<std::string> steps_;  // guarded by steps_mu_: subjects of fan-out steps seen
  std::unique_ptr<Subscription> ventilator_ =
      bus_->Subscribe({routes::kVentilatorGroup, {kFanoutStep}, 1}, [this](const Delivery& d) {
            auto e = DecodeEvent(d.message.body);
            std::lock_guard<std::mutex> l(steps_mu_);
            if (e.ok()) steps_.insert(e->subject);
            return Verdict::Ack();
          }).value();
  std::string state_ = testing::TempDir("aggregator") + "/ledger.db";
  CompletionLog log_{*bus_};
};

TEST_F(AggregatorTest, FiresOneBatchCompleteWithTheSumWhenEveryChunkIsIn) {
  auto agg = StartAggregator();
  Admit("b1", 3);
  for (int i = 0; i < 3; ++i) Publish(ChunkDone("b1", i, 10 + i));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  const Event e = log_.events().front();
  EXPECT_EQ(e.id, "b1/complete");
  EXPECT_EQ(e.subject, "b1");
  EXPECT_EQ(e.correlation_id, "corr-b1");
  EXPECT_EQ(e.data["status"], "succeeded");
  EXPECT_EQ(e.data["chunks"], 3);
  EXPECT_EQ(e.data["items"], 30);
  EXPECT_EQ(e.data["result"], 33);
  EXPECT_TRUE(ValidateEventData(kBatchComplete, e.data).ok());
}

TEST_F(AggregatorTest, CountsARedeliveredChunkDoneOnce) {
  auto agg = StartAggregator();
  Admit("b2", 2);
  Publish(ChunkDone("b2", 0, 5));
  Publish(ChunkDone("b2", 0, 5));  // redelivered
  Publish(ChunkDone("b2", 0, 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(log_.events().empty()) << "chunk 1 is still missing";
  Publish(ChunkDone("b2", 1, 7));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(log_.events().size(), 1u);
  EXPECT_EQ(log_.events().front().data["result"], 12);
  EXPECT_EQ(log_.events().front().data["succeeded"], 2);
}

TEST_F(AggregatorTest, ARestartedAggregatorFinishesTheBatchFromItsLedger) {
  {
    auto first = StartAggregator();
    Admit("b3", 4);
    Publish(ChunkDone("b3", 0, 1));
    Publish(ChunkDone("b3", 1, 2));
    ASSERT_TRUE(Eventually([&] {
      auto stats = bus_->Stats(routes::kAggregatorGroup);
      return stats.ok() && std::all_of(stats->begin(), stats->end(), [](const QueueStats& q) {
               return q.depth == 0 && q.in_flight == 0;
             });
    }));
  }  // stopped: the second half arrives while no aggregator runs
  Publish(ChunkDone("b3", 1, 2));  // a redelivery of what the first one counted
  Publish(ChunkDone("b3", 2, 3));
  Publish(ChunkDone("b3", 3, 4));
  auto second = StartAggregator();
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["result"], 10);
  EXPECT_EQ(log_.events().front().data["succeeded"], 4);
}

TEST_F(AggregatorTest, ReportsPartialWithTheFailedChunkIndices) {
  auto agg = StartAggregator();
  Admit("b4", 3);
  Publish(ChunkDone("b4", 0, 1));
  Publish(ChunkDone("b4", 1, 0, false));
  Publish(ChunkDone("b4", 2, 1));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  const nlohmann::json d = log_.events().front().data;
  EXPECT_EQ(d["status"], "partial");
  EXPECT_EQ(d["failed"], 1);
  EXPECT_EQ(d["failed_chunks"], nlohmann::json::array({1}));
  EXPECT_EQ(d["result"], 2);
}

TEST_F(AggregatorTest, ReportsFailedPastTheToleratedFailures) {
  AggregatorOptions o;
  o.state_path = state_;
  o.tolerance = Tolerance::Parse("30%").value();
  auto agg = Aggregator::Start(*bus_, o);
  ASSERT_TRUE(agg.ok());
  Admit("b5", 3);
  Publish(ChunkDone("b5", 0, 1));
  Publish(ChunkDone("b5", 1, 0, false));
  Publish(ChunkDone("b5", 2, 0, false));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["status"], "failed");
}

TEST_F(AggregatorTest, ToleranceParsingNamesTheMistake) {
  EXPECT_TRUE(Tolerance::Parse("5").ok());
  EXPECT_TRUE(Tolerance::Parse("2.5%").ok());
  for (const char* bad : {"-1", "x", "150%", "1.5", "%"}) {
    auto t = Tolerance::Parse(bad);
    EXPECT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.status().message().find("--tolerate"), std::string::npos);
  }
  EXPECT_FALSE(Tolerance::Parse("1").value().Exceeded(1, 10));
  EXPECT_TRUE(Tolerance::Parse("1").value().Exceeded(2, 10));
  EXPECT_TRUE(Tolerance::Parse("10%").value().Exceeded(2, 10));
}

TEST_F(AggregatorTest, DeadLettersAMalformedEventAndKeepsGoing) {
  auto agg = StartAggregator();
  ASSERT_TRUE(bus_->Publish(Message{kChunkDone, "", "{not json"}).ok());
  Admit("b6", 1);
  Publish(ChunkDone("b6", 0, 3));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  auto dead = bus_->ListDeadLetters(routes::kAggregatorGroup);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  EXPECT_NE(dead->front().reason.find("malformed JSON"), std::string::npos);
}

TEST_F(AggregatorTest, RedrivesAChunkWhoseWorkerNeverFinishedIt) {
  auto agg = StartAggregator(std::chrono::milliseconds(150));
  std::atomic<int> deliveries{0};
  // A worker that "dies" with the first delivery (acks without a chunk_done, as
  // an MQTT client that received it does) and finishes the redriven one.
  auto worker = bus_->Subscribe({"workers", {kProcessChunk}, 1}, [&](const Delivery& d) {
    if (++deliveries == 1) return Verdict::Ack();
    auto e = DecodeEvent(d.message.body);
    EXPECT_TRUE(bus_->Publish(ToMessage(ChunkDone(e->subject, 0, 42))).ok());
    return Verdict::Ack();
  });
  ASSERT_TRUE(worker.ok());
  Event chunk = MakeEvent(kProcessChunk, "b7/chunk/0", "b7", "corr-b7",
                          {{"chunk_index", 0}, {"first_item", 0}, {"item_count", 10},
                           {"items", {{{"value", 42}}}}});
  Admit("b7", 1);
  Publish(chunk);
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(deliveries.load(), 2);
  EXPECT_EQ(log_.events().front().data["result"], 42);
}

}  // namespace
}  // namespace fanflow
