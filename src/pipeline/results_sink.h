// A batch's results at completion: its chunk results combined the way its
// start_fanout asked (result_merge.h), and the results file (--results PATH)
// with every recorded chunk's outcome once, built from the ledger in
// chunk-index order however often a chunk_done was delivered. Both read the
// ledger one row at a time, so a batch of any size costs the aggregator the
// same memory (concat is bounded by what a batch_complete may carry).
// Stateless functions; the ledger's rules on threads apply.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "pipeline/ledger.h"

namespace fanflow {

// What a batch_complete says of its results file (data.results).
struct ResultsFile {
  std::string path;   // absolute
  int64_t lines = 0;  // one per recorded chunk
  int64_t bytes = 0;  // the file's length
  nlohmann::json ToJson() const { return {{"path", path}, {"lines", lines}, {"bytes", bytes}}; }
};

struct Consolidation {
  nlohmann::json result;             // data.result (null when it could not be combined)
  std::optional<std::string> error;  // why the results could not be combined
  std::optional<ResultsFile> file;   // with a results path
};

// The batch's combine strategy (data.combine of its request; merge if absent).
Combine CombineOf(const nlohmann::json& request);

// `pattern` with each "{batch}" replaced by the batch id made a safe file name:
// every byte but A-Z a-z 0-9 _ - . is %XX-encoded, and so is a leading dot,
// so no batch id names a directory, a parent or a hidden file.
std::string ResultsPathFor(const std::string& pattern, const std::string& batch_id);

// OK when a results file of `pattern` can be created: its directory exists
// and is writable (checked once at start, not found out at a batch's end).
[[nodiscard]] Status CheckResultsPath(const std::string& pattern);

// Combines the batch's results and, when `results_pattern` is not empty,
// writes its results file (a temporary file, fsynced, renamed over the path,
// its directory fsynced) before it returns: the batch may be announced then.
[[nodiscard]] Result<Consolidation> Consolidate(Ledger& ledger, const BatchRecord& batch,
                                                const std::string& results_pattern);

}  // namespace fanflow
