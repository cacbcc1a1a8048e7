#include "core/bounded_json.h"

#include <array>
#include <string>

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

}  // namespace

Result<json> ParseBoundedJson(std::string_view text, std::string_view what) {
  if (text.size() > kMaxEventBytes)
    return InvalidArgument(std::string(what) + ": " + std::to_string(text.size()) +
                           " bytes is larger than the limit of " + std::to_string(kMaxEventBytes));
  json out;
  BoundedSax sax(out);
  const bool ok = json::sax_parse(text, &sax, json::input_format_t::json, /*strict=*/true);
  if (ok) return out;
  if (!sax.limit_error().empty())
    return InvalidArgument(std::string(what) + ": " + sax.limit_error());
  return InvalidArgument("malformed JSON: " + std::string(what) +
                         " is not a JSON document (syntax error at byte " +
                         std::to_string(sax.syntax_error_at()) + ")");
}

}  // namespace fanflow
