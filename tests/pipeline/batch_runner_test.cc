#include "pipeline/batch_runner.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

namespace fanflow {
namespace {

// The sum of the squares of the items' values, as docs/CPP_API.md's processor.
class SumOfSquares final : public Processor {
 public:
  Result<nlohmann::json> Process(const ChunkInput& chunk) override {
    int64_t sum = 0;
    for (const auto& item : chunk.items)
      sum += item["value"].get<int64_t>() * item["value"].get<int64_t>();
    return nlohmann::json{{"sum_of_squares", sum}};
  }
};

// Throws on one chunk, every attempt.
class ThrowsOnChunk final : public Processor {
 public:
  explicit ThrowsOnChunk(int64_t bad) : bad_(bad) {}
  Result<nlohmann::json> Process(const ChunkInput& chunk) override {
    if (chunk.chunk_index == bad_)
      throw std::runtime_error("boom in chunk " + std::to_string(bad_));
    return nlohmann::json{{"n", 1}};
  }

 private:
  const int64_t bad_;
};

// Holds every chunk until asked to stop.
class WaitsForStop final : public Processor {
 public:
  Result<nlohmann::json> Process(const ChunkInput& chunk) override {
    ++started;
    while (!chunk.stop.stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return Cancelled("stopped");
  }
  std::atomic<int> started{0};
};

std::unique_ptr<EventBus> Bus(const std::string& name) {
  return OpenBus("inproc://" + name).value();
}

BatchSpec Spec(const std::string& source) {
  BatchSpec spec;
  spec.source = source;
  return spec;
}

TEST(BatchRunnerTest, RunsAJsonlBatchWithItsOwnProcessorAndReturnsTheMergedResult) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("batch-runner-" + std::to_string(getpid()) + ".jsonl");
  int64_t want = 0;
  {
    std::ofstream out(path);
    for (int i = 0; i < 1001; ++i) {
      const int64_t v = i * 37 % 1009 - 500;
      want += v * v;
      out << nlohmann::json{{"id", i}, {"value", v}}.dump() << "\n";
    }
  }
  auto bus = Bus("runner-jsonl");
  BatchSpec spec;
  spec.source = "jsonl:" + path.string();
  spec.chunk_size = 50;
  auto complete = RunBatch(*bus, std::make_shared<SumOfSquares>(), spec);
  std::filesystem::remove(path);
  ASSERT_TRUE(complete.ok()) << complete.status().ToString();
  EXPECT_EQ(complete->type, kBatchComplete);
  EXPECT_EQ(complete->data["status"], "succeeded");
  EXPECT_EQ(complete->data["chunks"], 21);
  EXPECT_EQ(complete->data["items"], 1001);
  EXPECT_EQ(complete->data["result"], (nlohmann::json{{"sum_of_squares", want}}));
}

TEST(BatchRunnerTest, AProcessorThatThrowsFailsItsChunkAndTheBatchStillCompletes) {
  auto bus = Bus("runner-throws");
  BatchSpec spec;
  spec.source = "range:40";
  spec.chunk_size = 10;
  RunOptions options;
  options.max_attempts = 2;
  auto complete = RunBatch(*bus, std::make_shared<ThrowsOnChunk>(2), spec, options);
  ASSERT_TRUE(complete.ok()) << complete.status().ToString();
  EXPECT_EQ(complete->data["status"], "partial");
  EXPECT_EQ(complete->data["failed_chunks"], (nlohmann::json{2}));
  EXPECT_EQ(complete->data["result"], (nlohmann::json{{"n", 3}}));
}

TEST(BatchRunnerTest, AStopRequestEndsTheRunWithCancelled) {
  auto bus = Bus("runner-stop");
  auto processor = std::make_shared<WaitsForStop>();
  std::stop_source stop;
  BatchSpec spec;
  spec.source = "range:100";
  RunOptions options;
  options.stop = stop.get_token();
  std::thread stopper([&] {
    while (processor->started == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    stop.request_stop();
  });
  const auto t0 = std::chrono::steady_clock::now();
  auto complete = RunBatch(*bus, processor, spec, options);
  stopper.join();
  EXPECT_EQ(complete.status().code(), StatusCode::kCancelled) << complete.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(BatchRunnerTest, ATimeoutEndsTheRunWithTimeout) {
  auto bus = Bus("runner-timeout");
  BatchSpec spec;
  spec.source = "range:10";
  RunOptions options;
  options.timeout = std::chrono::milliseconds(300);
  auto complete = RunBatch(*bus, std::make_shared<WaitsForStop>(), spec, options);
  EXPECT_EQ(complete.status().code(), StatusCode::kTimeout) << complete.status().ToString();
}

TEST(BatchRunnerTest, ABadSpecIsRefusedBeforeAnythingRuns) {
  auto bus = Bus("runner-bad");
  auto processor = std::make_shared<SumOfSquares>();
  EXPECT_EQ(RunBatch(*bus, processor, Spec("jsonl:/no/such/file.jsonl")).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(RunBatch(*bus, processor, Spec("rang:10")).status().code(),
            StatusCode::kInvalidArgument);
  BatchSpec bad_id = Spec("range:10");
  bad_id.batch_id = "b\nforged";
  auto refused = RunBatch(*bus, processor, bad_id);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("--batch-id"), std::string::npos)
      << refused.status().ToString();
  EXPECT_EQ(RunBatch(*bus, nullptr, Spec("range:10")).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(BatchRunnerTest, MakeBatchStartMakesAJsonlPathAbsoluteAndKeepsTheIds) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("batch-start-" + std::to_string(getpid()) + ".jsonl");
  { std::ofstream(path) << "{\"value\": 1}\n"; }
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(path.parent_path());
  BatchSpec spec;
  spec.source = "jsonl:" + path.filename().string();
  spec.batch_id = "my-batch";
  spec.correlation_id = "my-correlation";
  auto start = MakeBatchStart(spec);
  std::filesystem::current_path(cwd);
  std::filesystem::remove(path);
  ASSERT_TRUE(start.ok()) << start.status().ToString();
  EXPECT_EQ(start->type, kStartFanout);
  EXPECT_EQ(start->subject, "my-batch");
  EXPECT_EQ(start->correlation_id, "my-correlation");
  EXPECT_EQ(start->data["source"], "jsonl:" + path.string());
  EXPECT_EQ(start->data["chunk_size"], 100);
}

}  // namespace
}  // namespace fanflow
