#include "pipeline/ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/pipeline/ledger_test_util.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

class LedgerTest : public ::testing::Test {
 protected:
  // The ledger, with batch "b1" (chunks of 10 items) admitted.
  std::unique_ptr<Ledger> OpenLedger() {
    auto l = Ledger::Open(path_, Durability::kNormal);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    if (!l.ok()) return nullptr;
    testing::AdmitBatch(*l.value(), "b1", "c1");
    return std::move(l).value();
  }
  static ChunkOutcome Done(int64_t index, int64_t value, bool ok = true) {
    return testing::Outcome(index, value, ok);
  }
  // Batch b1 has `succeeded` chunks counted, summing to `result`.
  static void ExpectCounted(Ledger& ledger, int64_t succeeded, int64_t result) {
    auto b = ledger.Get("b1");
    ASSERT_TRUE(b.ok() && b.value());
    EXPECT_EQ(b.value()->succeeded, succeeded);
    EXPECT_EQ(b.value()->result, result);
  }
  std::string path_ = testing::TempDir("ledger") + "/ledger.db";
};

TEST_F(LedgerTest, CountsARedeliveredChunkOnce) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger);
  auto first = ledger->RecordChunk(Done(0, 5));
  auto again = ledger->RecordChunk(Done(0, 5));
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(first.value(), ChunkRecorded::kCounted);
  EXPECT_EQ(again.value(), ChunkRecorded::kDuplicate);
  ExpectCounted(*ledger, 1, 5);
}

TEST_F(LedgerTest, ContinuesFromTheFileAfterARestart) {
  {
    auto ledger = OpenLedger();
    ASSERT_TRUE(ledger);
    ASSERT_TRUE(ledger->RecordChunk(Done(0, 5)).ok());
    ASSERT_TRUE(ledger->RecordProgress("b1", nlohmann::json::object(), 2, 20, /*sealed=*/true).ok());
  }
  auto reopened = OpenLedger();
  ASSERT_TRUE(reopened);
  auto dup = reopened->RecordChunk(Done(0, 5));
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup.value(), ChunkRecorded::kDuplicate) << "the restart must remember chunk 0";
  ASSERT_TRUE(reopened->RecordChunk(Done(1, 7)).ok());
  auto b = reopened->Get("b1");
  ASSERT_TRUE(b.ok() && b.value());
  EXPECT_EQ(b.value()->total_chunks, 2);
  EXPECT_EQ(b.value()->succeeded, 2);
  EXPECT_EQ(b.value()->result, 12);
}

TEST_F(LedgerTest, AFailedChunkThatLaterSucceedsCountsAsSucceeded) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->RecordChunk(Done(3, 0, false)).ok());
  auto failed = ledger->FailedChunks("b1");
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed.value(), std::vector<int64_t>{3});
  auto upgraded = ledger->RecordChunk(Done(3, 9));
  ASSERT_TRUE(upgraded.ok());
  EXPECT_EQ(upgraded.value(), ChunkRecorded::kCounted);
  auto b = ledger->Get("b1");
  EXPECT_EQ(b.value()->failed, 0);
  EXPECT_EQ(b.value()->succeeded, 1);
  EXPECT_EQ(b.value()->result, 9);
  EXPECT_TRUE(ledger->FailedChunks("b1").value().empty());
}

TEST_F(LedgerTest, KeepsTheDecidedCompletionUntilItIsAnnounced) {
  {
    auto ledger = OpenLedger();
    ASSERT_TRUE(ledger->RecordChunk(Done(0, 1)).ok());
    ASSERT_TRUE(ledger->DecideComplete("b1", "{\"first\":1}").ok());
    ASSERT_TRUE(ledger->DecideComplete("b1", "{\"second\":2}").ok());
  }
  auto ledger = OpenLedger();
  auto pending = ledger->Unannounced();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ(*pending->front().complete, "{\"first\":1}") << "the first decision is final";
  ASSERT_TRUE(ledger->MarkAnnounced("b1").ok());
  EXPECT_TRUE(ledger->Unannounced().value().empty());
}

