#include "pipeline/ledger.h"

#include <sqlite3.h>

#include <chrono>
#include <string_view>
#include <unordered_map>

#include "core/bounded_json.h"
#include "pipeline/result_merge.h"

namespace fanflow {
namespace {

// A JSON column the ledger wrote itself; `discarded` if it does not parse.
nlohmann::json StoredJson(std::string_view text) {
  auto parsed = ParseBoundedJson(text, "ledger column");
  return parsed.ok() ? std::move(parsed).value() : nlohmann::json(nlohmann::json::value_t::discarded);
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// The ledger's prepared statements by SQL text: each is compiled once and
// reused (preparing was about a third of a RecordChunk). Single-threaded, like
// the ledger.
class StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  ~StatementCache() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  sqlite3* db() const { return db_; }
  // The statement for `sql`, reset and unbound; nullptr if it does not compile.
  sqlite3_stmt* Get(std::string_view sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                           &stmt, nullptr) !=
        SQLITE_OK) {
      sqlite3_finalize(stmt);
      return nullptr;
    }
    cache_.emplace(sql, stmt);
    return stmt;
  }

 private:
  sqlite3* db_;
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view sql) const { return std::hash<std::string_view>()(sql); }
  };
  std::unordered_map<std::string, sqlite3_stmt*, Hash, std::equal_to<>> cache_;  // owned
};

namespace {

// One use of a cached statement: reset and unbound again on scope exit, so a
// read ends its snapshot and the next use starts clean.
class Statement {
 public:
  Statement(StatementCache& cache, std::string_view sql)
      : db_(cache.db()), stmt_(cache.Get(sql)) {}
  ~Statement() {
    if (!stmt_) return;
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // SQLITE_ROW or SQLITE_DONE; anything else becomes an error.
  Result<bool> Step() {
    if (!stmt_) return Error();
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return Error();
  }
  Status Run() {
    auto r = Step();
    return r.ok() ? Status::Ok() : r.status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }

 private:
  // Unavailable when the database is locked by another connection.
  Status Error() const {
    std::string what = std::string("ledger: ") + sqlite3_errmsg(db_);
    return (sqlite3_errcode(db_) & 0xff) == SQLITE_BUSY ? Unavailable(what) : Internal(what);
  }
  sqlite3* db_;
  sqlite3_stmt* stmt_;  // null: it did not compile
};

// BEGIN [IMMEDIATE] ... COMMIT, rolled back if not committed. A BEGIN that
// failed (the file is locked past the busy timeout) makes every method return
// before it writes anything: nothing runs in autocommit by accident. Inside a
// group (Ledger::BeginGroup) it is a savepoint of the group's transaction:
// undone alone on failure, made durable by the group's commit.
class Transaction {
 public:
  explicit Transaction(StatementCache& cache, const char* begin = "BEGIN IMMEDIATE")
      : cache_(cache),
        nested_(sqlite3_get_autocommit(cache.db()) == 0),
        began_(Statement(cache_, nested_ ? "SAVEPOINT fanflow_tx" : begin).Run()) {}
  ~Transaction() {
    if (!began_.ok() || done_) return;
    if (nested_) {
      (void)Statement(cache_, "ROLLBACK TO fanflow_tx").Run();
      (void)Statement(cache_, "RELEASE fanflow_tx").Run();
    } else {
      (void)Statement(cache_, "ROLLBACK").Run();
    }
  }
  // Unavailable when another process holds the write lock: retry later.
  const Status& began() const { return began_; }
  Status Commit() {
    if (!began_.ok()) return began_;
    done_ = true;
    if (Status s = Statement(cache_, nested_ ? "RELEASE fanflow_tx" : "COMMIT").Run(); !s.ok())
      return Internal("ledger: commit failed: " + s.message());
    return Status::Ok();
  }

