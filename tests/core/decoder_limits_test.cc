// What a stranger can send the decoder: every limit refuses with a reason that
// names the field or the limit, never a crash, a deep DOM or a recursion.
#include <gtest/gtest.h>

#include <string>

#include "core/bounded_json.h"
#include "core/event.h"
#include "core/printable.h"

namespace fanflow {
namespace {

using nlohmann::json;

json ChunkDone() {
  return {{"specversion", "1.0"},
          {"id", "b-1/done/0"},
          {"source", "fanflow"},
          {"type", kChunkDone},
          {"subject", "b-1"},
          {"correlationid", "c-1"},
          {"data", {{"chunk_index", 0}, {"status", "succeeded"}, {"items", 1}, {"attempts", 1}}}};
}

// A chunk_done whose data.result is the raw JSON text `raw`.
std::string WithResult(const std::string& raw) {
  json doc = ChunkDone();
  doc["data"]["result"] = "@result@";
  std::string body = doc.dump();
  return body.replace(body.find("\"@result@\""), 10, raw);
}

std::string Nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// The error of decoding `doc`, which must start with `prefix`.
void ExpectRefused(const std::string& body, const std::string& prefix) {
  auto got = DecodeEvent(body);
  ASSERT_FALSE(got.ok()) << "accepted: " << body.substr(0, 200);
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(got.status().message().rfind(prefix, 0), 0u) << got.status().message();
}

TEST(DecoderLimits, AResultNested100000DeepIsRefusedNamingTheDepthLimit) {
  ExpectRefused(WithResult(Nested(100000)), "body: JSON nested deeper than 64 levels");
}

TEST(DecoderLimits, NestingUpToTheLimitIsAcceptedAndOneMoreIsNot) {
  // The envelope and `data` are two levels; the result fills the rest.
  const std::string ok = WithResult(Nested(kMaxJsonDepth - 2));
  const std::string deep = WithResult(Nested(kMaxJsonDepth - 1));
  auto got = DecodeEvent(ok);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(DecodeEvent(EncodeEvent(*got)).ok());
  ExpectRefused(deep, "body: JSON nested deeper than 64 levels");
}

TEST(DecoderLimits, ABodyLargerThanTheLimitIsRefusedBeforeParsing) {
  const std::string body(kMaxEventBytes + 1, ' ');
  ExpectRefused(body, "body: 16777217 bytes is larger than the limit of 16777216");
}

TEST(DecoderLimits, AStringLongerThanTheLimitIsRefused) {
  json doc = ChunkDone();
  doc["data"]["result"] = std::string(kMaxJsonStringBytes + 1, 'x');
  ExpectRefused(doc.dump(), "body: a JSON string of 1048577 bytes is longer than the limit");
}

TEST(DecoderLimits, AnArrayOfMoreElementsThanTheLimitIsRefused) {
  std::string big = "[0";
  for (size_t i = 0; i < kMaxJsonContainerElements; ++i) big += ",0";
  ExpectRefused(WithResult(big + "]"),
                "body: a JSON array or object of more than 1000000 elements");
}

TEST(DecoderLimits, ASyntaxErrorSaysMalformedJsonAndWhere) {
  ExpectRefused("{\"specversion\": \"1.0\",", "malformed JSON: body is not a JSON document");
  ExpectRefused("", "malformed JSON");
  ExpectRefused("\xff\xfe", "malformed JSON");
}

TEST(DecoderLimits, HugeIntegersDecodeAndReencodeUnchanged) {
  for (const char* n :
       {"123456789012345678901234567890", "18446744073709551615", "-9223372036854775808"}) {
    auto got = DecodeEvent(WithResult(n));
    ASSERT_TRUE(got.ok()) << n << ": " << got.status().ToString();
    auto again = DecodeEvent(EncodeEvent(*got));
    ASSERT_TRUE(again.ok()) << n;
    EXPECT_EQ(again->data["result"], got->data["result"]) << n;
  }
}

// Infinity would be encoded as null: the event would not survive a round trip.
TEST(DecoderLimits, ANumberBeyondADoubleIsRefused) {
  for (const char* n : {"1e999999", "-1e400"}) {
    ExpectRefused(WithResult(n), "body: a JSON number beyond the range of a double");
  }
}

TEST(DecoderLimits, ANumberTooBigForAnIndexIsRefusedNamingTheField) {
  json doc = ChunkDone();
  doc["data"]["chunk_index"] = 18446744073709551615ull;
  ExpectRefused(doc.dump(), "data.chunk_index:");
  doc["data"]["chunk_index"] = 1e300;
  ExpectRefused(doc.dump(), "data.chunk_index:");
}

TEST(EnvelopeNames, ControlCharactersInIdsAndSubjectAreRefusedNamingTheField) {
  for (const char* field : {"id", "subject", "correlationid", "source"}) {
    for (const std::string& bad : {std::string("b-1\nforged log line"), std::string("b\x7f"),
                                   std::string("b\xc2\x85"), std::string("a\0b", 3)}) {
      json doc = ChunkDone();
      doc[field] = bad;
      ExpectRefused(doc.dump(), std::string(field) + ": must not contain control characters");
    }
  }
}

TEST(EnvelopeNames, NonCharactersMosquittoRefusesAreRefusedToo) {
  json doc = ChunkDone();
  doc["subject"] = "b-\xef\xbf\xbe";  // U+FFFE
  ExpectRefused(doc.dump(), "subject: must not contain control characters");
  doc["subject"] = "b-\xef\xb7\x90";  // U+FDD0
  ExpectRefused(doc.dump(), "subject: must not contain control characters");
}

TEST(EnvelopeNames, IdsAndSubjectHaveLengthLimits) {
  json doc = ChunkDone();
  doc["subject"] = std::string(kMaxSubjectLength, 's');
  EXPECT_TRUE(DecodeEvent(doc.dump()).ok());
  doc["subject"] = std::string(kMaxSubjectLength + 1, 's');
  ExpectRefused(doc.dump(), "subject: must be at most 200 characters");
  for (const char* field : {"id", "correlationid", "source"}) {
    json d = ChunkDone();
    d[field] = std::string(kMaxIdLength + 1, 'i');
    ExpectRefused(d.dump(), std::string(field) + ": must be at most 256 characters");
  }
}

TEST(EnvelopeNames, LengthsCountCharactersAsJsonSchemaDoes) {
  json doc = ChunkDone();
  std::string euros;
  for (size_t i = 0; i < kMaxSubjectLength; ++i) euros += "\u20ac";  // 3 bytes each
  doc["subject"] = euros;
  EXPECT_TRUE(DecodeEvent(doc.dump()).ok());
  doc["subject"] = euros + "x";
  ExpectRefused(doc.dump(), "subject: must be at most 200 characters");
}

TEST(EnvelopeNames, NonAsciiUtf8IsAcceptedInNames) {
  json doc = ChunkDone();
  doc["subject"] = "lot-über-€-🚀";
  auto got = DecodeEvent(doc.dump());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->subject, "lot-über-€-🚀");
}

TEST(EnvelopeNames, TimeMustBeAShortCleanString) {
  json doc = ChunkDone();
  doc["time"] = 5;
  ExpectRefused(doc.dump(), "time: must be an RFC 3339 string");
  doc["time"] = "2026-01-01T00:00:00Z\n";
  ExpectRefused(doc.dump(), "time: must be an RFC 3339 string");
  doc["time"] = std::string(65, '1');
  ExpectRefused(doc.dump(), "time: must be an RFC 3339 string");
}

TEST(EnvelopeNames, AnUnknownTypeIsEchoedEscaped) {
  json doc = ChunkDone();
  doc["type"] = "fanflow.x\x01.v1";
  ExpectRefused(doc.dump(), "type: must not contain control characters");
  doc["type"] = "fanflow.bogus.v1";
  ExpectRefused(doc.dump(), "type: unknown event type 'fanflow.bogus.v1'");
}

// Each optional field a handler reads, with a wrong type, and the field the
// reason must name.
TEST(OptionalFields, AWrongTypedOptionalFieldIsRefusedNamingIt) {
  struct Case {
    const char* type;
    json data;
    const char* field;
  };
  const json base_done = ChunkDone()["data"];
  json done_error = base_done, done_duration = base_done;
  done_error["error"] = 123;
  done_duration["duration_ms"] = "fast";
  const json start = {{"source", "range:10"}, {"chunk_size", 5}};
  json start_time = start, start_big = start;
  start_time["started_at"] = 5;
  start_big["chunk_size"] = 1000001;
  const json sealed = {{"total_chunks", 1}, {"total_items", 1}, {"step", 0}, {"started_at", {1, 2}}};
  const json complete_base = {{"status", "succeeded"}, {"items", 1},
                              {"chunks", 1},           {"succeeded", 1},
                              {"failed", 0},           {"failed_chunks", json::array()}};
  json c_error = complete_base, c_missing = complete_base, c_sealed = complete_base,
       c_deadline = complete_base, c_started = complete_base, c_completed = complete_base;
  c_error["error"] = json::object();
  c_missing["missing_chunks"] = {-1};
  c_sealed["sealed"] = "yes";
  c_deadline["deadline_seconds"] = -1;
  c_started["started_at"] = 1;
  c_completed["completed_at"] = nullptr;
  const json alarm = {
      {"alarm", "queue_depth"}, {"state", "raised"}, {"message", "m"}, {"raised_at", 7}};
  const Case cases[] = {
      {kChunkDone, done_error, "data.error"},
      {kChunkDone, done_duration, "data.duration_ms"},
      {kStartFanout, start_time, "data.started_at"},
      {kStartFanout, start_big, "data.chunk_size"},
      {kBatchSealed, sealed, "data.started_at"},
      {kBatchComplete, c_error, "data.error"},
      {kBatchComplete, c_missing, "data.missing_chunks"},
      {kBatchComplete, c_sealed, "data.sealed"},
      {kBatchComplete, c_deadline, "data.deadline_seconds"},
      {kBatchComplete, c_started, "data.started_at"},
      {kBatchComplete, c_completed, "data.completed_at"},
      {kAlarm, alarm, "data.raised_at"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    json doc = ChunkDone();
    doc["type"] = c.type;
    doc["data"] = c.data;
    ExpectRefused(doc.dump(), std::string(c.field) + ": must be");
  }
}

TEST(BoundedJson, NamesTheInputItParses) {
  auto got = ParseBoundedJson(Nested(70), "output");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "output: JSON nested deeper than 64 levels");
  auto bad = ParseBoundedJson("{]", "output");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message().rfind("malformed JSON: output is not a JSON document", 0), 0u)
      << bad.status().message();
  auto fine = ParseBoundedJson(R"({"a": [1, 2, {"b": "c"}]})", "output");
  ASSERT_TRUE(fine.ok());
  EXPECT_EQ((*fine)["a"][2]["b"], "c");
}

