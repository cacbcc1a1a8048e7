#include "pipeline/worker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "core/routes.h"
#include "tests/pipeline/pipeline_test_util.h"

namespace fanflow {
namespace {

using testing::Eventually;
using testing::ToMessage;

Event Chunk(const std::string& batch, int64_t index, int64_t value) {
  return MakeEvent(kProcessChunk, batch + "/chunk/" + std::to_string(index), batch, "c",
                   {{"chunk_index", index}, {"first_item", index}, {"item_count", 1},
                    {"items", {{{"id", index}, {"value", value}}}}});
}

// Records how many Process calls overlap, the way the cap must be proven:
// by measuring it, not by trusting the thread count.
class OverlapRecorder final : public Processor {
 public:
  Result<nlohmann::json> Process(const ChunkInput&) override {
    int now = ++running_;
    int seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    --running_;
    return nlohmann::json(1);
  }
  int peak() const { return peak_; }

 private:
  std::atomic<int> running_{0}, peak_{0};
};

class FailingProcessor final : public Processor {
 public:
  Result<nlohmann::json> Process(const ChunkInput&) override {
    ++calls;
    return Internal("disk on fire");
  }
  std::atomic<int> calls{0};
};

// Reads the items' text: which entry point the worker called, with what.
class TextRecorder final : public Processor {
 public:
  bool TakesItemsText() const override { return true; }
  Result<nlohmann::json> Process(const ChunkInput&) override {
    ++dom_calls;
    return nlohmann::json(0);
  }
  Result<nlohmann::json> ProcessText(const ChunkText& chunk) override {
    std::lock_guard<std::mutex> l(mu);
    texts.emplace_back(chunk.items_json);
    event_had_items = chunk.event && chunk.event->data.contains("items");
    return nlohmann::json(1);
  }
  std::atomic<int> dom_calls{0};
  std::mutex mu;
  std::vector<std::string> texts;
  bool event_had_items = true;
};

// Collects chunk_done events.
struct DoneLog {
  explicit DoneLog(EventBus& bus) {
    sub = bus.Subscribe({"done-log", {kChunkDone}, 1}, [this](const Delivery& d) {
            std::lock_guard<std::mutex> l(mu);
            events.push_back(DecodeEvent(d.message.body).value());
            return Verdict::Ack();
          }).value();
  }
  size_t size() {
    std::lock_guard<std::mutex> l(mu);
    return events.size();
  }
  std::mutex mu;
  std::vector<Event> events;
  std::unique_ptr<Subscription> sub;
};

TEST(WorkerTest, NeverRunsMoreChunksThanItsConcurrencyCap) {
  auto bus = testing::PrivateBus();
  DoneLog done(*bus);
  auto recorder = std::make_shared<OverlapRecorder>();
  WorkerOptions o;
  o.concurrency = 3;
  auto worker = Worker::Start(*bus, recorder, o);
  ASSERT_TRUE(worker.ok());
  std::vector<Message> burst;
  for (int i = 0; i < 300; ++i) burst.push_back(ToMessage(Chunk("cap", i, 1)));
  ASSERT_TRUE(bus->Publish(burst).ok());
  ASSERT_TRUE(Eventually([&] { return done.size() == 300; }));
  EXPECT_LE(recorder->peak(), 3);
  EXPECT_EQ(recorder->peak(), 3) << "a burst of 300 should fill all 3 slots";
}

TEST(WorkerTest, AProcessorThatTakesItemsTextGetsTheInlineItemsAsTextAndNoDom) {
  auto bus = testing::PrivateBus();
  DoneLog done(*bus);
  auto recorder = std::make_shared<TextRecorder>();
  auto worker = Worker::Start(*bus, recorder, WorkerOptions{});
  ASSERT_TRUE(worker.ok());
  ASSERT_TRUE(bus->Publish(ToMessage(Chunk("text", 4, 9))).ok());
  ASSERT_TRUE(Eventually([&] { return done.size() == 1; }));
  EXPECT_EQ(recorder->dom_calls.load(), 0);
  std::lock_guard<std::mutex> l(recorder->mu);
  ASSERT_EQ(recorder->texts.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(recorder->texts[0]), nlohmann::json::parse(R"([{"id":4,"value":9}])"));
  EXPECT_FALSE(recorder->event_had_items);
  EXPECT_EQ(done.events.front().data["status"], "succeeded");
  EXPECT_EQ(done.events.front().data["result"], 1);
}

TEST(WorkerTest, RetriesWithBackoffThenReportsFailedAndDeadLettersTheChunk) {
  auto bus = testing::PrivateBus();
  DoneLog done(*bus);
  auto failing = std::make_shared<FailingProcessor>();
  WorkerOptions o;
  o.max_attempts = 3;
  o.backoff_base = std::chrono::milliseconds(20);
  auto worker = Worker::Start(*bus, failing, o);
  ASSERT_TRUE(worker.ok());
  const auto started = std::chrono::steady_clock::now();
  ASSERT_TRUE(bus->Publish(ToMessage(Chunk("fail", 7, 1))).ok());
  ASSERT_TRUE(Eventually([&] { return done.size() == 1; }));
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(failing->calls.load(), 3);
  // Backoff waits at least half of 20 ms then half of 40 ms.
  EXPECT_GE(elapsed, std::chrono::milliseconds(30));
  const Event& e = done.events.front();
  EXPECT_EQ(e.id, "fail/done/7");
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_EQ(e.data["attempts"], 3);
  EXPECT_EQ(e.data["error"], "disk on fire");
  ASSERT_TRUE(Eventually([&] {
    auto dead = bus->ListDeadLetters(routes::kWorkerGroup);
    return dead.ok() && dead->size() == 1;
  }));
  auto dead = bus->ListDeadLetters(routes::kWorkerGroup).value().front();
  EXPECT_EQ(dead.reason, "attempts exhausted (3): disk on fire");
  EXPECT_EQ(dead.attempts, 3);
  EXPECT_EQ(dead.id, "fail/chunk/7");
}

TEST(WorkerTest, DeadLettersAChunkThatBreaksTheSchemaNamingTheField) {
  auto bus = testing::PrivateBus();
  auto worker = Worker::Start(*bus, std::make_shared<OverlapRecorder>(), WorkerOptions{});
  ASSERT_TRUE(worker.ok());
  Event bad = Chunk("schema", 0, 1);
  bad.data.erase("item_count");
  ASSERT_TRUE(bus->Publish(ToMessage(bad)).ok());
  ASSERT_TRUE(Eventually([&] {
    auto dead = bus->ListDeadLetters(routes::kWorkerGroup);
    return dead.ok() && dead->size() == 1;
  }));
  EXPECT_EQ(bus->ListDeadLetters(routes::kWorkerGroup).value().front().reason,
            "data.item_count: is required");
}

TEST(WorkerTest, BackoffGrowsExponentiallyWithJitterAndACap) {
  WorkerOptions o;
  o.backoff_base = std::chrono::milliseconds(100);
  o.backoff_max = std::chrono::milliseconds(1000);
  for (int i = 0; i < 50; ++i) {
    auto first = Worker::Backoff(o, 1).count(), third = Worker::Backoff(o, 3).count();
    EXPECT_GE(first, 50);
    EXPECT_LE(first, 100);
    EXPECT_GE(third, 200);
    EXPECT_LE(third, 400);
    EXPECT_LE(Worker::Backoff(o, 20).count(), 1000);
  }
}

}  // namespace
}  // namespace fanflow
