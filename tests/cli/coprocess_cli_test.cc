// `fanflow run --coprocess / --combine / --results` as a user runs them: the
// real binary, the examples under examples/coprocess, real files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/event.h"
#include "tests/support/command_output.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::FanflowBinary;
using testing::LastJsonLine;
using testing::RunProcess;

const std::string kExamples = FANFLOW_SOURCE_DIR "/examples/coprocess/";

nlohmann::json RunFanflow(std::vector<std::string> args, int expected_exit = 0) {
  args.insert(args.begin(), {FanflowBinary(), "run", "--json", "--log-level", "warn"});
  auto r = RunProcess(args, std::chrono::seconds(120));
  EXPECT_EQ(r.exit_code, expected_exit) << r.err;
  auto e = LastJsonLine(r.out);
  EXPECT_FALSE(e.is_discarded()) << r.out << r.err;
  EXPECT_TRUE(DecodeEvent(e.dump()).ok()) << "the printed event must satisfy its own schema";
  return e;
}

TEST(CoprocessCli, ThePythonAndNodeExamplesGiveTheBuiltInSum) {
  const int64_t expected = testing::RangeSum(20000, 3);
  for (const std::string& copy : {std::string(FANFLOW_PYTHON3) + " " + kExamples + "sum.py",
                                  "node " + kExamples + "sum.js"}) {
    auto e = RunFanflow({"--source", "range:20000:3", "--chunk-size", "10", "--concurrency", "3",
                         "--coprocess", copy});
    EXPECT_EQ(e["data"]["status"], "succeeded") << copy;
    EXPECT_EQ(e["data"]["result"], expected) << copy;
  }
}

// A claim check is read by the worker: the copy gets the items inline, no ref.
TEST(CoprocessCli, AClaimCheckChunkReachesTheCopyWithItsItemsInline) {
  const std::string path = testing::TempDir("coprocess-claim") + "/items.jsonl";
  {
    std::ofstream out(path);
    for (int i = 0; i < 100; ++i) out << "{\"id\": " << i << ", \"value\": " << i * 3 << "}\n";
  }
  const std::string copy =
      std::string(FANFLOW_PYTHON3) +
      " -c 'import json,sys\nfor l in sys.stdin:\n d=json.loads(l)[\"data\"]\n"
      " r={\"error\": \"got a ref\"} if \"ref\" in d else {\"result\": sum(i[\"value\"] "
      "for i in d[\"items\"])}\n print(json.dumps(r), flush=True)'";
  auto e = RunFanflow({"--source", "jsonl:" + path, "--chunk-size", "10", "--claim-check-bytes",
                       "1", "--max-attempts", "1", "--coprocess", copy});
  EXPECT_EQ(e["data"]["status"], "succeeded") << e.dump();
  EXPECT_EQ(e["data"]["result"], 3 * 99 * 100 / 2);
}

TEST(CoprocessCli, RunWritesTheResultsFileItsBatchCompleteRefersTo) {
  const std::string dir = testing::TempDir("results-cli");
  const std::string path = dir + "/out.jsonl";
  // Each chunk's item ids, as an array.
  const std::string ids =
      std::string(FANFLOW_PYTHON3) +
      " -c 'import json,sys\nfor l in sys.stdin:\n print(json.dumps({\"result\": "
      "[i[\"id\"] for i in json.loads(l)[\"data\"][\"items\"]]}), flush=True)'";
  auto e = RunFanflow({"--source", "range:500", "--chunk-size", "10", "--coprocess", ids,
                       "--combine", "concat", "--results", path});
  ASSERT_EQ(e["data"]["status"], "succeeded");
  ASSERT_EQ(e["data"]["result"].size(), 500u);
  for (int i = 0; i < 500; ++i) EXPECT_EQ(e["data"]["result"][i], i);
  const auto& ref = e["data"]["results"];
  EXPECT_EQ(ref["path"], path);
  EXPECT_EQ(ref["lines"], 50);
  EXPECT_EQ(ref["bytes"], static_cast<int64_t>(std::filesystem::file_size(path)));
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line); ++n)
    EXPECT_EQ(nlohmann::json::parse(line)["chunk_index"], n);
  EXPECT_EQ(n, 50);
}

TEST(CoprocessCli, ResultsThatCannotBeMergedExitFailedWithTheReason) {
  auto e = RunFanflow({"--source", "range:100", "--chunk-size", "10", "--coprocess",
                       "while read l; do echo '{\"result\": [1]}'; done"},
                      4);
  EXPECT_EQ(e["data"]["status"], "failed");
  // The chunk named is the first one recorded, whichever came in first.
  const std::string error = e["data"].value("error", "");
  EXPECT_EQ(error.rfind("data.result: chunk ", 0), 0u) << error;
  const std::string tail = ": result: an array cannot be merged (--combine concat takes arrays)";
  EXPECT_TRUE(error.size() > tail.size() &&
              error.compare(error.size() - tail.size(), tail.size(), tail) == 0)
      << error;
}

TEST(CoprocessCli, BadFlagsAreRefusedUpFront) {
  auto exec_and_coprocess = RunProcess(
      {FanflowBinary(), "run", "--source", "range:10", "--exec", "cat", "--coprocess", "cat"},
      std::chrono::seconds(30));
  EXPECT_EQ(exec_and_coprocess.exit_code, 2) << exec_and_coprocess.err;
  auto combine = RunProcess({FanflowBinary(), "run", "--source", "range:10", "--combine", "sum"},
                            std::chrono::seconds(30));
  EXPECT_EQ(combine.exit_code, 2) << combine.err;
  auto nowhere = RunProcess(
      {FanflowBinary(), "run", "--source", "range:10", "--results", "/nonexistent/dir/r.jsonl"},
      std::chrono::seconds(30));
  EXPECT_EQ(nowhere.exit_code, 2) << nowhere.err;
  EXPECT_NE(
      nowhere.err.find("--results '/nonexistent/dir/r.jsonl': /nonexistent/dir is not a directory"),
      std::string::npos)
      << nowhere.err;
  auto one_file = RunProcess({FanflowBinary(), "aggregator", "--bus", "amqp://127.0.0.1:1/",
                              "--results", "/tmp/all.jsonl"},
                             std::chrono::seconds(30));
  EXPECT_EQ(one_file.exit_code, 2) << one_file.err;
  EXPECT_NE(one_file.err.find("put {batch} in the path"), std::string::npos) << one_file.err;
}

}  // namespace
}  // namespace fanflow
