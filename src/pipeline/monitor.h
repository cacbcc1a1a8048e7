// The monitor behind `fanflow monitor`, made of its parts: each round the
// sampler (monitor_sampler.h) reads the queues and open batches, the alarm
// rules (alarm_rules.h) judge them, and the exports (monitor_export.h) publish
// and log each alarm raised or resolved and update the metrics.
//
// Ownership: borrows the bus (it must outlive the monitor) and shares the
// metrics registry. Sample() is called from one thread at a time (the command's
// loop, or a test).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "core/bus.h"
#include "pipeline/alarm_rules.h"
#include "pipeline/metrics.h"
#include "pipeline/monitor_export.h"
#include "pipeline/monitor_sampler.h"

namespace fanflow {

struct MonitorOptions {
  std::string group;  // "" every group
  std::chrono::milliseconds rate_window{10000};
  std::string state_path;  // the aggregator's ledger, for open batches ("" none)
  AlarmRules rules;
  bool publish_alarms = true;  // off for a one-shot snapshot: nothing could resolve them
  bool tap = true;
};

class Monitor {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Monitor>> Start(EventBus& bus, MonitorOptions options,
                                                              std::shared_ptr<Metrics> metrics);

  // One round: statistics, rates, alarms (published and logged), metrics.
  [[nodiscard]] Result<MonitorSnapshot> Sample();

  // The name of the monitor's own ephemeral group (left out of its reports).
  const std::string& tap_group() const { return sampler_->tap_group(); }

 private:
  Monitor(EventBus& bus, MonitorOptions options, std::shared_ptr<Metrics> metrics,
          std::unique_ptr<MonitorSampler> sampler)
      : bus_(bus),
        options_(std::move(options)),
        metrics_(std::move(metrics)),
        sampler_(std::move(sampler)) {}

  EventBus& bus_;
  const MonitorOptions options_;
  const std::shared_ptr<Metrics> metrics_;  // may be null
  // Used by Sample() only.
  const std::unique_ptr<MonitorSampler> sampler_;
  AlarmBook book_;
};

}  // namespace fanflow
