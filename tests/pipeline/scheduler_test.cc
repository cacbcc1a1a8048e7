#include "pipeline/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "core/routes.h"
#include "pipeline/aggregator.h"
#include "pipeline/processor.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using namespace std::chrono;

sys_seconds At(const char* text) { return ParseUtcTime(text, "test").value(); }

// Time that moves only when the scheduler sleeps: to the instant it asked for,
// or `oversleep` past it (a machine suspended).
class FakeClock final : public SchedulerClock {
 public:
  explicit FakeClock(sys_seconds start, seconds oversleep = seconds(0))
      : now_(start), oversleep_(oversleep) {}
  sys_seconds Now() override {
    std::lock_guard<std::mutex> l(mu_);
    return now_;
  }
  void SleepUntil(sys_seconds t, std::stop_token) override {
    std::lock_guard<std::mutex> l(mu_);
    now_ = std::max(now_, t + oversleep_);
  }

 private:
  std::mutex mu_;
  sys_seconds now_;
  const seconds oversleep_;
};

std::vector<ScheduleEntry> Entries(const std::string& json) {
  auto entries = ParseSchedule(json, "schedule.json", "/data");
  EXPECT_TRUE(entries.ok()) << entries.status().ToString();
  return entries.ok() ? std::move(entries).value() : std::vector<ScheduleEntry>{};
}

const char* kTwoEntries = R"([
  {"name": "morning", "cron": "0 6 * * *", "source": "range:30", "chunk_size": 10},
  {"name": "half-hourly", "cron": "*/30 * * * *", "source": "jsonl:in/items.jsonl", "chunk_size": 5,
   "page_chunks": 2, "correlation_id": "reports"}])";

// Runs a scheduler on a fake clock from `start` until it has submitted `n`
// slots; returns their batch ids in order.
std::vector<std::string> RunUntil(const std::string& schedule, const char* start, size_t n,
                                  SchedulerOptions options = {},
                                  std::function<Status(const ScheduledBatch&)> also = nullptr,
                                  seconds oversleep = seconds(0)) {
  FakeClock clock(At(start), oversleep);
  std::vector<std::string> ids;
  std::stop_source stop;
  auto s = Scheduler::Create(Entries(schedule), options, clock, [&](const ScheduledBatch& b) {
    if (also)
      if (Status st = also(b); !st.ok()) return st;
    ids.push_back(b.batch_id);
    if (ids.size() == n) stop.request_stop();
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  if (s.ok()) s.value()->Run(stop.get_token());
  return ids;
}

TEST(Schedule, ParsesEntriesIntoStartFanoutRequestsWithAbsolutePaths) {
  auto entries = Entries(kTwoEntries);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].request, (nlohmann::json{{"source", "range:30"}, {"chunk_size", 10}}));
  EXPECT_EQ(entries[1].request["source"], "jsonl:/data/in/items.jsonl");
  EXPECT_EQ(entries[1].request["page_chunks"], 2);
  ScheduledBatch b{&entries[1], floor<minutes>(At("2026-12-02T06:30Z")),
                   "half-hourly/2026-12-02T06:30Z"};
  Event start = ScheduledStart(b);
  EXPECT_EQ(start.id, "half-hourly/2026-12-02T06:30Z/start");
  EXPECT_EQ(start.subject, "half-hourly/2026-12-02T06:30Z");
  EXPECT_EQ(start.correlation_id, "reports");
  EXPECT_TRUE(DecodeEvent(EncodeEvent(start)).ok());
}

