// Issue 5 through the `fanflow` binary, as a user runs it: load leveling and
// --tolerate with `fanflow run` on every bus; `fanflow dlq` and `fanflow
// monitor` across processes on the brokers; bad configuration values.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "core/event.h"
#include "core/printable.h"
#include "core/routes.h"
#include "pipeline/source.h"
#include "tests/pipeline/concurrency_recorder.h"
#include "tests/pipeline/metrics_scrape.h"
#include "tests/pipeline/test_buses.h"
#include "tests/support/command_output.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::LastJsonLine;

using testing::FanflowBinary;
using testing::RunProcess;
using testing::Unique;

testing::ProcessResult Fanflow(std::vector<std::string> args, int limit_s = 120) {
  args.insert(args.begin(), FanflowBinary());
  return RunProcess(args, std::chrono::seconds(limit_s));
}

class OpsCliTest : public testing::EveryBus {};

TEST_P(OpsCliTest, RunLevelsABurstUnderTheCapAndTheRateAndLosesNothing) {
  const std::string dir = fanflow::testing::TempDir("cli-burst");
  const std::string batch = Unique("cli-burst-");
  // 40 chunks fanned out at once; the workers may start 8/s, 3 at a time.
  auto r = Fanflow({"run",
                    "--bus",
                    url(),
                    "--source",
                    "range:400:7",
                    "--chunk-size",
                    "10",
                    "--batch-id",
                    batch,
                    "--exec",
                    testing::RecorderCommand(dir, 0.05),
                    "--concurrency",
                    "3",
                    "--rate",
                    "8/s",
                    "--rate-burst",
                    "2",
                    "--json",
                    "--log-level",
                    "warn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json e = LastJsonLine(r.out);
  EXPECT_EQ(e["data"]["status"], "succeeded");
  int64_t sum = 0;
  for (int64_t i = 0; i < 400; ++i) sum += RangeItemValue(7, i);
  EXPECT_EQ(e["data"]["result"], sum) << "nothing lost, nothing counted twice";
  const auto log = testing::RecorderLog::Read(dir, batch);
  EXPECT_EQ(log.runs, 40);
  EXPECT_LE(log.peak, 3);
  EXPECT_LE(log.MostStartsWithin(1.0), 2 + 8 + 1);
  EXPECT_LE((40 - 2) / (log.starts.back() - log.starts.front()), 8 * 1.1);
}

TEST_P(OpsCliTest, ABatchWithDeadLetteredChunksIsPartialWithinTheToleranceAndFailedPastIt) {
  const std::string fail_3_and_7 =
      "case $FANFLOW_CHUNK_INDEX in 3|7) echo bad chunk >&2; exit 1;; esac; echo 1";
  struct Case {
    std::string tolerate;
    std::string status;
    int exit_code;
  };
  for (const Case& c : {Case{"2", "partial", 3}, Case{"1", "failed", 4}, Case{"20%", "partial", 3},
                        Case{"10%", "failed", 4}}) {
    auto r = Fanflow({"run",         "--bus",          url(),        "--source",
                      "range:100",   "--chunk-size",   "10",         "--exec",
                      fail_3_and_7,  "--max-attempts", "2",          "--backoff-ms",
                      "10",          "--tolerate",     c.tolerate,   "--json",
                      "--log-level", "error",          "--batch-id", Unique("cli-tolerate-")});
    EXPECT_EQ(r.exit_code, c.exit_code) << c.tolerate << ": " << r.err;
    const nlohmann::json e = LastJsonLine(r.out);
    EXPECT_EQ(e["data"]["status"], c.status) << c.tolerate;
    EXPECT_EQ(e["data"]["failed_chunks"], nlohmann::json::array({3, 7}));
    EXPECT_EQ(e["data"]["result"], 8);
  }
}

TEST_P(OpsCliTest, DlqListsShowsReplaysAndPurgesAcrossProcesses) {
  if (inproc())
    GTEST_SKIP() << "inproc:// lives in one process; its dead letters are tested in ops_test";
  const std::string batch = Unique("cli-dlq-");
  const std::string flag = fanflow::testing::TempDir("cli-dlq") + "/fail";
  std::ofstream(flag) << "1";
  // Chunk 2 fails while the flag file exists.
  auto r = Fanflow({"run", "--bus", url(), "--source", "range:30", "--chunk-size", "10",
                    "--batch-id", batch, "--exec",
                    "if [ $FANFLOW_CHUNK_INDEX = 2 ] && [ -e " + flag +
                        " ]; then echo no >&2; exit 1; fi; echo 1",
                    "--max-attempts", "1", "--json", "--log-level", "error"});
  ASSERT_EQ(r.exit_code, 3) << r.err;
  const std::string id = batch + "/chunk/2";

  auto list = Fanflow({"dlq", "list", "--bus", url(), "--group", "workers", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  nlohmann::json mine;
  std::istringstream lines(list.out);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j["id"] == id) mine = j;
  }
  ASSERT_TRUE(mine.is_object()) << list.out;
  EXPECT_EQ(mine["category"], "attempts_exhausted");
  EXPECT_EQ(mine["attempts"], 1);
  EXPECT_NE(mine["reason"].get<std::string>().find("exited with 1: no"), std::string::npos);
  EXPECT_EQ(mine["event"]["data"]["chunk_index"], 2) << "the original event";
  EXPECT_FALSE(mine["time"].get<std::string>().empty());

  auto table = Fanflow({"dlq", "list", "--bus", url()});
  EXPECT_NE(table.out.find(id), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("[attempts_exhausted]"), std::string::npos);
  auto show = Fanflow({"dlq", "show", id, "--bus", url(), "--group", "workers"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\"chunk_index\": 2"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("attempts  1"), std::string::npos);
  auto missing = Fanflow({"dlq", "show", "no-such-id", "--bus", url()});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no dead letter with id 'no-such-id'"), std::string::npos);

  // Replayed to the workers' queue, it is processed normally by a worker.
  std::remove(flag.c_str());
  auto bus = Open();
  ASSERT_TRUE(bus);
  testing::EventCollector done(*bus, kChunkDone,
                               [&](const Event& e) { return e.subject == batch; });
  testing::BackgroundProcess worker(
      {FanflowBinary(), "worker", "--bus", url(), "--processor", "sum"},
      fanflow::testing::TempDir("cli-dlq-worker") + "/log");
  auto replay = Fanflow({"dlq", "replay", id, "--bus", url(), "--group", "workers"});
  ASSERT_EQ(replay.exit_code, 0) << replay.err;
  EXPECT_NE(replay.out.find("replayed 1 dead letter(s)"), std::string::npos) << replay.out;
  ASSERT_TRUE(done.WaitFor(1, std::chrono::seconds(60))) << worker.Log();
  EXPECT_EQ(done.events()[0].data["status"], "succeeded");
  EXPECT_EQ(done.events()[0].data["chunk_index"], 2);
  worker.Signal(SIGTERM);
  EXPECT_EQ(worker.Wait(std::chrono::seconds(30)), 0) << worker.Log();

  auto purge = Fanflow({"dlq", "purge", "--bus", url(), "--group", "workers", "--json"});
  ASSERT_EQ(purge.exit_code, 0) << purge.err;
  EXPECT_TRUE(LastJsonLine(purge.out).contains("purged")) << purge.out;
  auto empty = Fanflow({"dlq", "list", "--bus", url(), "--group", "workers", "--json"});
  EXPECT_EQ(empty.out.find(batch), std::string::npos);
}

// The tool must survive what it exists to show: a foreign client's binary,
// invalid-UTF-8 body, dead-lettered by a worker, is listed as JSON (text with
// replacements plus the exact bytes in base64) and shown escaped.
TEST_P(OpsCliTest, DlqListsAndShowsABinaryBodyWithoutDying) {
  if (inproc())
    GTEST_SKIP() << "inproc:// lives in one process; its dead letters are tested in pipeline_test";
  const std::string id = Unique("cli-dlq-bin-");
  const std::string body("\xff\xfe" "\x00" "binary\nbody\xc3", 15);
  auto bus = Open();
  ASSERT_TRUE(bus);
  ASSERT_TRUE(bus->DeclareGroup(routes::kWorkerGroup, {kProcessChunk}).ok());
  ASSERT_TRUE(bus->Publish(Message{kProcessChunk, id, body}).ok());
  testing::BackgroundProcess worker(
      {FanflowBinary(), "worker", "--bus", url(), "--processor", "sum"},
      fanflow::testing::TempDir("cli-dlq-bin-worker") + "/log");
  nlohmann::json mine;
  for (int i = 0; i < 100 && !mine.is_object(); ++i) {
    auto list = Fanflow({"dlq", "list", "--bus", url(), "--group", "workers", "--json"});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    std::istringstream lines(list.out);
    for (std::string line; std::getline(lines, line);) {
      auto j = nlohmann::json::parse(line, nullptr, false);
      ASSERT_FALSE(j.is_discarded()) << "not one JSON document per line: " << line;
      if (j["id"] == id) mine = j;
    }
    if (!mine.is_object()) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  ASSERT_TRUE(mine.is_object()) << worker.Log();
  EXPECT_EQ(mine["category"], "malformed_json");
  EXPECT_EQ(mine["event_base64"], Base64(body));
  auto show = Fanflow({"dlq", "show", id, "--bus", url(), "--group", "workers"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("\\xFF\\xFE\\x00binary\\nbody\\xC3"), std::string::npos) << show.out;
  auto table = Fanflow({"dlq", "list", "--bus", url()});
  EXPECT_EQ(table.exit_code, 0) << table.err;
  EXPECT_NE(table.out.find(id), std::string::npos) << table.out;
  worker.Signal(SIGTERM);
  EXPECT_EQ(worker.Wait(std::chrono::seconds(30)), 0) << worker.Log();
  EXPECT_TRUE(Fanflow({"dlq", "purge", "--bus", url(), "--group", "workers"}).exit_code == 0);
}

TEST_P(OpsCliTest, MonitorPrintsASnapshotAndServesMetricsThatPromtoolAccepts) {
  if (inproc())
    GTEST_SKIP() << "inproc:// lives in one process; the monitor is tested in ops_test there";
  auto once = Fanflow(
      {"monitor", "--bus", url(), "--once", "--json", "--interval", "0.5", "--log-level", "warn"});
  ASSERT_EQ(once.exit_code, 0) << once.err;
  const nlohmann::json snap = LastJsonLine(once.out);
  ASSERT_TRUE(snap.contains("queues")) << once.out;
  bool workers = false;
  for (const auto& q : snap["queues"])
    workers |= q["group"] == routes::kWorkerGroup && q["type"] == kProcessChunk;
  EXPECT_TRUE(workers) << "the standard groups are watched: " << once.out;
  auto table =
      Fanflow({"monitor", "--bus", url(), "--once", "--interval", "0.2", "--log-level", "warn"});
  EXPECT_NE(table.out.find("QUEUE"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("OUT/s"), std::string::npos);

  const std::string dir = fanflow::testing::TempDir("cli-monitor");
  const std::string ledger = dir + "/ledger.db";
  testing::BackgroundProcess monitor({FanflowBinary(), "monitor", "--bus", url(), "--metrics-port",
                                      "0", "--interval", "0.3", "--duration", "60", "--json"},
                                     dir + "/monitor.log");
  int port = 0;
  const std::regex announced("metrics on http://127\\.0\\.0\\.1:([0-9]+)/metrics");
  for (int i = 0; i < 300 && port == 0; ++i) {
    std::smatch m;
    const std::string log = monitor.Log();
    if (std::regex_search(log, m, announced))
      port = std::stoi(m[1]);
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(port, 0) << monitor.Log();
  for (int i = 0; i < 300; ++i) {  // sampling: two rounds give rates
    if (testing::HttpGet(port, "/metrics").find("fanflow_queue_in_rate_messages_per_second{") !=
        std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // A batch while the monitor watches: its chunks feed the latency histogram.
  const std::string batch = Unique("cli-monitor-");
  auto run = Fanflow({"run", "--bus", url(), "--source", "range:200", "--chunk-size", "10",
                      "--state", ledger, "--batch-id", batch, "--json", "--log-level", "error"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  // Rates need two samples after the tap started; a broker's Stats may be slow.
  std::string body;
  for (int i = 0; i < 300; ++i) {
    body = testing::Body(testing::HttpGet(port, "/metrics"));
    if (body.find("fanflow_queue_in_rate_messages_per_second{") != std::string::npos &&
        body.find("fanflow_chunk_processing_seconds_count 0\n") == std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(body.find("fanflow_queue_depth_messages{"), std::string::npos) << body << monitor.Log();
  EXPECT_NE(body.find("fanflow_queue_in_rate_messages_per_second{"), std::string::npos) << body;
  EXPECT_NE(body.find("fanflow_monitor_up 1"), std::string::npos) << body;
  EXPECT_EQ(body.find("fanflow_chunk_processing_seconds_count 0\n"), std::string::npos)
      << "the chunks of the run were timed: " << body;
  testing::ExpectPromtoolAccepts(body);
  monitor.Signal(SIGTERM);
  EXPECT_EQ(monitor.Wait(std::chrono::seconds(30)), 0) << monitor.Log();

  // With the ledger: open batches; the run's own is complete, so not among them.
  auto batches = Fanflow({"monitor", "--bus", url(), "--once", "--json", "--interval", "0.2",
                          "--state", ledger, "--log-level", "warn"});
  ASSERT_EQ(batches.exit_code, 0) << batches.err;
  const nlohmann::json open = LastJsonLine(batches.out)["batches"];
  ASSERT_TRUE(open.is_array()) << batches.out;
  for (const auto& b : open) EXPECT_NE(b["batch_id"], batch);
}

FANFLOW_ON_EVERY_BUS(OpsCliTest);

TEST(OpsCliConfigTest, BadValuesExitNonZeroWithAClearMessage) {
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"run", "--source", "range:10", "--concurrency", "-1"}, 2, "--concurrency"},
      {{"run", "--source", "range:10", "--rate", "5/h"},
       2,
       "--rate '5/h': unknown unit 'h'; accepted forms: N/s"},
      {{"run", "--source", "range:10", "--rate", "-5/s"},
       2,
       "--rate '-5/s': the rate must be a number > 0"},
      {{"run", "--source", "range:10", "--rate", "5/s", "--rate-unit", "bytes"},
       2,
       "--rate-unit 'bytes': unknown unit"},
      {{"run", "--source", "range:10", "--deadline", "-1"}, 2, "--deadline"},
      {{"run", "--source", "range:10", "--batch-id", "b\nINFO forged"},
       2,
       "--batch-id: must not contain control characters"},
      {{"run", "--source", "range:10", "--batch-id", std::string(201, 'b')},
       2,
       "--batch-id: must be at most 200 characters"},
      {{"run", "--source", "range:10", "--correlation-id", "c\x7f"},
       2,
       "--correlation-id: must not contain control characters"},
      {{"run", "--source", "range:10", "--chunk-size", "2000000"},
       2,
       "data.chunk_size: must be an integer >= 1 and <= 1000000"},
      {{"dlq", "list", "--bus", "amqp://127.0.0.1:1/", "--group", "a/b"},
       2,
       "--group: group 'a/b': must be 1..64 characters of A-Z a-z 0-9 . _ -"},
      {{"monitor", "--bus", "amqp://127.0.0.1:1/", "--group", "g#"}, 2, "--group: group 'g#'"},
      {{"dlq", "list", "--bus", "guest:hunter2@localhost"}, 2, "has no scheme"},
      {{"monitor", "--bus", "amqp://127.0.0.1:1/", "--alarm-depth", "-5"},
       2,
       "--alarm-depth '-5': the value must be a number > 0"},
      {{"monitor", "--bus", "amqp://127.0.0.1:1/", "--alarm-oldest-age", "50%"},
       2,
       "no --retention applies"},
      {{"monitor", "--bus", "amqp://127.0.0.1:1/", "--retention", "600", "--dlq-retention", "60"},
       2,
       "dead-letter retention 60 s is not longer than the source queue's retention 600 s"},
      {{"monitor", "--bus", "amqp://127.0.0.1:1/", "--interval", "0"}, 2, "--interval"},
      {{"monitor", "--bus", "inproc://"}, 2, "inproc:// only connects code inside one process"},
      {{"dlq", "list", "--bus", "inproc://"}, 2, "inproc:// only connects code inside one process"},
      {{"dlq", "frobnicate", "--bus", "amqp://127.0.0.1:1/"}, 2, "A subcommand is required"},
      {{"worker", "--bus", "amqp://127.0.0.1:1/", "--processor", "sum"}, 1, "cannot connect"},
      {{"monitor", "--bus", "amqp://127.0.0.1:1/", "--once"}, 1, "cannot connect"},
      {{"dlq", "list", "--bus", "amqp://127.0.0.1:1/"}, 1, "cannot connect"},
      {{"dlq", "list", "--bus", "mqtt://127.0.0.1:1"}, 1, "connect failure"},
      {{"monitor", "--bus", "mqtt://127.0.0.1:1", "--once"}, 1, "connect failure"},
      {{"topology", "--bus",
        "amqp://127.0.0.1:1/?workers.message_ttl_ms=1000&workers.dlq_ttl_ms=1000"},
       2,
       "dlq_ttl_ms"},
  };
  for (const Case& c : cases) {
    auto r = Fanflow(c.args, 30);
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_EQ(r.exit_code, c.code) << cmd << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << cmd << "\nstderr was: " << r.err;
  }
}

}  // namespace
}  // namespace fanflow
