#include "pipeline/alarm_rules.h"

#include <gtest/gtest.h>

#include "core/event.h"

namespace fanflow {
namespace {

TEST(PerQueueTest, TheMostSpecificSelectorThatMatchesAQueueApplies) {
  auto p =
      PerQueue::Parse("--alarm-depth", {"100", "workers=50", "workers/process_chunk=10"}, false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->Lookup("workers", kProcessChunk)->value, 10);
  EXPECT_EQ(p->Lookup("workers", kChunkDone)->value, 50);
  EXPECT_EQ(p->Lookup("aggregator", kChunkDone)->value, 100);
  auto narrow = PerQueue::Parse("--alarm-depth", {"workers=50"}, false);
  EXPECT_FALSE(narrow->Lookup("aggregator", kChunkDone).has_value());
}

TEST(PerQueueTest, RejectsBadValuesNamingTheFlagAndTheAcceptedForms) {
  for (const std::vector<std::string>& specs : std::vector<std::vector<std::string>>{
           {"-5"}, {"0"}, {"abc"}, {"=5"}, {"workers="}, {"5", "7"}, {"50%"}}) {
    auto p = PerQueue::Parse("--alarm-depth", specs, false);
    ASSERT_FALSE(p.ok()) << specs.front();
    EXPECT_NE(p.status().message().find("--alarm-depth"), std::string::npos)
        << p.status().message();
  }
  EXPECT_NE(
      PerQueue::Parse("--alarm-depth", {"-5"}, false).status().message().find("[GROUP[/TYPE]=]N"),
      std::string::npos);
  auto pct = PerQueue::Parse("--alarm-oldest-age", {"workers=50%"}, true);
  ASSERT_TRUE(pct.ok());
  EXPECT_TRUE(pct->Lookup("workers", kProcessChunk)->fraction);
  EXPECT_DOUBLE_EQ(pct->Lookup("workers", kProcessChunk)->value, 0.5);
  EXPECT_FALSE(PerQueue::Parse("--alarm-oldest-age", {"150%"}, true).ok());
}

TEST(AlarmRulesTest, RefusesADeadLetterRetentionNotLongerThanItsSourceQueues) {
  AlarmSpecs s;
  s.retention = {"3600", "workers=7200"};
  s.dlq_retention = {"5000"};
  auto r = AlarmRules::Parse(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(
      r.status().message().find("queue 'workers' (--dlq-retention 5000, --retention workers=7200)"),
      std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("lost silently"), std::string::npos);
  s.retention = {"workers=3600"};
  s.dlq_retention = {"600"};
  EXPECT_NE(AlarmRules::Parse(s).status().message().find("keeps messages until they are consumed"),
            std::string::npos)
      << "queues other than workers keep messages forever, longer than 600 s";

  s.retention = {"3600"};
  s.dlq_retention = {"86400", "workers=1800"};
  EXPECT_FALSE(AlarmRules::Parse(s).ok()) << "workers' dead letters would outlive nothing";
  s.dlq_retention = {"86400"};
  EXPECT_TRUE(AlarmRules::Parse(s).ok());
}

TEST(AlarmRulesTest, AnOldestAgeFractionNeedsARetentionToBeAFractionOf) {
  AlarmSpecs s;
  s.oldest_age = {"workers=50%"};
  auto r = AlarmRules::Parse(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no --retention applies to 'workers'"), std::string::npos)
      << r.status().message();
  s.retention = {"600"};
  EXPECT_TRUE(AlarmRules::Parse(s).ok());
  s.stalled_s = -1;
  EXPECT_FALSE(AlarmRules::Parse(s).ok());
}

TEST(AlarmRulesTest, TheDroppedAlarmIsOnByDefaultAndOffAtZero) {
  AlarmSpecs s;
  EXPECT_EQ(AlarmRules::Parse(s).value().dropped, 1);
  s.dropped = 0;
  EXPECT_FALSE(AlarmRules::Parse(s).value().dropped.has_value());
  s.dropped = -1;
  auto r = AlarmRules::Parse(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--alarm-dropped"), std::string::npos) << r.status().message();
}

AlarmCheck Check(const std::string& subject, bool firing, double value) {
  return AlarmCheck{
      "queue_depth", subject, "c", firing, value, 10, "depth " + std::to_string(value)};
}

TEST(AlarmBookTest, RaisesOnceResolvesOnceAndClearsWhatIsNoLongerWatched) {
  AlarmBook book;
  EXPECT_TRUE(book.Apply({Check("q1", false, 1)}).empty());
  auto t = book.Apply({Check("q1", true, 12), Check("q2", true, 30)});
  ASSERT_EQ(t.size(), 2u);
  EXPECT_TRUE(t[0].raised);
  EXPECT_TRUE(book.Apply({Check("q1", true, 15), Check("q2", true, 31)}).empty())
      << "still raised: no event";
  EXPECT_EQ(book.Active().front().check.value, 15) << "keeps the latest value";
  t = book.Apply({Check("q1", false, 3)});  // q2 no longer checked: gone
  ASSERT_EQ(t.size(), 2u);
  for (const auto& tr : t) EXPECT_FALSE(tr.raised);
  EXPECT_EQ(t[0].alarm.check.subject, "q1");
  EXPECT_EQ(t[0].alarm.check.value, 3);
  EXPECT_NE(t[1].alarm.check.message.find("no longer watched"), std::string::npos);
  EXPECT_EQ(t[0].alarm.raised_ms > 0, true);
  EXPECT_TRUE(book.Active().empty());
}

}  // namespace
}  // namespace fanflow