TEST(Schedule, RefusesBadEntriesNamingTheEntryAndField) {
  auto error = [](const std::string& json) {
    auto e = ParseSchedule(json, "s.json", "/data");
    return e.ok() ? std::string() : e.status().message();
  };
  EXPECT_EQ(error("{}"),
            "s.json: must be a non-empty JSON list of {name, cron, source, chunk_size}");
  EXPECT_EQ(error("[]"),
            "s.json: must be a non-empty JSON list of {name, cron, source, chunk_size}");
  EXPECT_EQ(error("[1]"), "s.json: [0]: must be an object");
  EXPECT_EQ(error(R"([{"name": "a", "cron": "* * * * *", "source": "range:1"}])"),
            "s.json: [0].chunk_size: is required");
  EXPECT_NE(error(R"([{"name": "a/b", "cron": "* * * * *", "source": "range:1", "chunk_size": 1}])")
                .find("[0].name: 'a/b' must be"),
            std::string::npos);
  EXPECT_NE(error(R"([{"name": "a", "cron": "* * * * * *", "source": "range:1", "chunk_size": 1}])")
                .find("[0].cron: cron '* * * * * *': expected 5 fields"),
            std::string::npos);
  EXPECT_EQ(error(R"([{"name": "a", "cron": "* * * * *", "source": "range:1", "chunk_size": -1}])"),
            "s.json: [0].chunk_size: must be an integer >= 1 and <= 1000000");
  EXPECT_EQ(error(R"([{"name": "a", "cron": "* * * * *", "source": "-", "chunk_size": 1}])"),
            "s.json: [0].source: '-' (stdin) cannot be scheduled");
  EXPECT_NE(error(R"([{"name": "a", "cron": "* * * * *", "source": "ftp:x", "chunk_size": 1}])")
                .find("[0].source: "),
            std::string::npos);
  EXPECT_NE(
      error(
          R"([{"name": "a", "cron": "* * * * *", "source": "range:1", "chunk_size": 1, "sauce": 1}])")
          .find("[0].sauce: unknown field"),
      std::string::npos);
  EXPECT_EQ(error(R"([{"name": "a", "cron": "@daily", "source": "range:1", "chunk_size": 1},
                      {"name": "a", "cron": "@hourly", "source": "range:2", "chunk_size": 1}])"),
            "s.json: [1].name: 'a' is used by an earlier entry");
  EXPECT_NE(error("[{\"name\": \"a\",").find("malformed JSON"), std::string::npos);
}

TEST(Schedule, UpcomingListsSlotsOfAllEntriesInTimeOrder) {
  FakeClock clock(At("2026-12-02T05:00Z"));
  auto s = Scheduler::Create(Entries(kTwoEntries), {}, clock, nullptr);
  ASSERT_TRUE(s.ok());
  std::vector<std::string> ids;
  for (const auto& b : s.value()->Upcoming(At("2026-12-02T05:30Z"), 5)) ids.push_back(b.batch_id);
  // From a slot's own minute on, that slot counts; entries in file order within a minute.
  EXPECT_EQ(ids, (std::vector<std::string>{
                     "half-hourly/2026-12-02T05:30Z", "morning/2026-12-02T06:00Z",
                     "half-hourly/2026-12-02T06:00Z", "half-hourly/2026-12-02T06:30Z",
                     "half-hourly/2026-12-02T07:00Z"}));
}

TEST(Schedule, CatchesUpTheLatestMissedSlotOnceThenFollowsTheClock) {
  EXPECT_EQ(RunUntil(kTwoEntries, "2026-12-02T05:59:30Z", 5),
            (std::vector<std::string>{"morning/2026-12-01T06:00Z", "half-hourly/2026-12-02T05:30Z",
                                      "morning/2026-12-02T06:00Z", "half-hourly/2026-12-02T06:00Z",
                                      "half-hourly/2026-12-02T06:30Z"}));
}

TEST(Schedule, CatchUpCanBeOffOrLimitedInAge) {
  SchedulerOptions none;
  none.catch_up = SchedulerOptions::CatchUp::kNone;
  EXPECT_EQ(
      RunUntil(kTwoEntries, "2026-12-02T05:59:30Z", 2, none),
      (std::vector<std::string>{"morning/2026-12-02T06:00Z", "half-hourly/2026-12-02T06:00Z"}));
  SchedulerOptions hour;
  hour.catch_up_within = hours(1);  // yesterday's morning is too old
  EXPECT_EQ(
      RunUntil(kTwoEntries, "2026-12-02T05:59:30Z", 2, hour),
      (std::vector<std::string>{"half-hourly/2026-12-02T05:30Z", "morning/2026-12-02T06:00Z"}));
  FakeClock clock(At("2026-12-02T05:00Z"));
  SchedulerOptions too_long;
  too_long.catch_up_within = hours(24 * 400);
  EXPECT_FALSE(Scheduler::Create(Entries(kTwoEntries), too_long, clock, nullptr).ok());
}

