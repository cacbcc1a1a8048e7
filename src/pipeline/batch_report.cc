#include "pipeline/batch_report.h"

#include <set>

#include "core/event.h"

namespace fanflow {
namespace {

using nlohmann::json;

double SecondsSince(int64_t then_ms, int64_t now_ms) {
  return static_cast<double>(now_ms - then_ms) / 1000;
}

std::optional<json> CompleteEvent(const BatchRecord& b) {
  if (!b.complete) return std::nullopt;
  json e = json::parse(*b.complete, nullptr, false);
  if (e.is_discarded()) return std::nullopt;
  return e;
}

const char* StepState(FanoutStepRecord::State s) {
  switch (s) {
    case FanoutStepRecord::State::kIssued:
      return "issued";
    case FanoutStepRecord::State::kWaiting:
      return "waiting";
    case FanoutStepRecord::State::kDone:
      return "done";
  }
  return "unknown";
}

}  // namespace

std::string BatchState(const BatchRecord& b) {
  if (auto e = CompleteEvent(b)) {
    const json* status = e->contains("data") ? &(*e)["data"] : nullptr;
    return status && status->value("status", "") == "cancelled" ? "cancelled" : "complete";
  }
  if (b.complete) return "complete";
  return b.total_chunks ? "sealed" : "open";
}

json BatchSummary(const BatchRecord& b, const Ledger::Outstanding* leased, int64_t now_ms) {
  const int64_t done = b.succeeded + b.failed;
  json s = {
      {"batch_id", b.batch_id},
      {"correlation_id", b.correlation_id},
      {"state", BatchState(b)},
      {"request", b.request},
      {"total_chunks", b.total_chunks ? json(*b.total_chunks) : json()},
      {"total_items", b.total_chunks ? json(b.total_items) : json()},
      {"published_chunks", b.published_chunks},
      {"succeeded", b.succeeded},
      {"failed", b.failed},
      {"done", done},
      // Published and not yet done; the leases say the same where they are kept.
      {"outstanding", std::max<int64_t>(0, b.published_chunks - done)},
      {"conflicts", b.conflicts},
      {"progress", b.total_chunks && *b.total_chunks > 0
                       ? json(static_cast<double>(done) / static_cast<double>(*b.total_chunks))
                       : (b.total_chunks ? json(1.0) : json())},
      {"started_at", b.started_at},
      {"age_s", SecondsSince(b.created_ms, now_ms)},
      {"idle_s", SecondsSince(b.updated_ms, now_ms)}};
  if (leased) s["oldest_outstanding_s"] = SecondsSince(leased->oldest_leased_ms, now_ms);
  if (auto e = CompleteEvent(b)) {
    s["status"] = (*e)["data"].value("status", "");
    s["batch_complete"] = *e;
  } else {
    s["status"] = s["state"];
  }
  return s;
}

Result<json> ExplainBatch(LedgerReader& ledger, const BatchRecord& b,
                          const std::vector<DeadLetter>* dead_letters, int64_t now_ms) {
  auto outstanding_by_batch = ledger.OutstandingByBatch();
  if (!outstanding_by_batch.ok()) return outstanding_by_batch.status();
  auto it = outstanding_by_batch->find(b.batch_id);
  json out = BatchSummary(b, it == outstanding_by_batch->end() ? nullptr : &it->second, now_ms);
  json explain = json::object();

  auto failed = ledger.FailedChunks(b.batch_id, kMaxExplainedChunks);
  if (!failed.ok()) return failed.status();
  explain["failed"] = json::array();
  for (const Ledger::FailedChunk& f : failed.value())
    explain["failed"].push_back({{"chunk_index", f.chunk_index},
                                 {"attempts", f.attempts},
                                 {"error", f.error},
                                 {"failed_s_ago", SecondsSince(f.done_ms, now_ms)}});

  std::set<int64_t> dead;
  if (dead_letters) {
    explain["dead_lettered"] = json::array();
    for (const DeadLetter& d : *dead_letters) {
      auto chunk = ParseChunkEventId(d.id);
      if (!chunk || chunk->first != b.batch_id) continue;
      dead.insert(chunk->second);
      if (static_cast<int64_t>(explain["dead_lettered"].size()) < kMaxExplainedChunks)
        explain["dead_lettered"].push_back({{"chunk_index", chunk->second},
                                            {"group", d.group},
                                            {"reason", d.reason},
                                            {"attempts", d.attempts},
                                            {"time", d.time}});
    }
  }

  // Published and nothing recorded: waiting in a queue or being processed.
  auto missing = ledger.MissingChunks(b.batch_id, b.published_chunks);
  if (!missing.ok()) return missing.status();
  auto leases = ledger.LeaseAges(b.batch_id, kMaxExplainedChunks);
  if (!leases.ok()) return leases.status();
  std::map<int64_t, Ledger::LeaseAge> leased;
  for (const Ledger::LeaseAge& l : leases.value()) leased[l.chunk_index] = l;
  explain["outstanding"] = json::array();
  explain["outstanding_count"] = missing->size();
  for (int64_t index : missing.value()) {
    if (static_cast<int64_t>(explain["outstanding"].size()) >= kMaxExplainedChunks) break;
    json c = {{"chunk_index", index}};
    if (auto l = leased.find(index); l != leased.end()) {
      c["age_s"] = SecondsSince(l->second.leased_ms, now_ms);
      c["redrives"] = l->second.redrives;
    } else if (index >= b.step.first_chunk() && b.step.issued_ms > 0) {
      // No lease (the broker holds it, AMQP): published by the current step.
      c["age_at_most_s"] = SecondsSince(b.step.issued_ms, now_ms);
    }
    if (dead.count(index)) c["dead_lettered"] = true;
    explain["outstanding"].push_back(std::move(c));
  }
  explain["truncated_at"] = kMaxExplainedChunks;

  if (!b.total_chunks && !b.complete) {
    explain["not_published"] = {
        {"from_chunk", b.published_chunks},
        {"from_item", b.published_items},
        {"cursor", b.step.cursor},
        {"step", b.step.number},
        {"step_state", StepState(b.step.state)},
        {"step_max_chunks", b.step.max_chunks},
        {"step_age_s",
         b.step.issued_ms > 0 ? json(SecondsSince(b.step.issued_ms, now_ms)) : json()}};
  }
  if (auto e = CompleteEvent(b)) {
    const json& d = (*e)["data"];
    json outcome = {{"status", d.value("status", "")}};
    for (const char* k :
         {"failed_chunks", "missing_chunks", "error", "completed_at", "sealed", "deadline_seconds"})
      if (d.contains(k)) outcome[k] = d[k];
    explain["outcome"] = outcome;
  }
  out["explain"] = explain;
  return out;
}

}  // namespace fanflow
