// A standard 5-field cron expression, in UTC: minute hour day-of-month month
// day-of-week, each `*`, a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`
// (from a to the field's end), or a comma list of those; months and weekdays
// also by name (jan..dec, sun..sat), weekday 0 or 7 is Sunday; @hourly,
// @daily (@midnight), @weekly, @monthly, @yearly (@annually) stand for their
// expansions. As in Vixie cron, when both day fields are restricted (neither
// starts with `*`), a day matches either of them; otherwise both must match.
// An expression that can never fire (e.g. `0 0 30 2 *`) is refused.
// Immutable once parsed; thread-safe.
#pragma once

#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace fanflow {

using UtcMinutes = std::chrono::sys_time<std::chrono::minutes>;

class CronSchedule {
 public:
  // The error names the field: "cron 'x': day-of-month: 32 is out of 1..31".
  [[nodiscard]] static Result<CronSchedule> Parse(std::string_view text);

  // The first slot strictly after `t`; nullopt when none comes within ten
  // years (never, for an expression Parse accepted, before year 9990).
  std::optional<UtcMinutes> Next(std::chrono::sys_seconds t) const;

  const std::string& text() const { return text_; }

 private:
  bool DayMatches(std::chrono::year_month_day date) const;

  std::string text_;
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;     // 1..31
  std::bitset<13> months_;   // 1..12
  std::bitset<7> weekdays_;  // 0 = Sunday
  bool days_star_ = false;
  bool weekdays_star_ = false;
};

// "2026-12-02T06:00Z": a slot as it appears in a scheduled batch id.
std::string FormatSlot(UtcMinutes slot);
// Parses "YYYY-MM-DDTHH:MM[:SS[.fff]]Z" (UTC); the error names `field`.
[[nodiscard]] Result<std::chrono::sys_seconds> ParseUtcTime(std::string_view text,
                                                            std::string_view field);

}  // namespace fanflow