TEST(Printable, EscapeForLogKeepsOneLineAndValidUtf8) {
  EXPECT_EQ(EscapeForLog("b-1\nforged"), "b-1\\nforged");
  EXPECT_EQ(EscapeForLog("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeForLog(std::string("\xff\x01ok", 4)), "\\xFF\\x01ok");
  EXPECT_EQ(EscapeForLog("\xc2\x85"), "\\u0085");
  EXPECT_EQ(EscapeForLog("über"), "über");
  EXPECT_EQ(EscapeForLog("abcdef", 3), "abc...");
  EXPECT_TRUE(IsCleanText(EscapeForLog(std::string("\0\x1b[31m\xe2\x82", 7))));
}

TEST(Printable, Base64OfAnyBytes) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64(std::string("\xff\x00\xfe", 3)), "/wD+");
}

TEST(Printable, GroupNamesAreASafeCharset) {
  for (const char* ok : {"workers", "aggregator", "wait-123", "a.b_c-D9"})
    EXPECT_TRUE(CheckGroupName(ok).ok()) << ok;
  for (const std::string& bad :
       {std::string(""), std::string("a/b"), std::string("a+"), std::string("#"),
        std::string("$share"), std::string("a b"), std::string("a\nb"), std::string("über"),
        std::string(kMaxGroupLength + 1, 'g')}) {
    Status s = CheckGroupName(bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.message().rfind("group", 0), 0u) << s.message();
    EXPECT_TRUE(IsCleanText(s.message())) << s.message();
  }
}

}  // namespace
}  // namespace fanflow
