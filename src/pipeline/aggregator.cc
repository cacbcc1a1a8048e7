#include "pipeline/aggregator.h"

#include <spdlog/spdlog.h>

#include <cmath>

#include "core/event.h"
#include "core/routes.h"

namespace fanflow {

Result<Tolerance> Tolerance::Parse(const std::string& text) {
  Tolerance t;
  if (text.empty()) return t;
  std::string number = text;
  if (number.back() == '%') {
    t.percent = true;
    number.pop_back();
  }
  char* end = nullptr;
  t.value = std::strtod(number.c_str(), &end);
  if (number.empty() || *end != '\0' || t.value < 0 || (t.percent && t.value > 100) ||
      (!t.percent && t.value != std::floor(t.value)))
    return InvalidArgument("--tolerate '" + text +
                           "': expected a whole number of chunks (e.g. 5) or a percentage (e.g. 2.5%)");
  t.set = true;
  return t;
}

bool Tolerance::Exceeded(int64_t failed, int64_t total) const {
  if (!set) return false;
  return percent ? failed * 100.0 > value * static_cast<double>(total) : failed > value;
}

Result<std::unique_ptr<Aggregator>> Aggregator::Start(EventBus& bus, AggregatorOptions options) {
  auto ledger = Ledger::Open(options.state_path, options.durability);
  if (!ledger.ok()) return ledger.status();
  std::unique_ptr<Aggregator> agg(new Aggregator(bus, std::move(options), std::move(ledger).value()));
  {
    // A crash may have come between deciding a batch and announcing it.
    std::lock_guard<std::mutex> lock(agg->mu_);
    auto pending = agg->ledger_->Unannounced();
    if (!pending.ok()) return pending.status();
    for (const BatchRecord& b : pending.value()) {
      spdlog::info("[batch {}] re-announcing batch_complete decided before a restart", b.batch_id);
      if (Status s = agg->Announce(b.batch_id, *b.complete); !s.ok()) return s;
    }
  }
  std::vector<std::string> types = {kChunkDone, kBatchSealed};
  if (agg->options_.lease.count() > 0) types.push_back(kProcessChunk);
  auto sub = bus.Subscribe({routes::kAggregatorGroup, types, agg->options_.concurrency},
                           [a = agg.get()](const Delivery& d) { return a->Handle(d); });
  if (!sub.ok()) return sub.status();
  agg->subscription_ = std::move(sub).value();
  if (agg->options_.lease.count() > 0 || agg->options_.deadline.count() > 0)
    agg->timer_ = std::thread([a = agg.get()] { a->TimerLoop(); });
  spdlog::info("aggregator: ledger {} on {}", agg->options_.state_path, bus.Describe());
  return agg;
}

std::chrono::milliseconds DefaultLease(const EventBus& bus) {
  return std::chrono::milliseconds(bus.Capabilities().acks_on_receipt ? 30000 : 0);
}

Aggregator::~Aggregator() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  subscription_.reset();
}

Result<std::optional<std::string>> Aggregator::DecidedCompletion(const std::string& batch_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto b = ledger_->Get(batch_id);
  if (!b.ok()) return b.status();
  if (!b.value() || !b.value()->complete) return std::optional<std::string>();
  return b.value()->complete;
}

