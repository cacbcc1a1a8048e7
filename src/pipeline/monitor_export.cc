// The monitor's outputs other than alarms: its snapshot as JSON (`fanflow
// monitor --json`) and the Prometheus metrics it keeps up to date.
#include "pipeline/monitor.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace fanflow {
namespace {

MetricLabels QueueLabels(const QueueStats& s) {
  return {{"queue", s.queue}, {"group", s.group}, {"type", s.type}};
}

}  // namespace

void Monitor::Export(const MonitorSnapshot& snap, bool up) {
  if (!metrics_) return;
  metrics_->SetGauge("fanflow_monitor_up", "1 if the last sample reached the bus, else 0", {},
                     up ? 1 : 0);
  if (!up) return;
  using Samples = std::vector<std::pair<MetricLabels, double>>;
  Samples depth, in_flight, consumers, dead, dropped, oldest, in_rate, out_rate, growth;
  for (const QueueRow& r : snap.queues) {
    const QueueStats& s = r.stats;
    const MetricLabels l = QueueLabels(s);
    depth.push_back({l, static_cast<double>(s.depth)});
    if (s.in_flight >= 0) in_flight.push_back({l, static_cast<double>(s.in_flight)});
    consumers.push_back({l, static_cast<double>(s.consumers)});
    dead.push_back({l, static_cast<double>(s.dead_letters)});
    dropped.push_back({l, static_cast<double>(s.dropped)});
    if (s.oldest_age_seconds) oldest.push_back({l, *s.oldest_age_seconds});
    if (r.in_rate) in_rate.push_back({l, *r.in_rate});
    if (r.out_rate) out_rate.push_back({l, *r.out_rate});
    if (r.growth_rate) growth.push_back({l, *r.growth_rate});
  }
  metrics_->SetGaugeFamily("fanflow_queue_depth_messages", "Messages waiting in the queue", depth);
  metrics_->SetGaugeFamily("fanflow_queue_in_flight_messages",
                           "Messages delivered and not yet acknowledged (where the broker tells)",
                           in_flight);
  metrics_->SetGaugeFamily("fanflow_queue_consumers", "Consumers attached to the queue", consumers);
  metrics_->SetGaugeFamily("fanflow_queue_dead_letters_messages",
                           "Messages in the queue's dead-letter queue", dead);
  int64_t stored = -1;
  for (const QueueRow& r : snap.queues) stored = std::max(stored, r.stats.broker_stored);
  if (stored >= 0)
    metrics_->SetGauge("fanflow_broker_stored_messages",
                       "Messages the broker holds in all queues together (Mosquitto's $SYS store count)", {},
                       static_cast<double>(stored));
  metrics_->SetGaugeFamily(
      "fanflow_queue_dropped_messages",
      "Messages the broker discarded instead of queueing (Mosquitto: broker-wide)", dropped);
  metrics_->SetGaugeFamily("fanflow_queue_oldest_age_seconds", "Age of the oldest waiting message",
                           oldest);
  metrics_->SetGaugeFamily("fanflow_queue_in_rate_messages_per_second",
                           "Messages arriving per second over the rate window", in_rate);
  metrics_->SetGaugeFamily(
      "fanflow_queue_out_rate_messages_per_second",
      "Messages leaving per second (acknowledged or dead-lettered) over the rate window", out_rate);
  metrics_->SetGaugeFamily("fanflow_queue_growth_messages_per_second",
                           "Net growth of the backlog per second over the rate window", growth);

  Samples active;
  for (const Alarm& a : snap.alarms)
    active.push_back({{{"alarm", a.check.alarm}, {"subject", a.check.subject}}, 1});
  metrics_->SetGaugeFamily("fanflow_alarm_active", "1 for each alarm raised and not yet resolved",
                           active);

  if (!snap.batches_known) return;
  Samples chunks, conflicts, progress, age, idle, outstanding, oldest_outstanding;
  for (const BatchRow& b : snap.batches) {
    const MetricLabels l = {{"batch", b.batch_id}};
    for (auto [state, n] :
         {std::pair<const char*, int64_t>{"succeeded", b.succeeded}, {"failed", b.failed}})
      chunks.push_back({{{"batch", b.batch_id}, {"state", state}}, static_cast<double>(n)});
    if (b.total_chunks) {
      chunks.push_back(
          {{{"batch", b.batch_id}, {"state", "total"}}, static_cast<double>(*b.total_chunks)});
      if (*b.total_chunks > 0)
        progress.push_back({l, static_cast<double>(b.succeeded + b.failed) /
                                   static_cast<double>(*b.total_chunks)});
    }
    conflicts.push_back({l, static_cast<double>(b.conflicts)});
    age.push_back({l, b.age_s});
    idle.push_back({l, b.idle_s});
    outstanding.push_back({l, static_cast<double>(b.outstanding)});
    if (b.oldest_outstanding_s) oldest_outstanding.push_back({l, *b.oldest_outstanding_s});
  }
  metrics_->SetGauge("fanflow_open_batches", "Batches not yet complete in the aggregator's ledger",
                     {}, static_cast<double>(snap.batches.size()));
  metrics_->SetGaugeFamily("fanflow_batch_chunks",
                           "Chunks of an open batch by state (total once sealed)", chunks);
  metrics_->SetGaugeFamily("fanflow_batch_conflicts",
                           "chunk_done events of an open batch refused for contradicting a counted result",
                           conflicts);
  metrics_->SetGaugeFamily("fanflow_batch_progress_ratio",
                           "Share of an open batch's chunks done (0..1)", progress);
  metrics_->SetGaugeFamily("fanflow_batch_age_seconds", "Time since an open batch's first event",
                           age);
  metrics_->SetGaugeFamily("fanflow_batch_idle_seconds",
                           "Time since an open batch last made progress", idle);
  metrics_->SetGaugeFamily("fanflow_batch_outstanding_chunks",
                           "Chunks published and not yet done, as leased in the ledger", outstanding);
  metrics_->SetGaugeFamily("fanflow_batch_oldest_outstanding_age_seconds",
                           "Time since the oldest outstanding chunk was leased or last redriven",
                           oldest_outstanding);
}

