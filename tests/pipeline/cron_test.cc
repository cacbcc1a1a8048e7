#include "pipeline/cron.h"

#include <gtest/gtest.h>

#include <vector>

namespace fanflow {
namespace {

using namespace std::chrono;

sys_seconds At(const char* text) {
  auto t = ParseUtcTime(text, "test");
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? t.value() : sys_seconds{};
}

// The next `n` slots of `cron` after `from`, formatted.
std::vector<std::string> Slots(const char* cron, const char* from, int n) {
  auto c = CronSchedule::Parse(cron);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  std::vector<std::string> out;
  if (!c.ok()) return out;
  sys_seconds t = At(from);
  for (int i = 0; i < n; ++i) {
    auto next = c->Next(t);
    if (!next) break;
    out.push_back(FormatSlot(*next));
    t = *next;
  }
  return out;
}

std::string ParseError(const char* cron) {
  auto c = CronSchedule::Parse(cron);
  return c.ok() ? "" : c.status().message();
}

TEST(Cron, EveryMinuteIsTheMinuteAfterAndNeverTheSameOne) {
  EXPECT_EQ(Slots("* * * * *", "2026-12-02T06:00Z", 2),
            (std::vector<std::string>{"2026-12-02T06:01Z", "2026-12-02T06:02Z"}));
  EXPECT_EQ(Slots("* * * * *", "2026-12-02T06:00:59Z", 1),
            (std::vector<std::string>{"2026-12-02T06:01Z"}));
}

TEST(Cron, ListsRangesAndStepsCombine) {
  EXPECT_EQ(Slots("*/20 9-10 * * *", "2026-12-02T08:59Z", 7),
            (std::vector<std::string>{"2026-12-02T09:00Z", "2026-12-02T09:20Z", "2026-12-02T09:40Z",
                                      "2026-12-02T10:00Z", "2026-12-02T10:20Z", "2026-12-02T10:40Z",
                                      "2026-12-03T09:00Z"}));
  EXPECT_EQ(Slots("5,50 1-5/2 * * *", "2026-12-02T00:00Z", 4),
            (std::vector<std::string>{"2026-12-02T01:05Z", "2026-12-02T01:50Z", "2026-12-02T03:05Z",
                                      "2026-12-02T03:50Z"}));
  // "a/n" runs from a to the end of the field.
  EXPECT_EQ(
      Slots("50/5 0 * * *", "2026-12-02T00:00Z", 3),
      (std::vector<std::string>{"2026-12-02T00:50Z", "2026-12-02T00:55Z", "2026-12-03T00:50Z"}));
}

TEST(Cron, MonthEndsSkipMonthsWithoutTheDayAndLeapDaysWaitForALeapYear) {
  EXPECT_EQ(
      Slots("0 0 31 * *", "2026-01-31T00:00Z", 3),
      (std::vector<std::string>{"2026-03-31T00:00Z", "2026-05-31T00:00Z", "2026-07-31T00:00Z"}));
  EXPECT_EQ(Slots("0 12 29 2 *", "2026-03-01T00:00Z", 2),
            (std::vector<std::string>{"2028-02-29T12:00Z", "2032-02-29T12:00Z"}));
  // 2100 is not a leap year: eight years from 2096 to 2104.
  EXPECT_EQ(Slots("0 0 29 2 *", "2096-03-01T00:00Z", 1),
            (std::vector<std::string>{"2104-02-29T00:00Z"}));
  // The turn of a year.
  EXPECT_EQ(Slots("59 23 31 12 *", "2026-12-31T23:58Z", 2),
            (std::vector<std::string>{"2026-12-31T23:59Z", "2027-12-31T23:59Z"}));
}

TEST(Cron, BothDayFieldsRestrictedMatchEitherOne) {
  // The 13th, or any Friday: 2026-11 has Fridays 6, 13, 20, 27.
  EXPECT_EQ(Slots("0 0 13 * fri", "2026-11-01T00:00Z", 5),
            (std::vector<std::string>{"2026-11-06T00:00Z", "2026-11-13T00:00Z", "2026-11-20T00:00Z",
                                      "2026-11-27T00:00Z", "2026-12-04T00:00Z"}));
  // One day field starting with '*' leaves the other alone deciding.
  EXPECT_EQ(Slots("0 0 13 * *", "2026-11-01T00:00Z", 1),
            (std::vector<std::string>{"2026-11-13T00:00Z"}));
  EXPECT_EQ(Slots("0 0 * * fri", "2026-11-01T00:00Z", 1),
            (std::vector<std::string>{"2026-11-06T00:00Z"}));
  // "*/2" starts with '*': both must match (odd days that are Fridays).
  EXPECT_EQ(Slots("0 0 */2 * 5", "2026-11-01T00:00Z", 2),
            (std::vector<std::string>{"2026-11-13T00:00Z", "2026-11-27T00:00Z"}));
}

TEST(Cron, NamesAndSundayAsSevenAndMacros) {
  EXPECT_EQ(Slots("0 6 * JAN,jul sun", "2026-12-02T00:00Z", 2),
            (std::vector<std::string>{"2027-01-03T06:00Z", "2027-01-10T06:00Z"}));
  EXPECT_EQ(Slots("0 6 * * 7", "2026-12-02T00:00Z", 1), Slots("0 6 * * 0", "2026-12-02T00:00Z", 1));
  EXPECT_EQ(Slots("0 0 * * mon-fri", "2026-12-04T12:00Z", 2),
            (std::vector<std::string>{"2026-12-07T00:00Z", "2026-12-08T00:00Z"}));
  EXPECT_EQ(Slots("@daily", "2026-12-02T06:00Z", 1),
            (std::vector<std::string>{"2026-12-03T00:00Z"}));
  EXPECT_EQ(Slots("@hourly", "2026-12-02T06:00Z", 1),
            (std::vector<std::string>{"2026-12-02T07:00Z"}));
  EXPECT_EQ(Slots("@monthly", "2026-12-02T06:00Z", 1),
            (std::vector<std::string>{"2027-01-01T00:00Z"}));
  EXPECT_EQ(Slots("@weekly", "2026-12-02T06:00Z", 1),
            (std::vector<std::string>{"2026-12-06T00:00Z"}));
}

TEST(Cron, RefusesWhatIsNotACronNamingTheField) {
  EXPECT_NE(ParseError("* * * *").find("expected 5 fields"), std::string::npos);
  EXPECT_NE(ParseError("60 * * * *").find("minute: 60 is out of 0..59"), std::string::npos);
  EXPECT_NE(ParseError("* 24 * * *").find("hour: 24 is out of 0..23"), std::string::npos);
  EXPECT_NE(ParseError("* * 0 * *").find("day-of-month: 0 is out of 1..31"), std::string::npos);
  EXPECT_NE(ParseError("* * * 13 *").find("month: 13 is out of 1..12"), std::string::npos);
  EXPECT_NE(ParseError("* * * * 8").find("day-of-week: 8 is out of 0..7"), std::string::npos);
  EXPECT_NE(ParseError("* * * * funday").find("day-of-week: 'funday' is not a number or a name"),
            std::string::npos);
  EXPECT_NE(ParseError("*/0 * * * *").find("minute: step"), std::string::npos);
  EXPECT_NE(ParseError("5-1 * * * *").find("runs backwards"), std::string::npos);
  EXPECT_NE(ParseError("1,,2 * * * *").find("minute: '' is not a number"), std::string::npos);
  EXPECT_NE(ParseError("0 0 30 2 *").find("never fires"), std::string::npos);
  EXPECT_NE(ParseError("0 0 31 4,6,9,11 *").find("never fires"), std::string::npos);
  EXPECT_NE(ParseError("@reboot").find("expected 5 fields"), std::string::npos);
  // The text is escaped for the error (a schedule file is untrusted).
  EXPECT_NE(ParseError("\x1b[2J * * * *").find("\\x1B[2J"), std::string::npos);
}

TEST(Cron, SlotsFormatAndUtcTimesParseStrictly) {
  EXPECT_EQ(FormatSlot(floor<minutes>(At("2026-03-04T05:06:59.999Z"))), "2026-03-04T05:06Z");
  for (const char* bad : {"2026-02-30T00:00Z", "2026-12-02T24:00Z", "2026-12-02T06:00",
                          "2026-12-02 06:00Z", "2026-12-02T06:00Zjunk", "2026-12-02T-1:00Z", ""})
    EXPECT_FALSE(ParseUtcTime(bad, "--from").ok()) << bad;
}

}  // namespace
}  // namespace fanflow
