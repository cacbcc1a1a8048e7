// Retries, chunk timeouts, dead letters (each reason), replay and purge, and
// the aggregator's batch deadline: on every bus.
#include <gtest/gtest.h>

#include <atomic>

#include "core/routes.h"
#include "pipeline/aggregator.h"
#include "pipeline/dead_letters.h"
#include "pipeline/worker.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;
using testing::EventCollector;
using testing::Unique;

Event Chunk(const std::string& batch, int64_t index, int64_t value) {
  return MakeEvent(kProcessChunk, batch + "/chunk/" + std::to_string(index), batch, "corr-" + batch,
                   {{"chunk_index", index},
                    {"first_item", index},
                    {"item_count", 1},
                    {"items", {{{"id", index}, {"value", value}}}}});
}

Message ToMessage(const Event& e) { return Message{e.type, e.id, EncodeEvent(e)}; }

// Fails the first `failures` attempts of every chunk, then sums; records when
// each attempt came.
class FlakyProcessor final : public Processor {
 public:
  explicit FlakyProcessor(int failures) : failures_(failures) {}
  Result<nlohmann::json> Process(const ChunkInput& c) override {
    std::lock_guard<std::mutex> l(mu_);
    calls_[c.batch_id].push_back(Clock::now());
    if (static_cast<int>(calls_[c.batch_id].size()) <= failures_.load())
      return Internal("disk on fire");
    return nlohmann::json(c.items[0]["value"]);
  }
  std::vector<Clock::time_point> calls(const std::string& batch) {
    std::lock_guard<std::mutex> l(mu_);
    return calls_[batch];
  }
  std::atomic<int> failures_;

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<Clock::time_point>> calls_;
};

class RetryTest : public testing::EveryBus {};

TEST_P(RetryTest, TheAttemptCountTravelsWithTheEventAndBackoffSpacesTheAttempts) {
  auto bus = Open();
  ASSERT_TRUE(bus);
  const std::string batch = Unique("retry-");
  EventCollector done(*bus, kChunkDone, [&](const Event& e) { return e.subject == batch; });
  auto flaky = std::make_shared<FlakyProcessor>(2);
  WorkerOptions o;
  o.max_attempts = 4;
  o.backoff_base = std::chrono::milliseconds(200);
  auto worker = Worker::Start(*bus, flaky, o);
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(bus->Publish(ToMessage(Chunk(batch, 0, 42))).ok());
  ASSERT_TRUE(done.WaitFor(1));
  const Event e = done.events().front();
  EXPECT_EQ(e.data["status"], "succeeded");
  EXPECT_EQ(e.data["attempts"], 3)
      << "attempts 1 and 2 failed; the count came back with each retry";
  EXPECT_EQ(e.data["result"], 42);
  auto calls = flaky->calls(batch);
  ASSERT_EQ(calls.size(), 3u);
  // Exponential with jitter in [d/2, d]: >= 100 ms, then >= 200 ms.
  EXPECT_GE(calls[1] - calls[0], std::chrono::milliseconds(100));
  EXPECT_GE(calls[2] - calls[1], std::chrono::milliseconds(200));
}

TEST_P(RetryTest, AChunkThatOutlivesItsTimeoutFailsThatAttemptAndIsDeadLetteredWithTheLastError) {
  auto bus = Open();
  ASSERT_TRUE(bus);
  const std::string batch = Unique("timeout-");
  EventCollector done(*bus, kChunkDone, [&](const Event& e) { return e.subject == batch; });
  ProcessorOptions p;
  p.command = "sleep 5";
  p.timeout = std::chrono::milliseconds(300);
  WorkerOptions o;
  o.max_attempts = 2;
  o.backoff_base = std::chrono::milliseconds(20);
  auto worker = Worker::Start(*bus, std::shared_ptr<Processor>(MakeProcessor(p).value()), o);
  ASSERT_TRUE(worker.ok());
  const auto t0 = Clock::now();
  ASSERT_TRUE(bus->Publish(ToMessage(Chunk(batch, 3, 1))).ok());
  ASSERT_TRUE(done.WaitFor(1));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(4)) << "each attempt was killed at its timeout";
  const Event e = done.events().front();
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_EQ(e.data["attempts"], 2);
  const std::string error = "exec: 'sleep 5' ran longer than 300 ms and was killed";
  EXPECT_EQ(e.data["error"], error);

  std::vector<DeadLetter> dead;
  for (int i = 0; i < 200 && dead.empty(); ++i) {
    auto found = FindDeadLetters(*bus, routes::kWorkerGroup, batch + "/chunk/3");
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    dead = found.value();
    if (dead.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, "attempts exhausted (2): " + error);
  EXPECT_EQ(dead[0].attempts, 2);
  EXPECT_FALSE(dead[0].time.empty());
  EXPECT_EQ(DeadLetterCategory(dead[0].reason), "attempts_exhausted");
}

