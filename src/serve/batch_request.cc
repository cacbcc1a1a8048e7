#include "serve/batch_request.h"

#include <algorithm>
#include <cmath>

#include "core/printable.h"
#include "core/tolerance.h"
#include "pipeline/ventilator.h"

namespace fanflow {
namespace {

using nlohmann::json;

// The fields a POST may carry, and how each is checked.
constexpr const char* kPostFields[] = {"source",      "chunk_size",        "batch_id", "correlation_id",
                                       "page_chunks", "claim_check_bytes", "tolerate", "deadline",
                                       "combine"};

Status CheckInteger(const json& body, const char* field, int64_t min, int64_t max) {
  if (!body.contains(field)) return Status::Ok();
  const json& v = body[field];
  if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max)
    return InvalidArgument(std::string(field) + ": must be an integer in " + std::to_string(min) +
                           ".." + std::to_string(max));
  return Status::Ok();
}

Status CheckString(const json& body, const char* field, size_t max_length) {
  if (!body.contains(field)) return Status::Ok();
  if (!body[field].is_string()) return InvalidArgument(std::string(field) + ": must be a string");
  return CheckName(body[field].get<std::string>(), field, max_length);
}

}  // namespace

Result<Event> StartFromBody(const json& body, const SourcePolicy& files,
                            const std::function<std::string()>& new_batch_id) {
  if (!body.is_object()) return InvalidArgument("body: must be a JSON object");
  for (const auto& [key, value] : body.items()) {
    if (std::find(std::begin(kPostFields), std::end(kPostFields), key) == std::end(kPostFields))
      return InvalidArgument(EscapeForLog(key, 64) + ": unknown field");
  }
  if (!body.contains("source")) return InvalidArgument("source: required");
  if (!body.contains("chunk_size")) return InvalidArgument("chunk_size: required");
  for (Status s :
       {CheckString(body, "source", 4096), CheckInteger(body, "chunk_size", 1, 10'000'000),
        CheckString(body, "batch_id", kMaxSubjectLength),
        CheckString(body, "correlation_id", kMaxIdLength),
        CheckInteger(body, "page_chunks", 1, 100'000),
        CheckInteger(body, "claim_check_bytes", 0, int64_t{1} << 40)})
    if (!s.ok()) return s;
  const std::string source = body["source"].get<std::string>();
  if (Status s = CheckSourceSpec(source); !s.ok()) return InvalidArgument("source: " + s.message());
  if (source == "-") return InvalidArgument("source: '-' (stdin) cannot be served; name a file");
  if (source.rfind("jsonl:", 0) == 0) {
    if (source.size() < 7 || source[6] != '/')
      return InvalidArgument("source: a jsonl: path must be absolute");
    // The same check the ventilator makes, so serve never publishes what its
    // operator did not allow; the error reads the same whether the file exists.
    auto opened = OpenSource(source, 0, files);
    if (!opened.ok()) {
      std::string why = opened.status().message();
      if (why.rfind("data.", 0) == 0) why = why.substr(5);
      return InvalidArgument(why);
    }
  }
  const std::string batch_id =
      body.contains("batch_id") ? body["batch_id"].get<std::string>() : new_batch_id();
  Event start = MakeStartFanout(batch_id, body.value("correlation_id", batch_id), source,
                                body["chunk_size"].get<int64_t>());
  for (const char* k : {"page_chunks", "claim_check_bytes"})
    if (body.contains(k)) start.data[k] = body[k];
  // The batch's own failure tolerance ("5", "2.5%" or a whole number) and
  // deadline (seconds), instead of the aggregator's.
  if (auto it = body.find("tolerate"); it != body.end()) {
    if (!it->is_string() && !it->is_number_unsigned())
      return InvalidArgument("tolerate: must be a whole number of chunks or a string like \"2.5%\"");
    const std::string text = it->is_string() ? it->get<std::string>() : std::to_string(it->get<uint64_t>());
    if (auto t = Tolerance::Parse(text, "tolerate"); !t.ok()) return t.status();
    start.data["tolerate"] = text;
  }
  if (auto it = body.find("deadline"); it != body.end()) {
    if (!it->is_number() || !(it->get<double>() > 0))
      return InvalidArgument("deadline: must be a number of seconds > 0");
    start.data["deadline_seconds"] = *it;
  }
  if (auto it = body.find("combine"); it != body.end()) {
    if (!it->is_string()) return InvalidArgument("combine: must be merge, concat or none");
    start.data["combine"] = *it;
  }
  if (auto back = DecodeEvent(EncodeEvent(start)); !back.ok()) return back.status();
  return start;
}

Result<std::chrono::milliseconds> WaitOf(const HttpRequest& r, std::chrono::seconds max) {
  const std::string* w = r.Param("wait");
  if (!w) return std::chrono::milliseconds(0);
  char* end = nullptr;
  const double s = std::strtod(w->c_str(), &end);
  if (w->empty() || *end != '\0' || !std::isfinite(s) || s < 0 ||
      s > static_cast<double>(max.count()))
    return InvalidArgument("wait: must be seconds in 0.." + std::to_string(max.count()));
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

}  // namespace fanflow
