// Results consolidated without loss (issue 11): concat in chunk order, a value
// a strategy cannot combine, and the results file after redelivered chunk_done
// events, through a whole in-process pipeline.
#include "pipeline/results_sink.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "pipeline/aggregator.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/pipeline/test_buses.h"

namespace fanflow {
namespace {

using nlohmann::json;
using testing::EventCollector;
using testing::Unique;

// Returns what `make` makes of a chunk's items, after 0-2 ms, so chunks finish
// (and their chunk_done arrive) out of order.
class ItemsProcessor final : public Processor {
 public:
  explicit ItemsProcessor(std::function<json(const ChunkInput&)> make) : make_(std::move(make)) {}
  Result<json> Process(const ChunkInput& c) override {
    thread_local std::mt19937 rng(std::random_device{}());
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 2000));
    return make_(c);
  }

 private:
  const std::function<json(const ChunkInput&)> make_;
};

json Ids(const ChunkInput& c) {
  json ids = json::array();
  for (const json& item : c.items) ids.push_back(item["id"]);
  return ids;
}

// Publishes every chunk_done it sees twice more: the aggregator gets each three times.
class Redeliverer {
 public:
  explicit Redeliverer(EventBus& bus) : bus_(bus) {
    SubscribeOptions o{Unique("redeliver"), {kChunkDone}, 1};
    o.ephemeral = true;
    auto sub = bus.Subscribe(o, [this](const Delivery& d) {
      std::lock_guard<std::mutex> l(mu_);
      if (!seen_.insert(d.message.id).second) return Verdict::Ack();
      for (int i = 0; i < 2; ++i)
        if (bus_.Publish(d.message).ok()) ++published_;
      return Verdict::Ack();
    });
    EXPECT_TRUE(sub.ok());
    sub_ = std::move(sub).value();
  }
  int published() {
    std::lock_guard<std::mutex> l(mu_);
    return published_;
  }

 private:
  EventBus& bus_;
  std::mutex mu_;
  std::set<std::string> seen_;
  int published_ = 0;
  std::unique_ptr<Subscription> sub_;
};

class ResultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() / Unique("fanflow-results-")).string();
    std::filesystem::create_directories(dir_);
    bus_ = testing::PrivateBus();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs batch `batch` of `items` items in chunks of 10 and returns its batch_complete.
  Event RunBatch(const std::string& batch, int64_t items, const std::string& combine,
                 std::function<json(const ChunkInput&)> make, bool redeliver) {
    AggregatorOptions a;
    a.state_path = dir_ + "/ledger.db";
    a.results = dir_ + "/{batch}.results.jsonl";
    auto aggregator = Aggregator::Start(*bus_, a);
    EXPECT_TRUE(aggregator.ok()) << aggregator.status().ToString();
    WorkerOptions w;
    w.concurrency = 8;
    auto worker = Worker::Start(*bus_, std::make_shared<ItemsProcessor>(std::move(make)), w);
    EXPECT_TRUE(worker.ok());
    auto ventilator = Ventilator::Start(*bus_, {});
    EXPECT_TRUE(ventilator.ok());
    std::unique_ptr<Redeliverer> redeliverer;
    if (redeliver) redeliverer = std::make_unique<Redeliverer>(*bus_);
    EventCollector complete(*bus_, kBatchComplete,
                            [&](const Event& e) { return e.subject == batch; });
    Event start = MakeStartFanout(batch, batch, "range:" + std::to_string(items) + ":5", 10);
    start.data["combine"] = combine;
    EXPECT_TRUE(bus_->Publish(testing::ToMessage(start)).ok());
    EXPECT_TRUE(complete.WaitFor(1, std::chrono::seconds(120)));
    if (redeliverer) {
      EXPECT_GE(redeliverer->published(), 1) << "no chunk_done was redelivered";
      redelivered_ = redeliverer->published();
    }
    return complete.events().empty() ? Event{} : complete.events().front();
  }

  std::vector<json> ResultsLines(const Event& complete) {
    std::ifstream in(complete.data["results"]["path"].get<std::string>());
    std::vector<json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
    return lines;
  }

  std::string dir_;
  std::unique_ptr<EventBus> bus_;
  int redelivered_ = 0;
};

