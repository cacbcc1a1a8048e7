// `fanflow run` and friends as a user runs them: the real binary, real files.
#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>
#include <thread>

#include "core/event.h"
#include "pipeline/ledger.h"
#include "pipeline/source.h"
#include "tests/support/command_output.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::LastJsonLine;
using testing::RangeSum;

using testing::FanflowBinary;
using testing::RunProcess;

TEST(RunCommandTest, FansAMillionItemsOutAndInWithTheRightSum) {
  auto r = RunProcess({FanflowBinary(), "run", "--source", "range:1000000:42", "--chunk-size", "100",
                       "--processor", "sum", "--json", "--log-level", "warn"},
                      std::chrono::seconds(300));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto e = LastJsonLine(r.out);
  ASSERT_FALSE(e.is_discarded()) << r.out;
  EXPECT_EQ(e["type"], kBatchComplete);
  EXPECT_EQ(e["data"]["status"], "succeeded");
  EXPECT_EQ(e["data"]["items"], 1000000);
  EXPECT_EQ(e["data"]["chunks"], 10000);
  EXPECT_EQ(e["data"]["result"], RangeSum(1000000, 42));
  EXPECT_TRUE(DecodeEvent(e.dump()).ok()) << "the printed event must satisfy its own schema";
}

TEST(RunCommandTest, SumsAJsonlFileAndPrintsAHumanSummaryWithoutJson) {
  std::string path = testing::TempDir("cli") + "/items.jsonl";
  int64_t sum = 0;
  {
    std::ofstream out(path);
    for (int i = 0; i < 12345; ++i) {
      out << "{\"id\":" << i << ",\"value\":" << (i * 31) % 1001 << "}\n";
      sum += (i * 31) % 1001;
    }
  }
  auto r = RunProcess({FanflowBinary(), "run", "--source", "jsonl:" + path, "--chunk-size", "100"},
                      std::chrono::seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("items    12345"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chunks   124"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("result   " + std::to_string(sum)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chunks/s"), std::string::npos);
  EXPECT_NE(r.err.find("[batch "), std::string::npos) << "logs carry the batch id on stderr";
}

TEST(RunCommandTest, ReadsJsonlFromStdin) {
  std::string input;
  for (int i = 0; i < 1000; ++i) input += "{\"value\":2}\n";
  auto r = RunProcess({FanflowBinary(), "run", "--source", "-", "--chunk-size", "64", "--json"},
                      std::chrono::seconds(60), input);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto e = LastJsonLine(r.out);
  EXPECT_EQ(e["data"]["result"], 2000);
  EXPECT_EQ(e["data"]["chunks"], 16);
}

TEST(RunCommandTest, AnExecProcessorThatAlwaysFailsEndsFailedWithEveryChunkListed) {
  auto r = RunProcess({FanflowBinary(), "run", "--source", "range:30", "--chunk-size", "10", "--exec",
                       "exit 1", "--max-attempts", "2", "--backoff-ms", "5", "--json"},
                      std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto e = LastJsonLine(r.out);
  EXPECT_EQ(e["data"]["status"], "failed");
  EXPECT_EQ(e["data"]["failed_chunks"], nlohmann::json::array({0, 1, 2}));
}

TEST(RunCommandTest, BadFlagsAndSourcesExitNonZeroWithAClearMessage) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"run", "--source", "range:10", "--chunk-size", "0"}, 2, "--chunk-size"},
      {{"run", "--source", "range:10", "--concurrency", "-3"}, 2, "--concurrency"},
      {{"run", "--source", "bogus:1"}, 2, "unknown source 'bogus:1'"},
      {{"run", "--source", "jsonl:/no/such/file.jsonl"}, 1, "no such file"},
      {{"run"}, 2, "--source"},
      {{"run", "--source", "range:10", "--bus", "nats://x"}, 2, "unsupported bus URL scheme 'nats'"},
      {{"run", "--source", "range:10", "--tolerate", "abc"}, 2, "--tolerate"},
      {{"worker", "--bus", "inproc://"}, 2, "inproc:// only connects code inside one process"},
      {{"frobnicate"}, 2, "subcommand"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {FanflowBinary()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = RunProcess(argv, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_code, c.code) << c.args[0] << " " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "stderr was: " << r.err;
  }
}

TEST(RunCommandTest, HelpExplainsTheCommands) {
  auto r = RunProcess({FanflowBinary(), "--help"}, std::chrono::seconds(10));
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word : {"run", "submit", "worker", "aggregator", "ventilator", "Exit codes"})
    EXPECT_NE(r.out.find(word), std::string::npos) << word;
  auto run = RunProcess({FanflowBinary(), "run", "--help"}, std::chrono::seconds(10));
  for (const char* flag : {"--source", "--chunk-size", "--processor", "--concurrency", "--json", "--bus"})
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag;
}

TEST(RunCommandTest, AKilledRunResumesFromItsLedgerAndCountsEveryChunkOnce) {
  const std::string dir = testing::TempDir("resume");
  const std::string state = dir + "/ledger.db";
  const std::vector<std::string> args = {FanflowBinary(), "run", "--source", "range:3000000:5",
                                         "--chunk-size", "100", "--state", state, "--batch-id",
                                         "resume-1", "--json", "--log-level", "warn"};
  {
    testing::BackgroundProcess first(args, dir + "/first.log");
    // Kill it once the ledger has counted some, but not all, of 30,000 chunks.
    int64_t counted = 0;
    for (int i = 0; i < 600 && counted < 2000; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      auto ledger = Ledger::Open(state, Durability::kNormal);
      if (!ledger.ok()) continue;
      auto b = ledger.value()->Get("resume-1");
      if (b.ok() && b.value()) counted = b.value()->succeeded;
    }
    first.Signal(SIGKILL);
    first.Wait(std::chrono::seconds(10));
  }
  auto ledger = Ledger::Open(state, Durability::kNormal);
  ASSERT_TRUE(ledger.ok());
  auto before = ledger.value()->Get("resume-1");
  ASSERT_TRUE(before.ok() && before.value());
  const int64_t counted_before = before.value()->succeeded;
  ASSERT_GT(counted_before, 0);
  ASSERT_LT(counted_before, 30000) << "the first run finished before it could be killed";
  ASSERT_FALSE(before.value()->complete);

  auto r = RunProcess(args, std::chrono::seconds(300));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto e = LastJsonLine(r.out);
  EXPECT_EQ(e["data"]["succeeded"], 30000);
  EXPECT_EQ(e["data"]["result"], RangeSum(3000000, 5));

  // Once complete, a rerun answers from the ledger with the same event.
  auto again = RunProcess(args, std::chrono::seconds(60));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(LastJsonLine(again.out), e);
}

}  // namespace
}  // namespace fanflow
