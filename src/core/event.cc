#include "core/event.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <ctime>

#include "core/bounded_json.h"
#include "core/printable.h"
#include "core/tolerance.h"

namespace fanflow {
namespace {

using nlohmann::json;

// A batch's own deadline: at most a year.
constexpr double kMaxDeadlineSeconds = 366.0 * 24 * 3600;

// Small checkers that name the field they reject, so an error read in a DLQ
// tells the publisher exactly what to fix.
Status Missing(const std::string& field) { return InvalidArgument(field + ": is required"); }

Status RequireNonEmptyString(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) return Missing(path);
  if (!it->is_string() || it->get_ref<const std::string&>().empty())
    return InvalidArgument(path + ": must be a non-empty string");
  return Status::Ok();
}

Status CheckInteger(const json& obj, const char* key, const std::string& path, int64_t min,
                    bool required, int64_t max = INT64_MAX) {
  auto it = obj.find(key);
  if (it == obj.end()) return required ? Missing(path) : Status::Ok();
  // An unsigned beyond INT64_MAX reads back negative, so `min` refuses it too.
  if (!it->is_number_integer() || it->get<int64_t>() < min || it->get<int64_t>() > max)
    return InvalidArgument(path + ": must be an integer >= " + std::to_string(min) +
                           (max == INT64_MAX ? "" : " and <= " + std::to_string(max)));
  return Status::Ok();
}

// Every optional field a handler reads is typed here, so that a schema-valid
// event never makes a handler throw.
Status CheckOptional(const json& obj, const char* key, const std::string& path,
                     bool (json::*is)() const noexcept, const char* what) {
  auto it = obj.find(key);
  if (it == obj.end() || ((*it).*is)()) return Status::Ok();
  return InvalidArgument(path + ": must be " + what);
}

// A timestamp is not parsed (nothing computes with it), but it is printed and
// copied onto other events: a short string without control characters.
constexpr size_t kMaxTimeLength = 64;
Status CheckOptionalTime(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end()) return Status::Ok();
  if (!it->is_string() || !IsCleanText(it->get_ref<const std::string&>()) ||
      CodePoints(it->get_ref<const std::string&>()) > kMaxTimeLength)
    return InvalidArgument(path + ": must be an RFC 3339 string of at most " +
                           std::to_string(kMaxTimeLength) + " characters");
  return Status::Ok();
}

// A cancel's reason is copied into the batch_complete and printed: short, clean.
constexpr size_t kMaxReasonLength = 500;
Status CheckOptionalReason(const json& d) {
  auto it = d.find("reason");
  if (it == d.end()) return Status::Ok();
  if (!it->is_string() || !IsCleanText(it->get_ref<const std::string&>()) ||
      CodePoints(it->get_ref<const std::string&>()) > kMaxReasonLength)
    return InvalidArgument("data.reason: must be a string of at most " + std::to_string(kMaxReasonLength) +
                           " characters without control characters");
  return Status::Ok();
}

Status CheckIndexArray(const json& obj, const char* key, const std::string& path, bool required) {
  auto it = obj.find(key);
  if (it == obj.end()) return required ? Missing(path) : Status::Ok();
  bool ok = it->is_array();
  for (size_t i = 0; ok && i < it->size(); ++i)
    ok = (*it)[i].is_number_integer() && (*it)[i].get<int64_t>() >= 0;
  return ok ? Status::Ok() : InvalidArgument(path + ": must be an array of chunk indices");
}

Status CheckNonNegativeNumber(const json& obj, const char* key, const std::string& path) {
  auto it = obj.find(key);
  if (it == obj.end() || (it->is_number() && it->get<double>() >= 0)) return Status::Ok();
  return InvalidArgument(path + ": must be a number >= 0");
}

Status CheckEnum(const json& obj, const char* key, const std::string& path,
                 std::initializer_list<const char*> allowed) {
  auto it = obj.find(key);
  if (it == obj.end()) return Missing(path);
  std::string list;
  for (const char* a : allowed) {
    if (it->is_string() && it->get_ref<const std::string&>() == a) return Status::Ok();
    list += list.empty() ? a : std::string(", ") + a;
  }
  return InvalidArgument(path + ": must be one of " + list);
}

