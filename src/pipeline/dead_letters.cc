#include "pipeline/dead_letters.h"

#include "core/bounded_json.h"
#include "core/event.h"
#include "core/printable.h"

namespace fanflow {
namespace {

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

std::string DeadLetterCategory(const std::string& r) {
  if (StartsWith(r, "malformed JSON") || StartsWith(r, "malformed event")) return "malformed_json";
  if (StartsWith(r, "attempts exhausted")) return "attempts_exhausted";
  if (StartsWith(r, "body: ")) return "limits";  // core/bounded_json.h
  if (StartsWith(r, "type: ")) return "unknown_type";
  if (r.find("expired") != std::string::npos) return "expired";
  // DecodeEvent names the offending field first: "data.chunk_size: ...".
  const auto colon = r.find(": ");
  if (colon != std::string::npos && colon > 0 &&
      r.substr(0, colon).find_first_not_of("abcdefghijklmnopqrstuvwxyz_.0123456789") ==
          std::string::npos)
    return "schema";
  return "other";
}

nlohmann::json DeadLetterToJson(const DeadLetter& d, bool with_event) {
  nlohmann::json j = {{"id", d.id},
                      {"group", d.group},
                      {"type", d.type},
                      {"attempts", d.attempts},
                      {"time", d.time},
                      {"reason", d.reason},
                      {"category", DeadLetterCategory(d.reason)}};
  // The body is a stranger's bytes: parsed within the decoder's limits, else
  // kept as text (invalid UTF-8 is replaced when dumped) plus exact base64.
  auto parsed = ParseBoundedJson(d.body, "body");
  static const nlohmann::json kNotJson;
  const nlohmann::json& body = parsed.ok() ? parsed.value() : kNotJson;
  if (body.is_object()) {
    if (body.contains("subject") && body["subject"].is_string()) j["batch_id"] = body["subject"];
    if (body.contains("data") && body["data"].is_object() && body["data"].contains("chunk_index"))
      j["chunk_index"] = body["data"]["chunk_index"];
  }
  if (with_event && parsed.ok()) {
    j["event"] = std::move(parsed).value();
  } else if (with_event) {
    j["event"] = d.body;
    j["event_base64"] = Base64(d.body);
  }
  return j;
}

std::string DumpForDisplay(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<std::vector<DeadLetter>> FindDeadLetters(EventBus& bus, const std::string& group,
                                                const std::string& id) {
  auto all = bus.ListDeadLetters(group);
  if (!all.ok() || id.empty()) return all;
  std::vector<DeadLetter> out;
  for (DeadLetter& d : all.value())
    if (d.id == id) out.push_back(std::move(d));
  return out;
}

}  // namespace fanflow