TEST_F(ResultsTest, ArraysFrom1000ChunksConcatenateInChunkOrderNoneLostWithRedeliveries) {
  const std::string batch = Unique("concat-");
  const Event e = RunBatch(batch, 10000, "concat", Ids, true);
  ASSERT_EQ(e.data["status"], "succeeded") << e.data.dump().substr(0, 500);
  json expected = json::array();
  for (int i = 0; i < 10000; ++i) expected.push_back(i);
  EXPECT_EQ(e.data["result"], expected) << "every id once, in chunk order";
  EXPECT_GE(redelivered_, 1000) << "each chunk_done was published again";

  // The results file: one line per chunk, in order, however often its chunk_done came.
  const json& ref = e.data["results"];
  const std::string path = dir_ + "/" + batch + ".results.jsonl";
  EXPECT_EQ(ref["path"], path);
  EXPECT_EQ(ref["lines"], 1000);
  EXPECT_EQ(ref["bytes"], static_cast<int64_t>(std::filesystem::file_size(path)));
  const std::vector<json> lines = ResultsLines(e);
  ASSERT_EQ(lines.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(lines[i]["chunk_index"], i);
    EXPECT_EQ(lines[i]["status"], "succeeded");
    EXPECT_EQ(lines[i]["items"], 10);
    json ids = json::array();
    for (int k = 0; k < 10; ++k) ids.push_back(i * 10 + k);
    EXPECT_EQ(lines[i]["result"], ids) << "chunk " << i;
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(ResultsTest, AValueMergeCannotCombineFailsTheBatchWithTheReasonAndTheFileKeepsEveryResult) {
  const std::string batch = Unique("uncombinable-");
  const Event e = RunBatch(
      batch, 200, "merge",
      [](const ChunkInput& c) {
        return json{{"count", c.items.size()}, {"label", "chunk-" + std::to_string(c.chunk_index)}};
      },
      false);
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_TRUE(e.data["result"].is_null()) << "no half-merged result";
  EXPECT_EQ(e.data["succeeded"], 20) << "every chunk itself succeeded";
  const std::string error = e.data.value("error", "");
  EXPECT_EQ(error.rfind("data.result: chunk ", 0), 0u) << error;
  EXPECT_NE(error.find(": result.label: a string (\"chunk-"), std::string::npos) << error;
  EXPECT_NE(error.find("cannot be merged into a string"), std::string::npos) << error;
  const std::vector<json> lines = ResultsLines(e);
  ASSERT_EQ(lines.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(lines[i]["result"]["label"], "chunk-" + std::to_string(i));
}

TEST_F(ResultsTest, ConcatOfSomethingElseThanAnArrayFailsTheBatch) {
  const std::string batch = Unique("concat-number-");
  const Event e = RunBatch(
      batch, 50, "concat",
      [](const ChunkInput& c) { return c.chunk_index == 3 ? json(7) : Ids(c); }, false);
  EXPECT_EQ(e.data["status"], "failed");
  EXPECT_EQ(
      e.data["error"],
      "data.result: chunk 3: result: a number (7) cannot be concatenated (concat takes arrays)");
  EXPECT_TRUE(e.data["result"].is_null());
}

TEST_F(ResultsTest, NoneLeavesTheResultNullAndTheFileHoldsThem) {
  const std::string batch = Unique("none-");
  const Event e = RunBatch(batch, 30, "none", Ids, false);
  EXPECT_EQ(e.data["status"], "succeeded");
  EXPECT_TRUE(e.data["result"].is_null());
  const std::vector<json> lines = ResultsLines(e);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2]["result"], json({20, 21, 22, 23, 24, 25, 26, 27, 28, 29}));
}

// The batch id is a stranger's choice; the file stays in the operator's directory.
TEST(ResultsPath, ABatchIdCannotLeaveTheDirectoryOrHideTheFile) {
  EXPECT_EQ(ResultsPathFor("/r/{batch}.jsonl", "b-1.x_y"), "/r/b-1.x_y.jsonl");
  EXPECT_EQ(ResultsPathFor("/r/{batch}.jsonl", "../etc/passwd"), "/r/%2E.%2Fetc%2Fpasswd.jsonl");
  EXPECT_EQ(ResultsPathFor("/r/{batch}", ".."), "/r/%2E.");
  EXPECT_EQ(ResultsPathFor("/r/{batch}-{batch}", "a b"), "/r/a%20b-a%20b");
  EXPECT_EQ(ResultsPathFor("/r/all.jsonl", "b"), "/r/all.jsonl");
}

}  // namespace
}  // namespace fanflow