TEST_F(LedgerTest, RedrivesOnlyLeasesOfStalledBatchesAndForgetsDoneChunks) {
  auto ledger = OpenLedger();
  const std::string page = R"({"next_chunk":0,"next_item":0,"offset":0})";
  ASSERT_TRUE(ledger->LeasePage("b1", 0, 2, page).ok());
  ASSERT_TRUE(ledger->RecordChunk(Done(1, 1)).ok());  // done: lease dropped
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  auto progressing = ledger->TakeExpiredLeases(500);
  ASSERT_TRUE(progressing.ok());
  EXPECT_TRUE(progressing->empty()) << "the batch progressed 60 ms ago";
  auto expired = ledger->TakeExpiredLeases(50);
  ASSERT_TRUE(expired.ok());
  ASSERT_EQ(expired->size(), 1u);
  EXPECT_EQ(expired->front().chunk_index, 0);
  EXPECT_EQ(expired->front().page_cursor, page);
  EXPECT_EQ(expired->front().event_json, "");
  EXPECT_EQ(expired->front().redrives, 1);
  EXPECT_TRUE(ledger->TakeExpiredLeases(50).value().empty()) << "renewed when taken";
}

// Another process (a second aggregator on the same file) holds the write lock:
// the chunk is recorded once it lets go, not refused as "database is locked".
TEST_F(LedgerTest, RecordsAChunkOnceAnotherWriterLetsGoOfTheFile) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->RecordChunk(Done(0, 5)).ok());
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::thread release([other] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr);
  });
  auto counted = ledger->RecordChunk(Done(1, 7));
  release.join();
  sqlite3_close(other);
  ASSERT_TRUE(counted.ok()) << counted.status().ToString();
  EXPECT_EQ(counted.value(), ChunkRecorded::kCounted);
  ExpectCounted(*ledger, 2, 12);
}

TEST_F(LedgerTest, KeepsTheFirstResultOfAChunkAndCountsAnotherOneAsAConflict) {
  auto ledger = OpenLedger();
  ASSERT_EQ(ledger->RecordChunk(Done(0, 5)).value(), ChunkRecorded::kCounted);
  EXPECT_EQ(ledger->RecordChunk(Done(0, 6)).value(), ChunkRecorded::kConflict);
  EXPECT_EQ(ledger->RecordChunk(Done(0, 6)).value(), ChunkRecorded::kConflict);
  EXPECT_EQ(ledger->RecordChunk(Done(0, 0, false)).value(), ChunkRecorded::kDuplicate)
      << "a failure after a success is a stale attempt, not a conflict";
  auto b = ledger->Get("b1");
  EXPECT_EQ(b.value()->result, 5);
  EXPECT_EQ(b.value()->succeeded, 1);
  EXPECT_EQ(b.value()->conflicts, 1) << "the same conflicting event again is one conflict";
}

TEST_F(LedgerTest, RefusesAChunkOfABatchItNeverAdmitted) {
  auto ledger = OpenLedger();
  ChunkOutcome c = Done(0, 5);
  c.batch_id = "ghost";
  auto r = ledger->RecordChunk(c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("subject"), std::string::npos);
  EXPECT_FALSE(ledger->Get("ghost").value()) << "no ghost batch";
}

TEST_F(LedgerTest, AdmitsABatchIdOnce) {
  auto ledger = OpenLedger();
  BatchRecord again;
  again.batch_id = "b1";
  again.request = {{"source", "range:99"}};
  auto admitted = ledger->Admit(again);
  ASSERT_TRUE(admitted.ok());
  EXPECT_FALSE(admitted.value());
  EXPECT_EQ(ledger->Get("b1").value()->request["source"], "range:1000") << "the first request stands";
}

