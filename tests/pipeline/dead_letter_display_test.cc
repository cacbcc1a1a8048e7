// `fanflow dlq` shows what it exists to show: any body, whatever its bytes.
#include <gtest/gtest.h>

#include <string>

#include "core/printable.h"
#include "pipeline/dead_letters.h"

namespace fanflow {
namespace {

DeadLetter Letter(std::string body,
                  std::string reason = "malformed JSON: body is not a JSON document") {
  return DeadLetter{
      "workers", "fanflow.process_chunk.v1", "id-1", std::move(body), std::move(reason),
      1,         "2026-12-01T00:00:00.000Z"};
}

TEST(DeadLetterDisplay, ABinaryBodyIsListedAsTextAndExactBase64WithoutThrowing) {
  const std::string body("\xff\xfe\x00\x01 bin\xc3", 9);
  nlohmann::json j = DeadLetterToJson(Letter(body), true);
  std::string line;
  ASSERT_NO_THROW(line = DumpForDisplay(j));
  EXPECT_EQ(j["event_base64"], Base64(body));
  const auto back = nlohmann::json::parse(line);  // valid JSON, valid UTF-8
  EXPECT_EQ(back["category"], "malformed_json");
  EXPECT_TRUE(back["event"].is_string());
}

TEST(DeadLetterDisplay, AJsonBodyIsShownAsJsonWithItsBatchAndChunk) {
  nlohmann::json j = DeadLetterToJson(
      Letter(R"({"subject":"b-1","data":{"chunk_index":4,"items":[1]}})", "data.x: is required"),
      true);
  EXPECT_EQ(j["batch_id"], "b-1");
  EXPECT_EQ(j["chunk_index"], 4);
  EXPECT_EQ(j["event"]["data"]["items"][0], 1);
  EXPECT_FALSE(j.contains("event_base64"));
  EXPECT_EQ(j["category"], "schema");
}

TEST(DeadLetterDisplay, ATooDeepBodyIsShownAsTextNotParsedIntoADeepTree) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  nlohmann::json j =
      DeadLetterToJson(Letter(deep, "body: JSON nested deeper than 64 levels"), true);
  EXPECT_TRUE(j["event"].is_string());
  EXPECT_EQ(j["category"], "limits");
  EXPECT_NO_THROW(DumpForDisplay(j, 2));
}

TEST(DeadLetterDisplay, AReasonOrIdWithInvalidUtf8IsDumpedWithReplacements) {
  DeadLetter d = Letter("{}", "handler threw: \xff");
  d.id = "id-\xfe";
  std::string line;
  ASSERT_NO_THROW(line = DumpForDisplay(DeadLetterToJson(d, false)));
  EXPECT_NO_THROW(nlohmann::json::parse(line));
}

}  // namespace
}  // namespace fanflow
