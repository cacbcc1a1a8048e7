// simdjson's DOM parser, one per thread, for the few places that read JSON
// straight off its tape (bounded_json.cc, the built-in processors). Internal:
// simdjson.h is large, so only those files include this.
#pragma once

#include <simdjson.h>

#include <string_view>

namespace fanflow {

// A parser keeps the memory of its largest document (about 10 bytes per byte
// of input): each thread keeps one for ordinary documents, a larger one gets a
// parser of its own that is freed with it.
inline constexpr size_t kKeptParserBytes = 1 << 20;

// Parses `text` and returns use(root), or refused() when simdjson refuses it.
template <typename Use, typename Refused>
auto WithParsedJson(std::string_view text, Use&& use, Refused&& refused) {
  using Value = decltype(refused());
  auto parse = [&](simdjson::dom::parser& parser) -> Value {
    simdjson::dom::element root;
    if (parser.parse(text.data(), text.size()).get(root) != simdjson::SUCCESS) return refused();
    return use(root);
  };
  if (text.size() > kKeptParserBytes) {
    simdjson::dom::parser parser(text.size());
    return parse(parser);
  }
  thread_local simdjson::dom::parser parser(kKeptParserBytes);
  return parse(parser);
}

}  // namespace fanflow