Verdict Aggregator::Handle(const Delivery& d) {
  // A lease needs only the chunk's address, which its id gives without parsing
  // its items (that parse was a third of the aggregator's work on MQTT).
  const auto chunk = d.message.type == kProcessChunk ? ParseChunkEventId(d.message.id) : std::nullopt;
  if (chunk) {
    std::lock_guard<std::mutex> lock(mu_);
    return Settled(ledger_->LeaseChunk(chunk->first, chunk->second, d.message.body), chunk->first,
                   d.message.id);
  }
  auto decoded = DecodeEvent(d.message.body);
  if (!decoded.ok()) return Verdict::DeadLetter(decoded.status().message());
  const Event& e = decoded.value();
  std::lock_guard<std::mutex> lock(mu_);
  Status s;
  if (e.type == kChunkDone) {
    ChunkOutcome c;
    c.batch_id = e.subject;
    c.correlation_id = e.correlation_id;
    c.chunk_index = e.data["chunk_index"].get<int64_t>();
    c.succeeded = e.data["status"] == "succeeded";
    c.items = e.data["items"].get<int64_t>();
    c.attempts = e.data["attempts"].get<int>();
    c.result = e.data.value("result", nlohmann::json());
    c.error = e.data.value("error", "");
    s = RecordOutcome(c);
  } else if (e.type == kBatchSealed) {
    spdlog::info("[batch {}] sealed: {} chunks, {} items (correlation {})", e.subject,
                 e.data["total_chunks"].get<int64_t>(), e.data["total_items"].get<int64_t>(),
                 e.correlation_id);
    s = ledger_->Seal(e.subject, e.correlation_id, e.data["total_chunks"].get<int64_t>(),
                      e.data["total_items"].get<int64_t>(), e.data.value("started_at", e.time));
    if (s.ok()) s = CompleteIfDone(e.subject);
  } else if (e.type == kProcessChunk) {
    s = ledger_->LeaseChunk(e.subject, e.data["chunk_index"].get<int64_t>(), d.message.body);
  } else {
    return Verdict::DeadLetter("type: the aggregator does not consume '" + e.type + "'");
  }
  return Settled(s, e.subject, e.id);
}

Verdict Aggregator::Settled(const Status& s, const std::string& batch_id, const std::string& event_id) {
  if (s.ok()) return Verdict::Ack();
  spdlog::error("[batch {}] {} not recorded, will retry: {}", batch_id, event_id, s.ToString());
  return Verdict::Retry(std::chrono::milliseconds(500), s.ToString());
}

Status Aggregator::RecordOutcome(const ChunkOutcome& c) {
  auto counted = ledger_->RecordChunk(c);
  if (!counted.ok()) return counted.status();
  if (!counted.value()) {
    spdlog::debug("[batch {}] chunk {} already counted; duplicate ignored", c.batch_id, c.chunk_index);
  } else if (!c.succeeded) {
    spdlog::warn("[batch {}] chunk {} failed after {} attempts: {}", c.batch_id, c.chunk_index,
                 c.attempts, c.error);
  }
  // Even a duplicate may find the batch decided but not announced (crash).
  return CompleteIfDone(c.batch_id);
}

Status Aggregator::CompleteIfDone(const std::string& batch_id) {
  auto found = ledger_->Get(batch_id);
  if (!found.ok()) return found.status();
  if (!found.value()) return Status::Ok();
  const BatchRecord& b = *found.value();
  if (b.complete) return b.announced ? Status::Ok() : Announce(batch_id, *b.complete);
  if (!b.total_chunks || b.succeeded + b.failed < *b.total_chunks) return Status::Ok();

  std::string status = "succeeded";
  if (b.failed > 0)
    status = (b.succeeded == 0 || options_.tolerance.Exceeded(b.failed, *b.total_chunks)) ? "failed" : "partial";
  return Decide(b, status, nlohmann::json::object());
}

Status Aggregator::Decide(const BatchRecord& b, const std::string& status, const nlohmann::json& extra) {
  auto failed_chunks = ledger_->FailedChunks(b.batch_id);
  if (!failed_chunks.ok()) return failed_chunks.status();
  const int64_t total = b.total_chunks.value_or(b.succeeded + b.failed);
  const std::string completed_at = NowRfc3339();
  nlohmann::json data = {{"status", status},
                         {"items", b.total_items},
                         {"chunks", total},
                         {"succeeded", b.succeeded},
                         {"failed", b.failed},
                         {"failed_chunks", failed_chunks.value()},
                         {"result", b.result},
                         {"started_at", b.started_at},
                         {"completed_at", completed_at}};
  data.update(extra);
  Event e = MakeEvent(kBatchComplete, b.batch_id + "/complete", b.batch_id, b.correlation_id, data);
  std::string json = EncodeEvent(e);
  if (Status s = ledger_->DecideComplete(b.batch_id, json); !s.ok()) return s;
  spdlog::info("[batch {}] complete: {} ({} of {} chunks succeeded, {} items, correlation {})",
               b.batch_id, status, b.succeeded, total, b.total_items, b.correlation_id);
  return Announce(b.batch_id, json);
}

