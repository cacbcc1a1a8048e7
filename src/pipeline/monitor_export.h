// The monitor's outputs: a sampled round as Prometheus metrics, as JSON
// (`fanflow monitor --json`) and as a table for a terminal, and an alarm that
// was raised or resolved as a log line, a counter and a fanflow.alarm.v1 event.
// Stateless functions; the metrics registry is thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "core/bus.h"
#include "pipeline/alarm_rules.h"
#include "pipeline/metrics.h"
#include "pipeline/monitor_sampler.h"

namespace fanflow {

// Updates every queue, batch and alarm gauge from `snapshot`; with `up` false
// (the round failed) only fanflow_monitor_up, to 0.
void ExportMetrics(Metrics& metrics, const MonitorSnapshot& snapshot, bool up);

nlohmann::json SnapshotToJson(const MonitorSnapshot& snapshot);

// The queue, batch and alarm tables; `once`: no "Ctrl-C to stop" hint.
std::string RenderTable(const MonitorSnapshot& snapshot, bool once);

// Logs the transition, counts it in `metrics` (may be null) and publishes its
// alarm event on `bus` (null: not published). The event id pairs a resolution
// with the raise it ends.
void AnnounceAlarm(const AlarmTransition& transition, EventBus* bus, Metrics* metrics);

}  // namespace fanflow
