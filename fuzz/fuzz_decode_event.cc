// libFuzzer: DecodeEvent on arbitrary bytes never crashes, and what it accepts
// encodes to a document that decodes again to the same encoding.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/event.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto event = fanflow::DecodeEvent(body);
  if (!event.ok()) {
    if (event.status().message().empty()) std::abort();  // a refusal always says why
    return 0;
  }
  const std::string once = fanflow::EncodeEvent(*event);
  auto back = fanflow::DecodeEvent(once);
  if (!back.ok()) std::abort();                           // what we write, we read
  if (fanflow::EncodeEvent(*back) != once) std::abort();  // and it is stable
  return 0;
}
