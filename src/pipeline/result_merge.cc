#include "pipeline/result_merge.h"

#include <cstdint>
#include <string>
#include <vector>

namespace fanflow {
namespace {

// False for a float or an integer beyond int64 (nlohmann keeps those unsigned).
bool AsInt64(const nlohmann::json& j, int64_t& out) {
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    out = static_cast<int64_t>(u);
    return u <= static_cast<uint64_t>(INT64_MAX);
  }
  out = j.is_number_integer() ? j.get<int64_t>() : 0;
  return j.is_number_integer();
}

const char* KindOf(const nlohmann::json& j) {
  if (j.is_number()) return "a number";
  if (j.is_object()) return "an object";
  if (j.is_array()) return "an array";
  if (j.is_string()) return "a string";
  if (j.is_boolean()) return "a boolean";
  return "null";
}

// One pair to merge; `parent` and `key` give its place for an error message.
struct Frame {
  nlohmann::json* into;
  const nlohmann::json* from;
  size_t parent;
  const std::string* key;
};

// "a string (\"x\")", for an error message: its kind and its start.
std::string Shown(const nlohmann::json& j) {
  std::string text =
      j.is_object() ? "{...}" : j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > 80) text = text.substr(0, 80) + "...";
  return std::string(KindOf(j)) + " (" + text + ")";
}

std::string PathOf(const std::vector<Frame>& frames, size_t i) {
  std::vector<const std::string*> keys;
  for (; i != 0; i = frames[i].parent) keys.push_back(frames[i].key);
  std::string path = "result";
  for (auto it = keys.rbegin(); it != keys.rend(); ++it) path += "." + **it;
  return path;
}

}  // namespace

std::optional<Combine> ParseCombine(std::string_view name) {
  if (name == "merge") return Combine::kMerge;
  if (name == "concat") return Combine::kConcat;
  if (name == "none") return Combine::kNone;
  return std::nullopt;
}

const char* CombineName(Combine c) {
  return c == Combine::kMerge ? "merge" : c == Combine::kConcat ? "concat" : "none";
}

Status MergeResult(nlohmann::json& into, const nlohmann::json& chunk_result) {
  // An explicit stack instead of recursion: the depth of a result is the
  // client's choice (bounded by the decoder, but no stack should depend on it).
  // Pointers into objects stay valid: their nodes do not move on insertion.
  // Frames are kept (not popped) so an error can name its path.
  std::vector<Frame> frames{{&into, &chunk_result, 0, nullptr}};
  std::vector<size_t> todo{0};
  while (!todo.empty()) {
    const size_t i = todo.back();
    todo.pop_back();
    nlohmann::json* a = frames[i].into;
    const nlohmann::json* r = frames[i].from;
    if (r->is_null()) continue;
    // An object is merged into an empty one, so an array inside it is found
    // with the first chunk that has it, not the second.
    if ((a->is_null() || a->is_discarded()) && r->is_object()) *a = nlohmann::json::object();
    if (r->is_array()) {
      return InvalidArgument(PathOf(frames, i) +
                             ": an array cannot be merged (--combine concat takes arrays)");
    } else if (a->is_null() || a->is_discarded()) {
      *a = *r;
    } else if (a->is_number() && r->is_number()) {
      // Integers stay exact; a float anywhere, or a sum beyond int64, makes
      // the sum a float (never a wrapped, wrong integer).
      int64_t x = 0, y = 0, sum = 0;
      if (AsInt64(*a, x) && AsInt64(*r, y) && !__builtin_add_overflow(x, y, &sum))
        *a = sum;
      else
        *a = a->get<double>() + r->get<double>();
    } else if (a->is_object() && r->is_object()) {
      for (auto it = r->begin(); it != r->end(); ++it) {
        frames.push_back({&(*a)[it.key()], &it.value(), i, &it.key()});
        todo.push_back(frames.size() - 1);
      }
    } else if (!((a->is_string() || a->is_boolean()) && *a == *r)) {
      return InvalidArgument(PathOf(frames, i) + ": " + Shown(*r) + " cannot be merged into " +
                             Shown(*a));
    }
  }
  return Status::Ok();
}

Status CombineResult(Combine combine, nlohmann::json& into, const nlohmann::json& chunk_result) {
  if (combine == Combine::kMerge) return MergeResult(into, chunk_result);
  if (combine == Combine::kConcat && !chunk_result.is_array())
    return InvalidArgument("result: " + Shown(chunk_result) +
                           " cannot be concatenated (concat takes arrays)");
  return Status::Ok();
}

}  // namespace fanflow
