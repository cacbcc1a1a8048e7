// --coprocess on every bus: a Python copy (tests/pipeline/coprocess_copy.py)
// behind a real worker. The cap, replacement of a copy that crashes, replies
// badly, hangs or floods, and its stderr in the log with the batch id.
#include "pipeline/coprocess.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

#include "pipeline/worker.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/pipeline/test_buses.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;
using testing::EventCollector;
using testing::Unique;

// Chunk `index` of `batch`: three items whose values sum to 6 * (index + 1).
Event Chunk(const std::string& batch, int64_t index) {
  nlohmann::json items = nlohmann::json::array();
  for (int64_t v : {1, 2, 3}) items.push_back({{"id", index * 3 + v}, {"value", v * (index + 1)}});
  return MakeEvent(
      kProcessChunk, ChunkEventId(batch, index), batch, "corr-" + batch,
      {{"chunk_index", index}, {"first_item", index * 3}, {"item_count", 3}, {"items", items}});
}

// Neither gone nor a zombie.
bool Running(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class CoprocessTest : public testing::EveryBus {
 protected:
  void SetUp() override {
    EveryBus::SetUp();
    if (IsSkipped()) return;
    dir_ = (std::filesystem::temp_directory_path() / Unique("fanflow-coprocess-")).string();
    std::filesystem::create_directories(dir_);
    log_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(2000);
    spdlog::default_logger()->sinks().push_back(log_);
    bus_ = Open();
    ASSERT_TRUE(bus_);
    batch_ = Unique("coproc-");
    done_ = std::make_unique<EventCollector>(
        *bus_, kChunkDone, [this](const Event& e) { return e.subject == batch_; });
  }
  void TearDown() override {
    worker_.reset();
    done_.reset();
    bus_.reset();
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), log_), sinks.end());
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void StartWorker(const std::string& mode, int concurrency, int max_attempts,
                   std::chrono::milliseconds timeout = {}) {
    ProcessorOptions p;
    p.name = "coprocess";
    p.command = std::string(FANFLOW_PYTHON3) +
                " " FANFLOW_SOURCE_DIR "/tests/pipeline/coprocess_copy.py " + dir_ + " " + mode;
    p.copies = concurrency;
    p.timeout = timeout;
    auto processor = MakeProcessor(p);
    ASSERT_TRUE(processor.ok()) << processor.status().ToString();
    WorkerOptions o;
    o.concurrency = concurrency;
    o.max_attempts = max_attempts;
    o.backoff_base = std::chrono::milliseconds(20);
    auto w = Worker::Start(*bus_, std::shared_ptr<Processor>(std::move(processor).value()), o);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    worker_ = std::move(w).value();
  }
  void Publish(int64_t chunks) {
    for (int64_t i = 0; i < chunks; ++i) {
      const Event e = Chunk(batch_, i);
      ASSERT_TRUE(bus_->Publish(Message{e.type, e.id, EncodeEvent(e)}).ok());
    }
  }
  // The only chunk_done of chunk 0, once it came.
  Event OnlyDone() {
    EXPECT_TRUE(done_->WaitFor(1));
    auto events = done_->events();
    EXPECT_EQ(events.size(), 1u);
    return events.empty() ? Event{} : events.front();
  }
  // Copies ever started.
  std::vector<int> Pids() {
    std::vector<int> pids;
    std::error_code ec;
    for (const auto& f : std::filesystem::directory_iterator(dir_ + "/pids", ec))
      pids.push_back(std::stoi(f.path().filename().string()));
    return pids;
  }
  // The most copies alive at once, as the copies counted before each reply.
  int PeakAlive() {
    std::ifstream in(dir_ + "/alive");
    std::string word;
    int n = 0, peak = 0;
    while (in >> word >> n) peak = std::max(peak, n);
    return peak;
  }
  // A log line holding `text`, and `also` after it.
  bool Logged(const std::string& text, const std::string& also = "") {
    for (const std::string& line : log_->last_formatted()) {
      const size_t at = line.find(text);
      if (at != std::string::npos && line.find(also, at + text.size()) != std::string::npos)
        return true;
    }
    return false;
  }

  std::string dir_;
  std::string batch_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_;
  std::unique_ptr<EventBus> bus_;
  std::unique_ptr<EventCollector> done_;
  std::unique_ptr<Worker> worker_;
};

