// A read-only view of the aggregator's ledger, for everything but the
// aggregator (monitor, status, serve): the file is opened SQLITE_OPEN_READONLY
// and no PRAGMA or CREATE runs on it, so another process's ledger is never
// changed, and a missing path is an error rather than a new empty ledger.
// Not thread-safe: one thread at a time (callers guard it).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pipeline/ledger.h"

namespace fanflow {

class LedgerReader {
 public:
  // `flag` names the option the path came from, for the error message.
  [[nodiscard]] static Result<std::unique_ptr<LedgerReader>> Open(const std::string& path,
                                                                  const std::string& flag);

  [[nodiscard]] Result<std::optional<BatchRecord>> Get(const std::string& batch_id) {
    return ledger_->Get(batch_id);
  }
  [[nodiscard]] Result<std::vector<BatchRecord>> OpenBatches() { return ledger_->OpenBatches(); }
  [[nodiscard]] Result<std::vector<BatchRecord>> RecentlyDecided(int64_t limit) {
    return ledger_->RecentlyDecided(limit);
  }
  [[nodiscard]] Result<std::map<std::string, Ledger::Outstanding>> OutstandingByBatch() {
    return ledger_->OutstandingByBatch();
  }
  [[nodiscard]] Result<std::vector<Ledger::FailedChunk>> FailedChunks(const std::string& batch_id,
                                                                      int64_t limit) {
    return ledger_->FailedChunkRows(batch_id, limit);
  }
  [[nodiscard]] Result<std::vector<int64_t>> MissingChunks(const std::string& batch_id,
                                                           std::optional<int64_t> below) {
    return ledger_->MissingChunks(batch_id, below);
  }
  [[nodiscard]] Result<std::vector<Ledger::LeaseAge>> LeaseAges(const std::string& batch_id,
                                                                int64_t limit) {
    return ledger_->LeaseAges(batch_id, limit);
  }

 private:
  explicit LedgerReader(std::unique_ptr<Ledger> ledger) : ledger_(std::move(ledger)) {}
  std::unique_ptr<Ledger> ledger_;  // opened read-only: its writes fail
};

}  // namespace fanflow
