// The limits on every JSON document fanflow takes from outside (a message body,
// a processor's output), and the one parser that enforces them while parsing:
// a body nested 100,000 levels deep is refused at level 65, before any DOM is
// built that deep, so nothing downstream (dump, copy, merge) recurses deeply.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/status.h"

namespace fanflow {

inline constexpr size_t kMaxEventBytes = 16 << 20;              // a whole message body
inline constexpr int kMaxJsonDepth = 64;                        // nested arrays/objects
inline constexpr size_t kMaxJsonStringBytes = 1 << 20;          // one string or key
inline constexpr size_t kMaxJsonContainerElements = 1'000'000;  // one array or object

// Parses `text` as one JSON document within the limits above. `what` names the
// input in the error, which says which limit it broke, e.g.
//   "body: JSON nested deeper than 64 levels"
//   "body: 20000000 bytes is larger than the limit of 16777216"
//   "body: a JSON string of 2000000 bytes is longer than the limit of 1048576"
//   "body: a JSON array or object of more than 1000000 elements"
//   "body: a JSON number beyond the range of a double"
// and a body that is not JSON at all gives
//   "malformed JSON: body is not a JSON document (syntax error at byte 17)".
[[nodiscard]] Result<nlohmann::json> ParseBoundedJson(std::string_view text, std::string_view what);

// A member of the root's member `parent`, e.g. data.items, kept out of the DOM:
// when it is an array, it is checked within the same limits but not built, and
// its JSON text (minified) goes to `*text` instead; `*text` is left empty when
// there is no such array. Repeated keys: the last one wins, as in the DOM.
struct TextMember {
  std::string_view parent;
  std::string_view key;
  std::string* text;
};
[[nodiscard]] Result<nlohmann::json> ParseBoundedJson(std::string_view text, std::string_view what,
                                                      const TextMember& keep_as_text);

}  // namespace fanflow