 private:
  StatementCache& cache_;
  const bool nested_;
  const Status began_;
  bool done_ = false;
};

#define FANFLOW_BEGIN(tx)                          \
  do {                                            \
    if (!(tx).began().ok()) return (tx).began();  \
  } while (0)

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS batches(
  batch_id TEXT PRIMARY KEY,
  correlation_id TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  total_chunks INTEGER,
  total_items INTEGER NOT NULL DEFAULT 0,
  succeeded INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  result TEXT NOT NULL DEFAULT 'null',
  started_at TEXT NOT NULL DEFAULT '',
  complete_event TEXT,
  announced INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS conflicts(
  batch_id TEXT NOT NULL,
  chunk_index INTEGER NOT NULL,
  digest INTEGER NOT NULL,
  PRIMARY KEY(batch_id, chunk_index, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks(
  batch_id TEXT NOT NULL,
  chunk_index INTEGER NOT NULL,
  succeeded INTEGER NOT NULL,
  items INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  done_ms INTEGER NOT NULL,
  digest INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(batch_id, chunk_index)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(
  batch_id TEXT NOT NULL,
  chunk_index INTEGER NOT NULL,
  event TEXT NOT NULL,
  leased_ms INTEGER NOT NULL,
  redrives INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(batch_id, chunk_index)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS leases_by_age ON leases(leased_ms);
)sql";

// Columns added since the first ledger format; Migrate adds those missing.
struct AddedColumn {
  const char* table;
  const char* name;
  const char* declaration;
};
constexpr AddedColumn kAddedColumns[] = {
    {"batches", "request", "TEXT NOT NULL DEFAULT 'null'"},
    {"batches", "chunk_size", "INTEGER NOT NULL DEFAULT 0"},
    {"batches", "published_chunks", "INTEGER NOT NULL DEFAULT 0"},
    {"batches", "published_items", "INTEGER NOT NULL DEFAULT 0"},
    {"batches", "step_no", "INTEGER NOT NULL DEFAULT 0"},
    {"batches", "step_state", "INTEGER NOT NULL DEFAULT 2"},
    {"batches", "step_cursor", "TEXT NOT NULL DEFAULT '{}'"},
    {"batches", "step_max_chunks", "INTEGER NOT NULL DEFAULT 0"},
    {"batches", "step_ms", "INTEGER NOT NULL DEFAULT 0"},
    {"chunks", "digest", "INTEGER NOT NULL DEFAULT 0"},
    {"chunks", "result", "TEXT"},
    {"batches", "combine_error", "TEXT"},
    // Where a leased chunk's page starts; a lease written before holds the
    // chunk's whole event instead.
    {"leases", "page_cursor", "TEXT"},
};

// What tells two successful outcomes of a chunk apart.
int64_t OutcomeDigest(const ChunkOutcome& c) {
  const std::string result = c.result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return static_cast<int64_t>(std::hash<std::string>()(std::to_string(c.items) + ":" + result));
}

}  // namespace

Status Ledger::Migrate() {
  for (const AddedColumn& c : kAddedColumns) {
    Statement q(*statements_, "SELECT count(*) FROM pragma_table_info(?1) WHERE name=?2");
    q.Bind(1, std::string(c.table)).Bind(2, std::string(c.name));
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (q.Int(0) > 0) continue;
    std::string sql = std::string("ALTER TABLE ") + c.table + " ADD COLUMN " + c.name + " " + c.declaration;
    if (Status s = Exec(sql.c_str()); !s.ok()) return s;
  }
  return Status::Ok();
}

Result<std::unique_ptr<Ledger>> Ledger::Open(const std::string& path, Durability durability) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  std::unique_ptr<Ledger> ledger(new Ledger(db));
  if (rc != SQLITE_OK)
    return InvalidArgument("cannot open ledger '" + path + "': " + sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 5000);
  Status s = ledger->Exec("PRAGMA journal_mode=WAL");
  if (s.ok())
    s = ledger->Exec(durability == Durability::kFull ? "PRAGMA synchronous=FULL"
                                                     : "PRAGMA synchronous=NORMAL");
  if (s.ok()) s = ledger->Exec(kSchema);
  if (s.ok()) s = ledger->Migrate();
  if (!s.ok()) return InvalidArgument("ledger '" + path + "' is not usable: " + s.message());
  return ledger;
}

Result<std::unique_ptr<Ledger>> Ledger::OpenReadOnly(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<Ledger> ledger(new Ledger(db));
  if (rc != SQLITE_OK)
    return InvalidArgument("cannot open ledger '" + path + "' read-only: " + sqlite3_errmsg(db));
  sqlite3_busy_timeout(db, 5000);  // a connection setting: nothing is written
  // A file that is no ledger (or an older one) fails here, not on every read.
  if (Status s = Statement(*ledger->statements_, "SELECT step_cursor FROM batches LIMIT 0").Run(); !s.ok())
    return InvalidArgument("'" + path + "' is not a fanflow ledger (or one this fanflow cannot read): " +
                           s.message());
  return ledger;
}

Ledger::Ledger(sqlite3* db) : db_(db), statements_(std::make_unique<StatementCache>(db)) {}

Ledger::~Ledger() {
  statements_.reset();  // finalized before the connection closes
  sqlite3_close_v2(db_);
}

Status Ledger::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return Internal("ledger: " + msg);
  }
  return Status::Ok();
}

namespace {

struct PriorChunk {
  bool succeeded = false;
  int64_t digest = 0;
};

Result<std::optional<PriorChunk>> FindChunk(StatementCache& statements, const ChunkOutcome& c) {
  Statement prior(statements,
                  "SELECT succeeded, digest FROM chunks WHERE batch_id=?1 AND chunk_index=?2");
  prior.Bind(1, c.batch_id).Bind(2, c.chunk_index);
  auto found = prior.Step();
  if (!found.ok()) return found.status();
  if (!found.value()) return std::optional<PriorChunk>();
  return std::optional<PriorChunk>(PriorChunk{prior.Int(0) != 0, prior.Int(1)});
}

}  // namespace

Status Ledger::BeginGroup() {
  if (sqlite3_get_autocommit(db_) == 0) return Status::Ok();
  return Statement(*statements_, "BEGIN IMMEDIATE").Run();
}

Status Ledger::CommitGroup() {
  if (sqlite3_get_autocommit(db_) != 0) return Status::Ok();
  if (Status s = Statement(*statements_, "COMMIT").Run(); !s.ok()) {
    if (sqlite3_get_autocommit(db_) == 0) (void)Statement(*statements_, "ROLLBACK").Run();
    return Internal("ledger: group commit failed: " + s.message());
  }
  return Status::Ok();
}

Result<bool> Ledger::Admit(const BatchRecord& b) {
  Transaction tx(*statements_);
  FANFLOW_BEGIN(tx);
  const int64_t now = NowMs();
  Statement insert(*statements_,
                   "INSERT OR IGNORE INTO batches(batch_id, correlation_id, created_ms, updated_ms, "
                   "started_at, request, chunk_size, step_no, step_state, step_cursor, "
                   "step_max_chunks, step_ms) VALUES(?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?3)");
  insert.Bind(1, b.batch_id).Bind(2, b.correlation_id).Bind(3, now).Bind(4, b.started_at);
  insert.Bind(5, b.request.dump()).Bind(6, b.chunk_size).Bind(7, b.step.number);
  insert.Bind(8, static_cast<int64_t>(b.step.state)).Bind(9, b.step.cursor.dump());
  if (Status s = insert.Bind(10, b.step.max_chunks).Run(); !s.ok()) return s;
  const bool inserted = sqlite3_changes(db_) > 0;
  if (Status s = tx.Commit(); !s.ok()) return s;
  return inserted;
}

Result<ChunkRecorded> Ledger::RecordChunk(const ChunkOutcome& c) {
  // Deferred first: a duplicate is answered on a read snapshot, without the
  // write lock, which only the first write takes. That upgrade fails at once
  // (SQLITE_BUSY, no busy wait) if another writer got in since the snapshot:
  // then again with the write lock taken up front.
  auto recorded = RecordChunkIn("BEGIN DEFERRED", c);
  if (recorded.ok() || recorded.status().code() != StatusCode::kUnavailable) return recorded;
  return RecordChunkIn("BEGIN IMMEDIATE", c);
}

Result<ChunkRecorded> Ledger::RecordChunkIn(const char* begin, const ChunkOutcome& c) {
  Transaction tx(*statements_, begin);
  FANFLOW_BEGIN(tx);
  auto prior = FindChunk(*statements_, c);
  if (!prior.ok()) return prior.status();
  const int64_t digest = c.succeeded ? OutcomeDigest(c) : 0;
  if (prior.value()) {
    const PriorChunk& p = *prior.value();
    if (!c.succeeded || (p.succeeded && p.digest == digest)) return ChunkRecorded::kDuplicate;
    if (p.succeeded) {
      // Another result for a chunk already counted: the first one stands.
      Statement conflict(*statements_,
                         "INSERT OR IGNORE INTO conflicts(batch_id, chunk_index, digest) VALUES(?1, ?2, ?3)");
      if (Status s = conflict.Bind(1, c.batch_id).Bind(2, c.chunk_index).Bind(3, digest).Run(); !s.ok())
        return s;
      if (Status s = tx.Commit(); !s.ok()) return s;
      return ChunkRecorded::kConflict;
    }
  }
  const bool upgrade = prior->has_value();

  Statement current(*statements_, "SELECT result FROM batches WHERE batch_id=?1");
  current.Bind(1, c.batch_id);
  auto found = current.Step();
  if (!found.ok()) return found.status();
  if (!found.value()) return InvalidArgument("subject: unknown batch '" + c.batch_id + "'");
  const std::string before = current.Text(0);
  nlohmann::json merged = StoredJson(before);
  // A result that cannot be combined fails the batch's consolidation; the
  // batch result stays as it was.
  std::string combine_error;
  if (c.succeeded)
    if (Status s = CombineResult(c.combine, merged, c.result); !s.ok())
      combine_error = "chunk " + std::to_string(c.chunk_index) + ": " + s.message();
  constexpr auto kReplace = nlohmann::json::error_handler_t::replace;
  const std::string dump_result =
      c.keep_result && c.succeeded ? c.result.dump(-1, ' ', false, kReplace) : "";

  Statement write(*statements_,
                  "INSERT OR REPLACE INTO chunks(batch_id, chunk_index, succeeded, items, attempts, "
                  "error, done_ms, digest, result) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  write.Bind(1, c.batch_id).Bind(2, c.chunk_index).Bind(3, int64_t{c.succeeded});
  write.Bind(4, c.items).Bind(5, int64_t{c.attempts}).Bind(6, c.error).Bind(7, NowMs()).Bind(8, digest);
  if (!dump_result.empty()) write.Bind(9, dump_result);  // else NULL: not kept
  if (Status s = write.Run(); !s.ok()) return s;

  Statement update(*statements_,
                   "UPDATE batches SET succeeded = succeeded + ?2, failed = failed + ?3, "
                   "result = ?4, updated_ms = ?5, combine_error = COALESCE(combine_error, ?6) "
                   "WHERE batch_id = ?1");
  update.Bind(1, c.batch_id)
      .Bind(2, int64_t{c.succeeded})
      .Bind(3, int64_t{upgrade ? -1 : (c.succeeded ? 0 : 1)})
      .Bind(4, combine_error.empty() ? merged.dump(-1, ' ', false, kReplace) : before)
      .Bind(5, NowMs());
  if (!combine_error.empty()) update.Bind(6, combine_error);  // else NULL: keeps what is there
  if (Status s = update.Run(); !s.ok()) return s;
  Statement unlease(*statements_, "DELETE FROM leases WHERE batch_id=?1 AND chunk_index=?2");
  if (Status s = unlease.Bind(1, c.batch_id).Bind(2, c.chunk_index).Run(); !s.ok()) return s;
  if (Status s = tx.Commit(); !s.ok()) return s;
  return ChunkRecorded::kCounted;
}

Status Ledger::RecordProgress(const std::string& batch_id, const nlohmann::json& cursor,
                              int64_t chunks, int64_t items, bool sealed) {
  Statement progress(*statements_,
                     "UPDATE batches SET published_chunks=?2, published_items=?3, step_state=?4, "
                     "total_chunks=CASE WHEN ?5 THEN ?2 ELSE total_chunks END, "
                     "total_items=CASE WHEN ?5 THEN ?3 ELSE total_items END, updated_ms=?6, "
                     "step_cursor=?7 WHERE batch_id=?1");
  progress.Bind(1, batch_id).Bind(2, chunks).Bind(3, items);
  progress.Bind(4, static_cast<int64_t>(sealed ? FanoutStepRecord::State::kDone
                                               : FanoutStepRecord::State::kWaiting));
  return progress.Bind(5, int64_t{sealed}).Bind(6, NowMs()).Bind(7, cursor.dump()).Run();
}

Status Ledger::RecordPublishing(const std::string& batch_id, int64_t chunks, int64_t items) {
  return Statement(*statements_,
                   "UPDATE batches SET published_chunks=?2, published_items=?3, step_ms=?4, updated_ms=?4 "
                   "WHERE batch_id=?1 AND published_chunks < ?2")
      .Bind(1, batch_id)
      .Bind(2, chunks)
      .Bind(3, items)
      .Bind(4, NowMs())
      .Run();
}

Status Ledger::IssueStep(const std::string& batch_id, const FanoutStepRecord& step) {
  return Statement(*statements_,
                   "UPDATE batches SET step_no=?2, step_state=?3, step_cursor=?4, step_max_chunks=?5, "
                   "step_ms=?6 WHERE batch_id=?1")
      .Bind(1, batch_id)
      .Bind(2, step.number)
      .Bind(3, static_cast<int64_t>(FanoutStepRecord::State::kIssued))
      .Bind(4, step.cursor.dump())
      .Bind(5, step.max_chunks)
      .Bind(6, NowMs())
      .Run();
}

Status Ledger::RestartFanout(const std::string& batch_id, int64_t max_chunks) {
  FanoutStepRecord first;
  return Statement(*statements_,
                   "UPDATE batches SET published_chunks=0, published_items=0, step_no=step_no+1, "
                   "step_state=?2, step_cursor=?3, step_max_chunks=?4, step_ms=0 WHERE batch_id=?1")
      .Bind(1, batch_id)
      .Bind(2, static_cast<int64_t>(FanoutStepRecord::State::kIssued))
      .Bind(3, first.cursor.dump())
      .Bind(4, max_chunks)
      .Run();
}

Status Ledger::RenewStep(const std::string& batch_id) {
  return Statement(*statements_, "UPDATE batches SET step_ms=?2 WHERE batch_id=?1")
      .Bind(1, batch_id)
      .Bind(2, NowMs())
      .Run();
}

Result<std::vector<BatchRecord>> Ledger::StalledSteps(int64_t max_age_ms) {
  // Bound, not spliced into the SQL: each distinct text would be a statement
  // compiled and cached for good.
  const std::string before = std::to_string(NowMs() - max_age_ms);
  return Batches("complete_event IS NULL AND step_state=0 AND step_ms < ?1", &before);
}

Result<std::vector<BatchRecord>> Ledger::Batches(const char* where, const std::string* arg) {
  std::string sql =
      "SELECT batch_id, correlation_id, created_ms, updated_ms, total_chunks, total_items, "
      "succeeded, failed, result, started_at, complete_event, announced, request, chunk_size, "
      "published_chunks, published_items, step_no, step_state, step_cursor, step_max_chunks, "
      "step_ms, (SELECT count(*) FROM conflicts c WHERE c.batch_id = batches.batch_id) "
      "FROM batches WHERE ";
  Statement q(*statements_, sql + where + " ORDER BY created_ms");
  if (arg) q.Bind(1, *arg);
  std::vector<BatchRecord> out;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return out;
    BatchRecord b;
    b.batch_id = q.Text(0);
    b.correlation_id = q.Text(1);
    b.created_ms = q.Int(2);
    b.updated_ms = q.Int(3);
    if (!q.IsNull(4)) b.total_chunks = q.Int(4);
    b.total_items = q.Int(5);
    b.succeeded = q.Int(6);
    b.failed = q.Int(7);
    b.result = StoredJson(q.Text(8));
    b.started_at = q.Text(9);
    if (!q.IsNull(10)) b.complete = q.Text(10);
    b.announced = q.Int(11) != 0;
    b.request = StoredJson(q.Text(12));
    b.chunk_size = q.Int(13);
    b.published_chunks = q.Int(14);
    b.published_items = q.Int(15);
    b.step.number = q.Int(16);
    b.step.state = static_cast<FanoutStepRecord::State>(q.Int(17));
    b.step.cursor = StoredJson(q.Text(18));
    b.step.max_chunks = q.Int(19);
    b.step.issued_ms = q.Int(20);
    b.conflicts = q.Int(21);
    out.push_back(std::move(b));
  }
}

Result<std::optional<BatchRecord>> Ledger::Get(const std::string& batch_id) {
  auto rows = Batches("batch_id = ?1", &batch_id);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<BatchRecord>();
  return std::optional<BatchRecord>(std::move(rows->front()));
}

Result<std::vector<int64_t>> Ledger::FailedChunks(const std::string& batch_id) {
  Statement q(*statements_,
              "SELECT chunk_index FROM chunks WHERE batch_id=?1 AND succeeded=0 ORDER BY chunk_index");
  q.Bind(1, batch_id);
  std::vector<int64_t> out;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return out;
    out.push_back(q.Int(0));
  }
}

Result<std::vector<int64_t>> Ledger::MissingChunks(const std::string& batch_id,
                                                   std::optional<int64_t> total_chunks) {
  Statement q(*statements_, "SELECT chunk_index FROM chunks WHERE batch_id=?1 ORDER BY chunk_index");
  q.Bind(1, batch_id);
  std::vector<int64_t> out;
  int64_t next = 0;  // the lowest index not yet accounted for
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    for (const int64_t done = q.Int(0); next < done; ++next) out.push_back(next);
    next = q.Int(0) + 1;
  }
  if (total_chunks)
    for (; next < *total_chunks; ++next) out.push_back(next);
  return out;
}

