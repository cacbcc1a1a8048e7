#include "pipeline/ledger_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <fstream>

#include "pipeline/batch_report.h"
#include "tests/pipeline/ledger_test_util.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

std::string Bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ChunkOutcome Done(int64_t index, bool ok) {
  ChunkOutcome c = testing::Outcome(index, 1, ok);
  c.attempts = ok ? 1 : 3;
  return c;
}

TEST(LedgerReaderTest, AMissingPathIsAnErrorAndNoFileIsCreated) {
  const std::string path = testing::TempDir("reader") + "/none.db";
  auto r = LedgerReader::Open(path, "--ledger");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--ledger"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(LedgerReaderTest, AFileThatIsNoLedgerIsRefused) {
  const std::string path = testing::TempDir("reader") + "/text.db";
  std::ofstream(path) << "not a database";
  EXPECT_FALSE(LedgerReader::Open(path, "--ledger").ok());
  EXPECT_EQ(Bytes(path), "not a database");
}

TEST(LedgerReaderTest, ReadsWhatTheAggregatorWroteAndChangesNothing) {
  const std::string dir = testing::TempDir("reader");
  const std::string path = dir + "/ledger.db";
  {
    auto l = Ledger::Open(path, Durability::kNormal);
    ASSERT_TRUE(l.ok());
    testing::AdmitBatch(*l.value(), "b1", "c1", 5);
    ASSERT_TRUE(l.value()->RecordChunk(Done(0, true)).ok());
    ASSERT_TRUE(l.value()->RecordChunk(Done(2, false)).ok());
  }  // closed: its WAL is checkpointed and removed
  const std::string before = Bytes(path);
  auto reader = LedgerReader::Open(path, "--ledger");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto b = reader.value()->Get("b1");
  ASSERT_TRUE(b.ok() && b.value());
  EXPECT_EQ(BatchState(*b.value()), "sealed");
  auto x = ExplainBatch(*reader.value(), *b.value(), nullptr, b.value()->updated_ms);
  ASSERT_TRUE(x.ok()) << x.status().ToString();
  const nlohmann::json& e = x.value()["explain"];
  ASSERT_EQ(e["failed"].size(), 1u);
  EXPECT_EQ(e["failed"][0]["chunk_index"], 2);
  EXPECT_EQ(e["failed"][0]["error"], "boom");
  EXPECT_EQ(e["failed"][0]["attempts"], 3);
  EXPECT_EQ(e["outstanding_count"], 3);
  std::vector<int64_t> outstanding;
  for (const auto& c : e["outstanding"]) outstanding.push_back(c["chunk_index"].get<int64_t>());
  EXPECT_EQ(outstanding, (std::vector<int64_t>{1, 3, 4}));
  EXPECT_FALSE(e.contains("not_published"));
  EXPECT_EQ(x.value()["done"], 2);
  reader.value().reset();
  EXPECT_EQ(Bytes(path), before) << "the reader changed the file";
  // SQLite's readers of a WAL file share its -shm index (made if missing); the
  // log itself stays empty: nothing was written.
  EXPECT_FALSE(std::filesystem::exists(path + "-journal"));
  if (std::filesystem::exists(path + "-wal"))
    EXPECT_EQ(std::filesystem::file_size(path + "-wal"), 0u);
}

TEST(LedgerReaderTest, ADecidedBatchIsCompleteOrCancelledByItsStatus) {
  const std::string path = testing::TempDir("reader") + "/ledger.db";
  auto l = Ledger::Open(path, Durability::kNormal);
  ASSERT_TRUE(l.ok());
  testing::AdmitBatch(*l.value(), "b1", "c1", 1);
  testing::AdmitBatch(*l.value(), "b2", "c2", 1);
  ASSERT_TRUE(l.value()->DecideComplete("b1", R"({"data":{"status":"partial"}})").ok());
  ASSERT_TRUE(l.value()->DecideComplete("b2", R"({"data":{"status":"cancelled"}})").ok());
  auto reader = LedgerReader::Open(path, "--ledger");
  ASSERT_TRUE(reader.ok());
  auto decided = reader.value()->RecentlyDecided(10);
  ASSERT_TRUE(decided.ok());
  ASSERT_EQ(decided->size(), 2u);
  std::map<std::string, std::string> states;
  for (const BatchRecord& b : decided.value()) states[b.batch_id] = BatchState(b);
  EXPECT_EQ(states["b1"], "complete");
  EXPECT_EQ(states["b2"], "cancelled");
  auto x = ExplainBatch(*reader.value(), decided->front(), nullptr, 0);
  ASSERT_TRUE(x.ok());
  EXPECT_TRUE(x.value()["explain"].contains("outcome"));
  EXPECT_EQ(reader.value()->RecentlyDecided(1)->size(), 1u);
}

TEST(LedgerReaderTest, ExplainsAnUnsealedBatchsFanOutPosition) {
  const std::string path = testing::TempDir("reader") + "/ledger.db";
  auto l = Ledger::Open(path, Durability::kNormal);
  ASSERT_TRUE(l.ok());
  testing::AdmitBatch(*l.value(), "b1", "c1");
  ASSERT_TRUE(l.value()
                  ->RecordProgress("b1", {{"offset", 0}, {"next_chunk", 4}, {"next_item", 40}}, 4,
                                   40, false)
                  .ok());
  // The aggregator keeps its connection open while the reader reads.
  auto reader = LedgerReader::Open(path, "--ledger");
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto b = reader.value()->Get("b1");
  ASSERT_TRUE(b.ok() && b.value());
  EXPECT_EQ(BatchState(*b.value()), "open");
  auto x = ExplainBatch(*reader.value(), *b.value(), nullptr, b.value()->updated_ms);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x.value()["explain"]["not_published"]["from_chunk"], 4);
  EXPECT_EQ(x.value()["explain"]["outstanding_count"], 4);
  EXPECT_TRUE(x.value()["progress"].is_null());
  ASSERT_TRUE(l.value()->RecordChunk(Done(1, true)).ok());
  auto again = reader.value()->Get("b1");
  ASSERT_TRUE(again.ok() && again.value());
  EXPECT_EQ(again.value()->succeeded, 1) << "the reader sees the aggregator's later commits";
}

}  // namespace
}  // namespace fanflow
