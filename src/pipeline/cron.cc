#include "pipeline/cron.h"

#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <vector>

#include "core/printable.h"

namespace fanflow {
namespace {

using namespace std::chrono;

struct Field {
  const char* name;
  int min, max;
  const char* const* names;  // names[i] stands for min + i; null: numbers only
};

constexpr const char* kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",  "jul",
                                       "aug", "sep", "oct", "nov", "dec", nullptr};
constexpr const char* kWeekdayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr};
constexpr std::array<Field, 5> kFields = {{{"minute", 0, 59, nullptr},
                                           {"hour", 0, 23, nullptr},
                                           {"day-of-month", 1, 31, nullptr},
                                           {"month", 1, 12, kMonthNames},
                                           {"day-of-week", 0, 7, kWeekdayNames}}};

// Ten years holds every pattern that can fire at all (Feb 29 skips 2100: eight).
constexpr int kSearchDays = 3653;

Result<int> Value(std::string_view s, const Field& f, const std::string& where) {
  if (f.names && s.size() == 3) {
    std::string lower;
    for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (int i = 0; f.names[i]; ++i)
      if (lower == f.names[i]) return f.min + i;
  }
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    return InvalidArgument(where + "'" + EscapeForLog(s, 32) + "' is not a number" +
                           (f.names ? " or a name" : ""));
  if (v < f.min || v > f.max)
    return InvalidArgument(where + std::to_string(v) + " is out of " + std::to_string(f.min) +
                           ".." + std::to_string(f.max));
  return v;
}

// Sets the bits of one field's text; bit i stands for value i.
template <size_t N>
Status ParseField(std::string_view text, const Field& f, const std::string& where,
                  std::bitset<N>& bits) {
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    std::string_view item = text.substr(start, comma - start);
    start = comma + 1;
    int step = 1;
    if (size_t slash = item.find('/'); slash != std::string_view::npos) {
      auto s = std::from_chars(item.data() + slash + 1, item.data() + item.size(), step);
      if (s.ec != std::errc() || s.ptr != item.data() + item.size() || slash + 1 == item.size() ||
          step < 1 || step > f.max)
        return InvalidArgument(where + "step '" + EscapeForLog(item.substr(slash + 1), 32) +
                               "' must be a number 1.." + std::to_string(f.max));
      item = item.substr(0, slash);
    }
    int lo = f.min, hi = f.max;
    if (item != "*") {
      const size_t dash = item.find('-');
      auto a = Value(item.substr(0, dash), f, where);
      if (!a.ok()) return a.status();
      lo = a.value();
      hi = step > 1 ? f.max : lo;  // "a/n" runs to the field's end
      if (dash != std::string_view::npos) {
        auto b = Value(item.substr(dash + 1), f, where);
        if (!b.ok()) return b.status();
        hi = b.value();
        if (hi < lo)
          return InvalidArgument(where + "range " + std::string(item) + " runs backwards");
      }
    }
    for (int v = lo; v <= hi; v += step) bits.set(static_cast<size_t>(v % static_cast<int>(N)));
  }
  return Status::Ok();
}

std::string_view Expand(std::string_view text) {
  if (text == "@yearly" || text == "@annually") return "0 0 1 1 *";
  if (text == "@monthly") return "0 0 1 * *";
  if (text == "@weekly") return "0 0 * * 0";
  if (text == "@daily" || text == "@midnight") return "0 0 * * *";
  if (text == "@hourly") return "0 * * * *";
  return text;
}

}  // namespace