FANFLOW_ON_EVERY_BUS(RetryTest);

class DeadLetterTest : public testing::EveryBus {};

TEST_P(DeadLetterTest, EachReasonIsKeptWithTheOriginalEventAndAReplayedChunkIsProcessedNormally) {
  auto bus = Open();
  ASSERT_TRUE(bus);
  const std::string batch = Unique("dlq-");
  EventCollector done(*bus, kChunkDone, [&](const Event& e) { return e.subject == batch; });
  auto flaky = std::make_shared<FlakyProcessor>(1000);
  WorkerOptions o;
  o.max_attempts = 1;
  auto worker = Worker::Start(*bus, flaky, o);
  ASSERT_TRUE(worker.ok());

  Event schema = Chunk(batch, 1, 1);
  schema.data.erase("item_count");
  Event unknown = Chunk(batch, 2, 1);
  unknown.type = "fanflow.bogus.v1";
  const Event exhausted = Chunk(batch, 3, 5);
  const std::string malformed = "{\"not json " + batch;
  ASSERT_TRUE(
      bus->Publish({Message{kProcessChunk, batch + "/malformed", malformed}, ToMessage(schema),
                    Message{kProcessChunk, unknown.id, EncodeEvent(unknown)}, ToMessage(exhausted)})
          .ok());

  std::map<std::string, DeadLetter> ours;  // by category
  for (int i = 0; i < 400 && ours.size() < 4; ++i) {
    auto all = bus->ListDeadLetters(routes::kWorkerGroup);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    ours.clear();
    for (const DeadLetter& d : all.value())
      if (d.body.find(batch) != std::string::npos) ours[DeadLetterCategory(d.reason)] = d;
    if (ours.size() < 4) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(ours.size(), 4u) << "expected one dead letter per reason";
  EXPECT_EQ(ours["malformed_json"].body, malformed);
  EXPECT_EQ(DeadLetterToJson(ours["malformed_json"], true)["event"], malformed)
      << "raw body when not JSON";
  EXPECT_EQ(ours["schema"].reason, "data.item_count: is required") << "names the field";
  EXPECT_EQ(ours["unknown_type"].reason, "type: unknown event type 'fanflow.bogus.v1'");
  EXPECT_EQ(ours["attempts_exhausted"].reason, "attempts exhausted (1): disk on fire");
  for (auto& [category, d] : ours) {
    EXPECT_EQ(d.group, routes::kWorkerGroup);
    EXPECT_EQ(d.attempts, 1) << category;
    EXPECT_FALSE(d.time.empty()) << category;
  }
  const nlohmann::json shown = DeadLetterToJson(ours["attempts_exhausted"], true);
  EXPECT_EQ(shown["event"], nlohmann::json::parse(EncodeEvent(exhausted)))
      << "the original event, unchanged";
  EXPECT_EQ(shown["batch_id"], batch);
  EXPECT_EQ(shown["chunk_index"], 3);

  // Replay: the chunk goes back to the workers' queue and is processed normally.
  ASSERT_TRUE(done.WaitFor(1));  // the failed chunk_done of attempt 1
  flaky->failures_ = 0;
  auto replayed = bus->ReplayDeadLetters(routes::kWorkerGroup, exhausted.id);
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed.value(), 1);
  ASSERT_TRUE(done.WaitFor(2));
  const Event again = done.events().back();
  EXPECT_EQ(again.data["status"], "succeeded");
  EXPECT_EQ(again.data["result"], 5);
  auto left = FindDeadLetters(*bus, routes::kWorkerGroup, exhausted.id);
  ASSERT_TRUE(left.ok());
  EXPECT_TRUE(left->empty());

  auto purged = bus->PurgeDeadLetters(routes::kWorkerGroup);
  ASSERT_TRUE(purged.ok()) << purged.status().ToString();
  EXPECT_GE(purged.value(), 3);
  auto after = bus->ListDeadLetters(routes::kWorkerGroup);
  ASSERT_TRUE(after.ok());
  for (const DeadLetter& d : after.value()) EXPECT_EQ(d.body.find(batch), std::string::npos);
}

