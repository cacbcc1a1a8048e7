#include "pipeline/result_merge.h"

namespace fanflow {

void MergeResult(nlohmann::json& into, const nlohmann::json& r) {
  if (r.is_null()) return;
  if (into.is_null() || into.is_discarded()) {
    into = r;
    return;
  }
  if (into.is_number() && r.is_number()) {
    // Integers stay exact; a float anywhere makes the sum a float.
    if (into.is_number_integer() && r.is_number_integer())
      into = into.get<int64_t>() + r.get<int64_t>();
    else
      into = into.get<double>() + r.get<double>();
    return;
  }
  if (into.is_object() && r.is_object()) {
    for (auto it = r.begin(); it != r.end(); ++it) MergeResult(into[it.key()], it.value());
  }
}

}  // namespace fanflow
