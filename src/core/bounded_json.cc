#include "core/bounded_json.h"

#include <array>
#include <optional>
#include <string>

#include "core/simdjson_parser.h"

namespace fanflow {
namespace {

using nlohmann::json;
using DomParser = nlohmann::detail::json_sax_dom_parser<json>;

// nlohmann's own DOM builder behind a SAX filter: the parser itself is
// iterative, so refusing a container here (returning false) stops it before
// the DOM gets any deeper. Counts elements per open container on a fixed stack.
class BoundedSax {
 public:
  explicit BoundedSax(json& out) : dom_(out, /*allow_exceptions=*/false) {}

  bool null() { return Element() && dom_.null(); }
  bool boolean(bool v) { return Element() && dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return Element() && dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return Element() && dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const std::string& s) {
    return Element() && dom_.number_float(v, s);
  }
  bool string(std::string& v) { return Element() && String(v) && dom_.string(v); }
  bool binary(json::binary_t& v) { return Element() && dom_.binary(v); }
  bool key(std::string& v) { return String(v) && dom_.key(v); }
  bool start_object(size_t n) { return Element() && Open() && dom_.start_object(n); }
  bool start_array(size_t n) { return Element() && Open() && dom_.start_array(n); }
  bool end_object() { return Close() && dom_.end_object(); }
  bool end_array() { return Close() && dom_.end_array(); }
  bool parse_error(size_t position, const std::string& token,
                   const nlohmann::detail::exception& e) {
    syntax_error_at_ = position;
    // nlohmann's out_of_range.406: 1e999 would be infinity (dumped as null).
    if (e.id == 406) limit_error_ = "a JSON number beyond the range of a double";
    return dom_.parse_error(position, token, e);
  }

  // Why parsing stopped, "" when it did not stop on a limit.
  const std::string& limit_error() const { return limit_error_; }
  size_t syntax_error_at() const { return syntax_error_at_; }

 private:
  // One more element in the innermost container (objects count their values).
  bool Element() {
    if (depth_ == 0 || ++elements_[depth_ - 1] <= kMaxJsonContainerElements) return true;
    limit_error_ = "a JSON array or object of more than " +
                   std::to_string(kMaxJsonContainerElements) + " elements";
    return false;
  }
  bool Open() {
    if (depth_ == kMaxJsonDepth) {
      limit_error_ = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      return false;
    }
    elements_[depth_++] = 0;
    return true;
  }
  bool Close() {
    --depth_;
    return true;
  }
  bool String(const std::string& v) {
    if (v.size() <= kMaxJsonStringBytes) return true;
    limit_error_ = "a JSON string of " + std::to_string(v.size()) +
                   " bytes is longer than the limit of " + std::to_string(kMaxJsonStringBytes);
    return false;
  }

  DomParser dom_;
  int depth_ = 0;
  std::array<size_t, kMaxJsonDepth> elements_{};
  std::string limit_error_;
  size_t syntax_error_at_ = 0;
};

// The fast path: simdjson parses and validates (UTF-8 included) about ten
// times faster than nlohmann's lexer, which was a third of a chunk's CPU. Its
// DOM is copied into nlohmann's within the same limits; any error or limit
// returns nullopt, and the slow path below then gives the one precise message,
// so both paths accept and refuse the same documents. A TextMember is walked
// within the limits without being copied (kBuild false), then printed.
class FastCopy {
 public:
  explicit FastCopy(const TextMember* keep) : keep_(keep) {}

  std::optional<json> Copy(simdjson::dom::element e) {
    if (keep_) keep_->text->clear();
    json out;
    return Walk<true>(e, &out, 0, Place::kRoot) ? std::optional<json>(std::move(out)) : std::nullopt;
  }

 private:
  // Where a value sits, as far as the kept member is concerned.
  enum class Place { kRoot, kParent, kOther };

