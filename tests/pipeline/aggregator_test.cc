#include "pipeline/aggregator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>

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
  // An aggregator that keeps each batch within a fan-out window of `window` chunks.
  std::unique_ptr<Aggregator> StartWithWindow(int64_t window) {
    AggregatorOptions o;
    o.state_path = state_;
    o.fanout_window = window;
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
  int StepsOf(const std::string& b) { return static_cast<int>(Steps(b).size()); }
  std::vector<Event> Steps(const std::string& b) {
    std::lock_guard<std::mutex> l(steps_mu_);
    std::vector<Event> out;
    for (const Event& e : steps_)
      if (e.subject == b) out.push_back(e);
    return out;
  }
  // The ventilator's report that step `step` of `b` published up to `chunks`.
  void Report(const std::string& b, int64_t step, int64_t chunks) {
    Publish(MakeEvent(kFanoutProgress, b + "/progress/" + std::to_string(step), b, "corr-" + b,
                      {{"step", step},
                       {"cursor", {{"offset", 0}, {"next_chunk", chunks}, {"next_item", chunks * 10}}}}));
  }
  // The ventilator's announcement that a page of step `step` of `b`, up to
  // `chunks` (`items` in all), is being published.
  Event Publishing(const std::string& b, int64_t step, int64_t chunks, int64_t items) {
    return MakeEvent(kFanoutProgress, b + "/publishing/" + std::to_string(chunks), b, "corr-" + b,
                     {{"step", step},
                      {"cursor", {{"offset", 0}, {"next_chunk", chunks}, {"next_item", items}}},
                      {"publishing", true}});
  }
  std::vector<DeadLetter> DeadLetters() {
    auto dead = bus_->ListDeadLetters(routes::kAggregatorGroup);
    EXPECT_TRUE(dead.ok());
    return dead.ok() ? dead.value() : std::vector<DeadLetter>();
  }
  // Waits for a dead letter of event `id` and returns its reason.
  std::string DeadLetterReason(const std::string& id) {
    std::string reason;
    Eventually([&] {
      for (const DeadLetter& d : DeadLetters())
        if (d.id == id) reason = d.reason;
      return !reason.empty();
    });
    return reason;
  }

  std::unique_ptr<EventBus> bus_ = testing::PrivateBus();
  std::mutex steps_mu_;
  std::vector<Event> steps_;  // guarded by steps_mu_: the fan-out steps handed out
  std::unique_ptr<Subscription> ventilator_ =
      bus_->Subscribe({routes::kVentilatorGroup, {kFanoutStep}, 1}, [this](const Delivery& d) {
            auto e = DecodeEvent(d.message.body);
            std::lock_guard<std::mutex> l(steps_mu_);
            if (e.ok()) steps_.push_back(e.value());
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
  for (const char* bad : {"-1", "x", "150%", "1.5", "%", " 5", "nan", "inf%", "0x10"}) {
    auto t = Tolerance::Parse(bad);
    EXPECT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.status().message().find("--tolerate"), std::string::npos);
  }
  EXPECT_FALSE(Tolerance::Parse("1").value().Exceeded(1, 10));
  EXPECT_TRUE(Tolerance::Parse("1").value().Exceeded(2, 10));
  EXPECT_TRUE(Tolerance::Parse("10%").value().Exceeded(2, 10));
}

TEST_F(AggregatorTest, ABatchMayBringItsOwnToleranceAndDeadline) {
  auto agg = StartAggregator();  // no --tolerate, no --deadline
  auto admit_own = [&](const std::string& b, int64_t chunks, const nlohmann::json& own) {
    Event start = testing::Start(b, chunks);
    start.data.update(own);
    Publish(start);
    ASSERT_TRUE(Eventually([&] { return StepsOf(b) > 0; })) << "no fan-out step for " << b;
    Publish(Sealed(b, chunks));
  };
  admit_own("b14", 3, {{"tolerate", "1"}});
  admit_own("b15", 3, {{"tolerate", "1"}});
  admit_own("b16", 3, {{"deadline_seconds", 0.5}});
  Publish(ChunkDone("b14", 0, 1));
  Publish(ChunkDone("b14", 1, 0, false));
  Publish(ChunkDone("b14", 2, 1));
  for (int i = 0; i < 3; ++i) Publish(ChunkDone("b15", i, 0, i == 0));
  Publish(ChunkDone("b16", 0, 1));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 3; }, std::chrono::seconds(10)));
  std::map<std::string, nlohmann::json> by_batch;
  for (const Event& e : log_.events()) by_batch[e.subject] = e.data;
  EXPECT_EQ(by_batch["b14"]["status"], "partial") << "one failure, one tolerated";
  EXPECT_EQ(by_batch["b15"]["status"], "failed") << "two failures, one tolerated";
  EXPECT_EQ(by_batch["b16"]["status"], "timed_out");
  EXPECT_EQ(by_batch["b16"]["missing_chunks"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(by_batch["b16"]["deadline_seconds"], 0.5);
  Event bad = testing::Start("b17", 1);
  bad.id = "b17/bad-tolerance";
  bad.data["tolerate"] = "most";
  Publish(bad);
  EXPECT_NE(DeadLetterReason("b17/bad-tolerance").find("data.tolerate: 'most'"), std::string::npos);
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

// On MQTT a worker acknowledges a chunk when it receives it: one that dies
// with it leaves nothing on the broker. The aggregator leases the chunks of
// every page the ventilator reports publishing, and hands a ventilator a
// redrive of the one whose chunk_done never came: where its page starts, and
// which chunk of it.
TEST_F(AggregatorTest, HandsTheVentilatorARedriveOfAChunkWhoseWorkerNeverFinishedIt) {
  // Longer than the 200 ms a chunk_done that overtook its page's report waits.
  auto agg = StartAggregator(std::chrono::milliseconds(600));
  Publish(testing::Start("b7", 3));
  ASSERT_TRUE(Eventually([&] { return StepsOf("b7") == 1; }));
  Event page = Publishing("b7", 0, 3, 30);
  page.data["page"] = {{"offset", 0}, {"next_chunk", 0}, {"next_item", 0}};
  Publish(page);
  Publish(Sealed("b7", 3));
  Publish(ChunkDone("b7", 0, 1));
  Publish(ChunkDone("b7", 2, 3));  // chunk 1's worker is lost
  ASSERT_TRUE(Eventually([&] { return StepsOf("b7") >= 2; })) << "no redrive";
  const std::vector<Event> steps = Steps("b7");
  for (size_t i = 1; i < steps.size(); ++i) {
    const Event& redrive = steps[i];
    EXPECT_EQ(redrive.id, "b7/redrive/1/" + std::to_string(i));
    EXPECT_EQ(redrive.data["redrive"], (nlohmann::json{{"chunk_index", 1}}));
    EXPECT_EQ(redrive.data["cursor"], page.data["page"]);
    EXPECT_EQ(redrive.data["max_chunks"], 2) << "from the page's first chunk up to chunk 1";
    EXPECT_EQ(redrive.data["source"], steps[0].data["source"]);
    EXPECT_TRUE(ValidateEventData(kFanoutStep, redrive.data).ok());
  }
  Publish(ChunkDone("b7", 1, 2));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["status"], "succeeded");
  EXPECT_EQ(log_.events().front().data["result"], 6);
  const int handed_out = StepsOf("b7");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(StepsOf("b7"), handed_out) << "a chunk done is not redriven";
}

// A page that cannot be one of the step's is refused before anything is leased.
TEST_F(AggregatorTest, DeadLettersAPublishingReportWhosePageIsOutsideItsStep) {
  auto agg = StartAggregator(std::chrono::milliseconds(150));
  Publish(testing::Start("b7p", 3));
  ASSERT_TRUE(Eventually([&] { return StepsOf("b7p") == 1; }));
  Event page = Publishing("b7p", 0, 2, 20);
  page.id = "b7p/bad-page";
  page.data["page"] = {{"offset", 0}, {"next_chunk", 2}, {"next_item", 20}};
  Publish(page);
  EXPECT_NE(DeadLetterReason("b7p/bad-page").find("data.page.next_chunk: 2"), std::string::npos);
  page.id = "b7p/bad-item";
  page.data["page"] = {{"offset", 0}, {"next_chunk", 1}, {"next_item", 5}};
  Publish(page);
  EXPECT_NE(DeadLetterReason("b7p/bad-item").find("data.page.next_item: chunk 1 starts at item 10"),
            std::string::npos);
}

TEST_F(AggregatorTest, DeadLettersChunkDoneItCannotPlaceAndStillGetsTheExactResult) {
  auto agg = StartAggregator();
  Publish(ChunkDone("ghost", 0, 1));
  EXPECT_NE(DeadLetterReason("ghost/done/0").find("subject: unknown batch 'ghost'"), std::string::npos);
  Admit("b8", 3);
  Publish(ChunkDone("b8", 3, 1000));
  Publish(ChunkDone("b8", 1'000'000'000'000'000, 1000));
  Event short_chunk = ChunkDone("b8", 1, 1000);
  short_chunk.id = "b8/short/1";
  short_chunk.data["items"] = 7;
  Publish(short_chunk);
  EXPECT_NE(DeadLetterReason("b8/done/3").find("data.chunk_index"), std::string::npos);
  EXPECT_NE(DeadLetterReason("b8/done/1000000000000000").find("data.chunk_index"), std::string::npos);
  EXPECT_NE(DeadLetterReason("b8/short/1").find("data.items: 7"), std::string::npos);
  for (int i = 0; i < 3; ++i) Publish(ChunkDone("b8", i, 1));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["status"], "succeeded");
  EXPECT_EQ(log_.events().front().data["result"], 3);
  EXPECT_EQ(log_.events().front().data["chunks"], 3);
}

TEST_F(AggregatorTest, KeepsTheFirstResultOfAChunkAndCountsTheConflict) {
  auto agg = StartAggregator();
  Admit("b9", 2);
  Publish(ChunkDone("b9", 0, 5));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // counted before the other arrives
  Event other = ChunkDone("b9", 0, 6);
  other.id = "b9/forged/0";
  Publish(other);
  EXPECT_NE(DeadLetterReason("b9/forged/0").find("conflict: chunk 0 of batch 'b9'"), std::string::npos);
  Publish(ChunkDone("b9", 1, 7));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["result"], 12);
  EXPECT_EQ(log_.events().front().data["conflicts"], 1);
}

TEST_F(AggregatorTest, TheSameRequestIsTheSameBatchAndAnotherOneIsRefused) {
  auto agg = StartAggregator();
  Admit("b10", 1);
  Publish(ChunkDone("b10", 0, 4));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  Publish(testing::Start("b10", 1));  // a client's retry: answered with the same event
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 2; }));
  EXPECT_EQ(log_.events()[1].id, log_.events()[0].id);
  EXPECT_EQ(log_.events()[1].data, log_.events()[0].data);
  Event other = testing::Start("b10", 2);
  other.id = "b10/other-start";
  Publish(other);
  EXPECT_NE(DeadLetterReason("b10/other-start").find("already exists with another request"), std::string::npos);
  EXPECT_EQ(StepsOf("b10"), 1) << "neither fanned out again";
}