Status Aggregator::ExpireBatches() {
  auto open = ledger_->OpenBatches();
  if (!open.ok()) return open.status();
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (const BatchRecord& b : open.value()) {
    if (now_ms - b.created_ms < options_.deadline.count()) continue;
    auto missing = ledger_->MissingChunks(b.batch_id, b.total_chunks);
    if (!missing.ok()) return missing.status();
    spdlog::warn("[batch {}] deadline of {} ms passed with {} chunks missing{}; deciding timed_out",
                 b.batch_id, options_.deadline.count(), missing->size(),
                 b.total_chunks ? "" : " (not sealed: the total is unknown)");
    nlohmann::json extra = {{"missing_chunks", missing.value()},
                            {"sealed", b.total_chunks.has_value()},
                            {"deadline_seconds", options_.deadline.count() / 1000.0}};
    if (Status s = Decide(b, "timed_out", extra); !s.ok()) return s;
  }
  return Status::Ok();
}

Status Aggregator::Announce(const std::string& batch_id, const std::string& event_json) {
  if (Status s = bus_.Publish(Message{kBatchComplete, batch_id + "/complete", event_json}); !s.ok())
    return s;
  return ledger_->MarkAnnounced(batch_id);
}

void Aggregator::TimerLoop() {
  using std::chrono::milliseconds;
  // A quarter of the lease; a deadline is checked at least every second.
  milliseconds period = options_.lease.count() > 0 ? options_.lease / 4 : milliseconds(1000);
  if (options_.deadline.count() > 0) period = std::min({period, options_.deadline / 4, milliseconds(1000)});
  period = std::max(milliseconds(100), period);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, period, [this] { return stopping_; })) {
    if (options_.deadline.count() > 0)
      if (Status s = ExpireBatches(); !s.ok()) spdlog::error("batch deadline: {}", s.ToString());
    if (options_.lease.count() <= 0) continue;
    auto again = ExpiredChunks();
    Status s = again.status();
    if (s.ok() && !again->empty()) {
      // Unlocked: the aggregator's own queue receives these too and must drain.
      lock.unlock();
      s = bus_.Publish(again.value());
      lock.lock();
    }
    if (!s.ok()) spdlog::error("lease redrive: {}", s.ToString());
  }
}

Result<std::vector<Message>> Aggregator::ExpiredChunks() {
  auto expired = ledger_->TakeExpiredLeases(options_.lease.count());
  if (!expired.ok()) return expired.status();
  std::vector<Message> again;
  for (const Ledger::Lease& l : expired.value()) {
    if (l.redrives > options_.max_redrives) {
      // A chunk that kills or hangs every worker that takes it: give up on it.
      ChunkOutcome c{l.batch_id, "", l.chunk_index, false, 0, l.redrives,
                     nullptr, "lease expired " + std::to_string(l.redrives) + " times; no worker finished it"};
      auto ev = DecodeEvent(l.event_json);
      if (ev.ok()) {
        c.correlation_id = ev->correlation_id;
        c.items = ev->data["item_count"].get<int64_t>();
      }
      spdlog::error("[batch {}] chunk {} exceeded {} redrives; counting it failed", l.batch_id,
                    l.chunk_index, options_.max_redrives);
      if (Status s = RecordOutcome(c); !s.ok()) return s;
      continue;
    }
    spdlog::warn("[batch {}] chunk {} not done within its lease; redrive #{}", l.batch_id,
                 l.chunk_index, l.redrives);
    again.push_back(Message{kProcessChunk, ChunkEventId(l.batch_id, l.chunk_index),
                            l.event_json});
  }
  return again;
}

}  // namespace fanflow
