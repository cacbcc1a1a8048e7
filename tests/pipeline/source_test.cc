#include "pipeline/source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

namespace fs = std::filesystem;

SourcePolicy Allow(const std::vector<std::string>& dirs, bool stdin_too = false) {
  auto policy = SourcePolicy::Make(dirs, stdin_too);
  EXPECT_TRUE(policy.ok()) << policy.status().ToString();
  return policy.ok() ? policy.value() : SourcePolicy();
}

// The directory a test's file lives in: what a test allows.
SourcePolicy AllowDirOf(const std::string& path) {
  return Allow({fs::path(path).parent_path().string()});
}

// A chunk's items, parsed (the ventilator sends them as text).
nlohmann::json ItemsOf(const Chunk& c) { return nlohmann::json::parse(c.items_json); }

// Walks a source page by page the way fan-out steps do, reopening it for
// every page as a restarted ventilator would.
std::vector<Chunk> WalkInPages(const std::string& spec, int64_t chunk_size, int64_t page_chunks,
                               int64_t claim_check_bytes = 0) {
  std::vector<Chunk> all;
  Cursor cursor;
  const SourcePolicy policy =
      spec.rfind("jsonl:", 0) == 0 ? AllowDirOf(spec.substr(6)) : SourcePolicy();
  for (int guard = 0; guard < 100000; ++guard) {
    auto source = OpenSource(spec, claim_check_bytes, policy);
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
    for (const auto& item : ItemsOf(chunks[i])) {
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
  for (size_t i = 0; i < paged.size(); ++i) EXPECT_EQ(paged[i].items_json, whole[i].items_json) << i;
  EXPECT_EQ(ItemsOf(paged.back()).back()["id"], 2344);
}

TEST(SourceTest, JsonlLargeChunksTravelAsClaimChecksThatLoadTheSameItems) {
  std::string path = WriteJsonl(50);
  auto inline_chunks = WalkInPages("jsonl:" + path, 10, 100, 0);
  auto checked = WalkInPages("jsonl:" + path, 10, 100, 64);
  ASSERT_EQ(checked.size(), inline_chunks.size());
  for (size_t i = 0; i < checked.size(); ++i) {
    ASSERT_TRUE(checked[i].ref.has_value());
    auto items = LoadClaimCheck(*checked[i].ref, AllowDirOf(path));
    ASSERT_TRUE(items.ok()) << items.status().ToString();
    EXPECT_EQ(items.value(), ItemsOf(inline_chunks[i]));
  }
}

TEST(SourceTest, JsonlNamesTheItemThatIsNotAnObject) {
  std::string path = WriteJsonl(3, "{broken\n");
  auto source = OpenSource("jsonl:" + path, 0, AllowDirOf(path));
  ASSERT_TRUE(source.ok());
  auto page = source.value()->ReadPage({}, 10, 10);
  ASSERT_FALSE(page.ok());
  EXPECT_NE(page.status().message().find("item 3"), std::string::npos) << page.status().message();
}

TEST(SourceTest, BadSpecsAreRejectedWithTheExpectedForms) {
  for (const char* bad : {"range:", "range:x", "range:10:y", "jsonl:", "ftp://x", ""}) {
    auto s = OpenSource(bad, 0, SourcePolicy());
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().message().rfind("data.source: ", 0), 0u) << s.status().message();
    EXPECT_FALSE(CheckSourceSpec(bad).ok()) << bad;
  }
  const std::string dir = testing::TempDir("source-missing");
  auto missing = OpenSource("jsonl:" + dir + "/file.jsonl", 0, Allow({dir}));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("no such file"), std::string::npos)
      << "inside the roots, the error may say so";
  auto unknown = OpenSource("ftp://x", 0, SourcePolicy());
  EXPECT_NE(unknown.status().message().find("range:N[:SEED]"), std::string::npos);
  for (const char* good : {"range:10", "range:10:3", "jsonl:x.jsonl", "-"})
    EXPECT_TRUE(CheckSourceSpec(good).ok()) << good;
}

// A tree for the policy tests: <base>/data (the root) holding items.jsonl,
// <base>/data2 and <base>/outside each holding a secret.jsonl.
struct Tree {
  Tree() : base(testing::TempDir("policy")) {
    for (const char* d : {"data", "data/sub", "data2", "outside"})
      fs::create_directory(base + "/" + d);
    std::ofstream(base + "/data/items.jsonl") << "{\"value\":1}\n{\"value\":2}\n";
    std::ofstream(base + "/data2/secret.jsonl") << "{\"api_key\":\"x\"}\n";
    std::ofstream(base + "/outside/secret.jsonl") << "{\"api_key\":\"y\"}\n";
  }
  std::string root() const { return base + "/data"; }
  SourcePolicy policy() const { return Allow({root()}); }
  const std::string base;
};

