// DecodeEvent with `items_json` (the worker's decode for processors that read
// the items' text) must accept, refuse and decode exactly as the whole DOM
// does: for every example in topics/ and for what a stranger can send.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/bounded_json.h"
#include "core/event.h"
#include "core/routes.h"

namespace fanflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void ExpectDecodesAlike(const std::string& body) {
  SCOPED_TRACE(body.substr(0, 300));
  auto whole = DecodeEvent(body);
  std::string items_json = "left from an earlier chunk";
  auto kept = DecodeEvent(body, &items_json);
  ASSERT_EQ(whole.ok(), kept.ok()) << (whole.ok() ? kept : whole).status().ToString();
  if (!whole.ok()) {
    EXPECT_EQ(whole.status().message(), kept.status().message());
    return;
  }
  EXPECT_EQ(whole->id, kept->id);
  EXPECT_EQ(whole->type, kept->type);
  EXPECT_EQ(whole->subject, kept->subject);
  EXPECT_EQ(whole->correlation_id, kept->correlation_id);
  EXPECT_EQ(whole->time, kept->time);
  json data = kept->data;
  const auto items = whole->data.find("items");
  if (items != whole->data.end() && items->is_array()) {
    EXPECT_FALSE(data.contains("items")) << "items kept as text are left out of data";
    auto parsed = ParseBoundedJson(items_json, "items");
    ASSERT_TRUE(parsed.ok()) << items_json;
    data["items"] = std::move(parsed).value();
  } else {
    EXPECT_EQ(items_json, "") << "no items array, no text";
  }
  EXPECT_EQ(whole->data, data);
}

// A process_chunk whose data, after its fixed fields, is the raw JSON `rest`.
std::string Chunk(const std::string& rest) {
  return R"({"specversion":"1.0","id":"b/chunk/0","source":"t","type":"fanflow.process_chunk.v1",)"
         R"("subject":"b","correlationid":"c","data":{"chunk_index":0,"first_item":0,"item_count":2)" +
         (rest.empty() ? "" : "," + rest) + "}}";
}

TEST(ItemsText, EveryExampleInTopicsDecodesAsTheWholeDomDoes) {
  const fs::path examples = fs::path(FANFLOW_SOURCE_DIR) / "topics" / "examples";
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(examples))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_GT(files.size(), 20u);
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream body;
    body << in.rdbuf();
    ExpectDecodesAlike(body.str());
  }
}

TEST(ItemsText, RepeatedKeysKeepTheLastAsTheDomDoes) {
  ExpectDecodesAlike(Chunk(R"("items":[{"value":1}],"items":[{"value":2},{"value":3}])"));
  ExpectDecodesAlike(Chunk(R"("items":[{"value":1}],"items":{"value":2})"));  // refused: not an array
  ExpectDecodesAlike(Chunk(R"("items":{"value":2},"items":[{"value":1}])"));
  ExpectDecodesAlike(Chunk(R"("items":[1],"ref":{"path":"f","offset":0,"length":2})"));
  // A second data replaces the first, its items with it.
  std::string twice = Chunk(R"("items":[{"value":1}])");
  twice.insert(twice.size() - 1, R"(,"data":{"chunk_index":0,"first_item":0,"item_count":1,"ref":{"path":"f","offset":0,"length":2}})");
  ExpectDecodesAlike(twice);
  std::string back = Chunk(R"("ref":{"path":"f","offset":0,"length":2})");
  back.insert(back.size() - 1, R"(,"data":{"chunk_index":0,"first_item":0,"item_count":1,"items":[{"value":9}]})");
  ExpectDecodesAlike(back);
}

TEST(ItemsText, OnlyTheItemsOfDataAreKeptAsTextAndEscapedKeysCount) {
  ExpectDecodesAlike(Chunk(R"("it\u0065ms":[{"value":5}])"));
  ExpectDecodesAlike(Chunk(R"("items":[{"value":5}],"extra":{"items":[1,2]})"));
  ExpectDecodesAlike(R"({"items":[1],)" + Chunk(R"("items":[{"value":5}])").substr(1));
  ExpectDecodesAlike(Chunk(R"("items":[])"));  // an empty array is an array
}

TEST(ItemsText, TheLimitsHoldInsideKeptItems) {
  const std::string deep63 = std::string(62, '[') + std::string(62, ']');
  ExpectDecodesAlike(Chunk("\"items\":[" + deep63 + "]"));        // 64 levels with data and the root: refused
  ExpectDecodesAlike(Chunk("\"items\":[" + deep63.substr(2) + "]"));  // within the limit
  ExpectDecodesAlike(Chunk("\"items\":[\"" + std::string((1 << 20) + 1, 'x') + "\"]"));
  ExpectDecodesAlike(Chunk(R"("items":[{"value":123456789012345678901234567890}])"));  // nlohmann's path
  ExpectDecodesAlike(Chunk(R"("items":[{"value":1e999}])"));
  ExpectDecodesAlike(Chunk(R"("items":[{"value":"\ud800"}])"));
  ExpectDecodesAlike(Chunk(R"("items":[{"value":1},])"));
  ExpectDecodesAlike(Chunk("\"items\":[\"caf\xc3\xa9\",\"\\u0000\\n\\\"\"]"));
  auto refused = DecodeEvent(Chunk("\"items\":[\"" + std::string((1 << 20) + 1, 'x') + "\"]"), nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("longer than the limit"), std::string::npos);
}

}  // namespace
}  // namespace fanflow
