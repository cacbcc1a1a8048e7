#include "pipeline/result_merge.h"

#include <utility>
#include <vector>

namespace fanflow {

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
      // Integers stay exact; a float anywhere makes the sum a float.
      if (a->is_number_integer() && r->is_number_integer())
        *a = a->get<int64_t>() + r->get<int64_t>();
      else
        *a = a->get<double>() + r->get<double>();
    } else if (a->is_object() && r->is_object()) {
      for (auto it = r->begin(); it != r->end(); ++it) todo.emplace_back(&(*a)[it.key()], &it.value());
    }
  }
}

}  // namespace fanflow
