// The aggregator's durable ledger: one SQLite file (WAL) that records each
// batch and each finished chunk once, however often its chunk_done arrives.
// Not thread-safe: one Ledger per aggregator, used by one handler at a time.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "pipeline/result_merge.h"

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
  nlohmann::json result;  // combined into the batch result when succeeded
  std::string error;
  Combine combine = Combine::kMerge;  // the batch's data.combine
  bool keep_result = false;  // stored with the chunk (concat, a results file)
};

// A chunk as recorded, for the results file and concat.
struct StoredChunk {
  int64_t chunk_index = 0;
  bool succeeded = false;
  int64_t items = 0;
  int attempts = 0;
  std::string error;
  std::string result_json;  // the result as JSON text; "null" when not kept
};

// One bounded step of a batch's fan-out: the aggregator hands the ventilator
// "publish at most max_chunks chunks from cursor" and waits for its report.
struct FanoutStepRecord {
  enum class State { kIssued = 0, kWaiting = 1, kDone = 2 };
  int64_t number = 0;
  State state = State::kIssued;
  nlohmann::json cursor = {{"offset", 0}, {"next_chunk", 0}, {"next_item", 0}};
  int64_t max_chunks = 0;
  int64_t issued_ms = 0;
  int64_t first_chunk() const { return cursor.value("next_chunk", int64_t{0}); }
};

// What RecordChunk did with a chunk_done.
enum class ChunkRecorded {
  kCounted,    // first outcome of the chunk (or a success after a failure)
  kDuplicate,  // the same outcome again, or a failure after a success
  kConflict,   // another successful outcome than the one counted: kept out, counted as conflict
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
  std::string started_at;               // RFC 3339, when the batch was admitted
  std::optional<std::string> complete;  // the batch_complete event, once decided
  bool announced = false;               // that event was published (confirmed)
  // The admitted request (source, chunk_size, page_chunks, claim_check_bytes):
  // the same batch id with another request is refused.
  nlohmann::json request;
  int64_t chunk_size = 0;
  int64_t published_chunks = 0;  // chunks the ventilator reported published
  int64_t published_items = 0;
  int64_t conflicts = 0;  // chunk_done events refused for contradicting a counted one
  FanoutStepRecord step;  // the fan-out step in progress (or the last one)
};

enum class Durability { kNormal, kFull };  // PRAGMA synchronous

class Ledger {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Ledger>> Open(const std::string& path,
                                                            Durability durability);
  // Another process's ledger, for LedgerReader: opened SQLITE_OPEN_READONLY
  // with no PRAGMA or schema statement, so every write method fails.
  [[nodiscard]] static Result<std::unique_ptr<Ledger>> OpenReadOnly(const std::string& path);
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // A group transaction: what runs until CommitGroup commits together (one
  // write of the file for many events), each method's own transaction a
  // savepoint inside it. Holds the write lock until CommitGroup; nothing in
  // it is durable before. Both are no-ops when there is nothing to do.
  [[nodiscard]] Status BeginGroup();
  [[nodiscard]] Status CommitGroup();

  // Records a new batch with its first fan-out step; false (and no change)
  // when the batch id is known already.
  [[nodiscard]] Result<bool> Admit(const BatchRecord& batch);

  // Records a finished chunk of a known batch. A failed chunk that later
  // succeeds (e.g. replayed from the DLQ) is counted as succeeded instead.
  [[nodiscard]] Result<ChunkRecorded> RecordChunk(const ChunkOutcome& outcome);

  // The ventilator's report of the current step: the chunks and items
  // published so far and the cursor the next step starts from; `sealed`: the
  // source is exhausted, these are the totals.
  // A page of the current step announced before it is published: its chunks
  // count as published, the step stays out (and its lease starts again).
  [[nodiscard]] Status RecordPublishing(const std::string& batch_id, int64_t chunks, int64_t items);
  [[nodiscard]] Status RecordProgress(const std::string& batch_id, const nlohmann::json& cursor,
                                      int64_t chunks, int64_t items, bool sealed);
  // Makes `step` the batch's current step (issued now).
  [[nodiscard]] Status IssueStep(const std::string& batch_id, const FanoutStepRecord& step);
  // Starts the batch's fan-out again from its first chunk with a new step of
  // `max_chunks`, due at once (the timer hands it out).
  [[nodiscard]] Status RestartFanout(const std::string& batch_id, int64_t max_chunks);
  // Restarts the clock of the current step (issued again).
  [[nodiscard]] Status RenewStep(const std::string& batch_id);
  // Open batches whose current step was issued more than `max_age_ms` ago
  // with no report: the ventilator that took it died, or never got it.
  [[nodiscard]] Result<std::vector<BatchRecord>> StalledSteps(int64_t max_age_ms);