nlohmann::json MonitorSnapshot::ToJson() const {
  auto opt = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json();
  };
  nlohmann::json queues = nlohmann::json::array(), batch_list = nlohmann::json::array(),
                 alarm_list = nlohmann::json::array();
  for (const QueueRow& r : this->queues) {
    const QueueStats& s = r.stats;
    queues.push_back(
        {{"queue", s.queue},
         {"group", s.group},
         {"type", s.type},
         {"depth", s.depth},
         {"in_flight", s.in_flight >= 0 ? nlohmann::json(s.in_flight) : nlohmann::json()},
         {"consumers", s.consumers},
         {"in_rate", opt(r.in_rate)},
         {"out_rate", opt(r.out_rate)},
         {"growth_rate", opt(r.growth_rate)},
         {"oldest_age_seconds", opt(s.oldest_age_seconds)},
         {"dead_letters", s.dead_letters},
         {"dropped", s.dropped},
         {"broker_stored", s.broker_stored >= 0 ? nlohmann::json(s.broker_stored) : nlohmann::json()},
         {"alarms", r.alarms}});
  }
  for (const BatchRow& b : batches)
    batch_list.push_back(
        {{"batch_id", b.batch_id},
         {"correlation_id", b.correlation_id},
         {"total_chunks", b.total_chunks ? nlohmann::json(*b.total_chunks) : nlohmann::json()},
         {"succeeded", b.succeeded},
         {"failed", b.failed},
         {"conflicts", b.conflicts},
         {"age_seconds", b.age_s},
         {"idle_seconds", b.idle_s},
         {"outstanding", b.outstanding},
         {"oldest_outstanding_seconds", opt(b.oldest_outstanding_s)}});
  for (const Alarm& a : alarms)
    alarm_list.push_back({{"alarm", a.check.alarm},
                          {"subject", a.check.subject},
                          {"message", a.check.message},
                          {"value", a.check.value},
                          {"threshold", a.check.threshold},
                          {"raised_at", a.raised_at}});
  nlohmann::json j = {{"time", time}, {"bus", bus}, {"queues", queues}, {"alarms", alarm_list}};
  j["batches"] = batches_known ? batch_list : nlohmann::json();
  return j;
}

}  // namespace fanflow
