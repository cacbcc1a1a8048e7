#include "pipeline/aggregator.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <optional>

#include "core/event.h"
#include "core/invoke_handler.h"
#include "core/printable.h"
#include "core/routes.h"
#include "pipeline/results_sink.h"
#include "pipeline/source.h"
#include "pipeline/ventilator.h"

namespace fanflow {
namespace {

using nlohmann::json;

// A chunk_done may overtake the ventilator's report of the step that published
// its chunk; it is retried this often (every kReportWait) before it counts as
// a chunk that was never published.
constexpr int kReportWaits = 50;
constexpr std::chrono::milliseconds kReportWait{200};
// Events committed in one ledger transaction at most: a bound on how long a
// group holds the write lock and its first member waits.
constexpr int kMaxGroupSize = 64;
// How long an event the ledger could not take waits before it comes again.
constexpr std::chrono::milliseconds kLedgerRetry{500};

// Why a batch of `request` is too large to admit, or "" when it is not (only
// sources whose size is known up front; others are checked as they are read).
std::string TooLarge(int64_t items, int64_t chunk_size, const AggregatorOptions& o) {
  const int64_t chunks = items / chunk_size + (items % chunk_size != 0);
  if (chunks > o.max_batch_chunks)
    return std::to_string(chunks) + " chunks is more than --max-batch-chunks " +
           std::to_string(o.max_batch_chunks);
  if (items > o.max_batch_items)
    return std::to_string(items) + " items is more than --max-batch-items " +
           std::to_string(o.max_batch_items);
  return "";
}

// For an event about a batch this aggregator never admitted: no ghost batch.
Verdict UnknownBatch(const Event& e) {
  return Verdict::DeadLetter("subject: unknown batch '" + e.subject + "': this aggregator admitted no such batch");
}

// The items chunk `index` of `b` must report: chunk_size, but for the last
// chunk of a sealed batch.
int64_t ExpectedItems(const BatchRecord& b, int64_t index) {
  if (index == b.published_chunks - 1) return b.published_items - index * b.chunk_size;
  return b.chunk_size;
}

// A fanout_step of `b` for the ventilator: its current step, or (with
// `redrive`) the one chunk that a lease gave up on, read again from `cursor`.
Message StepMessage(const BatchRecord& b, const std::string& id, const json& cursor, int64_t max_chunks,
                    const json& redrive) {
  json data = b.request;
  data["step"] = b.step.number;
  data["max_chunks"] = max_chunks;
  data["cursor"] = cursor;
  data["started_at"] = b.started_at;
  if (!redrive.is_null()) data["redrive"] = redrive;
  Event step = MakeEvent(kFanoutStep, id, b.batch_id, b.correlation_id, std::move(data));
  return Message{step.type, step.id, EncodeEvent(step)};
}

// Why the page a publishing report names (data.page, if any) cannot be the one
// that ends at chunk `end` of `b`, starting no earlier than `lowest`; "" when it can.
std::string PageMisfit(const BatchRecord& b, const json& report, int64_t lowest, int64_t end) {
  const auto page = report.find("page");
  if (page == report.end()) return "";
  const int64_t first = (*page)["next_chunk"].get<int64_t>();
  const int64_t most = b.request.value("page_chunks", kDefaultPageChunks);
  if (first < lowest || first >= end || end - first > most)
    return "data.page.next_chunk: " + std::to_string(first) + " cannot start a page of at most " +
           std::to_string(most) + " chunks that ends at chunk " + std::to_string(end) + " of step " +
           std::to_string(report["step"].get<int64_t>());
  // Every chunk before the last is full, so a page's first item is known.
  if ((*page)["next_item"] != first * b.chunk_size)
    return "data.page.next_item: chunk " + std::to_string(first) + " starts at item " +
           std::to_string(first * b.chunk_size);
  return "";
}

// How a report's cursor may end a step: every chunk full (a step that stopped
// before the source's end), or the last chunk short (the end of the source).
enum class StepEnd { kFull, kMayEnd, kMayEndNotEmpty };

// Why `chunks` / `items` (a report's position) cannot be where the current
// step of `b` got to; "" when they can.
std::string StepMisfit(const BatchRecord& b, int64_t chunks, int64_t items, StepEnd end) {
  const int64_t first = b.step.first_chunk(), first_item = b.step.cursor.value("next_item", int64_t{0});
  const int64_t new_chunks = chunks - first, new_items = items - first_item;
  const bool fits =
      new_chunks >= 0 && new_chunks <= b.step.max_chunks &&
      (end == StepEnd::kFull
           ? new_chunks > 0 && new_items == new_chunks * b.chunk_size
           : (new_chunks > 0 || end == StepEnd::kMayEnd) && new_items <= new_chunks * b.chunk_size &&
                 (new_chunks == 0 ? new_items == 0 : new_items > (new_chunks - 1) * b.chunk_size));
  if (fits) return "";
  return std::to_string(chunks) + " chunks / " + std::to_string(items) + " items do not fit step " +
         std::to_string(b.step.number) + " of batch '" + b.batch_id + "' (from chunk " + std::to_string(first) +
         ", at most " + std::to_string(b.step.max_chunks) + " chunks of " + std::to_string(b.chunk_size) + ")";
}

// A cancelled batch is decided like any other; its batch_complete says so.
bool IsCancelled(const BatchRecord& b) {
  if (!b.complete) return false;
  const json complete = json::parse(*b.complete, nullptr, /*allow_exceptions=*/false);
  return complete.is_object() && complete["data"].value("status", "") == "cancelled";
}

}  // namespace

json BatchRequestOf(const json& d) {
  json r = {{"source", d["source"]},
            {"chunk_size", d["chunk_size"]},
            {"page_chunks", d.value("page_chunks", kDefaultPageChunks)},
            {"claim_check_bytes", d.value("claim_check_bytes", kDefaultClaimCheckBytes)}};
  // Only when not the default, so a request admitted before combine existed still matches.
  if (d.value("combine", "merge") != "merge") r["combine"] = d["combine"];
  for (const char* own : {"tolerate", "deadline_seconds"})
    if (d.contains(own)) r[own] = d[own];
  return r;
}

Result<std::unique_ptr<Aggregator>> Aggregator::Start(EventBus& bus, AggregatorOptions options) {
  if (options.fanout_window < 2) return InvalidArgument("--fanout-window: must be at least 2 chunks");
  if (options.max_batch_chunks < 1 || options.max_batch_items < 1)
    return InvalidArgument("--max-batch-chunks / --max-batch-items: must be at least 1");
  if (!options.results.empty())
    if (Status s = CheckResultsPath(options.results); !s.ok()) return s;
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
    if (agg->options_.refan_open_batches) {
      auto open = agg->ledger_->OpenBatches();
      if (!open.ok()) return open.status();
      for (const BatchRecord& b : open.value()) {
        spdlog::info("[batch {}] fanning out again from the first chunk: the bus kept nothing", b.batch_id);
        if (Status s = agg->ledger_->RestartFanout(b.batch_id, agg->options_.fanout_window); !s.ok()) return s;
      }
    }
  }
  const std::vector<std::string> types = {kStartFanout, kChunkDone, kFanoutProgress, kBatchSealed, kCancelBatch};
  SubscribeOptions subscribe{routes::kAggregatorGroup, types, agg->options_.concurrency};
  // Room for a whole burst waiting while the one before it commits.
  subscribe.prefetch = 2 * kMaxGroupSize;
  auto sub = bus.SubscribeBursts(subscribe, kMaxGroupSize,
                                 [a = agg.get()](std::span<const Delivery> d, std::span<Verdict> v) {
                                   a->HandleBurst(d, v);
                                 });
  if (!sub.ok()) return sub.status();
  agg->subscription_ = std::move(sub).value();
  agg->timer_ = std::thread([a = agg.get()] { a->TimerLoop(); });
  spdlog::info("aggregator: ledger {} on {}; fan-out window {} chunks per batch",
               agg->options_.state_path, bus.Describe(), agg->options_.fanout_window);
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

void Aggregator::HandleBurst(std::span<const Delivery> deliveries, std::span<Verdict> verdicts) {
  std::vector<std::optional<Event>> events(deliveries.size());
  int decoded = 0;
  for (size_t i = 0; i < deliveries.size(); ++i) {
    auto e = DecodeEvent(deliveries[i].message.body);
    if (!e.ok()) {
      verdicts[i] = Verdict::DeadLetter(e.status().message());
      continue;
    }
    events[i] = std::move(e).value();
    ++decoded;
  }
  if (decoded == 0) return;
  Status group = InGroup(decoded, [&] {
    for (size_t i = 0; i < deliveries.size(); ++i)
      if (events[i])
        verdicts[i] = InvokeHandler([&](const Delivery& d) { return HandleEvent(d, *events[i]); }, deliveries[i]);
  });
  if (!group.ok())
    for (size_t i = 0; i < deliveries.size(); ++i)
      if (events[i]) verdicts[i] = Verdict::Retry(kLedgerRetry, group.ToString());
}

Verdict Aggregator::HandleEvent(const Delivery& d, const Event& e) {
  if (e.type == kStartFanout) return HandleStart(e);
  if (e.type == kChunkDone) return HandleChunkDone(d, e);
  if (e.type == kFanoutProgress || e.type == kBatchSealed) return HandleProgress(e);
  if (e.type == kCancelBatch) return HandleCancel(e);
  return Verdict::DeadLetter("type: the aggregator does not consume '" + e.type + "'");
}

Status Aggregator::InGroup(int events, const std::function<void()>& handle) {
  queued_.fetch_add(1);
  std::unique_lock<std::mutex> lock(mu_);
  queued_.fetch_sub(1);
  if (Status s = ledger_->BeginGroup(); !s.ok()) {
    spdlog::error("ledger: cannot begin a transaction, the events will be retried: {}", s.ToString());
    (void)FinishGroup();  // members waiting on a group already written in autocommit go on
    return s;
  }
  handle();
  const std::shared_ptr<Group> mine = group_;
  group_size_ += events;
  // The last of the handlers queued behind one another commits for them all.
  if (queued_.load() == 0 || group_size_ >= kMaxGroupSize) {
    (void)FinishGroup();
    return mine->status;
  }
  // Members wait on their group's own mutex, not on mu_: woken by the commit,
  // they go on at once instead of queueing for mu_ behind the next group.
  lock.unlock();
  std::unique_lock<std::mutex> wait(mine->mu);
  mine->committed_cv.wait(wait, [&] { return mine->committed; });
  return mine->status;
}

Status Aggregator::FinishGroup() {
  Status s = ledger_->CommitGroup();
  if (!s.ok()) spdlog::error("{}; its events will be retried", s.ToString());
  {
    std::lock_guard<std::mutex> lock(group_->mu);
    group_->committed = true;
    group_->status = s;
  }
  group_->committed_cv.notify_all();
  group_ = std::make_shared<Group>();
  group_size_ = 0;
  return s;
}

Verdict Aggregator::Settled(const Status& s, const std::string& batch_id, const std::string& event_id) {
  if (s.ok()) return Verdict::Ack();
  spdlog::error("[batch {}] {} not recorded, will retry: {}", batch_id, event_id, s.ToString());
  return Verdict::Retry(kLedgerRetry, s.ToString());
}

Verdict Aggregator::HandleStart(const Event& e) {
  const json request = BatchRequestOf(e.data);
  auto found = ledger_->Get(e.subject);
  if (!found.ok()) return Settled(found.status(), e.subject, e.id);
  if (const auto& known = found.value()) {
    if (known->request != request)
      return Verdict::DeadLetter("subject: batch '" + e.subject +
                                 "' already exists with another request; a batch id names one request");
    // The same request again: the same batch. A finished one is answered again.
    spdlog::info("[batch {}] start_fanout {} repeats the admitted request", e.subject, e.id);
    return Settled(known->complete ? Announce(e.subject, *known->complete) : Status::Ok(), e.subject, e.id);
  }
  BatchRecord b;
  b.batch_id = e.subject;
  b.correlation_id = e.correlation_id;
  b.request = request;
  b.chunk_size = request["chunk_size"].get<int64_t>();
  b.started_at = e.data.value("started_at", e.time.empty() ? NowRfc3339() : e.time);
  b.step.max_chunks = options_.fanout_window;
  auto admitted = ledger_->Admit(b);
  if (!admitted.ok()) return Settled(admitted.status(), e.subject, e.id);
  const std::string source = request["source"].get<std::string>();
  if (auto items = KnownItemCount(source)) {
    if (std::string why = TooLarge(*items, b.chunk_size, options_); !why.empty()) {
      spdlog::warn("[batch {}] refused: {}", e.subject, why);
      Status s = Decide(b, "failed", {{"error", "data.source: " + why}});
      return s.ok() ? Verdict::DeadLetter("data.source: " + why) : Settled(s, e.subject, e.id);
    }
  }
  spdlog::info("[batch {}] admitted: {} in chunks of {} (correlation {})", e.subject, source,
               b.chunk_size, e.correlation_id);
  // A step that does not get out now is handed out again by the timer.
  if (Status s = PublishStep(b); !s.ok())
    spdlog::warn("[batch {}] first fan-out step not published yet: {}", e.subject, s.ToString());
  return Verdict::Ack();
}

Verdict Aggregator::HandleProgress(const Event& e) {
  auto found = ledger_->Get(e.subject);
  if (!found.ok()) return Settled(found.status(), e.subject, e.id);
  if (!found.value())
    return UnknownBatch(e);
  const BatchRecord& b = *found.value();
  const int64_t step = e.data["step"].get<int64_t>();
  if (e.type == kBatchSealed && b.total_chunks &&
      (e.data["total_chunks"] != *b.total_chunks || e.data["total_items"] != b.total_items))
    return Verdict::DeadLetter("data.total_chunks: batch '" + e.subject + "' is sealed at " +
                               std::to_string(*b.total_chunks) + " chunks, " + std::to_string(b.total_items) +
                               " items; this seal says otherwise");
  if (b.complete || step < b.step.number ||
      (step == b.step.number && b.step.state != FanoutStepRecord::State::kIssued)) {
    // A page whose step's final report overtook it still leases its chunks.
    if (!b.complete && options_.lease.count() > 0 && e.data.value("publishing", false))
      return LeaseLatePage(b, e);
    return Verdict::Ack();  // a step reported twice (it was handed out again)
  }
  if (step > b.step.number)
    return Verdict::DeadLetter("data.step: step " + std::to_string(step) + " of batch '" + e.subject +
                               "' was never handed out (the current step is " +
                               std::to_string(b.step.number) + ")");
  if (e.data.value("publishing", false)) return HandlePublishing(b, e);
  if (auto error = e.data.find("error"); error != e.data.end()) {
    spdlog::error("[batch {}] cannot fan out: {}", e.subject, EscapeForLog(error->get<std::string>()));
    return Settled(Decide(b, "failed", {{"error", *error}}), e.subject, e.id);
  }
  const bool sealed = e.type == kBatchSealed;
  const json cursor = sealed ? b.step.cursor : e.data["cursor"];
  const int64_t chunks = sealed ? e.data["total_chunks"].get<int64_t>() : cursor["next_chunk"].get<int64_t>();
  const int64_t items = sealed ? e.data["total_items"].get<int64_t>() : cursor["next_item"].get<int64_t>();
  if (std::string why = StepMisfit(b, chunks, items, sealed ? StepEnd::kMayEnd : StepEnd::kFull); !why.empty())
    return Verdict::DeadLetter((sealed ? "data.total_chunks: " : "data.cursor: ") + why);
  if (Status s = ledger_->RecordProgress(e.subject, cursor, chunks, items, sealed); !s.ok())
    return Settled(s, e.subject, e.id);
  if (chunks > options_.max_batch_chunks || items > options_.max_batch_items) {
    const std::string why = "data.source: " + TooLarge(items, b.chunk_size, options_) +
                            " (found while reading it; the chunks published so far are ignored)";
    spdlog::warn("[batch {}] stopped: {}", e.subject, why);
    return Settled(Decide(b, "failed", {{"error", why}}), e.subject, e.id);
  }
  if (sealed)
    spdlog::info("[batch {}] sealed: {} chunks, {} items (correlation {})", e.subject, chunks, items,
                 b.correlation_id);
  return Settled(Advance(e.subject), e.subject, e.id);
}

Verdict Aggregator::HandleCancel(const Event& e) {
  auto found = ledger_->Get(e.subject);
  if (!found.ok()) return Settled(found.status(), e.subject, e.id);
  if (!found.value()) return UnknownBatch(e);
  const BatchRecord& b = *found.value();
  if (b.complete) {
    // Decided already: the cancel changes nothing, and its sender hears how
    // the batch ended (the same event again).
    spdlog::info("[batch {}] cancel {} comes after the batch was decided; nothing changes", e.subject, e.id);
    return Settled(Announce(e.subject, *b.complete), e.subject, e.id);
  }
  auto missing = ledger_->MissingChunks(b.batch_id, b.total_chunks);
  if (!missing.ok()) return Settled(missing.status(), e.subject, e.id);
  json extra = {{"missing_chunks", missing.value()}, {"sealed", b.total_chunks.has_value()}};
  if (auto reason = e.data.find("reason"); reason != e.data.end()) extra["reason"] = *reason;
  spdlog::warn("[batch {}] cancelled by {} with {} chunks done, {} not ({})", e.subject, e.id,
               b.succeeded + b.failed, missing->size(), EscapeForLog(e.data.value("reason", "no reason given")));
  return Settled(Decide(b, "cancelled", extra), e.subject, e.id);
}

Verdict Aggregator::HandleChunkDone(const Delivery& d, const Event& e) {
  auto found = ledger_->Get(e.subject);
  if (!found.ok()) return Settled(found.status(), e.subject, e.id);
  if (!found.value())
    return UnknownBatch(e);
  // A decided batch still records what comes late (and refuses conflicts),
  // but its batch_complete is final; a cancelled one records nothing more.
  const BatchRecord& b = *found.value();
  if (IsCancelled(b)) {
    spdlog::debug("[batch {}] {} arrived after the batch was cancelled; ignored", e.subject, e.id);
    return Verdict::Ack();
  }
  const int64_t index = e.data["chunk_index"].get<int64_t>();
  const int64_t items = e.data["items"].get<int64_t>();
  const bool step_out = b.step.state == FanoutStepRecord::State::kIssued;
  const int64_t may_exist = b.total_chunks ? *b.total_chunks
                                           : (step_out ? b.step.first_chunk() + b.step.max_chunks : b.published_chunks);
  const std::string where = "chunk " + std::to_string(index) + " of batch '" + e.subject + "'";
  if (index >= may_exist)
    return Verdict::DeadLetter("data.chunk_index: " + where + " was never published (" +
                               (b.total_chunks ? "the batch has " : "published so far: at most ") +
                               std::to_string(may_exist) + " chunks)");
  if (index >= b.published_chunks && !b.total_chunks) {
    // Its step is out but not reported yet: the chunk_done overtook the report.
    if (d.attempt < kReportWaits) return Verdict::Retry(kReportWait, "data.chunk_index: " + where + " not reported published yet");
    return Verdict::DeadLetter("data.chunk_index: " + where + " was never reported published");
  }
  if (const int64_t expected = ExpectedItems(b, index); items != expected)
    return Verdict::DeadLetter("data.items: " + std::to_string(items) + ", but " + where + " has " +
                               std::to_string(expected) + " items");
  ChunkOutcome c;
  c.batch_id = e.subject;
  c.correlation_id = e.correlation_id;
  c.chunk_index = index;
  c.succeeded = e.data["status"] == "succeeded";
  c.items = items;
  c.attempts = e.data["attempts"].get<int>();
  c.result = e.data.value("result", json());
  c.error = e.data.value("error", "");
  c.combine = CombineOf(b.request);
  c.keep_result = c.combine == Combine::kConcat || !options_.results.empty();
  auto recorded = ledger_->RecordChunk(c);
  if (!recorded.ok()) return Settled(recorded.status(), e.subject, e.id);
  if (recorded.value() == ChunkRecorded::kConflict) {
    spdlog::warn("[batch {}] chunk {}: {} carries another result than the one counted; kept out",
                 e.subject, index, e.id);
    return Verdict::DeadLetter("conflict: " + where +
                               " was already counted with another result; the first one is kept");
  }
  return Settled(RecordOutcome(c, recorded.value()), e.subject, e.id);
}

Verdict Aggregator::HandlePublishing(const BatchRecord& b, const Event& e) {
  const json& cursor = e.data["cursor"];
  const int64_t chunks = cursor["next_chunk"].get<int64_t>(), items = cursor["next_item"].get<int64_t>();
  // A page may hold the source's last, short chunk; it holds at least one.
  if (std::string why = StepMisfit(b, chunks, items, StepEnd::kMayEndNotEmpty); !why.empty())
    return Verdict::DeadLetter("data.cursor: " + why);
  if (chunks <= b.published_chunks) return Verdict::Ack();  // a page announced again
  if (std::string why = PageMisfit(b, e.data, b.step.first_chunk(), chunks); !why.empty())
    return Verdict::DeadLetter(why);
  Status s = ledger_->RecordPublishing(e.subject, chunks, items);
  if (s.ok()) s = LeasePage(e, chunks);
  return Settled(s, e.subject, e.id);
}

Verdict Aggregator::LeaseLatePage(const BatchRecord& b, const Event& e) {
  const int64_t chunks = e.data["cursor"]["next_chunk"].get<int64_t>();
  if (chunks > b.published_chunks)
    return Verdict::DeadLetter("data.cursor.next_chunk: " + std::to_string(chunks) + " is past the " +
                               std::to_string(b.published_chunks) + " chunks step " +
                               std::to_string(e.data["step"].get<int64_t>()) + " reported");
  if (std::string why = PageMisfit(b, e.data, 0, chunks); !why.empty()) return Verdict::DeadLetter(why);
  return Settled(LeasePage(e, chunks), e.subject, e.id);
}

Status Aggregator::LeasePage(const Event& e, int64_t end_chunk) {
  if (options_.lease.count() <= 0) return Status::Ok();
  const auto page = e.data.find("page");
  if (page == e.data.end()) {
    spdlog::warn("[batch {}] {} names no page: chunks up to {} are not leased, and one lost with its "
                 "worker is never published again", e.subject, e.id, end_chunk);
    return Status::Ok();
  }
  return ledger_->LeasePage(e.subject, (*page)["next_chunk"].get<int64_t>(), end_chunk, page->dump());
}

Status Aggregator::RecordOutcome(const ChunkOutcome& c, ChunkRecorded recorded) {
  if (recorded == ChunkRecorded::kDuplicate) {
    spdlog::debug("[batch {}] chunk {} already counted; duplicate ignored", c.batch_id, c.chunk_index);
  } else if (!c.succeeded) {
    spdlog::warn("[batch {}] chunk {} failed after {} attempts: {}", c.batch_id, c.chunk_index,
                 c.attempts, EscapeForLog(c.error));
  }
  // Even a duplicate may find the batch decided but not announced (crash).
  return Advance(c.batch_id);
}

Status Aggregator::Advance(const std::string& batch_id) {
  auto found = ledger_->Get(batch_id);
  if (!found.ok() || !found.value()) return found.status();
  BatchRecord& b = *found.value();
  if (Status s = NextStepIfRoom(b); !s.ok()) return s;
  return CompleteIfDone(b);
}

Status Aggregator::NextStepIfRoom(BatchRecord& b) {
  const std::string& batch_id = b.batch_id;
  if (b.complete || b.step.state != FanoutStepRecord::State::kWaiting) return Status::Ok();
  const int64_t outstanding = b.published_chunks - (b.succeeded + b.failed);
  if (outstanding > options_.fanout_window / 2) return Status::Ok();
  b.step.number += 1;
  b.step.max_chunks = options_.fanout_window - outstanding;
  if (Status s = ledger_->IssueStep(batch_id, b.step); !s.ok()) return s;
  // Recorded as issued: if this publish fails, the timer hands it out again.
  if (Status s = PublishStep(b); !s.ok())
    spdlog::warn("[batch {}] fan-out step {} not published yet: {}", batch_id, b.step.number, s.ToString());
  return Status::Ok();
}

Status Aggregator::PublishStep(const BatchRecord& b) {
  Message step = StepMessage(b, b.batch_id + "/step/" + std::to_string(b.step.number), b.step.cursor,
                             b.step.max_chunks, json());
  if (Status s = FinishGroup(); !s.ok()) return s;
  return bus_.Publish(step);
}

Status Aggregator::CompleteIfDone(const BatchRecord& b) {
  if (b.complete) return b.announced ? Status::Ok() : Announce(b.batch_id, *b.complete);
  if (!b.total_chunks || b.succeeded + b.failed < *b.total_chunks) return Status::Ok();

  std::string status = "succeeded";
  if (b.failed > 0)
    status = (b.succeeded == 0 || ToleranceOf(b).Exceeded(b.failed, *b.total_chunks)) ? "failed" : "partial";
  return Decide(b, status, json::object());
}

Status Aggregator::Decide(const BatchRecord& b, const std::string& status, const json& extra) {
  auto failed_chunks = ledger_->FailedChunks(b.batch_id);
  if (!failed_chunks.ok()) return failed_chunks.status();
  const int64_t total = b.total_chunks.value_or(b.succeeded + b.failed);
  // The results file is durable before the batch is decided and announced.
  auto results = Consolidate(*ledger_, b, options_.results);
  if (!results.ok()) return results.status();
  // Results that cannot be combined fail the batch (a timed_out one stays so).
  std::string decided = status;
  if (results->error) {
    spdlog::error("[batch {}] results not combined ({}): {}", b.batch_id,
                  CombineName(CombineOf(b.request)), EscapeForLog(*results->error));
    if (status != "timed_out") decided = "failed";
  }
  const std::string completed_at = NowRfc3339();
  json data = {{"status", decided},
               {"items", b.total_items},
               {"chunks", total},
               {"succeeded", b.succeeded},
               {"failed", b.failed},
               {"failed_chunks", failed_chunks.value()},
               {"conflicts", b.conflicts},
               {"result", nullptr},
               {"started_at", b.started_at},
               {"completed_at", completed_at}};
  data["result"] = std::move(results->result);  // moved: a concat result may be large
  if (results->file) data["results"] = results->file->ToJson();
  if (results->error) data["error"] = "data.result: " + *results->error;
  data.update(extra);
  Event e = MakeEvent(kBatchComplete, b.batch_id + "/complete", b.batch_id, b.correlation_id,
                      std::move(data));
  std::string event_json = EncodeEvent(e);
  if (Status s = ledger_->DecideComplete(b.batch_id, event_json); !s.ok()) return s;
  spdlog::info("[batch {}] complete: {} ({} of {} chunks succeeded, {} items, {} conflicts, correlation {})",
               b.batch_id, decided, b.succeeded, total, b.total_items, b.conflicts,
               b.correlation_id);
  return Announce(b.batch_id, event_json);
}

Tolerance Aggregator::ToleranceOf(const BatchRecord& b) const {
  // Checked by the decoder when the batch was admitted.
  if (auto it = b.request.find("tolerate"); it != b.request.end() && it->is_string())
    if (auto own = Tolerance::Parse(it->get<std::string>(), "data.tolerate"); own.ok()) return own.value();
  return options_.tolerance;
}

std::chrono::milliseconds Aggregator::DeadlineOf(const BatchRecord& b) const {
  if (auto it = b.request.find("deadline_seconds"); it != b.request.end() && it->is_number())
    return std::chrono::milliseconds(static_cast<int64_t>(it->get<double>() * 1000));
  return options_.deadline;
}

Status Aggregator::ExpireBatches() {
  auto open = ledger_->OpenBatches();
  if (!open.ok()) return open.status();
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (const BatchRecord& b : open.value()) {
    const std::chrono::milliseconds deadline = DeadlineOf(b);
    if (deadline.count() <= 0 || now_ms - b.created_ms < deadline.count()) continue;
    auto missing = ledger_->MissingChunks(b.batch_id, b.total_chunks);
    if (!missing.ok()) return missing.status();
    spdlog::warn("[batch {}] deadline of {} ms passed with {} chunks missing{}; deciding timed_out",
                 b.batch_id, deadline.count(), missing->size(),
                 b.total_chunks ? "" : " (not sealed: the total is unknown)");
    json extra = {{"missing_chunks", missing.value()},
                  {"sealed", b.total_chunks.has_value()},
                  {"deadline_seconds", deadline.count() / 1000.0}};
    if (Status s = Decide(b, "timed_out", extra); !s.ok()) return s;
  }
  return Status::Ok();
}

Status Aggregator::Announce(const std::string& batch_id, const std::string& event_json) {
  if (Status s = FinishGroup(); !s.ok()) return s;
  if (Status s = bus_.Publish(Message{kBatchComplete, batch_id + "/complete", event_json}); !s.ok())
    return s;
  return ledger_->MarkAnnounced(batch_id);
}

Status Aggregator::ResumeFanouts() {
  // A waiting batch whose chunks all came in while no step could be handed out
  // (a restart in between) would otherwise wait for a chunk_done that never comes.
  auto open = ledger_->OpenBatches();
  if (!open.ok()) return open.status();
  for (BatchRecord& b : open.value())
    if (b.step.state == FanoutStepRecord::State::kWaiting)
      if (Status s = NextStepIfRoom(b); !s.ok()) return s;
  auto stalled = ledger_->StalledSteps(options_.step_lease.count());
  if (!stalled.ok()) return stalled.status();
  for (const BatchRecord& b : stalled.value()) {
    spdlog::warn("[batch {}] fan-out step {} not reported within {} ms; handing it out again", b.batch_id,
                 b.step.number, options_.step_lease.count());
    if (Status s = ledger_->RenewStep(b.batch_id); !s.ok()) return s;
    if (Status s = PublishStep(b); !s.ok()) return s;
  }
  return Status::Ok();
}

void Aggregator::TimerLoop() {
  using std::chrono::milliseconds;
  // A quarter of the lease; fan-out steps and deadlines are checked at least every second.
  milliseconds period = options_.lease.count() > 0 ? std::min(options_.lease / 4, milliseconds(1000))
                                                   : milliseconds(1000);
  if (options_.deadline.count() > 0) period = std::min(period, options_.deadline / 4);
  period = std::max(milliseconds(100), period);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_cv_.wait_for(lock, period, [this] { return stopping_; })) {
    // What handlers left open is committed first; the timer's own work is
    // committed statement by statement.
    (void)FinishGroup();
    // Every tick, not only with --deadline: a batch may bring a deadline of its own.
    if (Status s = ExpireBatches(); !s.ok()) spdlog::error("batch deadline: {}", s.ToString());
    if (Status s = ResumeFanouts(); !s.ok()) spdlog::error("fan-out steps: {}", s.ToString());
    if (options_.lease.count() <= 0) continue;
    auto again = ExpiredChunks();
    Status s = again.status();
    if (s.ok() && !again->empty()) {
      // Unlocked: handlers go on while the bus takes them.
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
    auto found = ledger_->Get(l.batch_id);
    if (!found.ok()) return found.status();
    if (!found.value()) continue;  // the lease's batch is gone (deleted by hand)
    const BatchRecord& b = *found.value();
    if (l.redrives > options_.max_redrives) {
      // A chunk that kills or hangs every worker that takes it: give up on it.
      ChunkOutcome c{l.batch_id, b.correlation_id, l.chunk_index, false, ExpectedItems(b, l.chunk_index),
                     l.redrives, nullptr,
                     "lease expired " + std::to_string(l.redrives) + " times; no worker finished it"};
      spdlog::error("[batch {}] chunk {} exceeded {} redrives; counting it failed", l.batch_id,
                    l.chunk_index, options_.max_redrives);
      auto recorded = ledger_->RecordChunk(c);
      if (!recorded.ok()) return recorded.status();
      if (Status s = RecordOutcome(c, recorded.value()); !s.ok()) return s;
      continue;
    }
    spdlog::warn("[batch {}] chunk {} not done within its lease; redrive #{}", l.batch_id,
                 l.chunk_index, l.redrives);
    if (l.page_cursor.empty()) {  // leased by an earlier fanflow, with its event
      again.push_back(Message{kProcessChunk, ChunkEventId(l.batch_id, l.chunk_index), l.event_json});
      continue;
    }
    // A ventilator reads the chunk again from the start of its page (the
    // ledger file is checked like any input: a bad cursor redrives nothing).
    const json page = json::parse(l.page_cursor, nullptr, false);
    const auto first = page.is_object() ? page.find("next_chunk") : page.end();
    if (first == page.end() || !first->is_number_integer() || first->get<int64_t>() > l.chunk_index) {
      spdlog::error("[batch {}] chunk {}: its lease names no page it is in ({}); not redriven", l.batch_id,
                    l.chunk_index, EscapeForLog(l.page_cursor));
      continue;
    }
    const std::string id = l.batch_id + "/redrive/" + std::to_string(l.chunk_index) + "/" +
                           std::to_string(l.redrives);
    again.push_back(StepMessage(b, id, page, l.chunk_index - first->get<int64_t>() + 1,
                                {{"chunk_index", l.chunk_index}}));
  }
  return again;
}

}  // namespace fanflow