  template <bool kBuild>
  bool Walk(simdjson::dom::element e, json* out, int depth, Place place) {
    using simdjson::dom::element_type;
    switch (e.type()) {
      case element_type::OBJECT: {
        if (depth == kMaxJsonDepth) return false;
        simdjson::dom::object object = e.get_object().value_unsafe();
        if (object.size() > kMaxJsonContainerElements) return false;
        if constexpr (kBuild) *out = json::object();
        for (auto field : object) {
          if (field.key.size() > kMaxJsonStringBytes) return false;
          if constexpr (kBuild) {
            if (!Member(field, out->get_ref<json::object_t&>(), depth + 1, place)) return false;
          } else if (!Walk<false>(field.value, nullptr, depth + 1, Place::kOther)) {
            return false;
          }
        }
        return true;
      }
      case element_type::ARRAY: {
        if (depth == kMaxJsonDepth) return false;
        simdjson::dom::array array = e.get_array().value_unsafe();
        if (array.size() > kMaxJsonContainerElements) return false;
        if constexpr (kBuild) {
          *out = json::array();
          auto& elements = out->get_ref<json::array_t&>();
          elements.reserve(array.size());
          for (auto value : array)
            if (!Walk<true>(value, &elements.emplace_back(), depth + 1, Place::kOther)) return false;
        } else {
          for (auto value : array)
            if (!Walk<false>(value, nullptr, depth + 1, Place::kOther)) return false;
        }
        return true;
      }
      case element_type::STRING: {
        std::string_view v = e.get_string().value_unsafe();
        if (v.size() > kMaxJsonStringBytes) return false;
        if constexpr (kBuild) *out = std::string(v);
        return true;
      }
      case element_type::INT64: if constexpr (kBuild) *out = e.get_int64().value_unsafe(); return true;
      case element_type::UINT64: if constexpr (kBuild) *out = e.get_uint64().value_unsafe(); return true;
      case element_type::DOUBLE: if constexpr (kBuild) *out = e.get_double().value_unsafe(); return true;
      case element_type::BOOL: if constexpr (kBuild) *out = e.get_bool().value_unsafe(); return true;
      case element_type::NULL_VALUE: if constexpr (kBuild) *out = nullptr; return true;
    }
    return false;
  }

  // One member of an object being built. A repeated key keeps its last value,
  // as nlohmann's parser does; so does the kept member's text.
  bool Member(simdjson::dom::key_value_pair field, json::object_t& members, int depth, Place place) {
    if (keep_ && place == Place::kParent && field.key == keep_->key) {
      keep_->text->clear();
      if (field.value.is_array()) {
        if (!Walk<false>(field.value, nullptr, depth, Place::kOther)) return false;
        members.erase(std::string(field.key));
        *keep_->text = simdjson::to_string(field.value);
        return true;
      }
    }
    Place inner = Place::kOther;
    if (keep_ && place == Place::kRoot && field.key == keep_->parent) {
      keep_->text->clear();  // a repeated parent replaces the first, kept member and all
      inner = Place::kParent;
    }
    return Walk<true>(field.value, &members[std::string(field.key)], depth, inner);
  }

  const TextMember* keep_;
};

std::optional<json> ParseFast(std::string_view text, const TextMember* keep) {
  return WithParsedJson(
      text, [&](simdjson::dom::element root) { return FastCopy(keep).Copy(root); },
      [] { return std::optional<json>(); });
}

// The slow path's DOM holds the kept member: it is taken out and printed.
void TakeOut(json& root, const TextMember& keep) {
  keep.text->clear();
  if (!root.is_object()) return;
  auto parent = root.find(keep.parent);
  if (parent == root.end() || !parent->is_object()) return;
  auto member = parent->find(keep.key);
  if (member == parent->end() || !member->is_array()) return;
  *keep.text = member->dump();
  parent->erase(member);
}

Result<json> Parse(std::string_view text, std::string_view what, const TextMember* keep) {
  if (text.size() > kMaxEventBytes)
    return InvalidArgument(std::string(what) + ": " + std::to_string(text.size()) +
                           " bytes is larger than the limit of " + std::to_string(kMaxEventBytes));
  if (auto fast = ParseFast(text, keep)) return std::move(*fast);
  json out;
  BoundedSax sax(out);
  const bool ok = json::sax_parse(text, &sax, json::input_format_t::json, /*strict=*/true);
  if (ok) {
    if (keep) TakeOut(out, *keep);
    return out;
  }
  if (!sax.limit_error().empty())
    return InvalidArgument(std::string(what) + ": " + sax.limit_error());
  return InvalidArgument("malformed JSON: " + std::string(what) +
                         " is not a JSON document (syntax error at byte " +
                         std::to_string(sax.syntax_error_at()) + ")");
}

}  // namespace

Result<json> ParseBoundedJson(std::string_view text, std::string_view what) {
  return Parse(text, what, nullptr);
}

Result<json> ParseBoundedJson(std::string_view text, std::string_view what, const TextMember& keep_as_text) {
  return Parse(text, what, &keep_as_text);
}

}  // namespace fanflow
