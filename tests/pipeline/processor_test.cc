#include "pipeline/processor.h"

#include <gtest/gtest.h>

#include <stop_token>
#include <thread>

namespace fanflow {
namespace {

ProcessorOptions Named(const std::string& name) {
  ProcessorOptions o;
  o.name = name;
  return o;
}

std::unique_ptr<Processor> Make(ProcessorOptions o) {
  auto p = MakeProcessor(o);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p).value();
}

const nlohmann::json kItems = nlohmann::json::parse(R"([{"id":0,"value":3},{"id":1,"value":4}])");

TEST(ProcessorTest, SumAddsEveryItemsValueExactly) {
  auto sum = Make(Named("sum"));
  auto r = sum->Process({"b", 0, kItems});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 7);
  EXPECT_TRUE(r.value().is_number_integer());
}

// The worker hands sum the items' text (TakesItemsText): it must read them as
// nlohmann's DOM did, a repeated key's last value included.
TEST(ProcessorTest, SumReadsItemsTextAsTheDomReadsItems) {
  auto sum = Make(Named("sum"));
  ASSERT_TRUE(sum->TakesItemsText());
  struct Case {
    const char* items;
    nlohmann::json want;
  };
  for (const Case& c : {Case{R"([{"value":3},{"id":1,"value":4}])", 7},
                        Case{R"([{"value":1,"value":5},{"value":2}])", 7},
                        Case{R"([{"value":-9223372036854775808},{"value":1}])", -9223372036854775807LL},
                        Case{R"([{"value":1.5},{"value":2}])", 3.5},
                        Case{R"([{"value":1e2},{"value":-0.5}])", 99.5},
                        Case{R"([])", 0},
                        // Past int64 the sum is a float, never a wrapped integer.
                        Case{R"([{"value":9223372036854775807},{"value":1}])", 9223372036854775808.0},
                        Case{R"([{"value":-9223372036854775808},{"value":-1}])", -9223372036854775809.0},
                        Case{R"([{"value":18446744073709551615},{"value":-1}])", 18446744073709551614.0}}) {
    auto text = sum->ProcessText({"b", 0, c.items});
    ASSERT_TRUE(text.ok()) << c.items << ": " << text.status().ToString();
    EXPECT_EQ(text.value(), c.want) << c.items;
    EXPECT_EQ(text.value().is_number_integer(), c.want.is_number_integer()) << c.items;
    auto dom = sum->Process({"b", 0, nlohmann::json::parse(c.items)});
    ASSERT_TRUE(dom.ok());
    EXPECT_EQ(dom.value(), text.value()) << c.items;
  }
  for (const char* bad : {R"([{"value":1},{"value":"x"}])", R"([{"value":1},7])",
                          R"([{"value":1},{"value":2,"value":null}])", R"([{"value":1},{"v":1}])"}) {
    auto r = sum->ProcessText({"b", 0, bad});
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().message(), "item 1 has no numeric \"value\"") << bad;
  }
  for (const char* not_items : {R"({"value":1})", "[1,", ""}) {
    auto r = sum->ProcessText({"b", 0, not_items});
    ASSERT_FALSE(r.ok()) << not_items;
    EXPECT_EQ(r.status().message().rfind("data.items:", 0), 0u) << r.status().message();
  }
}

// A processor that does not read text still gets ProcessText right: the items parsed.
TEST(ProcessorTest, ProcessTextOfADomProcessorParsesTheItemsForProcess) {
  class CountsItems final : public Processor {
   public:
    Result<nlohmann::json> Process(const ChunkInput& chunk) override {
      return nlohmann::json(chunk.items.size());
    }
  } counts;
  EXPECT_FALSE(counts.TakesItemsText());
  auto r = counts.ProcessText({"b", 0, R"([1,{"a":[2]},"three"])"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value(), 3);
  EXPECT_FALSE(counts.ProcessText({"b", 0, "[1,"}).ok());
}

TEST(ProcessorTest, SumFailsOnAnItemWithoutANumericValue) {
  auto sum = Make(Named("sum"));
  auto items = nlohmann::json::parse(R"([{"value":1},{"value":"x"}])");
  auto r = sum->Process({"b", 0, items});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "item 1 has no numeric \"value\"");
}

