#include "pipeline/ventilator.h"

#include <spdlog/spdlog.h>

#include "core/printable.h"
#include "core/routes.h"

namespace fanflow {
namespace {

Message ToMessage(const Event& e) { return Message{e.type, e.id, EncodeEvent(e)}; }

// Takes the chunk's items (a page's chunks are published once).
nlohmann::json ChunkData(Chunk&& c) {
  nlohmann::json d = {{"chunk_index", c.index}, {"first_item", c.first_item}, {"item_count", c.item_count}};
  if (c.ref)
    d["ref"] = {{"path", c.ref->path}, {"offset", c.ref->offset}, {"length", c.ref->length}};
  else
    d["items"] = std::move(c.items);
  return d;
}

}  // namespace

Event MakeStartFanout(const std::string& batch_id, const std::string& correlation_id,
                      const std::string& source, int64_t chunk_size) {
  return MakeEvent(kStartFanout, batch_id + "/start", batch_id, correlation_id,
                   {{"source", source}, {"chunk_size", chunk_size}});
}

Result<std::unique_ptr<Ventilator>> Ventilator::Start(EventBus& bus, int concurrency) {
  std::unique_ptr<Ventilator> v(new Ventilator(bus));
  auto sub = bus.Subscribe({routes::kVentilatorGroup, {kStartFanout}, concurrency},
                           [raw = v.get()](const Delivery& d) { return raw->Handle(d); });
  if (!sub.ok()) return sub.status();
  v->subscription_ = std::move(sub).value();
  return v;
}

Status Ventilator::FanOutStep(EventBus& bus, const Event& start, Source& source) {
  const nlohmann::json& d = start.data;
  const int64_t chunk_size = d["chunk_size"].get<int64_t>();
  const int64_t page_chunks = d.value("page_chunks", kDefaultPageChunks);
  const std::string started_at = d.value("started_at", start.time);
  Cursor cursor;
  if (d.contains("cursor")) {
    cursor.offset = d["cursor"]["offset"].get<int64_t>();
    cursor.next_chunk = d["cursor"]["next_chunk"].get<int64_t>();
    cursor.next_item = d["cursor"]["next_item"].get<int64_t>();
  } else {
    spdlog::info("[batch {}] fanning out {} in chunks of {} (correlation {})", start.subject,
                 EscapeForLog(d["source"].get_ref<const std::string&>()), chunk_size,
                 start.correlation_id);
  }
  const auto step_ends = std::chrono::steady_clock::now() + kStepBudget;
  while (true) {
    auto page = source.ReadPage(cursor, chunk_size, page_chunks);
    if (!page.ok()) return page.status();
    std::vector<Message> out;
    out.reserve(page->chunks.size() + 1);
    for (Chunk& c : page->chunks)
      out.push_back(ToMessage(MakeEvent(kProcessChunk,
                                        ChunkEventId(start.subject, c.index),
                                        start.subject, start.correlation_id, ChunkData(std::move(c)))));
    cursor = page->next;
    const bool continue_here =
        !page->last && (!source.resumable() || std::chrono::steady_clock::now() < step_ends);
    if (page->last) {
      spdlog::info("[batch {}] last page read: {} chunks, {} items", start.subject, cursor.next_chunk,
                   cursor.next_item);
      out.push_back(ToMessage(MakeEvent(kBatchSealed, start.subject + "/sealed", start.subject,
                                        start.correlation_id,
                                        {{"total_chunks", cursor.next_chunk},
                                         {"total_items", cursor.next_item},
                                         {"started_at", started_at}})));
    } else if (!continue_here) {
      nlohmann::json next = d;
      next["cursor"] = {{"offset", cursor.offset},
                        {"next_chunk", cursor.next_chunk},
                        {"next_item", cursor.next_item}};
      next["started_at"] = started_at;
      out.push_back(ToMessage(MakeEvent(kStartFanout,
                                        start.subject + "/page/" + std::to_string(cursor.next_chunk),
                                        start.subject, start.correlation_id, next)));
    }
    if (Status s = bus.Publish(out); !s.ok()) return s;
    if (!continue_here) return Status::Ok();
  }
}

Verdict Ventilator::Handle(const Delivery& delivery) {
  auto start = DecodeEvent(delivery.message.body);
  if (!start.ok()) return Verdict::DeadLetter(start.status().message());
  if (start->type != kStartFanout)
    return Verdict::DeadLetter("type: the ventilator does not consume '" + start->type + "'");
  auto source = OpenSource(start->data["source"].get<std::string>(),
                           start->data.value("claim_check_bytes", kDefaultClaimCheckBytes));
  Status s = source.ok() ? FanOutStep(bus_, start.value(), *source.value()) : source.status();
  if (s.ok()) return Verdict::Ack();
  if (s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kTimeout)
    return Verdict::Retry(std::chrono::seconds(1), s.ToString());  // the bus, not the source
  // The source itself is bad: tell whoever waits for the batch, keep the event.
  spdlog::error("[batch {}] cannot fan out: {}", start->subject, EscapeForLog(s.message()));
  nlohmann::json data = {{"status", "failed"}, {"items", 0},       {"chunks", 0},
                         {"succeeded", 0},     {"failed", 0},      {"failed_chunks", nlohmann::json::array()},
                         {"result", nullptr},  {"error", s.message()}};
  Event failed = MakeEvent(kBatchComplete, start->subject + "/complete", start->subject,
                           start->correlation_id, data);
  if (Status p = bus_.Publish(ToMessage(failed)); !p.ok())
    return Verdict::Retry(std::chrono::seconds(1), p.ToString());
  return Verdict::DeadLetter(s.message());
}

}  // namespace fanflow
