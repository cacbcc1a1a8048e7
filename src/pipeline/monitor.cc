#include "pipeline/monitor.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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
    auto ledger = LedgerReader::Open(m->options_.state_path, "--state");
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
  auto outstanding = ledger_->OutstandingByBatch();
  if (!outstanding.ok()) return outstanding.status();
  const int64_t now = NowMs();
  for (const BatchRecord& b : open.value()) {
    BatchRow r;
    r.batch_id = b.batch_id;
    r.correlation_id = b.correlation_id;
    r.total_chunks = b.total_chunks;
    r.succeeded = b.succeeded;
    r.failed = b.failed;
    r.conflicts = b.conflicts;
    r.age_s = static_cast<double>(now - b.created_ms) / 1000;
    r.idle_s = static_cast<double>(now - b.updated_ms) / 1000;
    if (auto it = outstanding->find(b.batch_id); it != outstanding->end()) {
      r.outstanding = it->second.chunks;
      r.oldest_outstanding_s = static_cast<double>(now - it->second.oldest_leased_ms) / 1000;
    }
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
  // Mosquitto counts drops for the whole broker: one alarm for the bus.
  if (rules.dropped && !rows.empty()) {
    int64_t dropped = 0;
    for (const QueueRow& r : rows) dropped = std::max(dropped, r.stats.dropped);
    AlarmCheck c;
    c.alarm = "messages_dropped";
    c.subject = bus_.Describe();
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

}  // namespace fanflow
