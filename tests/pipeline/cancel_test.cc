// Cancelling a batch on the in-process bus, with every role in this process;
// tests/cli/cancel_cli_test.cc does the same with separate processes on the
// brokers.
#include "pipeline/cancel.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/routes.h"
#include "pipeline/aggregator.h"
#include "pipeline/processor.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/ledger_rows.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;
using testing::Eventually;
using testing::ToMessage;

class CancelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AggregatorOptions ao;
    ao.state_path = ledger_;
    auto aggregator = Aggregator::Start(*bus_, ao);
    ASSERT_TRUE(aggregator.ok()) << aggregator.status().ToString();
    aggregator_ = std::move(aggregator).value();
    auto ventilator = Ventilator::Start(*bus_, {});
    ASSERT_TRUE(ventilator.ok());
    ventilator_ = std::move(ventilator).value();
    // Items of range: are worth 0..1000: about 25 ms a chunk of 10.
    ProcessorOptions slow;
    slow.name = "sleep";
    slow.sleep_scale = 0.005;
    WorkerOptions wo;
    wo.concurrency = 1;
    auto worker = Worker::Start(*bus_, std::shared_ptr<Processor>(MakeProcessor(slow).value()), wo);
    ASSERT_TRUE(worker.ok());
    worker_ = std::move(worker).value();
  }

  void Start(const std::string& batch, int64_t chunks) {
    ASSERT_TRUE(bus_->Publish(ToMessage(testing::Start(batch, chunks))).ok());
  }
  std::vector<Event> Completes(const std::string& batch) {
    std::vector<Event> out;
    for (const Event& e : completes_.events())
      if (e.subject == batch) out.push_back(e);
    return out;
  }
  size_t DoneOf(const std::string& batch) {
    size_t n = 0;
    for (const Event& e : done_.events()) n += e.subject == batch;
    return n;
  }
  std::vector<DeadLetter> DeadLetters() {
    auto dead = bus_->ListDeadLetters(routes::kAggregatorGroup);
    EXPECT_TRUE(dead.ok());
    return dead.ok() ? dead.value() : std::vector<DeadLetter>();
  }

  std::unique_ptr<EventBus> bus_ = testing::PrivateBus();
  const std::string ledger_ = testing::TempDir("cancel") + "/ledger.db";
  testing::EventCollector completes_{*bus_, kBatchComplete, [](const Event&) { return true; }};
  testing::EventCollector done_{*bus_, kChunkDone, [](const Event&) { return true; }};
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<Ventilator> ventilator_;
  std::unique_ptr<Worker> worker_;
};

TEST_F(CancelTest, StopsABatchMidWayWithOneCancelledCompleteAndIgnoresLateChunks) {
  Start("c1", 200);
  ASSERT_TRUE(Eventually([&] { return DoneOf("c1") >= 3; }));
  auto answer = RequestCancel(*bus_, "c1", "wrong input", 10s);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  EXPECT_EQ(answer->data["status"], "cancelled");
  EXPECT_EQ(answer->data["reason"], "wrong input");
  const int64_t counted =
      answer->data["succeeded"].get<int64_t>() + answer->data["failed"].get<int64_t>();
  EXPECT_GE(counted, 3);
  EXPECT_EQ(answer->data["missing_chunks"].size(), static_cast<size_t>(200 - counted));

  // The worker skips the rest: at most the chunk it held comes in late.
  std::this_thread::sleep_for(500ms);
  const size_t done_after = DoneOf("c1");
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(DoneOf("c1"), done_after) << "the worker still processes the cancelled batch";
  EXPECT_LE(done_after, static_cast<size_t>(counted) + 1);

  // A late chunk_done, even a valid one, changes nothing.
  const int64_t late = answer->data["missing_chunks"].back().get<int64_t>();
  ASSERT_TRUE(bus_->Publish(ToMessage(testing::ChunkDone("c1", late, 5))).ok());
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(testing::LedgerChunkRows(ledger_, "c1"), counted);
  ASSERT_EQ(Completes("c1").size(), 1u);
  EXPECT_TRUE(DeadLetters().empty());

  // Cancelling again answers with the same decision.
  auto again = RequestCancel(*bus_, "c1", "", 10s);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->id, answer->id);
  EXPECT_EQ(again->data, answer->data);
}

TEST_F(CancelTest, ACancelAfterTheBatchCompletedChangesNothing) {
  Start("c2", 2);
  ASSERT_TRUE(Eventually([&] { return Completes("c2").size() == 1; }));
  auto answer = RequestCancel(*bus_, "c2", "too late", 10s);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  EXPECT_EQ(answer->data["status"], "succeeded");
  EXPECT_FALSE(answer->data.contains("reason"));
  EXPECT_EQ(answer->data, Completes("c2").front().data);
}

TEST_F(CancelTest, ACancelOfAnUnknownBatchIsDeadLetteredAndTimesOut) {
  auto answer = RequestCancel(*bus_, "no-such-batch", "", 500ms);
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), StatusCode::kTimeout);
  EXPECT_NE(answer.status().message().find("fanflow dlq list --group aggregator"),
            std::string::npos);
  ASSERT_TRUE(Eventually([&] { return !DeadLetters().empty(); }));
  EXPECT_EQ(DeadLetters().front().reason.rfind("subject: unknown batch 'no-such-batch'", 0), 0u)
      << DeadLetters().front().reason;
  EXPECT_TRUE(completes_.events().empty());
}

TEST_F(CancelTest, AMalformedCancelIsDeadLetteredNamingTheField) {
  Start("c3", 200);
  Event bad = MakeEvent(kCancelBatch, "c3/cancel", "c3", "c3", {{"reason", 42}});
  ASSERT_TRUE(bus_->Publish(ToMessage(bad)).ok());
  ASSERT_TRUE(Eventually([&] { return !DeadLetters().empty(); }));
  EXPECT_EQ(DeadLetters().front().reason.rfind("data.reason:", 0), 0u)
      << DeadLetters().front().reason;
  // And the client side refuses to send one.
  EXPECT_EQ(PublishCancel(*bus_, "c3", "line\nbreak").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PublishCancel(*bus_, "", "").code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Completes("c3").empty());
}

}  // namespace
}  // namespace fanflow