constexpr const char* kSourceRefused = "data.source: path is not under an allowed --data-dir";
constexpr const char* kRefRefused = "data.ref.path: path is not under an allowed --data-dir";

std::string OpenError(const std::string& spec, const SourcePolicy& policy) {
  auto s = OpenSource(spec, 0, policy);
  return s.ok() ? "opened" : s.status().message();
}

std::string LoadError(const ClaimCheck& ref, const SourcePolicy& policy) {
  auto items = LoadClaimCheck(ref, policy);
  return items.ok() ? "loaded" : items.status().message();
}

TEST(SourcePolicyTest, AFileOutsideTheRootsIsRefusedWithOneErrorWhetherItExistsOrNot) {
  Tree t;
  for (const std::string& path :
       {t.base + "/outside/secret.jsonl", t.base + "/outside/missing.jsonl",
        t.base + "/nowhere/x.jsonl", std::string("/etc/passwd"), std::string("/etc/shadow"),
        std::string("/etc/no-such-file")})
    EXPECT_EQ(OpenError("jsonl:" + path, t.policy()), kSourceRefused) << path;
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/items.jsonl", t.policy()), "opened");
}

TEST(SourcePolicyTest, WithoutRootsNoFileAndNoStdinIsRead) {
  Tree t;
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/items.jsonl", SourcePolicy()), kSourceRefused);
  EXPECT_EQ(OpenError("-", t.policy()),
            "data.source: '-' (stdin) is read only by the submitting process");
  EXPECT_EQ(OpenError("-", Allow({}, true)), "opened");
  EXPECT_EQ(OpenError("range:10", SourcePolicy()), "opened");
}

TEST(SourcePolicyTest, DotDotIsResolvedBeforeTheCheck) {
  Tree t;
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/sub/../../outside/secret.jsonl", t.policy()),
            kSourceRefused);
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/../data2/secret.jsonl", t.policy()), kSourceRefused);
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/sub/../items.jsonl", t.policy()), "opened");
  const std::string nul = "jsonl:" + t.root() + "/items.jsonl" + std::string(1, '\0') +
                          "/../../../outside/secret.jsonl";
  EXPECT_EQ(OpenError(nul, t.policy()), kSourceRefused) << "a NUL byte cuts no path short";
}

TEST(SourcePolicyTest, ASymlinkInsideARootThatLeadsOutIsRefused) {
  Tree t;
  fs::create_symlink(t.base + "/outside/secret.jsonl", t.root() + "/file-link.jsonl");
  fs::create_directory_symlink(t.base + "/outside", t.root() + "/dir-link");
  fs::create_symlink(t.base + "/outside/missing.jsonl", t.root() + "/dangling.jsonl");
  fs::create_directory_symlink(t.base + "/outside/missing-dir", t.root() + "/dangling-dir");
  fs::create_symlink(t.root() + "/items.jsonl", t.root() + "/inner-link.jsonl");
  for (const char* name : {"/file-link.jsonl", "/dir-link/secret.jsonl", "/dir-link/missing.jsonl",
                           "/dangling.jsonl", "/dangling-dir/x.jsonl"})
    EXPECT_EQ(OpenError(std::string("jsonl:") + t.root() + name, t.policy()), kSourceRefused)
        << name;
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/inner-link.jsonl", t.policy()), "opened")
      << "a link that stays inside is fine";
}

TEST(SourcePolicyTest, ALinkSwappedInBetweenTheCheckAndTheOpenDoesNotLeadOut) {
  Tree t;
  // root/swap flips between a directory inside (value 1) and a link to outside (value 2).
  fs::create_directory(t.root() + "/real");
  std::ofstream(t.root() + "/real/items.jsonl") << "{\"value\":1}\n";
  std::ofstream(t.base + "/outside/items.jsonl") << "{\"value\":2}\n";
  fs::create_directory_symlink(t.base + "/outside", t.root() + "/link");
  const std::string swap = t.root() + "/swap", real = t.root() + "/real", link = t.root() + "/link";
  std::atomic<bool> stop{false};
  std::thread flipper([&] {
    while (!stop) {
      std::rename(real.c_str(), swap.c_str());
      std::rename(swap.c_str(), real.c_str());
      std::rename(link.c_str(), swap.c_str());
      std::rename(swap.c_str(), link.c_str());
    }
  });
  const SourcePolicy policy = t.policy();
  int inside = 0, outside = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (std::chrono::steady_clock::now() < until) {
    auto source = OpenSource("jsonl:" + swap + "/items.jsonl", 0, policy);
    if (!source.ok()) continue;
    auto page = source.value()->ReadPage({}, 10, 1);
    if (!page.ok() || page->chunks.empty()) continue;
    (ItemsOf(page->chunks[0])[0]["value"] == 1 ? inside : outside)++;
  }
  stop = true;
  flipper.join();
  EXPECT_EQ(outside, 0) << "read outside the root " << outside << " times (and inside " << inside
                        << ")";
  EXPECT_GT(inside, 0) << "the swap never showed the directory inside";
}