Result<std::vector<Ledger::FailedChunk>> Ledger::FailedChunkRows(const std::string& batch_id,
                                                                int64_t limit) {
  Statement q(*statements_,
              "SELECT chunk_index, attempts, error, done_ms FROM chunks WHERE batch_id=?1 AND "
              "succeeded=0 ORDER BY chunk_index LIMIT ?2");
  q.Bind(1, batch_id).Bind(2, limit);
  std::vector<FailedChunk> out;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return out;
    out.push_back(FailedChunk{q.Int(0), static_cast<int>(q.Int(1)), q.Text(2), q.Int(3)});
  }
}

Result<std::vector<BatchRecord>> Ledger::RecentlyDecided(int64_t limit) {
  const std::string n = std::to_string(limit);
  return Batches(
      "batch_id IN (SELECT batch_id FROM batches WHERE complete_event IS NOT NULL "
      "ORDER BY updated_ms DESC LIMIT CAST(?1 AS INTEGER))",
      &n);
}


Result<std::optional<std::string>> Ledger::CombineError(const std::string& batch_id) {
  Statement q(*statements_, "SELECT combine_error FROM batches WHERE batch_id=?1");
  q.Bind(1, batch_id);
  auto row = q.Step();
  if (!row.ok()) return row.status();
  if (!row.value() || q.IsNull(0)) return std::optional<std::string>();
  return std::optional<std::string>(q.Text(0));
}

