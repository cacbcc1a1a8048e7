// `fanflow run` stopped by SIGINT / SIGTERM as a person or `timeout` stops it:
// within a second, its roles stopped in order, its temporary ledger removed,
// exit 130 / 143. (`submit --wait` needs a broker: tests/amqp, tests/mqtt.)
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>

#include "tests/support/stops_on_signal.h"

namespace fanflow {
namespace {

using namespace std::chrono_literals;
using testing::BackgroundProcess;
using testing::FanflowBinary;
using testing::ExpectStopsPromptlyOn;

// A run whose chunks take about 50 s each (sleep: value * 10 ms per item), so
// chunks are in flight whenever the signal comes. TMPDIR is its own, so what
// the run leaves behind there can be seen. Started with SIGINT ignored, as a
// script's shell starts a background command.
struct SlowRun {
  explicit SlowRun(std::vector<std::string> extra) : dir(testing::TempDir("interrupt")) {
    std::filesystem::create_directories(dir + "/tmp");
    std::vector<std::string> argv = {"/bin/sh", "-c", "trap '' INT; exec \"$0\" \"$@\"",
                                     "/usr/bin/env", "TMPDIR=" + dir + "/tmp", FanflowBinary(),
                                     "run", "--source", "range:200:3", "--chunk-size", "10",
                                     "--concurrency", "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = std::make_unique<BackgroundProcess>(argv, dir + "/run.log");
  }
  std::string dir;
  std::unique_ptr<BackgroundProcess> process;
};

TEST(InterruptTest, SigintStopsARunWithinASecondAndRemovesItsTemporaryLedger) {
  SlowRun run({"--processor", "sleep", "--sleep-scale", "10"});
  ASSERT_TRUE(run.process->WaitForLog("] run: source", 30s)) << run.process->Log();
  std::this_thread::sleep_for(300ms);  // chunks are in flight now
  ASSERT_FALSE(std::filesystem::is_empty(run.dir + "/tmp")) << "the run keeps its ledger there";
  const std::string log = ExpectStopsPromptlyOn(*run.process, SIGINT);
  EXPECT_NE(log.find("SIGINT: stopping the run of batch"), std::string::npos) << log;
  EXPECT_NE(log.find("temporary ledger is removed"), std::string::npos) << log;
  EXPECT_EQ(log.find("did not stop within"), std::string::npos) << "the roles should stop cleanly:\n" << log;
  EXPECT_TRUE(std::filesystem::is_empty(run.dir + "/tmp")) << "the temporary ledger is left behind";
}

TEST(InterruptTest, SigtermStopsARunOfExecChunksAndKeepsItsNamedLedger) {
  const std::string dir = testing::TempDir("interrupt-exec");
  const std::string ledger = dir + "/ledger.db";
  SlowRun run({"--exec", "sleep 30", "--state", ledger});
  ASSERT_TRUE(run.process->WaitForLog("] run: source", 30s)) << run.process->Log();
  std::this_thread::sleep_for(300ms);
  const std::string log = ExpectStopsPromptlyOn(*run.process, SIGTERM);
  EXPECT_NE(log.find("SIGTERM: stopping the run of batch"), std::string::npos) << log;
  EXPECT_NE(log.find("keeps what was counted"), std::string::npos) << log;
  EXPECT_TRUE(std::filesystem::exists(ledger));
}

}  // namespace
}  // namespace fanflow