#define FANFLOW_CHECK(expr)        \
  do {                             \
    Status s_ = (expr);            \
    if (!s_.ok()) return s_;       \
  } while (0)

// A source position (data.cursor, data.page): byte offset, next chunk, next item.
Status CheckCursor(const json& d, const std::string& key, bool required) {
  const std::string path = "data." + key;
  auto it = d.find(key);
  if (it == d.end()) return required ? Missing(path) : Status::Ok();
  if (!it->is_object()) return InvalidArgument(path + ": must be an object");
  FANFLOW_CHECK(CheckInteger(*it, "offset", path + ".offset", 0, true));
  FANFLOW_CHECK(CheckInteger(*it, "next_chunk", path + ".next_chunk", 0, true));
  FANFLOW_CHECK(CheckInteger(*it, "next_item", path + ".next_item", 0, true));
  return Status::Ok();
}

// The fields that define a batch's request: a start_fanout's, copied into
// every fanout_step.
Status ValidateRequest(const json& d) {
  FANFLOW_CHECK(RequireNonEmptyString(d, "source", "data.source"));
  // A chunk's items are one array, so a chunk holds at most that many.
  FANFLOW_CHECK(CheckInteger(d, "chunk_size", "data.chunk_size", 1, true,
                             static_cast<int64_t>(kMaxJsonContainerElements)));
  FANFLOW_CHECK(CheckInteger(d, "page_chunks", "data.page_chunks", 1, false));
  FANFLOW_CHECK(CheckInteger(d, "claim_check_bytes", "data.claim_check_bytes", 0, false));
  // The batch's own failure tolerance and deadline, instead of the aggregator's.
  if (auto it = d.find("tolerate"); it != d.end()) {
    if (!it->is_string()) return InvalidArgument("data.tolerate: must be a string, e.g. \"5\" or \"2.5%\"");
    if (auto t = Tolerance::Parse(it->get<std::string>(), "data.tolerate"); !t.ok()) return t.status();
  }
  if (auto it = d.find("deadline_seconds"); it != d.end())
    if (!it->is_number() || !(it->get<double>() > 0) || it->get<double>() > kMaxDeadlineSeconds)
      return InvalidArgument("data.deadline_seconds: must be a number of seconds > 0 and at most " +
                             std::to_string(static_cast<int64_t>(kMaxDeadlineSeconds)));
  if (d.contains("combine"))
    FANFLOW_CHECK(CheckEnum(d, "combine", "data.combine", {"merge", "concat", "none"}));
  return CheckOptionalTime(d, "started_at", "data.started_at");
}

Status ValidateStartFanout(const json& d) { return ValidateRequest(d); }

Status ValidateFanoutStep(const json& d) {
  FANFLOW_CHECK(ValidateRequest(d));
  FANFLOW_CHECK(CheckInteger(d, "step", "data.step", 0, true));
  FANFLOW_CHECK(CheckInteger(d, "max_chunks", "data.max_chunks", 1, true));
  FANFLOW_CHECK(CheckCursor(d, "cursor", true));
  auto redrive = d.find("redrive");
  if (redrive == d.end()) return Status::Ok();
  if (!redrive->is_object()) return InvalidArgument("data.redrive: must be an object");
  FANFLOW_CHECK(CheckInteger(*redrive, "chunk_index", "data.redrive.chunk_index", 0, true));
  // The ventilator reads from the cursor up to the chunk: one step's worth at most.
  const int64_t from = d["cursor"]["next_chunk"].get<int64_t>(), index = (*redrive)["chunk_index"].get<int64_t>();
  if (index < from || index - from >= d["max_chunks"].get<int64_t>())
    return InvalidArgument("data.redrive.chunk_index: must be within max_chunks of data.cursor.next_chunk");
  return Status::Ok();
}