TEST_P(DeadLetterTest, AMessageThatOutlivesItsQueueRetentionIsDeadLetteredAsExpired) {
  auto probe = Open();
  ASSERT_TRUE(probe);
  if (!probe->Capabilities().message_ttl)
    GTEST_SKIP() << "this adapter has no queue retention (message_ttl_ms) that dead-letters";
  const std::string group = Unique("opsttl");
  const std::string type = "fanflow." + Unique("opsttl") + ".v1";
  auto refused = OpenBus(url() + "?" + group + ".message_ttl_ms=1000&" + group + ".dlq_ttl_ms=500");
  ASSERT_FALSE(refused.ok()) << "a dead-letter retention not longer than its source's is refused";
  EXPECT_NE(refused.status().message().find("longer"), std::string::npos)
      << refused.status().message();

  auto bus = Open("?" + group + ".message_ttl_ms=200&" + group + ".dlq_ttl_ms=600000");
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->DeclareGroup(group, {type}).ok());
  ASSERT_TRUE(bus->Publish(Message{type, group + "-1", "{\"n\":1}"}).ok());
  std::vector<DeadLetter> dead;
  for (int i = 0; i < 200 && dead.empty(); ++i) {
    auto all = bus->ListDeadLetters(group);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    dead = all.value();
    if (dead.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(DeadLetterCategory(dead[0].reason), "expired") << dead[0].reason;
  EXPECT_EQ(dead[0].body, "{\"n\":1}");
  ASSERT_TRUE(bus->PurgeDeadLetters(group).ok());
}

FANFLOW_ON_EVERY_BUS(DeadLetterTest);

class DeadlineTest : public testing::EveryBus {};

TEST_P(DeadlineTest, ABatchPastItsDeadlineCompletesTimedOutOnceListingTheMissingChunks) {
  auto bus = Open();
  ASSERT_TRUE(bus);
  const std::string batch = Unique("deadline-");
  EventCollector complete(*bus, kBatchComplete, [&](const Event& e) { return e.subject == batch; });
  AggregatorOptions o;
  o.state_path = fanflow::testing::TempDir("deadline") + "/ledger.db";
  o.deadline = std::chrono::milliseconds(700);
  auto agg = Aggregator::Start(*bus, o);
  ASSERT_TRUE(agg.ok()) << agg.status().ToString();
  auto done = [&](int64_t i) {
    return MakeEvent(kChunkDone, batch + "/done/" + std::to_string(i), batch, "corr-" + batch,
                     {{"chunk_index", i},
                      {"status", "succeeded"},
                      {"items", 1},
                      {"attempts", 1},
                      {"result", 10}});
  };
  // Admitted, then reported sealed after the first step, as with a ventilator.
  EventCollector step(*bus, kFanoutStep, [&](const Event& e) { return e.subject == batch; });
  ASSERT_TRUE(bus->Publish(ToMessage(MakeEvent(kStartFanout, batch + "/start", batch, "corr-" + batch,
                                               {{"source", "range:5"}, {"chunk_size", 1}})))
                  .ok());
  ASSERT_TRUE(step.WaitFor(1));
  Event sealed = MakeEvent(kBatchSealed, batch + "/sealed", batch, "corr-" + batch,
                           {{"total_chunks", 5}, {"total_items", 5}, {"step", 0}});
  ASSERT_TRUE(bus->Publish({ToMessage(sealed), ToMessage(done(0)), ToMessage(done(2))}).ok());
  ASSERT_TRUE(complete.WaitFor(1));
  const Event e = complete.events().front();
  EXPECT_EQ(e.id, batch + "/complete");
  EXPECT_EQ(e.data["status"], "timed_out");
  EXPECT_EQ(e.data["missing_chunks"], nlohmann::json::array({1, 3, 4}));
  EXPECT_EQ(e.data["succeeded"], 2);
  EXPECT_EQ(e.data["chunks"], 5);
  EXPECT_EQ(e.data["result"], 20);
  EXPECT_TRUE(ValidateEventData(kBatchComplete, e.data).ok());
  // A late chunk changes nothing: the batch is not announced again.
  ASSERT_TRUE(bus->Publish(ToMessage(done(1))).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(complete.size(), 1u);
}

FANFLOW_ON_EVERY_BUS(DeadlineTest);

}  // namespace
}  // namespace fanflow
