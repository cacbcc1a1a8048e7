#include "pipeline/monitor.h"

namespace fanflow {

Result<std::unique_ptr<Monitor>> Monitor::Start(EventBus& bus, MonitorOptions options,
                                                std::shared_ptr<Metrics> metrics) {
  auto sampler = MonitorSampler::Start(
      bus, {options.group, options.rate_window, options.state_path, options.tap}, metrics);
  if (!sampler.ok()) return sampler.status();
  return std::unique_ptr<Monitor>(
      new Monitor(bus, std::move(options), std::move(metrics), std::move(sampler).value()));
}

Result<MonitorSnapshot> Monitor::Sample() {
  auto snap = sampler_->Sample();
  if (!snap.ok()) {
    if (metrics_) ExportMetrics(*metrics_, {}, false);
    return snap.status();
  }
  for (const AlarmTransition& t : book_.Apply(CheckAlarms(options_.rules, snap.value())))
    AnnounceAlarm(t, options_.publish_alarms ? &bus_ : nullptr, metrics_.get());
  snap->alarms = book_.Active();
  for (QueueRow& r : snap->queues)
    for (const Alarm& a : snap->alarms)
      if (a.check.subject == r.stats.queue) r.alarms.push_back(a.check.alarm);
  if (metrics_) ExportMetrics(*metrics_, snap.value(), true);
  return snap;
}

}  // namespace fanflow