Status ValidateFanoutProgress(const json& d) {
  FANFLOW_CHECK(CheckInteger(d, "step", "data.step", 0, true));
  FANFLOW_CHECK(CheckCursor(d, "cursor", true));
  FANFLOW_CHECK(CheckCursor(d, "page", false));
  if (auto it = d.find("error"); it != d.end())
    FANFLOW_CHECK(RequireNonEmptyString(d, "error", "data.error"));
  FANFLOW_CHECK(CheckOptional(d, "publishing", "data.publishing", &json::is_boolean, "a boolean"));
  if (d.value("publishing", false) && d.contains("error"))
    return InvalidArgument("data.error: a publishing report carries no error");
  return Status::Ok();
}

Status ValidateProcessChunk(const json& d) {
  FANFLOW_CHECK(CheckInteger(d, "chunk_index", "data.chunk_index", 0, true));
  FANFLOW_CHECK(CheckInteger(d, "first_item", "data.first_item", 0, true));
  FANFLOW_CHECK(CheckInteger(d, "item_count", "data.item_count", 1, true));
  const bool has_items = d.contains("items"), has_ref = d.contains("ref");
  if (has_items == has_ref) return InvalidArgument("data.items: exactly one of items or ref is required");
  if (has_items && !d["items"].is_array()) return InvalidArgument("data.items: must be an array");
  if (has_ref) {
    const json& ref = d["ref"];
    if (!ref.is_object()) return InvalidArgument("data.ref: must be an object");
    FANFLOW_CHECK(RequireNonEmptyString(ref, "path", "data.ref.path"));
    FANFLOW_CHECK(CheckInteger(ref, "offset", "data.ref.offset", 0, true));
    FANFLOW_CHECK(CheckInteger(ref, "length", "data.ref.length", 1, true));
  }
  return Status::Ok();
}

Status ValidateChunkDone(const json& d) {
  FANFLOW_CHECK(CheckInteger(d, "chunk_index", "data.chunk_index", 0, true));
  FANFLOW_CHECK(CheckEnum(d, "status", "data.status", {"succeeded", "failed"}));
  FANFLOW_CHECK(CheckInteger(d, "items", "data.items", 0, true));
  FANFLOW_CHECK(CheckInteger(d, "attempts", "data.attempts", 1, true));
  if (d["status"] == "failed") FANFLOW_CHECK(RequireNonEmptyString(d, "error", "data.error"));
  FANFLOW_CHECK(CheckOptional(d, "error", "data.error", &json::is_string, "a string"));
  FANFLOW_CHECK(CheckNonNegativeNumber(d, "duration_ms", "data.duration_ms"));
  return Status::Ok();
}

Status ValidateBatchSealed(const json& d) {
  FANFLOW_CHECK(CheckInteger(d, "total_chunks", "data.total_chunks", 0, true));
  FANFLOW_CHECK(CheckInteger(d, "total_items", "data.total_items", 0, true));
  FANFLOW_CHECK(CheckInteger(d, "step", "data.step", 0, true));
  return CheckOptionalTime(d, "started_at", "data.started_at");
}

Status ValidateBatchComplete(const json& d) {
  FANFLOW_CHECK(
      CheckEnum(d, "status", "data.status", {"succeeded", "partial", "failed", "timed_out", "cancelled"}));
  for (const char* k : {"items", "chunks", "succeeded", "failed"})
    FANFLOW_CHECK(CheckInteger(d, k, std::string("data.") + k, 0, true));
  FANFLOW_CHECK(CheckIndexArray(d, "failed_chunks", "data.failed_chunks", true));
  FANFLOW_CHECK(CheckIndexArray(d, "missing_chunks", "data.missing_chunks", false));
  FANFLOW_CHECK(CheckOptional(d, "error", "data.error", &json::is_string, "a string"));
  FANFLOW_CHECK(CheckOptionalTime(d, "started_at", "data.started_at"));
  FANFLOW_CHECK(CheckOptionalTime(d, "completed_at", "data.completed_at"));
  FANFLOW_CHECK(CheckOptional(d, "sealed", "data.sealed", &json::is_boolean, "a boolean"));
  FANFLOW_CHECK(CheckNonNegativeNumber(d, "deadline_seconds", "data.deadline_seconds"));
  if (auto it = d.find("results"); it != d.end()) {
    if (!it->is_object()) return InvalidArgument("data.results: must be an object");
    FANFLOW_CHECK(RequireNonEmptyString(*it, "path", "data.results.path"));
    FANFLOW_CHECK(CheckInteger(*it, "lines", "data.results.lines", 0, true));
    FANFLOW_CHECK(CheckInteger(*it, "bytes", "data.results.bytes", 0, true));
  }
  return CheckOptionalReason(d);
}

