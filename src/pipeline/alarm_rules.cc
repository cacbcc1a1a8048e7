#include "pipeline/alarm_rules.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/event.h"
#include "core/retention.h"
#include "core/routes.h"
#include "pipeline/monitor_sampler.h"

namespace fanflow {
namespace {

std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(seconds * 1000)));
}

// "--flag sel=value" as the user wrote it, for error messages.
std::string Spelled(const std::string& flag, const std::string& selector, const Threshold& t) {
  char v[64];
  std::snprintf(v, sizeof v, "%g%s", t.fraction ? t.value * 100 : t.value, t.fraction ? "%" : "");
  return flag + " " + (selector.empty() ? "" : selector + "=") + v;
}

// Counts without decimals, measurements with one.
std::string Fixed(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", v == std::floor(v) ? 0 : decimals, v);
  return buf;
}

}  // namespace

Result<PerQueue> PerQueue::Parse(const std::string& flag, const std::vector<std::string>& specs,
                                 bool allow_fraction) {
  PerQueue out;
  const std::string forms = std::string("; expected [GROUP[/TYPE]=]N") +
                            (allow_fraction ? " or [GROUP[/TYPE]=]N%" : "") + ", e.g. " + flag +
                            " 1000 or " + flag +
                            " workers/process_chunk=" + (allow_fraction ? "50%" : "1000");
  for (const std::string& spec : specs) {
    const auto eq = spec.rfind('=');
    const std::string selector = eq == std::string::npos ? "" : spec.substr(0, eq);
    std::string number = eq == std::string::npos ? spec : spec.substr(eq + 1);
    if (eq != std::string::npos &&
        (selector.empty() || selector.front() == '/' || selector.back() == '/'))
      return InvalidArgument(flag + " '" + spec + "': empty group name" + forms);
    Threshold t;
    if (!number.empty() && number.back() == '%') {
      if (!allow_fraction)
        return InvalidArgument(flag + " '" + spec + "': a percentage is not accepted here" + forms);
      t.fraction = true;
      number.pop_back();
    }
    char* end = nullptr;
    t.value = std::strtod(number.c_str(), &end);
    if (number.empty() || *end != '\0' || !std::isfinite(t.value) || t.value <= 0 ||
        (t.fraction && t.value > 100))
      return InvalidArgument(flag + " '" + spec + "': the value must be a number > 0" +
                             (allow_fraction ? " (a percentage at most 100%)" : "") + forms);
    if (t.fraction) t.value /= 100;
    if (out.by_selector_.count(selector))
      return InvalidArgument(flag + " '" + spec +
                             "': " + (selector.empty() ? "the default" : "'" + selector + "'") +
                             " is given twice");
    out.by_selector_[selector] = t;
  }
  return out;
}

std::optional<std::string> PerQueue::Match(const std::string& selector) const {
  std::string s = selector;
  while (true) {
    if (by_selector_.count(s)) return s;
    if (s.empty()) return std::nullopt;
    const auto slash = s.find('/');
    s = slash == std::string::npos ? "" : s.substr(0, slash);
  }
}

std::optional<Threshold> PerQueue::LookupSelector(const std::string& selector) const {
  auto match = Match(selector);
  if (!match) return std::nullopt;
  return by_selector_.at(*match);
}

std::optional<Threshold> PerQueue::Lookup(const std::string& group, const std::string& type) const {
  return LookupSelector(group + "/" + routes::ShortName(type));
}

Result<AlarmRules> AlarmRules::Parse(const AlarmSpecs& s) {
  AlarmRules r;
  struct Field {
    PerQueue& target;
    const char* flag;
    const std::vector<std::string>& specs;
    bool fraction;
  };
  for (Field f : {Field{r.depth, "--alarm-depth", s.depth, false},
                  Field{r.growth, "--alarm-growth", s.growth, false},
                  Field{r.oldest_age, "--alarm-oldest-age", s.oldest_age, true},
                  Field{r.dead_letters, "--alarm-dead-letters", s.dead_letters, false},
                  Field{r.retention, "--retention", s.retention, false},
                  Field{r.dlq_retention, "--dlq-retention", s.dlq_retention, false}}) {
    auto parsed = PerQueue::Parse(f.flag, f.specs, f.fraction);
    if (!parsed.ok()) return parsed.status();
    f.target = std::move(parsed).value();
  }
  if (s.stalled_s < 0 || !std::isfinite(s.stalled_s))
    return InvalidArgument("--alarm-stalled must be seconds >= 0 (0: off)");
  if (s.stalled_s > 0) r.stalled_s = s.stalled_s;
  if (s.dropped < 0) return InvalidArgument("--alarm-dropped must be a count >= 0 (0: off)");
  if (s.dropped > 0) r.dropped = s.dropped;

  for (const auto& [selector, t] : r.oldest_age.entries())
    if (t.fraction && !r.retention.LookupSelector(selector))
      return InvalidArgument(
          Spelled("--alarm-oldest-age", selector, t) +
          " is a fraction of the queue's retention, but no --retention applies to " +
          (selector.empty() ? "every queue" : "'" + selector + "'") + "; add e.g. --retention " +
          (selector.empty() ? "" : selector + "=") + "3600");
  // Every selector either flag names, checked with what applies there.
  std::set<std::string> selectors;
  for (const auto& e : r.retention.entries()) selectors.insert(e.first);
  for (const auto& e : r.dlq_retention.entries()) selectors.insert(e.first);
  for (const std::string& sel : selectors) {
    auto dlq = r.dlq_retention.Match(sel);
    if (!dlq) continue;
    auto src = r.retention.Match(sel);
    std::optional<std::chrono::milliseconds> src_ms;
    if (src) src_ms = Millis(r.retention.entries().at(*src).value);
    const Threshold& dlq_value = r.dlq_retention.entries().at(*dlq);
    const std::string where =
        (sel.empty() ? std::string("every queue") : "queue '" + sel + "'") + " (" +
        Spelled("--dlq-retention", *dlq, dlq_value) +
        (src ? ", " + Spelled("--retention", *src, r.retention.entries().at(*src)) : "") + ")";
    if (Status st = ValidateRetention(src_ms, Millis(dlq_value.value), where); !st.ok()) return st;
  }
  return r;
}

