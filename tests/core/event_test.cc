// The CloudEvents codec against the published contract in topics/: every
// example there is decoded by the C++ codec, and (when python3 has jsonschema)
// checked against the JSON Schemas, so the two can never disagree.
#include "core/event.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string_view>

#include "core/bounded_json.h"
#include "core/routes.h"
#include "tests/support/require_env.h"

namespace fanflow {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kTopics = fs::path(FANFLOW_SOURCE_DIR) / "topics";
constexpr char kValid[] = "valid";
constexpr char kInvalid[] = "invalid";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream body;
  body << in.rdbuf();
  return body.str();
}

// topics/examples/<short>/<kind>/*.json, sorted so failures read in a stable order.
std::vector<fs::path> Examples(const std::string& type, const char* kind) {
  std::vector<fs::path> files;
  const fs::path dir = kTopics / "examples" / routes::ShortName(type) / kind;
  if (!fs::is_directory(dir)) return files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().extension() == ".json") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string Trimmed(std::string s) {
  const auto blank = [](unsigned char c) { return std::isspace(c) != 0; };
  s.erase(std::find_if_not(s.rbegin(), s.rend(), blank).base(), s.end());
  s.erase(s.begin(), std::find_if_not(s.begin(), s.end(), blank));
  return s;
}

void ExpectSameEvent(const Event& want, const Event& got) {
  EXPECT_EQ(want.id, got.id);
  EXPECT_EQ(want.source, got.source);
  EXPECT_EQ(want.type, got.type);
  EXPECT_EQ(want.time, got.time);
  EXPECT_EQ(want.subject, got.subject);
  EXPECT_EQ(want.correlation_id, got.correlation_id);
  EXPECT_EQ(want.data, got.data);
}

TEST(EventExamples, EveryValidExampleDecodesAndReencodesToTheSameDocument) {
  for (const std::string& type : KnownEventTypes()) {
    const auto files = Examples(type, kValid);
    EXPECT_FALSE(files.empty()) << "no valid example for " << type;
    for (const fs::path& file : files) {
      SCOPED_TRACE(file.string());
      const std::string body = ReadFile(file);
      auto event = DecodeEvent(body);
      ASSERT_TRUE(event.ok()) << event.status().ToString();
      EXPECT_EQ(event->type, type) << "example filed under the wrong type";

      // The encoder always writes the (optional) datacontenttype; nothing else changes.
      json original = json::parse(body);
      if (!original.contains("datacontenttype")) original["datacontenttype"] = "application/json";
      const std::string reencoded = EncodeEvent(*event);
      EXPECT_EQ(json::parse(reencoded), original);
      auto again = DecodeEvent(reencoded);
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      ExpectSameEvent(*event, *again);
    }
  }
}

TEST(EventExamples, EveryInvalidExampleIsRejectedNamingTheFieldInItsSidecar) {
  for (const std::string& type : KnownEventTypes()) {
    const auto files = Examples(type, kInvalid);
    EXPECT_FALSE(files.empty()) << "no invalid example for " << type;
    for (const fs::path& file : files) {
      SCOPED_TRACE(file.string());
      const fs::path sidecar = fs::path(file).replace_extension(".field");
      ASSERT_TRUE(fs::is_regular_file(sidecar)) << "missing " << sidecar;
      const std::string field = Trimmed(ReadFile(sidecar));
      ASSERT_FALSE(field.empty()) << sidecar << " is empty";
      auto event = DecodeEvent(ReadFile(file));
      ASSERT_FALSE(event.ok()) << "accepted an invalid example";
      EXPECT_EQ(event.status().code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(event.status().message().rfind(field + ":", 0), 0u)
          << "error \"" << event.status().message() << "\" does not start with \"" << field
          << ":\"";
    }
  }
}

// A folder for a type the code does not know, or a sidecar without its example,
// would sit there untested.
TEST(EventExamples, ExampleFoldersAndSidecarsAllBelongToAKnownType) {
  std::set<std::string> shorts;
  for (const std::string& type : KnownEventTypes()) shorts.insert(routes::ShortName(type));
  int folders = 0;
  for (const auto& entry : fs::directory_iterator(kTopics / "examples")) {
    ++folders;
    const std::string name = entry.path().filename().string();
    EXPECT_TRUE(entry.is_directory() && shorts.count(name)) << "unexpected " << entry.path();
    for (const char* kind : {kValid, kInvalid}) {
      if (!fs::is_directory(entry.path() / kind)) continue;
      for (const auto& file : fs::directory_iterator(entry.path() / kind)) {
        const fs::path ext = file.path().extension();
        EXPECT_TRUE(ext == ".json" || (std::string_view(kind) == kInvalid && ext == ".field"))
            << file.path();
        if (ext == ".field") {
          EXPECT_TRUE(fs::exists(fs::path(file.path()).replace_extension(".json")))
              << "orphan sidecar " << file.path();
        }
      }
    }
  }
  EXPECT_EQ(folders, static_cast<int>(shorts.size()));
}

TEST(EventSchemas, EveryKnownTypeHasADraft202012SchemaPinningItsType) {
  for (const std::string& type : KnownEventTypes()) {
    const fs::path path = kTopics / (routes::ShortName(type) + ".schema.json");
    SCOPED_TRACE(path.string());
    ASSERT_TRUE(fs::is_regular_file(path));
    const json schema = json::parse(ReadFile(path), nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(schema.is_object()) << "not a JSON object";
    EXPECT_EQ(schema.value("$schema", ""), "https://json-schema.org/draft/2020-12/schema");
    EXPECT_EQ(schema["properties"]["type"]["const"], type);
  }
}

// Runs topics/validate_examples.py: valid examples must pass their schema, invalid
// ones must fail it at the sidecar's field.
TEST(EventSchemas, SchemasAcceptTheValidAndRejectTheInvalidExamples) {
  FANFLOW_REQUIRE_OR_SKIP(std::system("python3 -c 'import jsonschema' >/dev/null 2>&1") == 0,
                          "python3 has no jsonschema module (Debian: python3-jsonschema)");
  const std::string command = "python3 '" + (kTopics / "validate_examples.py").string() + "' '" +
                              kTopics.string() + "' 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr) << command;
  std::string output;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int status = pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status)) << command;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_NE(output.find(": ok"), std::string::npos) << output;
}