Status ValidateCancelBatch(const json& d) {
  FANFLOW_CHECK(CheckOptionalReason(d));
  return CheckOptionalTime(d, "requested_at", "data.requested_at");
}

Status ValidateAlarm(const json& d) {
  FANFLOW_CHECK(RequireNonEmptyString(d, "alarm", "data.alarm"));
  FANFLOW_CHECK(CheckEnum(d, "state", "data.state", {"raised", "resolved"}));
  FANFLOW_CHECK(RequireNonEmptyString(d, "message", "data.message"));
  for (const char* k : {"value", "threshold"})
    FANFLOW_CHECK(CheckOptional(d, k, std::string("data.") + k, &json::is_number, "a number"));
  FANFLOW_CHECK(CheckOptionalTime(d, "raised_at", "data.raised_at"));
  return Status::Ok();
}

}  // namespace

const std::vector<std::string>& KnownEventTypes() {
  static const std::vector<std::string> kTypes = {kStartFanout, kFanoutStep,    kProcessChunk,
                                                  kChunkDone,   kFanoutProgress, kBatchSealed,
                                                  kCancelBatch, kBatchComplete, kAlarm};
  return kTypes;
}

namespace {
constexpr std::string_view kChunkInfix = "/chunk/";
}  // namespace

std::string ChunkEventId(const std::string& batch_id, int64_t chunk_index) {
  return batch_id + std::string(kChunkInfix) + std::to_string(chunk_index);
}

std::optional<std::pair<std::string, int64_t>> ParseChunkEventId(const std::string& id) {
  const size_t at = id.rfind(kChunkInfix);
  if (at == std::string::npos || at == 0) return std::nullopt;
  const char* first = id.data() + at + kChunkInfix.size();
  const char* last = id.data() + id.size();
  int64_t index = 0;
  auto [end, ec] = std::from_chars(first, last, index);
  if (ec != std::errc() || end != last || first == last || index < 0) return std::nullopt;
  return std::make_pair(id.substr(0, at), index);
}

std::string NowRfc3339() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

Event MakeEvent(std::string type, std::string id, std::string batch_id, std::string correlation_id,
                nlohmann::json data) {
  Event e;
  e.id = std::move(id);
  e.source = "fanflow";
  e.type = std::move(type);
  e.time = NowRfc3339();
  e.subject = std::move(batch_id);
  e.correlation_id = std::move(correlation_id);
  e.data = std::move(data);
  return e;
}

