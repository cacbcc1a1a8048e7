// The aggregator's durable ledger: one SQLite file (WAL) that records each
// batch and each finished chunk once, however often its chunk_done arrives.
// Not thread-safe: one Ledger per aggregator, used by one handler at a time.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

struct sqlite3;

namespace fanflow {

class StatementCache;  // ledger.cc

struct ChunkOutcome {
  std::string batch_id;
  std::string correlation_id;
  int64_t chunk_index = 0;
  bool succeeded = false;
  int64_t items = 0;
  int attempts = 1;
  nlohmann::json result;  // merged into the batch result when succeeded
  std::string error;
};

// A batch as the ledger knows it.
struct BatchRecord {
  std::string batch_id;
  std::string correlation_id;
  int64_t created_ms = 0;  // first event seen, ms since epoch
  int64_t updated_ms = 0;  // last progress
  std::optional<int64_t> total_chunks;  // known once the batch is sealed
  int64_t total_items = 0;
  int64_t succeeded = 0;
  int64_t failed = 0;
  nlohmann::json result;
  std::string started_at;               // RFC 3339 from the seal, if any
  std::optional<std::string> complete;  // the batch_complete event, once decided
  bool announced = false;               // that event was published (confirmed)
};

enum class Durability { kNormal, kFull };  // PRAGMA synchronous

class Ledger {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Ledger>> Open(const std::string& path,
                                                            Durability durability);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Records a finished chunk. Returns false when it was already counted (a
  // redelivery), true when this call counted it. A failed chunk that later
  // succeeds (e.g. replayed from the DLQ) is counted as succeeded instead.
  [[nodiscard]] Result<bool> RecordChunk(const ChunkOutcome& outcome);

  // Records the batch total once the ventilator has read the last page.
  [[nodiscard]] Status Seal(const std::string& batch_id, const std::string& correlation_id,
                            int64_t total_chunks, int64_t total_items,
                            const std::string& started_at);

  [[nodiscard]] Result<std::optional<BatchRecord>> Get(const std::string& batch_id);

  // Indices of chunks recorded failed, ascending.
  [[nodiscard]] Result<std::vector<int64_t>> FailedChunks(const std::string& batch_id);
  // Indices below `total_chunks` with nothing recorded, ascending; without a
  // total (batch not sealed), the gaps below the highest index recorded.
  [[nodiscard]] Result<std::vector<int64_t>> MissingChunks(const std::string& batch_id,
                                                           std::optional<int64_t> total_chunks);

  // Stores the decided batch_complete event; it is the only one ever published
  // for this batch (a re-announcement after a crash reads it back).
  [[nodiscard]] Status DecideComplete(const std::string& batch_id, const std::string& event_json);
  [[nodiscard]] Status MarkAnnounced(const std::string& batch_id);

  // Batches decided but not yet announced (a crash came in between).
  [[nodiscard]] Result<std::vector<BatchRecord>> Unannounced();
  // Batches not yet decided, oldest first.
  [[nodiscard]] Result<std::vector<BatchRecord>> OpenBatches();

  // Leases: the visibility timeout of chunks on buses that ack on receipt
  // (MQTT). A chunk seen published is leased until its chunk_done arrives.
  [[nodiscard]] Status LeaseChunk(const std::string& batch_id, int64_t chunk_index,
                                  const std::string& event_json);
  struct Lease {
    std::string batch_id;
    int64_t chunk_index = 0;
    std::string event_json;
    int redrives = 0;
  };
  // Leases older than `max_age_ms` of batches that made no progress for as
  // long: a backlog waiting for a slow worker keeps its batch progressing, so
  // only chunks that were really lost (their worker died or hung) come back.
  // Each is renewed (its clock restarts, its redrive count rises) as returned.
  [[nodiscard]] Result<std::vector<Lease>> TakeExpiredLeases(int64_t max_age_ms);
  // Per batch: its chunks published and not yet done (waiting for a worker or
  // being processed), and when the oldest of them was leased (or last redriven).
  struct Outstanding {
    int64_t chunks = 0;
    int64_t oldest_leased_ms = 0;
  };
  [[nodiscard]] Result<std::map<std::string, Outstanding>> OutstandingByBatch();

 private:
  explicit Ledger(sqlite3* db);
  Status Exec(const char* sql);
  // RecordChunk in one transaction opened with `begin`.
  Result<bool> RecordChunkIn(const char* begin, const ChunkOutcome& c);
  // Rows matching `where`, which may use ?1 bound to *arg.
  Result<std::vector<BatchRecord>> Batches(const char* where, const std::string* arg);

  sqlite3* db_;  // owned
  std::unique_ptr<StatementCache> statements_;  // compiled SQL of db_
};

}  // namespace fanflow
