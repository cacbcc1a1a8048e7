#include "pipeline/monitor_sampler.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "core/event.h"

namespace fanflow {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

MonitorSampler::MonitorSampler(EventBus& bus, SamplerOptions options,
                               std::shared_ptr<Metrics> metrics)
    : bus_(bus),
      options_(std::move(options)),
      metrics_(std::move(metrics)),
      tap_group_("monitor-" + std::to_string(getpid()) + "-" +
                 std::to_string(std::random_device{}() % 1000000)) {}

MonitorSampler::~MonitorSampler() { taps_.clear(); }  // before the counters the tap writes

Result<std::unique_ptr<MonitorSampler>> MonitorSampler::Start(EventBus& bus, SamplerOptions options,
                                                              std::shared_ptr<Metrics> metrics) {
  if (options.rate_window.count() <= 0) return InvalidArgument("the rate window must be > 0");
  std::unique_ptr<MonitorSampler> m(
      new MonitorSampler(bus, std::move(options), std::move(metrics)));
  if (Status s = m->OpenLedger(); !s.ok()) return s;
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

Status MonitorSampler::OpenLedger() {
  if (options_.state_path.empty()) return Status::Ok();
  // Read-only: the aggregator's file is never written here (a missing path
  // is an error, not a new empty ledger).
  auto ledger = LedgerReader::Open(options_.state_path, "--state");
  if (!ledger.ok()) return ledger.status();
  ledger_ = std::move(ledger).value();
  return Status::Ok();
}

Verdict MonitorSampler::Tap(const Delivery& d) {
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

Status MonitorSampler::TapTypes(const std::vector<std::string>& types) {
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

void MonitorSampler::ComputeRates(std::vector<QueueRow>& rows, const Round& now) {
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

Result<std::vector<BatchRow>> MonitorSampler::ReadBatches() {
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

Result<MonitorSnapshot> MonitorSampler::Sample() {
  MonitorSnapshot snap;
  snap.time = NowRfc3339();
  snap.bus = bus_.Describe();
  auto stats = bus_.Stats(options_.group);
  if (!stats.ok()) return stats.status();
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
  return snap;
}

}  // namespace fanflow