TEST(ProcessorTest, ExecPassesTheChunkOnStdinAndReadsTheResult) {
  ProcessorOptions o;
  o.command = "python3 -c 'import json,sys; c=json.load(sys.stdin); "
              "print(json.dumps({\"n\": len(c[\"items\"]), \"chunk\": c[\"chunk_index\"]}))'";
  auto exec = Make(o);
  auto r = exec->Process({"b", 5, kItems});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r.value()["n"], 2);
  EXPECT_EQ(r.value()["chunk"], 5);
}

TEST(ProcessorTest, ExecNonZeroExitIsAFailureCarryingStderr) {
  ProcessorOptions o;
  o.command = "echo 'bad input' >&2; exit 3";
  auto r = Make(o)->Process({"b", 0, kItems});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exited with 3: bad input"), std::string::npos)
      << r.status().message();
}

TEST(ProcessorTest, ExecPastItsTimeoutIsKilledAndFails) {
  ProcessorOptions o;
  o.command = "sleep 30";
  o.timeout = std::chrono::milliseconds(200);
  const auto started = std::chrono::steady_clock::now();
  auto r = Make(o)->Process({"b", 0, kItems});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

// The issue's segfault: a processor's output is parsed within the decoder's
// limits, so a 100,000-deep result is a failed attempt that names the limit.
TEST(ProcessorTest, ExecPrintingAResultNestedTooDeepIsAFailedAttemptNamingTheLimit) {
  ProcessorOptions o;
  o.command = "python3 -c 'print(\"[\" * 100000 + \"]\" * 100000)'";
  auto r = Make(o)->Process({"b", 0, kItems});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("output: JSON nested deeper than 64 levels"), std::string::npos)
      << r.status().message();
}

TEST(ProcessorTest, ExecPrintingMoreThanTheBodyLimitIsAFailedAttempt) {
  ProcessorOptions o;
  o.command = "head -c 20000000 /dev/zero | tr '\\0' ' '; echo 1";
  auto r = Make(o)->Process({"b", 0, kItems});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is larger than the limit of 16777216"), std::string::npos)
      << r.status().message();
}

TEST(ProcessorTest, ExecPrintingSomethingThatIsNotJsonSaysSo) {
  ProcessorOptions o;
  o.command = "echo 'not json'";
  auto r = Make(o)->Process({"b", 0, kItems});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("malformed JSON: output is not a JSON document"),
            std::string::npos)
      << r.status().message();
}

// What `fanflow run` relies on to stop within a second on SIGINT.
TEST(ProcessorTest, ASleepOrExecChunkEndsCancelledSoonAfterItsStopIsRequested) {
  ProcessorOptions sleep = Named("sleep");
  sleep.sleep_scale = 10000;  // 70 s for kItems
  ProcessorOptions exec;
  exec.command = "sleep 30";
  for (const ProcessorOptions& o : {sleep, exec}) {
    SCOPED_TRACE(o.command.empty() ? o.name : o.command);
    auto processor = Make(o);
    std::stop_source stop;
    const auto started = std::chrono::steady_clock::now();
    std::thread stopper([&stop] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      stop.request_stop();
    });
    auto r = processor->Process({"b", 0, kItems, stop.get_token()});
    stopper.join();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  }
}

TEST(ProcessorTest, UnknownProcessorOrMissingCommandIsAClearError) {
  auto unknown = MakeProcessor(Named("frobnicate"));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown processor 'frobnicate'"), std::string::npos);
  auto no_cmd = MakeProcessor(Named("exec"));
  ASSERT_FALSE(no_cmd.ok());
  EXPECT_NE(no_cmd.status().message().find("--exec"), std::string::npos);
}

}  // namespace
}  // namespace fanflow
