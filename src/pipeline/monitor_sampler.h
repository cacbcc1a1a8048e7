// The monitor's sampling: one round reads the bus's queue statistics (and,
// given the aggregator's ledger, its open batches) and derives in/out and
// growth rates over a sliding window. What the round found is a
// MonitorSnapshot; alarm_rules.h judges it, monitor_export.h shows it.
//
// Rates: a private ephemeral "tap" subscription counts the messages of every
// watched type as they are published (in rate); the out rate is the in rate
// less the backlog's growth. The tap also reads chunk_done's duration_ms into
// the processing latency histogram.
//
// Ownership: borrows the bus (it must outlive the sampler) and shares the
// metrics registry. Sample() is called from one thread at a time; the tap runs
// on bus threads and touches only its counters.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/bus.h"
#include "pipeline/alarm_rules.h"
#include "pipeline/ledger_reader.h"
#include "pipeline/ledger.h"
#include "pipeline/metrics.h"

namespace fanflow {

struct QueueRow {
  QueueStats stats;
  std::optional<double> in_rate;      // messages/s arriving
  std::optional<double> out_rate;     // messages/s leaving (acked or dead-lettered)
  std::optional<double> growth_rate;  // net messages/s of the backlog
  std::vector<std::string> alarms;    // raised alarms on this queue
};

struct BatchRow {
  std::string batch_id;
  std::string correlation_id;
  std::optional<int64_t> total_chunks;  // once sealed
  int64_t succeeded = 0;
  int64_t failed = 0;
  int64_t conflicts = 0;  // chunk_done refused for contradicting a counted result
  double age_s = 0;       // since its first event
  double idle_s = 0;      // since its last progress
  // Published and not yet done (waiting or being processed), as the ledger's
  // leases tell: kept only where the aggregator leases chunks (--lease, MQTT).
  int64_t outstanding = 0;
  std::optional<double> oldest_outstanding_s;  // since leased or last redriven
};

struct MonitorSnapshot {
  std::string time;
  std::string bus;
  std::vector<QueueRow> queues;
  std::vector<BatchRow> batches;
  bool batches_known = false;  // a ledger was read
  std::vector<Alarm> alarms;   // raised now
};

struct SamplerOptions {
  std::string group;  // "" every group
  std::chrono::milliseconds rate_window{10000};
  std::string state_path;  // the aggregator's ledger, for open batches ("" none)
  bool tap = true;
};

class MonitorSampler {
 public:
  [[nodiscard]] static Result<std::unique_ptr<MonitorSampler>> Start(
      EventBus& bus, SamplerOptions options, std::shared_ptr<Metrics> metrics);
  ~MonitorSampler();

  // One round: statistics and rates of the queues, the open batches. Alarms
  // are left empty.
  [[nodiscard]] Result<MonitorSnapshot> Sample();

  // The name of the sampler's own ephemeral group (left out of its reports).
  const std::string& tap_group() const { return tap_group_; }

 private:
  MonitorSampler(EventBus& bus, SamplerOptions options, std::shared_ptr<Metrics> metrics);
  using Clock = std::chrono::steady_clock;

  struct Round {
    Clock::time_point at;
    std::map<std::string, int64_t> backlog;  // queue -> depth + known in flight
    std::map<std::string, int64_t> tapped;   // type -> messages seen so far
  };

  // The aggregator's ledger at options_.state_path, for reading its batches.
  Status OpenLedger();
  Verdict Tap(const Delivery& delivery);
  // Starts counting the types not counted yet.
  Status TapTypes(const std::vector<std::string>& types);
  void ComputeRates(std::vector<QueueRow>& rows, const Round& now);
  Result<std::vector<BatchRow>> ReadBatches();

  EventBus& bus_;
  const SamplerOptions options_;
  const std::shared_ptr<Metrics> metrics_;  // may be null
  const std::string tap_group_;

  // Used by Sample() only.
  std::unique_ptr<LedgerReader> ledger_;
  std::deque<Round> rounds_;
  std::vector<std::unique_ptr<Subscription>> taps_;
  std::map<std::string, Clock::time_point> tapped_since_;  // type -> tap start

  std::mutex tap_mu_;
  std::map<std::string, int64_t> tap_counts_;  // guarded by tap_mu_
};

}  // namespace fanflow
