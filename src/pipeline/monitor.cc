#include "pipeline/monitor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/event.h"
#include "core/routes.h"

namespace fanflow {
namespace {

// Counts without decimals, measurements with one.
std::string Fixed(double v, int decimals = 1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", v == std::floor(v) ? 0 : decimals, v);
  return buf;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

MetricLabels QueueLabels(const QueueStats& s) {
  return {{"queue", s.queue}, {"group", s.group}, {"type", s.type}};
}

}  // namespace

Monitor::Monitor(EventBus& bus, MonitorOptions options, std::shared_ptr<Metrics> metrics)
    : bus_(bus),
      options_(std::move(options)),
      metrics_(std::move(metrics)),
      tap_group_("monitor-" + std::to_string(getpid()) + "-" +
                 std::to_string(std::random_device{}() % 1000000)) {}

Monitor::~Monitor() { taps_.clear(); }  // before the counters the tap writes

Result<std::unique_ptr<Monitor>> Monitor::Start(EventBus& bus, MonitorOptions options,
                                                std::shared_ptr<Metrics> metrics) {
  if (options.rate_window.count() <= 0) return InvalidArgument("the rate window must be > 0");
  std::unique_ptr<Monitor> m(new Monitor(bus, std::move(options), std::move(metrics)));
  if (!m->options_.state_path.empty()) {
    // Opening a missing path would create an empty ledger and show nothing.
    if (!std::filesystem::exists(m->options_.state_path))
      return InvalidArgument("--state '" + m->options_.state_path +
                             "': no ledger there (pass the aggregator's --state file)");
    auto ledger = Ledger::Open(m->options_.state_path, Durability::kNormal);
    if (!ledger.ok()) return ledger.status();
    m->ledger_ = std::move(ledger).value();
  }
  // fanflow's own types from the start, so nothing published before the
  // first sample is missed; other types as Stats shows their queues.
  if (m->options_.tap)
    if (Status s = m->TapTypes(KnownEventTypes()); !s.ok()) return s;
  if (m->metrics_)
    m->metrics_->DefineHistogram(
        "fanflow_chunk_processing_seconds",
        "Time a worker spent on a chunk attempt that finished (from chunk_done)",
        ChunkLatencyBuckets());
  return m;
}

Verdict Monitor::Tap(const Delivery& d) {
  {
    std::lock_guard<std::mutex> lock(tap_mu_);
    ++tap_counts_[d.message.type];
  }
  if (metrics_) {
    metrics_->AddToCounter("fanflow_events_seen_total", "Events the monitor saw published, by type",
                           {{"type", d.message.type}}, 1);
    if (d.message.type == kChunkDone) {
      auto e = DecodeEvent(d.message.body);
      if (e.ok() && e->data.contains("duration_ms") && e->data["duration_ms"].is_number())
        metrics_->Observe("fanflow_chunk_processing_seconds",
                          e->data["duration_ms"].get<double>() / 1000);
    }
  }
  return Verdict::Ack();  // a copy for counting: nothing to keep
}

Status Monitor::TapTypes(const std::vector<std::string>& types) {
  std::vector<std::string> fresh;
  for (const std::string& t : types)
    if (!tapped_since_.count(t) && std::find(fresh.begin(), fresh.end(), t) == fresh.end())
      fresh.push_back(t);
  if (fresh.empty()) return Status::Ok();
  SubscribeOptions o;
  o.group = tap_group_;
  o.event_types = fresh;
  o.concurrency = 1;
  o.ephemeral = true;
  auto sub = bus_.Subscribe(o, [this](const Delivery& d) { return Tap(d); });
  if (!sub.ok()) return sub.status();
  taps_.push_back(std::move(sub).value());
  for (const auto& t : fresh) tapped_since_[t] = Clock::now();
  return Status::Ok();
}

void Monitor::ComputeRates(std::vector<QueueRow>& rows, const Round& now) {
  // The oldest round still inside the window is the baseline.
  while (rounds_.size() > 1 && now.at - rounds_[1].at >= options_.rate_window) rounds_.pop_front();
  if (rounds_.empty()) return;
  const Round& base = rounds_.front();
  const double dt = std::chrono::duration<double>(now.at - base.at).count();
  if (dt <= 0) return;
  for (QueueRow& r : rows) {
    auto before = base.backlog.find(r.stats.queue);
    if (before == base.backlog.end()) continue;
    const double growth = static_cast<double>(now.backlog.at(r.stats.queue) - before->second) / dt;
    r.growth_rate = growth;
    auto since = tapped_since_.find(r.stats.type);
    if (since == tapped_since_.end() || since->second > base.at)
      continue;  // tap younger than the window
    auto tap_now = now.tapped.find(r.stats.type);
    auto tap_before = base.tapped.find(r.stats.type);
    const int64_t n_now = tap_now == now.tapped.end() ? 0 : tap_now->second;
    const int64_t n_before = tap_before == base.tapped.end() ? 0 : tap_before->second;
    r.in_rate = static_cast<double>(n_now - n_before) / dt;
    r.out_rate = std::max(0.0, *r.in_rate - growth);
  }
}

Result<std::vector<BatchRow>> Monitor::ReadBatches() {
  std::vector<BatchRow> out;
  if (!ledger_) return out;
  auto open = ledger_->OpenBatches();
  if (!open.ok()) return open.status();
  const int64_t now = NowMs();
  for (const BatchRecord& b : open.value()) {
    BatchRow r;
    r.batch_id = b.batch_id;
    r.correlation_id = b.correlation_id;
    r.total_chunks = b.total_chunks;
    r.succeeded = b.succeeded;
    r.failed = b.failed;
    r.age_s = static_cast<double>(now - b.created_ms) / 1000;
    r.idle_s = static_cast<double>(now - b.updated_ms) / 1000;
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<AlarmCheck> Monitor::Checks(const std::vector<QueueRow>& rows,
                                        const std::vector<BatchRow>& batches) const {
  const AlarmRules& rules = options_.rules;
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

void Monitor::Announce(const AlarmTransition& t) {
  const AlarmCheck& c = t.alarm.check;
  const std::string state = t.raised ? "raised" : "resolved";
  if (t.raised)
    spdlog::warn("alarm {} raised: {}", c.alarm, c.message);
  else
    spdlog::info("alarm {} resolved: {}", c.alarm, c.message);
  if (metrics_)
    metrics_->AddToCounter("fanflow_alarm_transitions_total", "Alarms raised and resolved",
                           {{"alarm", c.alarm}, {"state", state}}, 1);
  if (!options_.publish_alarms) return;
  nlohmann::json data = {{"alarm", c.alarm},         {"state", state},
                         {"message", c.message},     {"value", c.value},
                         {"threshold", c.threshold}, {"raised_at", t.alarm.raised_at}};
  // Ids pair a resolution with the raise it ends.
  const std::string id =
      "alarm/" + c.alarm + "/" + c.subject + "/" + std::to_string(t.alarm.raised_ms) + "/" + state;
  Event e = MakeEvent(kAlarm, id, c.subject, c.correlation_id, data);
  if (Status s = bus_.Publish(Message{e.type, e.id, EncodeEvent(e)}); !s.ok())
    spdlog::error("alarm {} {} not published: {}", c.alarm, state, s.ToString());
}

Result<MonitorSnapshot> Monitor::Sample() {
  MonitorSnapshot snap;
  snap.time = NowRfc3339();
  snap.bus = bus_.Describe();
  auto stats = bus_.Stats(options_.group);
  if (!stats.ok()) {
    Export(snap, false);
    return stats.status();
  }
  std::vector<QueueStats> mine;
  for (QueueStats& s : stats.value())
    if (s.group != tap_group_) mine.push_back(std::move(s));
  if (options_.tap) {
    std::vector<std::string> types;
    for (const QueueStats& s : mine) types.push_back(s.type);
    if (Status s = TapTypes(types); !s.ok()) return s;
  }

  Round round;
  round.at = Clock::now();
  {
    std::lock_guard<std::mutex> lock(tap_mu_);
    round.tapped = tap_counts_;
  }
  for (QueueStats& s : mine) {
    round.backlog[s.queue] = s.depth + std::max<int64_t>(0, s.in_flight);
    snap.queues.push_back(QueueRow{std::move(s), {}, {}, {}, {}});
  }
  ComputeRates(snap.queues, round);
  rounds_.push_back(std::move(round));

  auto batches = ReadBatches();
  if (!batches.ok()) return batches.status();
  snap.batches = std::move(batches).value();
  snap.batches_known = ledger_ != nullptr;

  for (const AlarmTransition& t : book_.Apply(Checks(snap.queues, snap.batches))) Announce(t);
  snap.alarms = book_.Active();
  for (QueueRow& r : snap.queues)
    for (const Alarm& a : snap.alarms)
      if (a.check.subject == r.stats.queue) r.alarms.push_back(a.check.alarm);
  Export(snap, true);
  return snap;
}

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
  Samples chunks, progress, age, idle;
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
    age.push_back({l, b.age_s});
    idle.push_back({l, b.idle_s});
  }
  metrics_->SetGauge("fanflow_open_batches", "Batches not yet complete in the aggregator's ledger",
                     {}, static_cast<double>(snap.batches.size()));
  metrics_->SetGaugeFamily("fanflow_batch_chunks",
                           "Chunks of an open batch by state (total once sealed)", chunks);
  metrics_->SetGaugeFamily("fanflow_batch_progress_ratio",
                           "Share of an open batch's chunks done (0..1)", progress);
  metrics_->SetGaugeFamily("fanflow_batch_age_seconds", "Time since an open batch's first event",
                           age);
  metrics_->SetGaugeFamily("fanflow_batch_idle_seconds",
                           "Time since an open batch last made progress", idle);
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
         {"alarms", r.alarms}});
  }
  for (const BatchRow& b : batches)
    batch_list.push_back(
        {{"batch_id", b.batch_id},
         {"correlation_id", b.correlation_id},
         {"total_chunks", b.total_chunks ? nlohmann::json(*b.total_chunks) : nlohmann::json()},
         {"succeeded", b.succeeded},
         {"failed", b.failed},
         {"age_seconds", b.age_s},
         {"idle_seconds", b.idle_s}});
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