  [[nodiscard]] Result<std::optional<BatchRecord>> Get(const std::string& batch_id);

  // Indices of chunks recorded failed, ascending.
  [[nodiscard]] Result<std::vector<int64_t>> FailedChunks(const std::string& batch_id);
  // Indices below `total_chunks` with nothing recorded, ascending; without a
  // total (batch not sealed), the gaps below the highest index recorded.
  [[nodiscard]] Result<std::vector<int64_t>> MissingChunks(const std::string& batch_id,
                                                           std::optional<int64_t> total_chunks);

  // The recorded failures of a batch (index ascending, at most `limit`).
  struct FailedChunk {
    int64_t chunk_index = 0;
    int attempts = 0;
    std::string error;
    int64_t done_ms = 0;
  };
  [[nodiscard]] Result<std::vector<FailedChunk>> FailedChunkRows(const std::string& batch_id, int64_t limit);
  // Decided batches, the most recently updated first, at most `limit`.
  [[nodiscard]] Result<std::vector<BatchRecord>> RecentlyDecided(int64_t limit);
  // Why the batch's results could not be combined (the first chunk that
  // could not be, with the reason); nullopt when they could.
  [[nodiscard]] Result<std::optional<std::string>> CombineError(const std::string& batch_id);
  // Calls `each` for every recorded chunk of the batch in chunk-index order,
  // one row at a time; stops at its first error.
  [[nodiscard]] Status ForEachChunk(const std::string& batch_id,
                                    const std::function<Status(const StoredChunk&)>& each);

  // Stores the decided batch_complete event; it is the only one ever published
  // for this batch (a re-announcement after a crash reads it back).
  [[nodiscard]] Status DecideComplete(const std::string& batch_id, const std::string& event_json);
  [[nodiscard]] Status MarkAnnounced(const std::string& batch_id);

  // Batches decided but not yet announced (a crash came in between).
  [[nodiscard]] Result<std::vector<BatchRecord>> Unannounced();
  // Batches not yet decided, oldest first.
  [[nodiscard]] Result<std::vector<BatchRecord>> OpenBatches();

  // Leases: the visibility timeout of chunks on buses that ack on receipt
  // (MQTT). The chunks [first_chunk, end_chunk) of a page the ventilator
  // reports publishing are leased until their chunk_done arrives;
  // `page_cursor` (a JSON cursor) is where the page starts in the source.
  [[nodiscard]] Status LeasePage(const std::string& batch_id, int64_t first_chunk, int64_t end_chunk,
                                 const std::string& page_cursor);
  struct Lease {
    std::string batch_id;
    int64_t chunk_index = 0;
    std::string event_json;   // only in a lease written by an earlier fanflow: the chunk's event
    std::string page_cursor;  // else where its page starts
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
  // The leases of one batch (index ascending, at most `limit`): when each was
  // leased (or last redriven) and how often it was redriven.
  struct LeaseAge {
    int64_t chunk_index = 0;
    int64_t leased_ms = 0;
    int redrives = 0;
  };
  [[nodiscard]] Result<std::vector<LeaseAge>> LeaseAges(const std::string& batch_id, int64_t limit);

 private:
  explicit Ledger(sqlite3* db);
  Status Exec(const char* sql);
  // Adds the columns a ledger made by an earlier fanflow lacks.
  Status Migrate();
  // RecordChunk in one transaction opened with `begin`.
  Result<ChunkRecorded> RecordChunkIn(const char* begin, const ChunkOutcome& c);
  // Rows matching `where`, which may use ?1 bound to *arg.
  Result<std::vector<BatchRecord>> Batches(const char* where, const std::string* arg);

  sqlite3* db_;  // owned
  std::unique_ptr<StatementCache> statements_;  // compiled SQL of db_
};

}  // namespace fanflow
