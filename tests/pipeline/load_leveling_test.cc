// Load leveling on every bus: a burst published far faster than the workers
// may take it is held by the queue, processed under the concurrency cap and
// the rate limit, and drains to zero with nothing lost.
#include <gtest/gtest.h>

#include "core/routes.h"
#include "pipeline/worker.h"
#include "tests/pipeline/concurrency_recorder.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;
using testing::EventCollector;
using testing::Unique;

class LoadLevelingTest : public testing::EveryBus {};

TEST_P(LoadLevelingTest,
       ABurstTenTimesTheRateIsHeldByTheQueueCappedRateLimitedAndDrainedWithNothingLost) {
  constexpr int kChunks = 50, kItems = 4, kCap = 3;
  constexpr double kRate = 10, kBurst = 2;
  auto bus = Open();
  ASSERT_TRUE(bus);
  const std::string batch = Unique("burst-");
  const std::string dir = fanflow::testing::TempDir("leveling");
  EventCollector done(*bus, kChunkDone, [&](const Event& e) { return e.subject == batch; });

  ProcessorOptions p;
  p.command = testing::RecorderCommand(dir, 0.05);
  WorkerOptions o;
  o.concurrency = kCap;
  o.rate.per_second = kRate;
  o.rate.burst = kBurst;
  auto worker = Worker::Start(*bus, std::shared_ptr<Processor>(MakeProcessor(p).value()), o);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();

  std::vector<Message> burst;
  int64_t expected_sum = 0;
  for (int i = 0; i < kChunks; ++i) {
    nlohmann::json items = nlohmann::json::array();
    for (int k = 0; k < kItems; ++k) {
      items.push_back({{"id", i * kItems + k}, {"value", i * 7 + k}});
      expected_sum += i * 7 + k;
    }
    Event e = MakeEvent(
        kProcessChunk, batch + "/chunk/" + std::to_string(i), batch, batch,
        {{"chunk_index", i}, {"first_item", i * kItems}, {"item_count", kItems}, {"items", items}});
    burst.push_back(Message{e.type, e.id, EncodeEvent(e)});
  }
  const auto t0 = Clock::now();
  ASSERT_TRUE(bus->Publish(burst).ok());
  const double publish_s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_GE(kChunks / publish_s, 10 * kRate)
      << "the burst must come at least 10x faster than the limit";
  auto right_after = bus->Stats(routes::kWorkerGroup);
  ASSERT_TRUE(right_after.ok()) << right_after.status().ToString();
  int64_t held = 0;
  for (const QueueStats& q : right_after.value())
    if (q.type == kProcessChunk) held = q.depth + std::max<int64_t>(0, q.in_flight);
  EXPECT_GE(held, kChunks / 2) << "the queue holds the spike";

  ASSERT_TRUE(done.WaitFor(kChunks, std::chrono::seconds(120))) << done.size() << " of " << kChunks;
  const testing::RecorderLog log = testing::RecorderLog::Read(dir, batch);
  EXPECT_EQ(log.runs, kChunks) << "one run per chunk: no retries, nothing lost";
  EXPECT_LE(log.peak, kCap) << "never more copies at once than the cap";
  EXPECT_GE(log.peak, 2) << "the burst should have used parallel slots";
  // Any second holds at most the bucket plus a second's worth of starts (one
  // more for process-start jitter); overall the rate stays under the limit.
  EXPECT_LE(log.MostStartsWithin(1.0), kBurst + kRate + 1);
  const double span = log.starts.back() - log.starts.front();
  EXPECT_LE((kChunks - kBurst) / span, kRate * 1.1) << "over " << span << " s";

  int64_t sum = 0;
  std::set<int64_t> chunks;
  for (const Event& e : done.events()) {
    EXPECT_EQ(e.data["status"], "succeeded");
    sum += e.data["result"].get<int64_t>();
    chunks.insert(e.data["chunk_index"].get<int64_t>());
  }
  EXPECT_EQ(chunks.size(), static_cast<size_t>(kChunks));
  EXPECT_EQ(sum, expected_sum);

  // Drained: nothing waits, nothing of ours was dead-lettered.
  bool drained = false;
  for (int i = 0; i < 200 && !drained; ++i) {
    auto stats = bus->Stats(routes::kWorkerGroup);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    for (const QueueStats& q : stats.value())
      if (q.type == kProcessChunk) drained = q.depth == 0 && q.in_flight <= 0;
    if (!drained) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(drained);
  auto dead = bus->ListDeadLetters(routes::kWorkerGroup);
  ASSERT_TRUE(dead.ok());
  for (const DeadLetter& d : dead.value())
    EXPECT_EQ(d.id.find(batch), std::string::npos) << d.reason;
}

FANFLOW_ON_EVERY_BUS(LoadLevelingTest);

}  // namespace
}  // namespace fanflow