// A write lock held by another process past the busy timeout: the chunk is
// refused as unavailable (to be retried) and nothing is written in autocommit.
TEST_F(LedgerTest, WritesNothingWhenItCannotBeginATransaction) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger->RecordChunk(Done(0, 5)).ok());
  const std::string log = testing::TempDir("ledger-holder") + "/holder.log";
  testing::BackgroundProcess holder(
      {"python3", "-c",
       "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); "
       "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(8)",
       path_},
      log);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (holder.Log().find("locked") == std::string::npos && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_NE(holder.Log().find("locked"), std::string::npos) << holder.Log();
  auto counted = ledger->RecordChunk(Done(1, 7));
  ASSERT_FALSE(counted.ok());
  EXPECT_EQ(counted.status().code(), StatusCode::kUnavailable) << counted.status().ToString();
  holder.Signal(SIGKILL);
  holder.Wait(std::chrono::seconds(5));
  auto b = ledger->Get("b1");
  ASSERT_TRUE(b.ok() && b.value());
  EXPECT_EQ(b.value()->succeeded, 1) << "nothing of chunk 1 was written";
  EXPECT_EQ(b.value()->result, 5);
  ASSERT_TRUE(ledger->RecordChunk(Done(1, 7)).ok()) << "recorded once the lock is gone";
}

// What a reader on another connection (`fanflow status`, serve) sees of b1.
int64_t SucceededSeenByAnotherConnection(const std::string& path) {
  sqlite3* other = nullptr;
  int64_t succeeded = -1;
  if (sqlite3_open_v2(path.c_str(), &other, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK)
    sqlite3_exec(
        other, "SELECT succeeded FROM batches WHERE batch_id='b1'",
        [](void* out, int, char** values, char**) {
          *static_cast<int64_t*>(out) = std::stoll(values[0]);
          return 0;
        },
        &succeeded, nullptr);
  sqlite3_close(other);
  return succeeded;
}

TEST_F(LedgerTest, AGroupIsDurableOnlyOnceItCommitsAndEachMemberCountsOnce) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->BeginGroup().ok());
  ASSERT_TRUE(ledger->RecordChunk(Done(0, 5)).ok());
  auto again = ledger->RecordChunk(Done(0, 5));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), ChunkRecorded::kDuplicate) << "a member sees what the group wrote before it";
  ASSERT_TRUE(ledger->RecordChunk(Done(1, 7)).ok());
  EXPECT_EQ(SucceededSeenByAnotherConnection(path_), 0) << "nothing is durable before the commit";
  ASSERT_TRUE(ledger->CommitGroup().ok());
  EXPECT_EQ(SucceededSeenByAnotherConnection(path_), 2);
  ASSERT_TRUE(ledger->CommitGroup().ok()) << "committing no group is a no-op";
  ExpectCounted(*ledger, 2, 12);
}

TEST_F(LedgerTest, AMemberThatFailsInsideAGroupUndoesOnlyItsOwnWrites) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger);
  ASSERT_TRUE(ledger->BeginGroup().ok());
  ASSERT_TRUE(ledger->RecordChunk(Done(0, 5)).ok());
  ChunkOutcome unknown = Done(1, 7);
  unknown.batch_id = "never-admitted";
  EXPECT_FALSE(ledger->RecordChunk(unknown).ok());
  ASSERT_TRUE(ledger->RecordChunk(Done(2, 9)).ok());
  ASSERT_TRUE(ledger->CommitGroup().ok());
  ExpectCounted(*ledger, 2, 14);
}

TEST_F(LedgerTest, AGroupWaitsOutAnotherWritersLockThenHoldsItUntilItCommits) {
  auto ledger = OpenLedger();
  ASSERT_TRUE(ledger);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  sqlite3_busy_timeout(other, 0);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  std::thread release([other] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr);
  });
  const Status began = ledger->BeginGroup();  // waits out the holder within the busy timeout
  release.join();
  ASSERT_TRUE(began.ok()) << began.ToString();
  ASSERT_TRUE(ledger->RecordChunk(Done(0, 5)).ok());
  // The group holds the write lock now: another writer is turned away.
  EXPECT_NE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_TRUE(ledger->CommitGroup().ok());
  EXPECT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
}

TEST_F(LedgerTest, RefusesAFileThatIsNotALedger) {
  std::string bad = testing::TempDir("ledger-bad") + "/not-a-db";
  std::ofstream(bad) << "this is not sqlite, it is plain text that goes on for a while........";
  auto l = Ledger::Open(bad, Durability::kNormal);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find(bad), std::string::npos);
}

}  // namespace
}  // namespace fanflow
