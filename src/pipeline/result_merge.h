// How chunk results consolidate into a batch result (start_fanout's
// data.combine). None of them drops a value: one a strategy cannot combine is
// an error, and the batch's consolidation fails with it (topics/README.md,
// "Results").
//   merge   numbers add up, objects merge field by field (at any depth, without
//           recursion), nulls are skipped, equal strings and booleans stay;
//           anything else (an array, two different strings, a number meeting
//           an object) cannot be merged. The `sum` processor's totals add up.
//   concat  every result is an array; the batch result is them concatenated in
//           chunk-index order (built at completion from the ledger).
//   none    the batch result is null: the results are in the results file.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>

#include "core/status.h"

namespace fanflow {

enum class Combine { kMerge, kConcat, kNone };

// "merge" | "concat" | "none"; nullopt for anything else.
std::optional<Combine> ParseCombine(std::string_view name);
const char* CombineName(Combine combine);

// Merges `chunk_result` into `into`. The error names where the value that
// cannot be merged sits (e.g. "result.ids: an array cannot be merged"); `into`
// is then partly merged and must be discarded.
[[nodiscard]] Status MergeResult(nlohmann::json& into, const nlohmann::json& chunk_result);

// What `combine` does with one chunk's result as it arrives: merge merges it
// into `into`; concat checks it is an array (the concatenation is built at
// completion); none takes it as it is.
[[nodiscard]] Status CombineResult(Combine combine, nlohmann::json& into,
                                   const nlohmann::json& chunk_result);

}  // namespace fanflow
