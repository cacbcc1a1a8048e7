// --data-dir through the `fanflow` binary, services as separate processes on
// the brokers (issue 9, item 3): a service ventilator without one reads no file
// a start_fanout names, and dead-letters it naming the field; with one, the
// batch runs, claim checks included; a worker reads no claim check outside its
// own; `run` works as before (`submit -` is refused: see SubmitCommand).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/event.h"
#include "core/routes.h"
#include "pipeline/ventilator.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/command_output.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::FanflowBinary;
using testing::LastJsonLine;
using testing::RunProcess;
using testing::Unique;

testing::ProcessResult Fanflow(std::vector<std::string> args, int limit_s = 120,
                               const std::string& input = "") {
  args.insert(args.begin(), FanflowBinary());
  return RunProcess(args, std::chrono::seconds(limit_s), input);
}

// Items {"id": i, "value": i % 10}; returns the sum of the values.
int64_t WriteItems(const std::string& path, int n) {
  std::ofstream out(path);
  int64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    out << "{\"id\":" << i << ",\"value\":" << i % 10 << "}\n";
    sum += i % 10;
  }
  return sum;
}

bool LogShows(const testing::BackgroundProcess& p, const std::string& text) {
  for (int i = 0; i < 600; ++i) {
    if (p.Log().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The reason `fanflow dlq list` gives for dead letter `id` of `group` ("" if none).
std::string DeadLetterReason(const std::string& url, const std::string& group,
                             const std::string& id) {
  for (int i = 0; i < 60; ++i) {
    auto list =
        Fanflow({"dlq", "list", "--bus", url, "--group", group, "--json", "--log-level", "warn"});
    std::istringstream lines(list.out);
    for (std::string line; std::getline(lines, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_object() && j["id"] == id) return j["reason"].get<std::string>();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return "";
}

class DataDirCliTest : public testing::EveryBus {};

TEST_P(DataDirCliTest, AServiceVentilatorReadsAJsonlSourceOnlyUnderItsDataDir) {
  if (inproc())
    GTEST_SKIP() << "services are separate processes; inproc:// cases are in file_policy_test";
  const std::string dir = testing::TempDir("cli-data-dir");
  std::filesystem::create_directory(dir + "/data");
  const std::string items = dir + "/data/items.jsonl";
  const int64_t sum = WriteItems(items, 200);
  auto topology = Fanflow({"topology", "--bus", url(), "--log-level", "warn"});
  ASSERT_EQ(topology.exit_code, 0) << topology.err;
  auto bus = Open();
  ASSERT_TRUE(bus);

  // Without --data-dir: refused, dead-lettered, answered; not one chunk.
  const std::string refused = Unique("cli-refused-");
  testing::EventCollector chunks(*bus, kProcessChunk,
                                 [&](const Event& e) { return e.subject == refused; });
  testing::EventCollector answer(*bus, kBatchComplete,
                                 [&](const Event& e) { return e.subject == refused; });
  {
    testing::BackgroundProcess aggregator(
        {FanflowBinary(), "aggregator", "--bus", url(), "--state", dir + "/refusing.db"}, dir + "/a1.log");
    testing::BackgroundProcess ventilator({FanflowBinary(), "ventilator", "--bus", url()},
                                          dir + "/v1.log");
    ASSERT_TRUE(LogShows(aggregator, "aggregator ready")) << aggregator.Log();
    ASSERT_TRUE(LogShows(ventilator, "ventilator ready")) << ventilator.Log();
    const Event start = MakeStartFanout(refused, refused, "jsonl:" + items, 10);
    ASSERT_TRUE(bus->Publish(Message{start.type, start.id, EncodeEvent(start)}).ok());
    ASSERT_TRUE(answer.WaitFor(1, std::chrono::seconds(60))) << ventilator.Log();
    EXPECT_EQ(answer.events()[0].data["status"], "failed");
    EXPECT_EQ(answer.events()[0].data["error"],
              "data.source: path is not under an allowed --data-dir");
    EXPECT_EQ(DeadLetterReason(url(), routes::kVentilatorGroup, refused + "/step/0"),
              "data.source: path is not under an allowed --data-dir");
    ventilator.Signal(SIGTERM);
    EXPECT_EQ(ventilator.Wait(std::chrono::seconds(30)), 0) << ventilator.Log();
  }
  EXPECT_EQ(chunks.size(), 0u) << "nothing of the file was published";

  // With --data-dir on the ventilator and the worker: the batch runs, every
  // chunk a claim check the worker reads under its own --data-dir.
  testing::BackgroundProcess ventilator(
      {FanflowBinary(), "ventilator", "--bus", url(), "--data-dir", dir + "/data"},
      dir + "/v2.log");
  testing::BackgroundProcess worker({FanflowBinary(), "worker", "--bus", url(), "--data-dir",
                                     dir + "/data", "--max-attempts", "5"},
                                    dir + "/worker.log");
  testing::BackgroundProcess aggregator(
      {FanflowBinary(), "aggregator", "--bus", url(), "--state", dir + "/ledger.db"},
      dir + "/agg.log");
  for (auto* p : {&ventilator, &worker, &aggregator})
    ASSERT_TRUE(LogShows(*p, " ready on ")) << p->Log();
  const std::string allowed = Unique("cli-allowed-");
  testing::EventCollector refs(*bus, kProcessChunk,
                               [&](const Event& e) { return e.subject == allowed; });
  auto r = Fanflow({"submit", "--bus", url(), "--source", "jsonl:" + items, "--chunk-size", "10",
                    "--claim-check-bytes", "64", "--batch-id", allowed, "--wait", "--json",
                    "--timeout", "120", "--log-level", "warn"},
                   150);
  ASSERT_EQ(r.exit_code, 0) << r.err << ventilator.Log() << worker.Log() << aggregator.Log();
  EXPECT_EQ(LastJsonLine(r.out)["data"]["result"], sum);
  ASSERT_TRUE(refs.WaitFor(20));
  for (const Event& e : refs.events()) EXPECT_TRUE(e.data.contains("ref")) << e.data.dump();

  // `submit -` is refused: the services read a source step by step, and a
  // submitter's stdin would end with the submitter.
  auto piped = Fanflow({"submit", "--bus", url(), "--source", "-", "--chunk-size", "7", "--wait",
                        "--json", "--timeout", "120", "--log-level", "warn"},
                       150, "{\"value\":3}\n{\"value\":4}\n");
  EXPECT_EQ(piped.exit_code, 2) << piped.err;
  EXPECT_NE(piped.err.find("--source -"), std::string::npos) << piped.err;

  // A forged claim check outside the worker's --data-dir: dead-lettered at once.
  const std::string forged = Unique("cli-forged-");
  const Event chunk =
      MakeEvent(kProcessChunk, forged + "/chunk/0", forged, forged,
                {{"chunk_index", 0},
                 {"first_item", 0},
                 {"item_count", 1},
                 {"ref", {{"path", "/etc/passwd"}, {"offset", 0}, {"length", 100}}}});
  ASSERT_TRUE(bus->Publish(Message{chunk.type, chunk.id, EncodeEvent(chunk)}).ok());
  EXPECT_EQ(DeadLetterReason(url(), routes::kWorkerGroup, forged + "/chunk/0"),
            "data.ref.path: path is not under an allowed --data-dir")
      << worker.Log();

  for (auto* p : {&ventilator, &worker, &aggregator}) p->Signal(SIGTERM);
  for (auto* p : {&ventilator, &worker, &aggregator})
    EXPECT_EQ(p->Wait(std::chrono::seconds(30)), 0) << p->Log();
}

FANFLOW_ON_EVERY_BUS(DataDirCliTest);

TEST(DataDirCliConfigTest, ABadDataDirIsAUsageError) {
  const std::string dir = testing::TempDir("cli-bad-data-dir");
  std::ofstream(dir + "/file") << "x";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c :
       {Case{{"ventilator", "--bus", "amqp://127.0.0.1:1/", "--data-dir", dir + "/missing"},
             "--data-dir '" + dir + "/missing': "},
        Case{{"worker", "--bus", "amqp://127.0.0.1:1/", "--data-dir", dir, "--data-dir",
              dir + "/file"},
             "--data-dir '" + dir + "/file': not a directory"},
        Case{{"run", "--source", "range:10", "--data-dir", dir + "/missing"},
             "--data-dir '" + dir + "/missing': "}}) {
    auto r = Fanflow(c.args, 30);
    EXPECT_EQ(r.exit_code, 2) << c.args[0] << ": " << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args[0] << ": " << r.err;
  }
  for (const char* cmd : {"ventilator", "worker", "run"}) {
    auto help = Fanflow({cmd, "--help"}, 10);
    EXPECT_NE(help.out.find("--data-dir DIR"), std::string::npos) << cmd << ": " << help.out;
  }
}

TEST(DataDirCliConfigTest, RunReadsItsOwnSourceFileAndItsClaimChecksWithoutADataDir) {
  const std::string dir = testing::TempDir("cli-run-own");
  const int64_t sum = WriteItems(dir + "/items.jsonl", 300);
  std::filesystem::create_directory_symlink(dir, dir + "-link");
  auto r = Fanflow({"run", "--source", "jsonl:" + dir + "-link/items.jsonl", "--chunk-size", "10",
                    "--claim-check-bytes", "64", "--json", "--log-level", "warn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(LastJsonLine(r.out)["data"]["result"], sum);
  EXPECT_EQ(LastJsonLine(r.out)["data"]["chunks"], 30);
}

}  // namespace
}  // namespace fanflow
