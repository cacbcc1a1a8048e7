// libFuzzer: DecodeEvent on arbitrary bytes never crashes, and what it accepts
// encodes to a document that decodes again to the same encoding. Decoding with
// the items kept as text (the worker's way) accepts and refuses the same
// bytes, with the same message, and gives the same event.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/bounded_json.h"
#include "core/event.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto event = fanflow::DecodeEvent(body);
  std::string items_json;
  auto kept = fanflow::DecodeEvent(body, &items_json);
  if (event.ok() != kept.ok()) std::abort();
  if (!event.ok()) {
    if (event.status().message().empty()) std::abort();  // a refusal always says why
    if (event.status().message() != kept.status().message()) std::abort();
    return 0;
  }
  if (!items_json.empty()) {
    auto items = fanflow::ParseBoundedJson(items_json, "items");
    if (!items.ok() || kept->data.contains("items")) std::abort();
    kept->data["items"] = std::move(items).value();
  }
  if (kept->data != event->data || kept->id != event->id || kept->type != event->type) std::abort();
  const std::string once = fanflow::EncodeEvent(*event);
  auto back = fanflow::DecodeEvent(once);
  if (!back.ok()) std::abort();                           // what we write, we read
  if (fanflow::EncodeEvent(*back) != once) std::abort();  // and it is stable
  return 0;
}
