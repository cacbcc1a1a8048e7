#include "pipeline/source.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

// Walks a source page by page the way continuations do, reopening it for
// every page as a restarted ventilator would.
std::vector<Chunk> WalkInPages(const std::string& spec, int64_t chunk_size, int64_t page_chunks,
                               int64_t claim_check_bytes = 0) {
  std::vector<Chunk> all;
  Cursor cursor;
  for (int guard = 0; guard < 100000; ++guard) {
    auto source = OpenSource(spec, claim_check_bytes);
    EXPECT_TRUE(source.ok()) << source.status().ToString();
    auto page = source.value()->ReadPage(cursor, chunk_size, page_chunks);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    for (auto& c : page->chunks) all.push_back(c);
    cursor = page->next;
    if (page->last) break;
  }
  return all;
}

std::string WriteJsonl(int n, const std::string& extra = "") {
  std::string path = testing::TempDir("source") + "/items.jsonl";
  std::ofstream out(path);
  for (int i = 0; i < n; ++i) out << "{\"id\":" << i << ",\"value\":" << i % 7 << "}\n";
  out << extra;
  return path;
}

TEST(SourceTest, RangeIsDeterministicAndWithinZeroToAThousand) {
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(RangeItemValue(7, i), RangeItemValue(7, i));
    EXPECT_GE(RangeItemValue(7, i), 0);
    EXPECT_LE(RangeItemValue(7, i), 1000);
  }
  EXPECT_NE(RangeItemValue(1, 5), RangeItemValue(2, 5));
}

TEST(SourceTest, RangeInPagesCoversEveryItemOnceWithAShortLastChunk) {
  auto chunks = WalkInPages("range:1005:3", 100, 4);
  ASSERT_EQ(chunks.size(), 11u);
  int64_t next = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i].index, static_cast<int64_t>(i));
    EXPECT_EQ(chunks[i].first_item, next);
    for (const auto& item : chunks[i].items) {
      EXPECT_EQ(item["id"], next);
      EXPECT_EQ(item["value"], RangeItemValue(3, next));
      ++next;
    }
  }
  EXPECT_EQ(next, 1005);
  EXPECT_EQ(chunks.back().item_count, 5);
}

TEST(SourceTest, JsonlResumedPageByPageReadsWhatOneWalkReads) {
  std::string path = WriteJsonl(2345, "\n  \n");
  auto paged = WalkInPages("jsonl:" + path, 10, 7);
  auto whole = WalkInPages("jsonl:" + path, 10, 100000);
  ASSERT_EQ(paged.size(), 235u);
  ASSERT_EQ(paged.size(), whole.size());
  for (size_t i = 0; i < paged.size(); ++i) EXPECT_EQ(paged[i].items, whole[i].items) << i;
  EXPECT_EQ(paged.back().items.back()["id"], 2344);
}

TEST(SourceTest, JsonlLargeChunksTravelAsClaimChecksThatLoadTheSameItems) {
  std::string path = WriteJsonl(50);
  auto inline_chunks = WalkInPages("jsonl:" + path, 10, 100, 0);
  auto checked = WalkInPages("jsonl:" + path, 10, 100, 64);
  ASSERT_EQ(checked.size(), inline_chunks.size());
  for (size_t i = 0; i < checked.size(); ++i) {
    ASSERT_TRUE(checked[i].ref.has_value());
    auto items = LoadClaimCheck(*checked[i].ref);
    ASSERT_TRUE(items.ok()) << items.status().ToString();
    EXPECT_EQ(items.value(), inline_chunks[i].items);
  }
}

TEST(SourceTest, JsonlNamesTheItemThatIsNotAnObject) {
  std::string path = WriteJsonl(3, "{broken\n");
  auto source = OpenSource("jsonl:" + path, 0);
  ASSERT_TRUE(source.ok());
  auto page = source.value()->ReadPage({}, 10, 10);
  ASSERT_FALSE(page.ok());
  EXPECT_NE(page.status().message().find("item 3"), std::string::npos) << page.status().message();
}

TEST(SourceTest, BadSpecsAreRejectedWithTheExpectedForms) {
  for (const char* bad : {"range:", "range:x", "range:10:y", "jsonl:", "ftp://x", ""}) {
    auto s = OpenSource(bad, 0);
    EXPECT_FALSE(s.ok()) << bad;
  }
  auto missing = OpenSource("jsonl:/nonexistent/file.jsonl", 0);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no such file"), std::string::npos);
  auto unknown = OpenSource("ftp://x", 0);
  EXPECT_NE(unknown.status().message().find("range:N[:SEED]"), std::string::npos);
}

}  // namespace
}  // namespace fanflow
