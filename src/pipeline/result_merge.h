// How chunk results consolidate into a batch result: numbers add up, objects
// merge field by field (at any depth, without recursion), anything else is kept from the first
// chunk that had it. The `sum` processor's totals therefore add to the batch sum.
#pragma once

#include <nlohmann/json.hpp>

namespace fanflow {

void MergeResult(nlohmann::json& into, const nlohmann::json& chunk_result);

}  // namespace fanflow
