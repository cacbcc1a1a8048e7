// What the ledger says about a batch, as JSON for `fanflow status`, `serve`'s
// GET /v1/batches/{id} (?explain=1) and its dashboard: a summary (state,
// totals, counts, progress, the batch_complete once decided) and an
// explanation of where every unfinished chunk is. Read through a LedgerReader;
// no state of its own.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/bus.h"
#include "pipeline/ledger_reader.h"

namespace fanflow {

// Chunks listed per kind (failed, dead-lettered, outstanding) at most; the
// counts are always complete.
inline constexpr int64_t kMaxExplainedChunks = 1000;

// open (fanning out, total unknown), sealed (total known, chunks missing),
// complete (decided), cancelled (decided with status cancelled).
std::string BatchState(const BatchRecord& b);

// state, status, totals, done / failed / outstanding counts, progress (0..1,
// null until sealed), times, and the batch_complete event once decided.
// `outstanding`: the ledger's leases of the batch, where it keeps them.
nlohmann::json BatchSummary(const BatchRecord& b, const Ledger::Outstanding* leased,
                            int64_t now_ms);

// The summary plus "explain": each failed chunk with its error and attempts,
// the chunks dead-lettered on the bus (`dead_letters`, if the bus was asked),
// each outstanding chunk (published, not done) with its age and redrives where
// the ledger leases chunks, the fan-out position if the batch is not sealed,
// and for a decided batch its outcome.
[[nodiscard]] Result<nlohmann::json> ExplainBatch(LedgerReader& ledger, const BatchRecord& b,
                                                  const std::vector<DeadLetter>* dead_letters,
                                                  int64_t now_ms);

}  // namespace fanflow