TEST_P(CoprocessTest, KeepsAtMostConcurrencyCopiesAliveAndReusesThem) {
  StartWorker("sum", 3, 1);
  Publish(30);
  ASSERT_TRUE(done_->WaitFor(30, std::chrono::seconds(60)));
  std::set<int64_t> indices;
  for (const Event& e : done_->events()) {
    const int64_t i = e.data["chunk_index"].get<int64_t>();
    indices.insert(i);
    EXPECT_EQ(e.data["status"], "succeeded") << e.data.dump();
    EXPECT_EQ(e.data["result"], 6 * (i + 1)) << "chunk " << i;
  }
  EXPECT_EQ(indices.size(), 30u);
  // 30 chunks of 30 ms on 3 slots overlap: several copies ran, never more than 3.
  EXPECT_LE(PeakAlive(), 3);
  EXPECT_GE(PeakAlive(), 2) << "the copies' count must see the others";
  EXPECT_LE(Pids().size(), 3u) << "a copy takes chunk after chunk";
  EXPECT_GE(Pids().size(), 2u);
}

TEST_P(CoprocessTest, ACopyThatCrashesMidChunkIsReplacedAndTheChunkRetried) {
  StartWorker("crash-once", 1, 3);
  Publish(1);
  const Event e = OnlyDone();
  EXPECT_EQ(e.data["status"], "succeeded") << e.data.dump();
  EXPECT_EQ(e.data["attempts"], 2);
  EXPECT_EQ(e.data["result"], 6);
  ASSERT_EQ(Pids().size(), 2u) << "the crashed copy was replaced";
  EXPECT_TRUE(
      Logged("[batch " + batch_ + "] coprocess pid ", " stderr: dying on purpose in chunk 0"))
      << "stderr with the batch id";
  EXPECT_TRUE(Logged("ended mid-chunk (exited with 3)"));
}

TEST_P(CoprocessTest, ABadReplyLineFailsTheAttemptAndReplacesTheCopy) {
  StartWorker("bad", 1, 2);
  Publish(1);
  const Event e = OnlyDone();
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_EQ(e.data["attempts"], 2);
  const std::string error = e.data.value("error", "");
  EXPECT_NE(
      error.find("replied '{\"resutl\": 1}': not {\"result\": ANY} or {\"error\": \"message\"}"),
      std::string::npos)
      << error;
  EXPECT_EQ(Pids().size(), 2u) << "each bad reply cost its copy";
}

TEST_P(CoprocessTest, AnErrorReplyFailsTheAttemptAndKeepsTheCopy) {
  StartWorker("error", 1, 2);
  Publish(1);
  const Event e = OnlyDone();
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_EQ(e.data["attempts"], 2);
  EXPECT_EQ(e.data["error"], "coprocess: no luck with chunk 0");
  EXPECT_EQ(Pids().size(), 1u);
}

TEST_P(CoprocessTest, ItsStderrIsLoggedWithTheBatchIdAndTheCopyStays) {
  StartWorker("chatty", 1, 1);
  Publish(2);
  ASSERT_TRUE(done_->WaitFor(2));
  ASSERT_TRUE(testing::Eventually([&] { return Logged("working on chunk 1"); }));
  // The pid logged is the copy's process group (its /bin/sh).
  EXPECT_TRUE(Logged("[batch " + batch_ + "] coprocess pid ", " stderr: working on chunk 0"));
  EXPECT_EQ(Pids().size(), 1u);
}

TEST_P(CoprocessTest, ACopyPastTheChunkTimeoutIsKilledAndReplaced) {
  StartWorker("hang", 1, 2, std::chrono::milliseconds(300));
  const auto t0 = Clock::now();
  Publish(1);
  const Event e = OnlyDone();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_NE(e.data.value("error", "").find("took longer than --chunk-timeout 300 ms"),
            std::string::npos)
      << e.data.dump();
  ASSERT_EQ(Pids().size(), 2u);
  // Killed with its process group (/bin/sh was its parent: a zombie is dead too).
  for (int pid : Pids())
    EXPECT_TRUE(testing::Eventually([&] { return !Running(pid); })) << pid << " still runs";
}

// A hostile copy cannot make the worker buffer without bound.
TEST_P(CoprocessTest, AReplyLongerThanAMessageFailsTheAttempt) {
  StartWorker("flood", 1, 1);
  Publish(1);
  const Event e = OnlyDone();
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_NE(e.data.value("error", "").find("replied with a line longer than 16777216 bytes"),
            std::string::npos)
      << e.data.dump();
}

FANFLOW_ON_EVERY_BUS(CoprocessTest);

}  // namespace
}  // namespace fanflow