Status Ledger::ForEachChunk(const std::string& batch_id,
                            const std::function<Status(const StoredChunk&)>& each) {
  Statement q(*statements_,
              "SELECT chunk_index, succeeded, items, attempts, error, COALESCE(result, 'null') "
              "FROM chunks WHERE batch_id=?1 ORDER BY chunk_index");
  q.Bind(1, batch_id);
  StoredChunk c;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return Status::Ok();
    c.chunk_index = q.Int(0);
    c.succeeded = q.Int(1) != 0;
    c.items = q.Int(2);
    c.attempts = static_cast<int>(q.Int(3));
    c.error = q.Text(4);
    c.result_json = q.Text(5);
    if (Status s = each(c); !s.ok()) return s;
  }
}

Status Ledger::DecideComplete(const std::string& batch_id, const std::string& event_json) {
  return Statement(*statements_,
                   "UPDATE batches SET complete_event=?2 WHERE batch_id=?1 AND complete_event IS NULL")
      .Bind(1, batch_id)
      .Bind(2, event_json)
      .Run();
}

Status Ledger::MarkAnnounced(const std::string& batch_id) {
  Transaction tx(*statements_);
  FANFLOW_BEGIN(tx);
  Status s = Statement(*statements_, "UPDATE batches SET announced=1 WHERE batch_id=?1").Bind(1, batch_id).Run();
  if (s.ok()) s = Statement(*statements_, "DELETE FROM leases WHERE batch_id=?1").Bind(1, batch_id).Run();
  if (!s.ok()) return s;
  return tx.Commit();
}