namespace {

// Appends `s` as a JSON string. Names, ids and times are plain ASCII nearly
// always and go in as they are; anything else goes through nlohmann's
// serializer, which escapes and replaces invalid UTF-8 (never a throw).
void AppendJsonString(std::string& out, const std::string& s) {
  const bool plain = std::all_of(s.begin(), s.end(), [](char c) {
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
  });
  if (!plain) {
    out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  out += '"';
  out += s;
  out += '"';
}

// The envelope without `data`, up to and including the comma before it.
// Written directly rather than through a DOM: that was a quarter of the cost
// of a small event.
std::string EncodeEnvelope(const Event& e) {
  std::string out;
  out.reserve(200 + e.id.size() + e.subject.size() + e.correlation_id.size());
  auto member = [&](const char* key, const std::string& value) {
    out += '"';
    out += key;
    out += "\":";
    AppendJsonString(out, value);
    out += ',';
  };
  out += "{\"specversion\":\"1.0\",";
  member("id", e.id);
  member("source", e.source);
  member("type", e.type);
  member("subject", e.subject);
  out += "\"datacontenttype\":\"application/json\",";
  member("correlationid", e.correlation_id);
  // `time` is optional, but when present CloudEvents requires RFC 3339: an event
  // decoded without one must not come back out with "time": "".
  if (!e.time.empty()) member("time", e.time);
  // `data` comes last rather than copied into a DOM of the envelope: for a
  // chunk, copying its items was most of the cost of encoding.
  out += "\"data\":";
  return out;
}

std::string DumpData(const json& data) { return data.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string EncodeEvent(const Event& e) {
  std::string out = EncodeEnvelope(e);
  out += DumpData(e.data);
  out += '}';
  return out;
}

std::string EncodeEventWithRawMember(const Event& e, std::string_view key, std::string_view raw_json) {
  std::string out = EncodeEnvelope(e);
  std::string data = DumpData(e.data);
  out.reserve(out.size() + data.size() + key.size() + raw_json.size() + 8);
  data.pop_back();  // the closing brace
  out += data;
  if (data.size() > 1) out += ',';
  out += json(key).dump();
  out += ':';
  out += raw_json;
  out += "}}";
  return out;
}

Status ValidateEventData(const std::string& type, const json& data) {
  if (!data.is_object()) return InvalidArgument("data: must be an object");
  if (type == kStartFanout) return ValidateStartFanout(data);
  if (type == kProcessChunk) return ValidateProcessChunk(data);
  if (type == kChunkDone) return ValidateChunkDone(data);
  if (type == kBatchSealed) return ValidateBatchSealed(data);
  if (type == kFanoutStep) return ValidateFanoutStep(data);
  if (type == kFanoutProgress) return ValidateFanoutProgress(data);
  if (type == kBatchComplete) return ValidateBatchComplete(data);
  if (type == kCancelBatch) return ValidateCancelBatch(data);
  if (type == kAlarm) return ValidateAlarm(data);
  return InvalidArgument("type: unknown event type '" + EscapeForLog(type, kMaxIdLength) + "'");
}

Result<Event> DecodeEvent(std::string_view body, std::string* items_json) {
  auto parsed = items_json ? ParseBoundedJson(body, "body", {"data", "items", items_json})
                           : ParseBoundedJson(body, "body");
  if (!parsed.ok()) return parsed.status();
  json& j = parsed.value();
  if (!j.is_object()) return InvalidArgument("malformed event: the message body must be a JSON object");
  auto spec = j.find("specversion");
  if (spec == j.end()) return Missing("specversion");
  if (*spec != "1.0") return InvalidArgument("specversion: must be \"1.0\"");
  // Ids and the subject end up in MQTT topics and properties, queue headers and
  // log lines: bounded, clean UTF-8 (see core/printable.h).
  for (auto [key, max] : {std::pair<const char*, size_t>{"id", kMaxIdLength},
                          {"source", kMaxIdLength},
                          {"type", kMaxIdLength},
                          {"subject", kMaxSubjectLength},
                          {"correlationid", kMaxIdLength}}) {
    FANFLOW_CHECK(RequireNonEmptyString(j, key, key));
    FANFLOW_CHECK(CheckName(j[key].get_ref<const std::string&>(), key, max));
  }
  FANFLOW_CHECK(CheckOptionalTime(j, "time", "time"));
  if (auto it = j.find("datacontenttype"); it != j.end() && *it != "application/json")
    return InvalidArgument("datacontenttype: must be \"application/json\"");
  auto data = j.find("data");
  if (data == j.end()) return Missing("data");

  Event e;
  e.type = std::move(j["type"].get_ref<std::string&>());
  // Items kept as text are checked as items: an empty array stands in for them.
  const bool items_as_text = items_json && !items_json->empty();
  if (items_as_text) (*data)["items"] = json::array();
  FANFLOW_CHECK(ValidateEventData(e.type, *data));
  if (items_as_text) data->erase("items");
  e.id = std::move(j["id"].get_ref<std::string&>());
  e.source = std::move(j["source"].get_ref<std::string&>());
  e.subject = std::move(j["subject"].get_ref<std::string&>());
  e.correlation_id = std::move(j["correlationid"].get_ref<std::string&>());
  if (auto it = j.find("time"); it != j.end()) e.time = std::move(it->get_ref<std::string&>());
  e.data = std::move(*data);
  return e;
}

}  // namespace fanflow