TEST(Schedule, ASubmitThatFailsIsRetriedWithTheSameBatchId) {
  int failures = 2;
  SchedulerOptions none;
  none.catch_up = SchedulerOptions::CatchUp::kNone;
  auto ids = RunUntil(kTwoEntries, "2026-12-02T06:10Z", 2, none, [&](const ScheduledBatch&) {
    return failures-- > 0 ? Unavailable("broker away") : Status::Ok();
  });
  EXPECT_EQ(ids, (std::vector<std::string>{"half-hourly/2026-12-02T06:30Z",
                                           "half-hourly/2026-12-02T07:00Z"}));
}

TEST(Schedule, WokenLatePastSeveralSlotsItRunsOnlyTheLatest) {
  SchedulerOptions none;
  none.catch_up = SchedulerOptions::CatchUp::kNone;
  // Each sleep overshoots by 95 minutes: woken for 06:30 at 08:05, when 07:00,
  // 07:30 and 08:00 are due too; then for 08:30 at 10:05.
  EXPECT_EQ(
      RunUntil(kTwoEntries, "2026-12-02T06:10Z", 2, none, nullptr, minutes(95)),
      (std::vector<std::string>{"half-hourly/2026-12-02T08:00Z", "half-hourly/2026-12-02T10:00Z"}));
}

// Two schedulers on one schedule, and one restarted later, against a real
// aggregator: each slot fans out once and completes once.
TEST(Schedule, TwoSchedulersAndARestartRunEachSlotOnce) {
  auto bus = testing::PrivateBus();
  const std::string dir = testing::TempDir("schedule");
  AggregatorOptions ao;
  ao.state_path = dir + "/ledger.db";
  auto aggregator = Aggregator::Start(*bus, ao);
  ASSERT_TRUE(aggregator.ok()) << aggregator.status().ToString();
  auto ventilator = Ventilator::Start(*bus, {});
  ASSERT_TRUE(ventilator.ok());
  auto worker = Worker::Start(*bus, std::shared_ptr<Processor>(MakeProcessor({}).value()), {});
  ASSERT_TRUE(worker.ok());
  testing::EventCollector chunks(*bus, kProcessChunk, [](const Event&) { return true; });
  testing::EventCollector completes(*bus, kBatchComplete, [](const Event&) { return true; });

  const std::string schedule =
      R"([{"name": "every10", "cron": "*/10 * * * *", "source": "range:40", "chunk_size": 10}])";
  auto submit = [&bus](const ScheduledBatch& b) { return PublishScheduledStart(*bus, b); };
  {
    std::jthread a([&] { RunUntil(schedule, "2026-12-02T06:05Z", 3, {}, submit); });
    std::jthread b([&] { RunUntil(schedule, "2026-12-02T06:05Z", 3, {}, submit); });
  }
  // A restart after the last of those slots catches up 06:20, which ran.
  RunUntil(schedule, "2026-12-02T06:25Z", 1, {}, submit);

  const std::vector<std::string> slots = {"every10/2026-12-02T06:00Z", "every10/2026-12-02T06:10Z",
                                          "every10/2026-12-02T06:20Z"};
  ASSERT_TRUE(testing::Eventually([&] {
    std::set<std::string> done;
    for (const Event& e : completes.events()) done.insert(e.subject);
    return done.size() == slots.size();
  }));
  std::this_thread::sleep_for(milliseconds(300));  // room for a second fan-out to show
  std::map<std::string, std::vector<Event>> by_batch;
  for (const Event& e : completes.events()) by_batch[e.subject].push_back(e);
  ASSERT_EQ(by_batch.size(), slots.size());
  for (const std::string& id : slots) {
    ASSERT_TRUE(by_batch.count(id)) << id;
    // A repeated start of a finished batch is answered with the same event.
    for (const Event& again : by_batch[id]) {
      EXPECT_EQ(again.id, id + "/complete");
      EXPECT_EQ(again.data, by_batch[id].front().data);
    }
    EXPECT_EQ(by_batch[id].front().data["status"], "succeeded");
    EXPECT_EQ(by_batch[id].front().data["chunks"], 4);
  }
  std::map<std::string, int> published;
  for (const Event& e : chunks.events()) ++published[e.subject];
  for (const std::string& id : slots)
    EXPECT_EQ(published[id], 4) << id << " fanned out more than once";
  auto dead = bus->ListDeadLetters(routes::kAggregatorGroup);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty()) << dead->front().reason;
}

}  // namespace
}  // namespace fanflow