Result<CronSchedule> CronSchedule::Parse(std::string_view text) {
  const std::string where = "cron '" + EscapeForLog(text, 100) + "': ";
  std::vector<std::string_view> parts;
  const std::string_view expr = Expand(text);
  for (size_t i = 0; i < expr.size();) {
    while (i < expr.size() && (expr[i] == ' ' || expr[i] == '\t')) ++i;
    size_t j = i;
    while (j < expr.size() && expr[j] != ' ' && expr[j] != '\t') ++j;
    if (j > i) parts.push_back(expr.substr(i, j - i));
    i = j;
  }
  if (parts.size() != 5)
    return InvalidArgument(where +
                           "expected 5 fields (minute hour day-of-month month day-of-week), got " +
                           std::to_string(parts.size()));
  CronSchedule c;
  c.text_ = std::string(text);
  std::bitset<8> weekdays;  // 0..7, 7 folded onto 0 below
  Status s = ParseField(parts[0], kFields[0], where + "minute: ", c.minutes_);
  if (s.ok()) s = ParseField(parts[1], kFields[1], where + "hour: ", c.hours_);
  if (s.ok()) s = ParseField(parts[2], kFields[2], where + "day-of-month: ", c.days_);
  if (s.ok()) s = ParseField(parts[3], kFields[3], where + "month: ", c.months_);
  if (s.ok()) s = ParseField(parts[4], kFields[4], where + "day-of-week: ", weekdays);
  if (!s.ok()) return s;
  for (size_t d = 0; d < 7; ++d) c.weekdays_[d] = weekdays[d] || (d == 0 && weekdays[7]);
  c.days_star_ = parts[2].front() == '*';
  c.weekdays_star_ = parts[4].front() == '*';
  // Feb 29 of a leap year, a Monday-free month...: a slot within ten years of any start.
  if (!c.Next(sys_days(year(2000) / 1 / 1)))
    return InvalidArgument(where + "never fires (no such day, e.g. 30 February)");
  return c;
}

bool CronSchedule::DayMatches(year_month_day date) const {
  if (!months_[static_cast<unsigned>(date.month())]) return false;
  const bool dom = days_[static_cast<unsigned>(date.day())];
  const bool dow = weekdays_[weekday(sys_days(date)).c_encoding()];
  if (days_star_ || weekdays_star_) return dom && dow;
  return dom || dow;
}

std::optional<UtcMinutes> CronSchedule::Next(sys_seconds t) const {
  const UtcMinutes from = floor<minutes>(t) + minutes(1);
  sys_days day = floor<days>(from);
  int minute_of_day = static_cast<int>((from - day).count());
  for (int n = 0; n < kSearchDays; ++n, day += days(1), minute_of_day = 0) {
    if (!DayMatches(year_month_day(day))) continue;
    for (int m = minute_of_day; m < 24 * 60; ++m) {
      if (!hours_[m / 60]) {
        m = (m / 60) * 60 + 59;  // the rest of this hour
        continue;
      }
      if (minutes_[m % 60]) return UtcMinutes(day) + minutes(m);
    }
  }
  return std::nullopt;
}

std::string FormatSlot(UtcMinutes slot) {
  const sys_days day = floor<days>(slot);
  const year_month_day ymd(day);
  const auto hm = hh_mm_ss<minutes>(slot - day);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02dZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hm.hours().count()), static_cast<int>(hm.minutes().count()));
  return buf;
}

Result<sys_seconds> ParseUtcTime(std::string_view text, std::string_view field) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, used = 0;
  const std::string t(text);
  const int got =
      std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d%n:%2d%n", &y, &mo, &d, &h, &mi, &used, &s, &used);
  size_t rest = static_cast<size_t>(used);
  if (got == 6 && rest < t.size() && t[rest] == '.')
    for (++rest; rest < t.size() && std::isdigit(static_cast<unsigned char>(t[rest]));) ++rest;
  const year_month_day ymd{year(y), month(static_cast<unsigned>(mo)),
                           day(static_cast<unsigned>(d))};
  if (got < 5 || rest + 1 != t.size() || t[rest] != 'Z' || !ymd.ok() || h < 0 || h > 23 || mi < 0 ||
      mi > 59 || s < 0 || s > 59)
    return InvalidArgument(std::string(field) + ": '" + EscapeForLog(text, 64) +
                           "' is not a UTC time like 2026-12-02T06:00Z");
  return sys_days(ymd) + hours(h) + minutes(mi) + seconds(s);
}

}  // namespace fanflow
