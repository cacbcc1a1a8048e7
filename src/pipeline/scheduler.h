// Batches on a schedule. A schedule file is a JSON list of entries
//   {"name": "nightly", "cron": "0 6 * * *", "source": "range:1000", "chunk_size": 100,
//    "page_chunks": 100, "claim_check_bytes": 262144, "correlation_id": "..."}
// (the last three optional). Every slot of an entry submits one batch with the
// deterministic id "<name>/<slot>", e.g. "nightly/2026-12-02T06:00Z", and the
// same request each time, so the aggregator, which takes a batch id for one
// request, runs a slot once however many schedulers submit it or however often
// one restarts. At start-up the latest slot missed while nothing ran (within
// `catch_up_within`) is submitted once (CatchUp::kLatest), or not (kNone).
// A Scheduler is driven by one thread (Run); Upcoming is thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string>
#include <vector>

#include "core/bus.h"
#include "core/event.h"
#include "pipeline/cron.h"

namespace fanflow {

struct ScheduleEntry {
  std::string name;
  CronSchedule cron;
  nlohmann::json
      request;  // start_fanout data: source, chunk_size[, page_chunks, claim_check_bytes]
  std::string correlation_id;  // "": the batch id
};

// Parses a schedule; `where` (the file name) starts every error, which names
// the entry and field: "s.json: [1].chunk_size: must be an integer >= 1".
// A relative jsonl: path is taken from `base_dir`.
[[nodiscard]] Result<std::vector<ScheduleEntry>> ParseSchedule(std::string_view text,
                                                               const std::string& where,
                                                               const std::string& base_dir);
[[nodiscard]] Result<std::vector<ScheduleEntry>> LoadSchedule(const std::string& path);

// One slot of one entry.
struct ScheduledBatch {
  const ScheduleEntry* entry = nullptr;  // owned by the Scheduler
  UtcMinutes slot;
  std::string batch_id;  // "<name>/<slot>"
};

// The start_fanout a slot submits (id "<batch>/start").
Event ScheduledStart(const ScheduledBatch& batch);
// Publishes it on `bus`: the submit callback of `fanflow schedule --run`.
[[nodiscard]] Status PublishScheduledStart(EventBus& bus, const ScheduledBatch& batch);

// Time as the scheduler sees it; tests pass a fake one.
class SchedulerClock {
 public:
  virtual ~SchedulerClock() = default;
  virtual std::chrono::sys_seconds Now() = 0;
  // Returns at `t`, or earlier when `stop` is requested.
  virtual void SleepUntil(std::chrono::sys_seconds t, std::stop_token stop) = 0;
};
SchedulerClock& SystemSchedulerClock();

struct SchedulerOptions {
  enum class CatchUp { kLatest, kNone };
  CatchUp catch_up = CatchUp::kLatest;
  std::chrono::seconds catch_up_within{86400};  // at most 366 days
  std::chrono::seconds retry{5};                // a submit that failed is tried again this often
};

class Scheduler {
 public:
  using Submit = std::function<Status(const ScheduledBatch&)>;
  [[nodiscard]] static Result<std::unique_ptr<Scheduler>> Create(std::vector<ScheduleEntry> entries,
                                                                 SchedulerOptions options,
                                                                 SchedulerClock& clock,
                                                                 Submit submit);

  // The first `count` slots at or after `from`, across entries, in time order
  // (entries in file order within a minute).
  std::vector<ScheduledBatch> Upcoming(std::chrono::sys_seconds from, int count) const;

  // Catches up (per options), then submits every slot as it comes until
  // `stop`. Woken late past several slots of an entry (a suspended machine, a
  // clock jump), it submits only the latest of them. A slot whose submit
  // fails is retried until it succeeds or stop.
  void Run(std::stop_token stop);

 private:
  Scheduler(std::vector<ScheduleEntry> entries, SchedulerOptions options, SchedulerClock& clock,
            Submit submit)
      : entries_(std::move(entries)),
        options_(options),
        clock_(clock),
        submit_(std::move(submit)) {}
  ScheduledBatch Slot(const ScheduleEntry& entry, UtcMinutes slot) const;
  // Submits, retrying; false when stopped first.
  bool SubmitUntilDone(const ScheduledBatch& batch, std::stop_token stop);

  const std::vector<ScheduleEntry> entries_;
  const SchedulerOptions options_;
  SchedulerClock& clock_;
  const Submit submit_;
};

}  // namespace fanflow