TEST(EventCodec, EncodeDecodeRoundTripKeepsEveryAttribute) {
  Event sent = MakeEvent(kChunkDone, "b-42/done/3", "b-42", "corr-42",
                         {{"chunk_index", 3},
                          {"status", "succeeded"},
                          {"items", 100},
                          {"attempts", 2},
                          {"result", {{"sum", 50211}, {"note", "ünïcode ok"}}}});
  sent.source = "urn:example:round-trip";
  EXPECT_TRUE(std::regex_match(sent.time, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << sent.time;
  auto got = DecodeEvent(EncodeEvent(sent));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ExpectSameEvent(sent, *got);
}

TEST(EventCodec, AnEventWithoutTimeIsEncodedWithoutTime) {
  Event sent = MakeEvent(kBatchSealed, "b-7/sealed", "b-7", "corr-7",
                         {{"total_chunks", 2}, {"total_items", 15}, {"step", 0}});
  sent.time.clear();
  const json doc = json::parse(EncodeEvent(sent));
  EXPECT_FALSE(doc.contains("time")) << doc.dump();
  auto got = DecodeEvent(doc.dump());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ExpectSameEvent(sent, *got);
}

TEST(EventCodec, RejectsAnUnknownTypeNamingTheTypeAttribute) {
  const json doc = {{"specversion", "1.0"},  {"id", "b-1/x"},
                    {"source", "fanflow"},   {"type", "fanflow.resize_image.v1"},
                    {"subject", "b-1"},      {"correlationid", "c-1"},
                    {"data", json::object()}};
  auto got = DecodeEvent(doc.dump());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message().rfind("type:", 0), 0u) << got.status().message();
  EXPECT_NE(got.status().message().find("fanflow.resize_image.v1"), std::string::npos);
}

TEST(EventCodec, AChunkIdGivesBackItsBatchAndIndexAndNothingElseParses) {
  EXPECT_EQ(ChunkEventId("b-7/x", 42), "b-7/x/chunk/42");
  auto back = ParseChunkEventId(ChunkEventId("b-7/x", 42));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->first, "b-7/x");
  EXPECT_EQ(back->second, 42);
  for (const char* id : {"b-7/done/42", "b-7/chunk/", "b-7/chunk/4x", "b-7/chunk/-1", "/chunk/3", "free-form id"})
    EXPECT_FALSE(ParseChunkEventId(id).has_value()) << id;
}

// DecodeEvent with `items_json` (the worker's decode for processors that read
// the items' text) must accept, refuse and decode exactly as the whole DOM
// does: for every example in topics/ and for what a stranger can send.
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
  Event got = std::move(kept).value();
  json& data = got.data;
  const auto items = whole->data.find("items");
  if (items != whole->data.end() && items->is_array()) {
    EXPECT_FALSE(data.contains("items")) << "items kept as text are left out of data";
    auto parsed = ParseBoundedJson(items_json, "items");
    ASSERT_TRUE(parsed.ok()) << items_json;
    data["items"] = std::move(parsed).value();
  } else {
    EXPECT_EQ(items_json, "") << "no items array, no text";
  }
  ExpectSameEvent(*whole, got);
}

// A process_chunk whose data, after its fixed fields, is the raw JSON `rest`.
std::string Chunk(const std::string& rest) {
  return R"({"specversion":"1.0","id":"b/chunk/0","source":"t","type":"fanflow.process_chunk.v1",)"
         R"("subject":"b","correlationid":"c","data":{"chunk_index":0,"first_item":0,"item_count":2)" +
         (rest.empty() ? "" : "," + rest) + "}}";
}

TEST(ItemsText, EveryExampleInTopicsDecodesAsTheWholeDomDoes) {
  for (const std::string& type : KnownEventTypes())
    for (const char* kind : {kValid, kInvalid})
      for (const fs::path& file : Examples(type, kind)) ExpectDecodesAlike(ReadFile(file));
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
