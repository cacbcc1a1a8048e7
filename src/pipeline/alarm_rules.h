// What `fanflow monitor` watches and when it raises an alarm, and the book of
// alarms currently raised. Thresholds are per queue: each flag value is
// "[SELECTOR=]VALUE", SELECTOR a consumer group ("workers") or a group and an
// event's short name ("workers/process_chunk"); the most specific one that
// matches a queue applies, a value without selector applies to every queue.
// CheckAlarms judges one sampled round by the rules. Plain values; no threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace fanflow {

struct MonitorSnapshot;  // monitor_sampler.h

// A threshold, or a fraction of the queue's retention (oldest age "50%").
struct Threshold {
  double value = 0;
  bool fraction = false;  // value in (0, 1]
};

// One flag's values by selector ("" = every queue).
class PerQueue {
 public:
  [[nodiscard]] static Result<PerQueue> Parse(const std::string& flag,
                                              const std::vector<std::string>& specs,
                                              bool allow_fraction);
  // The setting that applies to the queue of (group, type), most specific first.
  std::optional<Threshold> Lookup(const std::string& group, const std::string& type) const;
  // Lookup by selector text ("", "g" or "g/short"), walking to broader ones.
  std::optional<Threshold> LookupSelector(const std::string& selector) const;
  // The selector that LookupSelector would use.
  std::optional<std::string> Match(const std::string& selector) const;
  const std::map<std::string, Threshold>& entries() const { return by_selector_; }
  bool empty() const { return by_selector_.empty(); }

 private:
  std::map<std::string, Threshold> by_selector_;
};

// The flags as given.
struct AlarmSpecs {
  std::vector<std::string> depth;          // messages waiting
  std::vector<std::string> growth;         // net messages/s over the rate window
  std::vector<std::string> oldest_age;     // seconds, or N% of the retention
  std::vector<std::string> dead_letters;   // dead letters kept
  std::vector<std::string> retention;      // seconds the source queue keeps a message
  std::vector<std::string> dlq_retention;  // seconds its dead-letter queue keeps one
  double stalled_s = 0;                    // an open batch with no progress this long (0: off)
  int64_t dropped = 1;                     // publishes the broker dropped since it started (0: off)
};

struct AlarmRules {
  PerQueue depth, growth, oldest_age, dead_letters, retention, dlq_retention;
  std::optional<double> stalled_s;
  std::optional<int64_t> dropped;

  // Validates the values, that an oldest-age fraction has a retention to be a
  // fraction of, and that no dead-letter retention is not longer than its
  // source queue's (core/retention.h).
  [[nodiscard]] static Result<AlarmRules> Parse(const AlarmSpecs& specs);
};

// One alarm condition evaluated in a round.
struct AlarmCheck {
  std::string alarm;    // queue_depth, growth_rate, oldest_age, dead_letters, batch_stalled
  std::string subject;  // the queue name or the batch id
  std::string correlation_id;
  bool firing = false;
  double value = 0;
  double threshold = 0;
  std::string message;  // says what was measured against what
};

struct Alarm {
  AlarmCheck check;       // as last raised or resolved
  std::string raised_at;  // RFC 3339
  int64_t raised_ms = 0;  // since the epoch; part of the event ids
};

struct AlarmTransition {
  Alarm alarm;
  bool raised = false;  // else resolved
};

// Every alarm condition the rules set for the snapshot's queues, its bus
// (messages dropped) and its open batches (stalled), firing or not.
std::vector<AlarmCheck> CheckAlarms(const AlarmRules& rules, const MonitorSnapshot& snapshot);

// The alarms raised and not yet resolved. Apply() takes every check of a
// round and returns what changed: a firing check not yet raised is raised; a
// raised alarm whose check no longer fires, or that was not checked at all
// (its queue or batch is gone), is resolved.
class AlarmBook {
 public:
  std::vector<AlarmTransition> Apply(const std::vector<AlarmCheck>& checks);
  std::vector<Alarm> Active() const;

 private:
  std::map<std::pair<std::string, std::string>, Alarm> active_;
};

}  // namespace fanflow
