// Reading an aggregator's ledger file from a test, as another process would
// (read-only, beside the aggregator that writes it). Link SQLite::SQLite3.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace fanflow::testing {

// The chunks the ledger at `path` records for `batch`; -1 if it cannot be read.
inline int64_t LedgerChunkRows(const std::string& path, const std::string& batch) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM chunks WHERE batch_id=?1", -1, &q, nullptr) ==
        SQLITE_OK) {
      sqlite3_bind_text(q, 1, batch.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return n;
}

}  // namespace fanflow::testing