Result<std::vector<BatchRecord>> Ledger::Unannounced() {
  return Batches("complete_event IS NOT NULL AND announced = 0", nullptr);
}

Result<std::vector<BatchRecord>> Ledger::OpenBatches() { return Batches("complete_event IS NULL", nullptr); }

Status Ledger::LeasePage(const std::string& batch_id, int64_t first_chunk, int64_t end_chunk,
                         const std::string& page_cursor) {
  // Only a chunk of an open batch this aggregator admitted, not yet done, is
  // leased: a forged report leaves no trace.
  for (int64_t index = first_chunk; index < end_chunk; ++index) {
    Status s = Statement(*statements_,
                         "INSERT OR IGNORE INTO leases(batch_id, chunk_index, event, page_cursor, leased_ms) "
                         "SELECT ?1, ?2, '', ?3, ?4 WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE "
                         "batch_id=?1 AND chunk_index=?2) AND EXISTS (SELECT 1 FROM batches WHERE "
                         "batch_id=?1 AND complete_event IS NULL AND "
                         "?2 < COALESCE(total_chunks, published_chunks + step_max_chunks))")
                   .Bind(1, batch_id)
                   .Bind(2, index)
                   .Bind(3, page_cursor)
                   .Bind(4, NowMs())
                   .Run();
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Result<std::vector<Ledger::Lease>> Ledger::TakeExpiredLeases(int64_t max_age_ms) {
  Transaction tx(*statements_);
  FANFLOW_BEGIN(tx);
  const int64_t now = NowMs();
  Statement q(*statements_,
              "SELECT l.batch_id, l.chunk_index, l.event, COALESCE(l.page_cursor, ''), l.redrives FROM leases l "
              "LEFT JOIN batches b ON b.batch_id = l.batch_id "
              "WHERE l.leased_ms < ?1 AND COALESCE(b.updated_ms, 0) < ?1 "
              "ORDER BY l.leased_ms LIMIT 1000");
  q.Bind(1, now - max_age_ms);
  std::vector<Lease> out;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    out.push_back(Lease{q.Text(0), q.Int(1), q.Text(2), q.Text(3), static_cast<int>(q.Int(4)) + 1});
  }
  for (const Lease& l : out) {
    Statement renew(*statements_,
                    "UPDATE leases SET leased_ms=?3, redrives=redrives+1 WHERE batch_id=?1 AND "
                    "chunk_index=?2");
    if (Status s = renew.Bind(1, l.batch_id).Bind(2, l.chunk_index).Bind(3, now).Run(); !s.ok())
      return s;
  }
  if (Status s = tx.Commit(); !s.ok()) return s;
  return out;
}

Result<std::map<std::string, Ledger::Outstanding>> Ledger::OutstandingByBatch() {
  Statement q(*statements_, "SELECT batch_id, count(*), min(leased_ms) FROM leases GROUP BY batch_id");
  std::map<std::string, Outstanding> out;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) break;
    out[q.Text(0)] = Outstanding{q.Int(1), q.Int(2)};
  }
  return out;
}

Result<std::vector<Ledger::LeaseAge>> Ledger::LeaseAges(const std::string& batch_id, int64_t limit) {
  Statement q(*statements_,
              "SELECT chunk_index, leased_ms, redrives FROM leases WHERE batch_id=?1 ORDER BY "
              "chunk_index LIMIT ?2");
  q.Bind(1, batch_id).Bind(2, limit);
  std::vector<LeaseAge> out;
  while (true) {
    auto row = q.Step();
    if (!row.ok()) return row.status();
    if (!row.value()) return out;
    out.push_back(LeaseAge{q.Int(0), q.Int(1), static_cast<int>(q.Int(2))});
  }
}

}  // namespace fanflow