TEST(SourcePolicyTest, RootsAreComparedByComponentsNotAsStringPrefixes) {
  Tree t;
  EXPECT_EQ(OpenError("jsonl:" + t.base + "/data2/secret.jsonl", t.policy()), kSourceRefused);
  const SourcePolicy p = t.policy();
  const fs::path root = fs::canonical(t.root());
  EXPECT_TRUE(p.Contains(root));
  EXPECT_TRUE(p.Contains(root / "sub" / "x"));
  EXPECT_FALSE(p.Contains(root.parent_path() / "data2" / "x"));
  EXPECT_FALSE(p.Contains(root.parent_path()));
  EXPECT_FALSE(p.Contains("data/x")) << "a relative path is never inside";
}

TEST(SourcePolicyTest, RootsAndRelativePathsAreResolvedToo) {
  Tree t;
  fs::create_directory_symlink(t.root(), t.base + "/data-link");
  const SourcePolicy through_link = Allow({t.base + "/data-link/sub/.."});
  ASSERT_EQ(through_link.roots().size(), 1u);
  EXPECT_EQ(through_link.roots()[0], fs::canonical(t.root()));
  EXPECT_EQ(OpenError("jsonl:" + t.root() + "/items.jsonl", through_link), "opened");
  const fs::path relative = fs::relative(t.root() + "/items.jsonl", fs::current_path());
  EXPECT_EQ(OpenError("jsonl:" + relative.string(), t.policy()), "opened") << relative;
}

TEST(SourcePolicyTest, ADataDirThatIsMissingOrNotADirectoryIsAnError) {
  Tree t;
  for (const std::string& bad :
       {t.base + "/no-such-dir", t.root() + "/items.jsonl", std::string()}) {
    auto p = SourcePolicy::Make({t.root(), bad}, false);
    ASSERT_FALSE(p.ok()) << bad;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(p.status().message().rfind("--data-dir '" + bad + "': ", 0), 0u)
        << p.status().message();
  }
}

TEST(SourcePolicyTest, OnlyRegularFilesAreRead) {
  Tree t;
  ASSERT_EQ(mkfifo((t.root() + "/fifo").c_str(), 0600), 0);
  EXPECT_NE(OpenError("jsonl:" + t.root() + "/fifo", t.policy()).find("not a regular file"),
            std::string::npos);
  EXPECT_NE(OpenError("jsonl:" + t.root() + "/sub", t.policy()).find("not a regular file"),
            std::string::npos);
}

TEST(ClaimCheckTest, AClaimCheckOutsideTheRootsIsRefusedWithOneErrorWhetherTheFileExistsOrNot) {
  Tree t;
  for (const std::string& path :
       {std::string("/etc/shadow"), std::string("/etc/passwd"), std::string("/etc/no-such-file"),
        t.base + "/outside/secret.jsonl", t.root() + "/../data2/secret.jsonl",
        t.base + "/outside/missing"}) {
    EXPECT_EQ(LoadError({path, 0, 10}, t.policy()), kRefRefused) << path;
    EXPECT_EQ(LoadError({path, 1000000, 10}, t.policy()), kRefRefused) << "no size leaks: " << path;
  }
  fs::create_symlink(t.base + "/outside/secret.jsonl", t.root() + "/link");
  EXPECT_EQ(LoadError({t.root() + "/link", 0, 10}, t.policy()), kRefRefused);
  EXPECT_EQ(LoadError({t.root() + "/items.jsonl", 0, 12}, SourcePolicy()), kRefRefused);
}

TEST(ClaimCheckTest, LengthsAreBoundedAndMustLieInsideTheFile) {
  Tree t;
  const std::string items = t.root() + "/items.jsonl";  // 24 bytes
  auto whole = LoadClaimCheck({items, 0, 24}, t.policy());
  ASSERT_TRUE(whole.ok()) << whole.status().ToString();
  EXPECT_EQ(whole->size(), 2u);
  auto second = LoadClaimCheck({items, 12, 12}, t.policy());
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ((*second)[0]["value"], 2);
  struct Case {
    int64_t offset, length;
  };
  for (const Case& c : {Case{0, 1000000000000}, Case{0, kMaxClaimCheckBytes + 1},
                        Case{0, INT64_MAX}, Case{INT64_MAX, INT64_MAX}, Case{INT64_MAX, 1},
                        Case{20, 5}, Case{24, 1}, Case{0, 25}, Case{0, 0}})
    EXPECT_EQ(LoadError({items, c.offset, c.length}, t.policy()).rfind("data.ref.length: ", 0), 0u)
        << c.offset << "+" << c.length << ": "
        << LoadError({items, c.offset, c.length}, t.policy());
  EXPECT_EQ(LoadError({items, -1, 5}, t.policy()).rfind("data.ref.offset: ", 0), 0u);
}

}  // namespace
}  // namespace fanflow
