#include "pipeline/ventilator.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/printable.h"
#include "core/routes.h"

namespace fanflow {
namespace {

Message ToMessage(const Event& e) { return Message{e.type, e.id, EncodeEvent(e)}; }

// The chunk's process_chunk event; its items go in as the source wrote them.
Message ChunkMessage(const Event& step, const Chunk& c) {
  nlohmann::json d = {{"chunk_index", c.index}, {"first_item", c.first_item}, {"item_count", c.item_count}};
  if (c.ref) d["ref"] = {{"path", c.ref->path}, {"offset", c.ref->offset}, {"length", c.ref->length}};
  Event e = MakeEvent(kProcessChunk, ChunkEventId(step.subject, c.index), step.subject, step.correlation_id,
                      std::move(d));
  return Message{e.type, e.id, c.ref ? EncodeEvent(e) : EncodeEventWithRawMember(e, "items", c.items_json)};
}

nlohmann::json CursorJson(const Cursor& c) {
  return {{"offset", c.offset}, {"next_chunk", c.next_chunk}, {"next_item", c.next_item}};
}

Cursor CursorOf(const nlohmann::json& at) {
  return Cursor{at["offset"].get<int64_t>(), at["next_chunk"].get<int64_t>(), at["next_item"].get<int64_t>()};
}

// A failure of the bus, not of the source: the step is tried again.
bool BusTrouble(const Status& s) {
  return s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kTimeout;
}

// The report that tells the aggregator a step's source cannot be read.
Message FailedReport(const Event& step, const std::string& error) {
  return ToMessage(MakeEvent(kFanoutProgress,
                             step.subject + "/progress/" + std::to_string(step.data["step"].get<int64_t>()),
                             step.subject, step.correlation_id,
                             {{"step", step.data["step"]}, {"cursor", step.data["cursor"]}, {"error", error}}));
}

}  // namespace

Event MakeStartFanout(const std::string& batch_id, const std::string& correlation_id,
                      const std::string& source, int64_t chunk_size) {
  return MakeEvent(kStartFanout, batch_id + "/start", batch_id, correlation_id,
                   {{"source", source}, {"chunk_size", chunk_size}});
}

Result<std::unique_ptr<Ventilator>> Ventilator::Start(EventBus& bus, VentilatorOptions options) {
  std::unique_ptr<Ventilator> v(new Ventilator(bus, std::move(options)));
  auto sub = bus.Subscribe({routes::kVentilatorGroup, {kFanoutStep}, v->options_.concurrency},
                           [raw = v.get()](const Delivery& d) { return raw->Handle(d); });
  if (!sub.ok()) return sub.status();
  v->subscription_ = std::move(sub).value();
  return v;
}

Status Ventilator::RunStep(const Event& step, Source& source) {
  const nlohmann::json& d = step.data;
  const int64_t number = d["step"].get<int64_t>();
  const int64_t chunk_size = d["chunk_size"].get<int64_t>();
  const int64_t page_chunks = d.value("page_chunks", kDefaultPageChunks);
  Cursor cursor = CursorOf(d["cursor"]);
  const int64_t last_chunk = cursor.next_chunk + d["max_chunks"].get<int64_t>();
  if (number == 0)
    spdlog::info("[batch {}] fanning out {} in chunks of {} (correlation {})", step.subject,
                 EscapeForLog(d["source"].get_ref<const std::string&>()), chunk_size,
                 step.correlation_id);
  const auto step_ends = std::chrono::steady_clock::now() + kStepBudget;
  bool last = false;
  do {
    auto page = source.ReadPage(cursor, chunk_size, std::min(page_chunks, last_chunk - cursor.next_chunk));
    if (!page.ok()) return page.status();
    std::vector<Message> out;
    out.reserve(page->chunks.size() + 1);
    // Ahead of the page on the bus, so the chunk_done of its first chunks does
    // not reach the aggregator before it knows they exist (it would have to
    // wait and retry them). Where the page starts lets the aggregator lease
    // its chunks: a redrive reads a lost one again from there.
    if (!page->chunks.empty())
      out.push_back(ToMessage(MakeEvent(kFanoutProgress,
                                        step.subject + "/publishing/" + std::to_string(page->next.next_chunk),
                                        step.subject, step.correlation_id,
                                        {{"step", number},
                                         {"cursor", CursorJson(page->next)},
                                         {"page", CursorJson(cursor)},
                                         {"publishing", true}})));
    for (const Chunk& c : page->chunks) out.push_back(ChunkMessage(step, c));
    cursor = page->next;
    last = page->last;
    if (Status s = bus_.Publish(out); !s.ok()) return s;
  } while (!last && cursor.next_chunk < last_chunk &&
           (!source.resumable() || std::chrono::steady_clock::now() < step_ends));
  // Reported only once its chunks are confirmed: the aggregator takes a
  // reported chunk as published.
  Event report;
  if (last) {
    spdlog::info("[batch {}] last page read: {} chunks, {} items", step.subject, cursor.next_chunk,
                 cursor.next_item);
    report = MakeEvent(kBatchSealed, step.subject + "/sealed", step.subject, step.correlation_id,
                       {{"total_chunks", cursor.next_chunk},
                        {"total_items", cursor.next_item},
                        {"step", number},
                        {"started_at", d.value("started_at", step.time)}});
  } else {
    report = MakeEvent(kFanoutProgress, step.subject + "/progress/" + std::to_string(number), step.subject,
                       step.correlation_id, {{"step", number}, {"cursor", CursorJson(cursor)}});
  }
  Message m = ToMessage(report);
  if (!source.resumable()) stdin_last_report_ = m;
  return bus_.Publish(m);
}

Status Ventilator::RunStdinStep(const Event& step) {
  std::lock_guard<std::mutex> lock(stdin_mu_);
  const int64_t number = step.data["step"].get<int64_t>();
  if (number < stdin_next_step_) return bus_.Publish(stdin_last_report_);  // handed out again
  if (number > stdin_next_step_)
    return InvalidArgument("data.step: stdin was read up to step " + std::to_string(stdin_next_step_));
  if (!stdin_) {
    auto source = OpenSource("-", step.data.value("claim_check_bytes", kDefaultClaimCheckBytes),
                             SourcePolicy::Make({}, /*allow_stdin=*/true).value());
    if (!source.ok()) return source.status();
    stdin_ = std::move(source).value();
  }
  if (Status s = RunStep(step, *stdin_); !s.ok()) return s;
  ++stdin_next_step_;
  return Status::Ok();
}

Result<std::unique_ptr<Source>> Ventilator::OpenStepSource(const Event& step) const {
  return OpenSource(step.data["source"].get<std::string>(),
                    step.data.value("claim_check_bytes", kDefaultClaimCheckBytes), options_.files);
}

Status Ventilator::Redrive(const Event& step) {
  const nlohmann::json& d = step.data;
  const std::string spec = d["source"].get<std::string>();
  if (spec == "-") return InvalidArgument("data.redrive: a chunk of '-' (stdin) cannot be read again");
  auto source = OpenStepSource(step);
  if (!source.ok()) return source.status();
  const int64_t index = d["redrive"]["chunk_index"].get<int64_t>();
  const Cursor page_start = CursorOf(d["cursor"]);
  // The decoder keeps the chunk at or after the cursor; reading up to it
  // costs no more than the page a step would read.
  const int64_t page_chunks = d.value("page_chunks", kDefaultPageChunks);
  if (index - page_start.next_chunk >= page_chunks)
    return InvalidArgument("data.redrive.chunk_index: more than page_chunks (" + std::to_string(page_chunks) +
                           ") past data.cursor.next_chunk");
  auto page = source.value()->ReadPage(page_start, d["chunk_size"].get<int64_t>(),
                                       index - page_start.next_chunk + 1);
  if (!page.ok()) return page.status();
  for (const Chunk& c : page->chunks)
    if (c.index == index) {
      spdlog::info("[batch {}] chunk {} published again (lease redrive)", step.subject, index);
      return bus_.Publish({ChunkMessage(step, c)});
    }
  return InvalidArgument("data.redrive.chunk_index: the source ends before chunk " + std::to_string(index));
}

Verdict Ventilator::Handle(const Delivery& delivery) {
  auto step = DecodeEvent(delivery.message.body);
  if (!step.ok()) return Verdict::DeadLetter(step.status().message());
  if (step->type != kFanoutStep)
    return Verdict::DeadLetter("type: the ventilator does not consume '" + step->type + "'");
  if (step->data.contains("redrive")) {
    // A failed redrive fails nothing else: the lease expires again, and after
    // its last redrive the aggregator counts the chunk failed.
    Status s = Redrive(step.value());
    if (s.ok()) return Verdict::Ack();
    if (BusTrouble(s)) return Verdict::Retry(std::chrono::seconds(1), s.ToString());
    spdlog::error("[batch {}] cannot publish a chunk again: {}", step->subject, EscapeForLog(s.message()));
    return Verdict::DeadLetter(s.message());
  }
  const std::string spec = step->data["source"].get<std::string>();
  Status s;
  if (spec == "-" && step->subject == options_.stdin_batch) {
    s = RunStdinStep(step.value());
  } else if (spec == "-") {
    s = InvalidArgument("data.source: '-' (stdin) is read only by the submitting process");
  } else {
    auto source = OpenStepSource(step.value());
    s = source.ok() ? RunStep(step.value(), *source.value()) : source.status();
  }
  if (s.ok()) return Verdict::Ack();
  if (BusTrouble(s)) return Verdict::Retry(std::chrono::seconds(1), s.ToString());
  // The source itself is bad: the aggregator decides the batch failed and
  // tells whoever waits for it; the step is kept with the reason.
  spdlog::error("[batch {}] cannot fan out: {}", step->subject, EscapeForLog(s.message()));
  if (Status p = bus_.Publish(FailedReport(step.value(), s.message())); !p.ok())
    return Verdict::Retry(std::chrono::seconds(1), p.ToString());
  return Verdict::DeadLetter(s.message());
}

}  // namespace fanflow
