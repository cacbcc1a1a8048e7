#include "pipeline/monitor_export.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/event.h"
#include "core/printable.h"

namespace fanflow {
namespace {

std::string Num(const std::optional<double>& v, const char* fmt = "%.1f") {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

std::string Bar(double ratio, int width) {
  const int full = static_cast<int>(std::lround(std::clamp(ratio, 0.0, 1.0) * width));
  return "[" + std::string(full, '#') + std::string(width - full, '-') + "]";
}

MetricLabels QueueLabels(const QueueStats& s) {
  return {{"queue", s.queue}, {"group", s.group}, {"type", s.type}};
}

}  // namespace

void ExportMetrics(Metrics& metrics, const MonitorSnapshot& snap, bool up) {
  metrics.SetGauge("fanflow_monitor_up", "1 if the last sample reached the bus (and the ledger), else 0", {},
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
  metrics.SetGaugeFamily("fanflow_queue_depth_messages", "Messages waiting in the queue", depth);
  metrics.SetGaugeFamily("fanflow_queue_in_flight_messages",
                           "Messages delivered and not yet acknowledged (where the broker tells)",
                           in_flight);
  metrics.SetGaugeFamily("fanflow_queue_consumers", "Consumers attached to the queue", consumers);
  metrics.SetGaugeFamily("fanflow_queue_dead_letters_messages",
                           "Messages in the queue's dead-letter queue", dead);
  int64_t stored = -1;
  for (const QueueRow& r : snap.queues) stored = std::max(stored, r.stats.broker_stored);
  if (stored >= 0)
    metrics.SetGauge("fanflow_broker_stored_messages",
                       "Messages the broker holds in all queues together (Mosquitto's $SYS store count)", {},
                       static_cast<double>(stored));
  metrics.SetGaugeFamily(
      "fanflow_queue_dropped_messages",
      "Messages the broker discarded instead of queueing (Mosquitto: broker-wide)", dropped);
  metrics.SetGaugeFamily("fanflow_queue_oldest_age_seconds", "Age of the oldest waiting message",
                           oldest);
  metrics.SetGaugeFamily("fanflow_queue_in_rate_messages_per_second",
                           "Messages arriving per second over the rate window", in_rate);
  metrics.SetGaugeFamily(
      "fanflow_queue_out_rate_messages_per_second",
      "Messages leaving per second (acknowledged or dead-lettered) over the rate window", out_rate);
  metrics.SetGaugeFamily("fanflow_queue_growth_messages_per_second",
                           "Net growth of the backlog per second over the rate window", growth);

  Samples active;
  for (const Alarm& a : snap.alarms)
    active.push_back({{{"alarm", a.check.alarm}, {"subject", a.check.subject}}, 1});
  metrics.SetGaugeFamily("fanflow_alarm_active", "1 for each alarm raised and not yet resolved",
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
  metrics.SetGauge("fanflow_open_batches", "Batches not yet complete in the aggregator's ledger",
                     {}, static_cast<double>(snap.batches.size()));
  metrics.SetGaugeFamily("fanflow_batch_chunks",
                           "Chunks of an open batch by state (total once sealed)", chunks);
  metrics.SetGaugeFamily("fanflow_batch_conflicts",
                           "chunk_done events of an open batch refused for contradicting a counted result",
                           conflicts);
  metrics.SetGaugeFamily("fanflow_batch_progress_ratio",
                           "Share of an open batch's chunks done (0..1)", progress);
  metrics.SetGaugeFamily("fanflow_batch_age_seconds", "Time since an open batch's first event",
                           age);
  metrics.SetGaugeFamily("fanflow_batch_idle_seconds",
                           "Time since an open batch last made progress", idle);
  metrics.SetGaugeFamily("fanflow_batch_outstanding_chunks",
                           "Chunks published and not yet done, as leased in the ledger", outstanding);
  metrics.SetGaugeFamily("fanflow_batch_oldest_outstanding_age_seconds",
                           "Time since the oldest outstanding chunk was leased or last redriven",
                           oldest_outstanding);
}

nlohmann::json SnapshotToJson(const MonitorSnapshot& snap) {
  auto opt = [](const std::optional<double>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json();
  };
  nlohmann::json queues = nlohmann::json::array(), batch_list = nlohmann::json::array(),
                 alarm_list = nlohmann::json::array();
  for (const QueueRow& r : snap.queues) {
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
  for (const BatchRow& b : snap.batches)
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
  for (const Alarm& a : snap.alarms)
    alarm_list.push_back({{"alarm", a.check.alarm},
                          {"subject", a.check.subject},
                          {"message", a.check.message},
                          {"value", a.check.value},
                          {"threshold", a.check.threshold},
                          {"raised_at", a.raised_at}});
  nlohmann::json j = {{"time", snap.time}, {"bus", snap.bus}, {"queues", queues}, {"alarms", alarm_list}};
  j["batches"] = snap.batches_known ? batch_list : nlohmann::json();
  return j;
}

std::string RenderTable(const MonitorSnapshot& s, bool once) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "fanflow monitor  %s  %s%s\n\n", s.bus.c_str(), s.time.c_str(),
                once ? "" : "  (Ctrl-C to stop)");
  out += line;
  std::snprintf(line, sizeof line, "%-40s %8s %9s %5s %8s %8s %9s %6s %7s  %s\n", "QUEUE", "DEPTH",
                "IN FLIGHT", "CONS", "IN/s", "OUT/s", "OLDEST s", "DLQ", "DROPPED", "ALARMS");
  out += line;
  for (const QueueRow& r : s.queues) {
    const QueueStats& q = r.stats;
    std::string alarms;
    for (const auto& a : r.alarms) alarms += (alarms.empty() ? "" : ",") + a;
    std::snprintf(line, sizeof line, "%-40s %8lld %9s %5lld %8s %8s %9s %6lld %7lld  %s\n",
                  EscapeForLog(q.queue, 120).c_str(), static_cast<long long>(q.depth),
                  q.in_flight < 0 ? "?" : std::to_string(q.in_flight).c_str(),
                  static_cast<long long>(q.consumers), Num(r.in_rate).c_str(),
                  Num(r.out_rate).c_str(), Num(q.oldest_age_seconds).c_str(),
                  static_cast<long long>(q.dead_letters), static_cast<long long>(q.dropped),
                  alarms.empty() ? "ok" : alarms.c_str());
    out += line;
  }
  if (s.queues.empty()) out += "(no queues known on this bus yet)\n";
  // Broker-wide figures (Mosquitto's $SYS), the same on every row.
  if (!s.queues.empty() && s.queues.front().stats.broker_stored >= 0)
    out += "broker: " + std::to_string(s.queues.front().stats.broker_stored) + " messages stored, " +
           std::to_string(s.queues.front().stats.dropped) + " publishes dropped since it started\n";
  out += "\n";
  if (!s.batches_known) {
    out += "open batches: pass --state with the aggregator's ledger to see them\n";
  } else {
    std::snprintf(line, sizeof line, "%-32s %-24s %5s %13s %7s %9s %9s %9s %11s %9s\n", "OPEN BATCH",
                  "PROGRESS", "", "DONE/TOTAL", "FAILED", "CONFLICTS", "AGE s", "IDLE s", "OUTSTANDING",
                  "OLDEST s");
    out += line;
    for (const BatchRow& b : s.batches) {
      const int64_t done = b.succeeded + b.failed;
      const double ratio =
          b.total_chunks && *b.total_chunks > 0 ? double(done) / double(*b.total_chunks) : 0;
      std::string total = b.total_chunks ? std::to_string(*b.total_chunks) : "?";
      std::snprintf(line, sizeof line, "%-32s %-24s %4.0f%% %13s %7lld %9lld %9.1f %9.1f %11lld %9s\n",
                    EscapeForLog(b.batch_id, 120).c_str(), Bar(ratio, 22).c_str(), ratio * 100,
                    (std::to_string(done) + "/" + total).c_str(), static_cast<long long>(b.failed),
                    static_cast<long long>(b.conflicts), b.age_s, b.idle_s, static_cast<long long>(b.outstanding),
                    Num(b.oldest_outstanding_s).c_str());
      out += line;
    }
    if (s.batches.empty()) out += "(no open batches)\n";
  }
  out += "\n";
  if (s.alarms.empty()) out += "alarms: none raised\n";
  for (const Alarm& a : s.alarms)
    out += "ALARM " + a.check.alarm + " since " + a.raised_at + ": " + EscapeForLog(a.check.message) + "\n";
  return out;
}

void AnnounceAlarm(const AlarmTransition& t, EventBus* bus, Metrics* metrics) {
  const AlarmCheck& c = t.alarm.check;
  const std::string state = t.raised ? "raised" : "resolved";
  if (t.raised)
    spdlog::warn("alarm {} raised: {}", c.alarm, c.message);
  else
    spdlog::info("alarm {} resolved: {}", c.alarm, c.message);
  if (metrics)
    metrics->AddToCounter("fanflow_alarm_transitions_total", "Alarms raised and resolved",
                           {{"alarm", c.alarm}, {"state", state}}, 1);
  if (!bus) return;
  nlohmann::json data = {{"alarm", c.alarm},         {"state", state},
                         {"message", c.message},     {"value", c.value},
                         {"threshold", c.threshold}, {"raised_at", t.alarm.raised_at}};
  // Ids pair a resolution with the raise it ends.
  const std::string id =
      "alarm/" + c.alarm + "/" + c.subject + "/" + std::to_string(t.alarm.raised_ms) + "/" + state;
  Event e = MakeEvent(kAlarm, id, c.subject, c.correlation_id, data);
  if (Status s = bus->Publish(Message{e.type, e.id, EncodeEvent(e)}); !s.ok())
    spdlog::error("alarm {} {} not published: {}", c.alarm, state, s.ToString());
}

}  // namespace fanflow
