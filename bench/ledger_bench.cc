// The aggregator's SQLite ledger on a real file: how many chunk_done records
// per second it commits under each durability, and what a redelivered
// chunk_done (the dedupe path) costs. The file lives under $TMPDIR (or /tmp),
// so the numbers are the fsync cost of that file system.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

#include "pipeline/ledger.h"

namespace fanflow {
namespace {

constexpr int64_t kChunksPerBatch = 1000;

// A fresh directory for one benchmark run, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fanflow-ledger-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  bool ok() const { return !path_.empty(); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The outcome the aggregator records for chunk `n` of a run: batches of
// kChunksPerBatch chunks with a sum result, as the sum processor reports.
ChunkOutcome Outcome(int64_t n) {
  ChunkOutcome c;
  c.batch_id = "bench-batch-" + std::to_string(n / kChunksPerBatch);
  c.correlation_id = "bench-corr";
  c.chunk_index = n % kChunksPerBatch;
  c.succeeded = true;
  c.items = 100;
  c.result = 50123;
  return c;
}

// Admits the batch of chunk `n` when `n` is its first chunk: the ledger
// records chunks of admitted batches only.
Status AdmitBatchOf(Ledger& ledger, int64_t n) {
  if (n % kChunksPerBatch != 0) return Status::Ok();
  BatchRecord b;
  b.batch_id = Outcome(n).batch_id;
  b.correlation_id = "bench-corr";
  b.request = {{"source", "range:" + std::to_string(kChunksPerBatch * 100)}, {"chunk_size", 100}};
  b.chunk_size = 100;
  b.step.max_chunks = kChunksPerBatch;
  auto admitted = ledger.Admit(b);
  if (!admitted.ok()) return admitted.status();
  return ledger.RecordProgress(b.batch_id, nlohmann::json::object(), kChunksPerBatch,
                               kChunksPerBatch * 100, /*sealed=*/true);
}

// Opens a ledger in `dir`, or marks the benchmark failed and returns null.
std::unique_ptr<Ledger> OpenOrSkip(benchmark::State& state, const ScratchDir& dir,
                                   Durability durability) {
  if (!dir.ok()) {
    state.SkipWithError("cannot create a temp directory");
    return nullptr;
  }
  auto ledger = Ledger::Open(dir.File("ledger.db"), durability);
  if (!ledger.ok()) {
    state.SkipWithError(ledger.status().ToString().c_str());
    return nullptr;
  }
  return std::move(ledger).value();
}

// Each iteration counts a chunk never seen before: one committed transaction.
void BM_Ledger_RecordChunk(benchmark::State& state, Durability durability) {
  ScratchDir dir;
  auto ledger = OpenOrSkip(state, dir, durability);
  if (!ledger) return;
  int64_t n = 0;
  for (auto _ : state) {
    if (Status s = AdmitBatchOf(*ledger, n); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
    Result<ChunkRecorded> counted = ledger->RecordChunk(Outcome(n++));
    if (!counted.ok() || counted.value() != ChunkRecorded::kCounted) {
      state.SkipWithError(counted.ok() ? "a new chunk was not counted"
                                       : counted.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Each iteration counts `group` new chunks in one group transaction, as the
// aggregator does with the chunk_done events queued behind one another.
void BM_Ledger_RecordChunkInGroups(benchmark::State& state, Durability durability) {
  ScratchDir dir;
  auto ledger = OpenOrSkip(state, dir, durability);
  if (!ledger) return;
  const int64_t group = state.range(0);
  int64_t n = 0;
  for (auto _ : state) {
    Status s = ledger->BeginGroup();
    for (int64_t i = 0; i < group && s.ok(); ++i) {
      s = AdmitBatchOf(*ledger, n);
      if (!s.ok()) break;
      Result<ChunkRecorded> counted = ledger->RecordChunk(Outcome(n++));
      if (!counted.ok()) s = counted.status();
      else if (counted.value() != ChunkRecorded::kCounted) s = Internal("a new chunk was not counted");
    }
    if (s.ok()) s = ledger->CommitGroup();
    if (!s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations() * group);
}

// Each iteration re-records one of kChunksPerBatch chunks already counted, as
// a redelivered chunk_done: the ledger must recognise and drop it.
void BM_Ledger_RecordDuplicate(benchmark::State& state, Durability durability) {
  ScratchDir dir;
  auto ledger = OpenOrSkip(state, dir, durability);
  if (!ledger) return;
  for (int64_t n = 0; n < kChunksPerBatch; ++n) {
    if (!AdmitBatchOf(*ledger, n).ok() || !ledger->RecordChunk(Outcome(n)).ok()) {
      state.SkipWithError("cannot record the chunks to duplicate");
      return;
    }
  }
  int64_t n = 0;
  for (auto _ : state) {
    Result<ChunkRecorded> counted = ledger->RecordChunk(Outcome(n++ % kChunksPerBatch));
    if (!counted.ok() || counted.value() != ChunkRecorded::kDuplicate) {
      state.SkipWithError(counted.ok() ? "a duplicate was counted twice"
                                       : counted.status().ToString().c_str());
      return;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

// Wall time: the cost is mostly waiting for fsync, not CPU.
BENCHMARK_CAPTURE(BM_Ledger_RecordChunk, normal, Durability::kNormal)->UseRealTime();
BENCHMARK_CAPTURE(BM_Ledger_RecordChunk, full, Durability::kFull)->UseRealTime();
BENCHMARK_CAPTURE(BM_Ledger_RecordChunkInGroups, normal, Durability::kNormal)
    ->ArgName("group")
    ->Arg(8)
    ->Arg(64)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Ledger_RecordChunkInGroups, full, Durability::kFull)->ArgName("group")->Arg(64)->UseRealTime();
BENCHMARK_CAPTURE(BM_Ledger_RecordDuplicate, normal, Durability::kNormal)->UseRealTime();
BENCHMARK_CAPTURE(BM_Ledger_RecordDuplicate, full, Durability::kFull)->UseRealTime();

}  // namespace
}  // namespace fanflow
