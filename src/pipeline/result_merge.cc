#include "pipeline/result_merge.h"

#include <cstdint>
#include <utility>
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

}  // namespace

void MergeResult(nlohmann::json& into, const nlohmann::json& chunk_result) {
  // An explicit stack instead of recursion: the depth of a result is the
  // client's choice (bounded by the decoder, but no stack should depend on it).
  // Pointers into objects stay valid: their nodes do not move on insertion.
  std::vector<std::pair<nlohmann::json*, const nlohmann::json*>> todo{{&into, &chunk_result}};
  while (!todo.empty()) {
    auto [a, r] = todo.back();
    todo.pop_back();
    if (r->is_null()) continue;
    if (a->is_null() || a->is_discarded()) {
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
      for (auto it = r->begin(); it != r->end(); ++it)
        todo.emplace_back(&(*a)[it.key()], &it.value());
    }
  }
}

}  // namespace fanflow