TEST_F(AggregatorTest, KeepsABatchWithinItsFanoutWindow) {
  auto agg = StartWithWindow(4);
  ASSERT_TRUE(agg);
  Publish(testing::Start("b11", 10));
  ASSERT_TRUE(Eventually([&] { return StepsOf("b11") == 1; }));
  EXPECT_EQ(Steps("b11")[0].data["max_chunks"], 4);
  Report("b11", 0, 4);  // four chunks out, none done: no room
  Publish(ChunkDone("b11", 0, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(StepsOf("b11"), 1) << "3 of a window of 4 outstanding";
  Publish(ChunkDone("b11", 1, 1));  // down to half: the next step, as large as the room
  ASSERT_TRUE(Eventually([&] { return StepsOf("b11") == 2; }));
  const Event next = Steps("b11")[1];
  EXPECT_EQ(next.data["step"], 1);
  EXPECT_EQ(next.data["max_chunks"], 2);
  EXPECT_EQ(next.data["cursor"]["next_chunk"], 4);
}

TEST_F(AggregatorTest, APublishingReportLetsChunkDoneInBeforeTheStepEnds) {
  auto agg = StartWithWindow(10);
  ASSERT_TRUE(agg);
  Publish(testing::Start("b13", 5));
  ASSERT_TRUE(Eventually([&] { return StepsOf("b13") == 1; }));
  Publish(Publishing("b13", 0, 3, 30));
  Event ahead = Publishing("b13", 0, 11, 110);  // more than the step may hold
  ahead.id = "b13/publishing/ahead";
  Publish(ahead);
  EXPECT_NE(DeadLetterReason("b13/publishing/ahead").find("data.cursor: 11 chunks / 110 items do not fit"),
            std::string::npos);
  for (int i = 0; i < 3; ++i) Publish(ChunkDone("b13", i, 1));
  // The last page holds the source's short last chunk (4 items).
  Publish(Publishing("b13", 0, 5, 44));
  Event last = ChunkDone("b13", 4, 1);
  last.data["items"] = 4;
  Publish(last);
  Publish(ChunkDone("b13", 3, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(log_.events().empty()) << "not sealed yet";
  EXPECT_TRUE(DeadLetters().size() == 1) << "none of the chunk_done waited or was refused";
  Publish(MakeEvent(kBatchSealed, "b13/sealed", "b13", "corr-b13",
                    {{"total_chunks", 5}, {"total_items", 44}, {"step", 0}}));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["status"], "succeeded");
  EXPECT_EQ(log_.events().front().data["result"], 5);
  EXPECT_EQ(log_.events().front().data["items"], 44);
  EXPECT_EQ(StepsOf("b13"), 1);
}

TEST_F(AggregatorTest, HandsAStepOutAgainWhenItsVentilatorNeverReports) {
  AggregatorOptions o;
  o.state_path = state_;
  o.step_lease = std::chrono::milliseconds(300);
  auto agg = Aggregator::Start(*bus_, o);
  ASSERT_TRUE(agg.ok());
  Publish(testing::Start("b12", 2));
  ASSERT_TRUE(Eventually([&] { return StepsOf("b12") == 2; }, std::chrono::seconds(5)));
  const auto steps = Steps("b12");
  EXPECT_EQ(steps[1].id, steps[0].id) << "the same step, so its chunks keep their ids";
  EXPECT_EQ(steps[1].data, steps[0].data);
  Publish(Sealed("b12", 2));
  for (int i = 0; i < 2; ++i) Publish(ChunkDone("b12", i, 1));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["result"], 2);
}

TEST_F(AggregatorTest, RefusesABatchLargerThanItsLimit) {
  AggregatorOptions o;
  o.state_path = state_;
  o.max_batch_chunks = 5;
  auto agg = Aggregator::Start(*bus_, o);
  ASSERT_TRUE(agg.ok());
  Publish(testing::Start("b13", 6));
  ASSERT_TRUE(Eventually([&] { return log_.events().size() == 1; }));
  EXPECT_EQ(log_.events().front().data["status"], "failed");
  EXPECT_NE(log_.events().front().data["error"].get<std::string>().find("--max-batch-chunks 5"),
            std::string::npos);
  EXPECT_NE(DeadLetterReason("b13/start").find("data.source"), std::string::npos);
  EXPECT_EQ(StepsOf("b13"), 0);
}

}  // namespace
}  // namespace fanflow