std::vector<AlarmTransition> AlarmBook::Apply(const std::vector<AlarmCheck>& checks) {
  std::vector<AlarmTransition> out;
  std::set<std::pair<std::string, std::string>> seen;
  const auto now = std::chrono::system_clock::now();
  for (const AlarmCheck& c : checks) {
    const auto key = std::make_pair(c.alarm, c.subject);
    seen.insert(key);
    auto it = active_.find(key);
    if (c.firing && it == active_.end()) {
      Alarm a{
          c, NowRfc3339(),
          std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count()};
      active_[key] = a;
      out.push_back({a, true});
    } else if (c.firing) {
      it->second.check = c;  // still raised: keep the latest value
    } else if (it != active_.end()) {
      Alarm a = it->second;
      a.check = c;
      active_.erase(it);
      out.push_back({a, false});
    }
  }
  for (auto it = active_.begin(); it != active_.end();) {
    if (seen.count(it->first)) {
      ++it;
      continue;
    }
    Alarm a = it->second;
    a.check.firing = false;
    a.check.message = it->first.second + " is no longer watched (gone or finished); alarm cleared";
    out.push_back({a, false});
    it = active_.erase(it);
  }
  return out;
}

std::vector<Alarm> AlarmBook::Active() const {
  std::vector<Alarm> out;
  for (const auto& [key, a] : active_) out.push_back(a);
  return out;
}

std::vector<AlarmCheck> CheckAlarms(const AlarmRules& rules, const MonitorSnapshot& snapshot) {
  const std::vector<QueueRow>& rows = snapshot.queues;
  const std::vector<BatchRow>& batches = snapshot.batches;
  std::vector<AlarmCheck> out;
  auto check = [&](const char* alarm, const QueueStats& s, double value, double threshold,
                   const std::string& what, const std::string& unit) {
    AlarmCheck c;
    c.alarm = alarm;
    c.subject = s.queue;
    c.correlation_id = s.queue;
    c.value = value;
    c.threshold = threshold;
    c.firing = value >= threshold;
    c.message = "queue " + s.queue + ": " + what + " " + Fixed(value) + unit + " (threshold " +
                Fixed(threshold) + unit + ")";
    out.push_back(std::move(c));
  };
  for (const QueueRow& r : rows) {
    const QueueStats& s = r.stats;
    if (auto t = rules.depth.Lookup(s.group, s.type))
      check("queue_depth", s, static_cast<double>(s.depth), t->value, "messages waiting", "");
    if (auto t = rules.growth.Lookup(s.group, s.type); t && r.growth_rate)
      check("growth_rate", s, *r.growth_rate, t->value, "backlog growing by", " msg/s");
    if (auto t = rules.dead_letters.Lookup(s.group, s.type))
      check("dead_letters", s, static_cast<double>(s.dead_letters), t->value, "dead letters kept",
            "");
    if (auto t = rules.oldest_age.Lookup(s.group, s.type)) {
      double threshold = t->value;
      std::string what = "oldest waiting message's age";
      if (t->fraction) {
        const double retention = rules.retention.Lookup(s.group, s.type)->value;
        threshold = t->value * retention;
        what = "oldest waiting message's age (alarm at " + Fixed(t->value * 100) + "% of its " +
               Fixed(retention) + " s retention)";
      }
      check("oldest_age", s, s.oldest_age_seconds.value_or(0), threshold, what, " s");
    }
  }
  // Mosquitto counts drops for the whole broker: one alarm for the bus.
  if (rules.dropped && !rows.empty()) {
    int64_t dropped = 0;
    for (const QueueRow& r : rows) dropped = std::max(dropped, r.stats.dropped);
    AlarmCheck c;
    c.alarm = "messages_dropped";
    c.subject = snapshot.bus;
    c.correlation_id = c.subject;
    c.value = static_cast<double>(dropped);
    c.threshold = static_cast<double>(*rules.dropped);
    c.firing = dropped >= *rules.dropped;
    c.message = "broker " + c.subject + " dropped " + std::to_string(dropped) +
                " publish(es) since it started instead of queueing them (threshold " +
                std::to_string(*rules.dropped) + "): those events are lost";
    out.push_back(std::move(c));
  }
  if (rules.stalled_s) {
    for (const BatchRow& b : batches) {
      AlarmCheck c;
      c.alarm = "batch_stalled";
      c.subject = b.batch_id;
      c.correlation_id = b.correlation_id;
      c.value = b.idle_s;
      c.threshold = *rules.stalled_s;
      c.firing = b.idle_s >= *rules.stalled_s;
      c.message = "[batch " + b.batch_id + "] no progress for " + Fixed(b.idle_s) +
                  " s (threshold " + Fixed(*rules.stalled_s) +
                  " s): " + std::to_string(b.succeeded + b.failed) + "/" +
                  (b.total_chunks ? std::to_string(*b.total_chunks) : "?") + " chunks done";
      out.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace fanflow
