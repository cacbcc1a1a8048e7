// What events may make the ventilator and the workers read (issue 9, item 3),
// on a private in-process bus: files only under the policy's roots, stdin only
// where allowed; a refusal is dead-lettered naming the field, never retried.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/routes.h"
#include "pipeline/aggregator.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"
#include "tests/pipeline/pipeline_test_util.h"
#include "tests/support/subprocess.h"

namespace fanflow {
namespace {

using testing::Eventually;
using testing::ToMessage;

// Every event of the given types, whatever the group.
struct Seen {
  Seen(EventBus& bus, std::vector<std::string> types) {
    sub = bus.Subscribe({"seen", std::move(types), 1},
                        [this](const Delivery& d) {
                          std::lock_guard<std::mutex> l(mu);
                          events.push_back(DecodeEvent(d.message.body).value());
                          return Verdict::Ack();
                        })
              .value();
  }
  std::vector<Event> Of(const std::string& type) {
    std::lock_guard<std::mutex> l(mu);
    std::vector<Event> out;
    for (const Event& e : events)
      if (e.type == type) out.push_back(e);
    return out;
  }
  std::mutex mu;
  std::vector<Event> events;
  std::unique_ptr<Subscription> sub;
};

SourcePolicy Allow(const std::string& dir) { return SourcePolicy::Make({dir}, false).value(); }

std::string DeadLetterReason(EventBus& bus, const std::string& group, const std::string& id) {
  std::string reason;
  Eventually([&] {
    auto dead = bus.ListDeadLetters(group);
    if (dead.ok())
      for (const DeadLetter& d : dead.value())
        if (d.id == id) reason = d.reason;
    return !reason.empty();
  });
  return reason;
}

class FilePolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(root_);
    std::filesystem::create_directory(outside_);
    for (const std::string& dir : {root_, outside_}) {
      std::ofstream out(dir + "/items.jsonl");
      for (int i = 0; i < 30; ++i) out << "{\"id\":" << i << ",\"value\":" << i << "}\n";
    }
  }
  const std::string base_ = testing::TempDir("file-policy");
  const std::string root_ = base_ + "/data", outside_ = base_ + "/data2";
};

TEST_F(FilePolicyTest, TheVentilatorRefusesASourceOutsideItsRootsAndAnswersTheWaitingClient) {
  auto bus = testing::PrivateBus();
  Seen seen(*bus, {kProcessChunk, kBatchComplete});
  AggregatorOptions admit;
  admit.state_path = base_ + "/ledger.db";
  auto aggregator = Aggregator::Start(*bus, admit);
  ASSERT_TRUE(aggregator.ok()) << aggregator.status().ToString();
  auto ventilator = Ventilator::Start(*bus, {1, Allow(root_), ""});
  ASSERT_TRUE(ventilator.ok()) << ventilator.status().ToString();
  struct Case {
    std::string batch, source, reason;
  };
  const std::string refused = "data.source: path is not under an allowed --data-dir";
  for (const Case& c :
       {Case{"outside", "jsonl:" + outside_ + "/items.jsonl", refused},
        Case{"missing", "jsonl:" + outside_ + "/missing.jsonl", refused},
        Case{"escape", "jsonl:" + root_ + "/../data2/items.jsonl", refused},
        Case{"stdin", "-", "data.source: '-' (stdin) is read only by the submitting process"}}) {
    ASSERT_TRUE(bus->Publish(ToMessage(MakeStartFanout(c.batch, c.batch, c.source, 10))).ok());
    EXPECT_EQ(DeadLetterReason(*bus, routes::kVentilatorGroup, c.batch + "/step/0"), c.reason)
        << c.batch;
  }
  ASSERT_TRUE(Eventually([&] { return seen.Of(kBatchComplete).size() == 4; }));
  for (const Event& e : seen.Of(kBatchComplete)) {
    EXPECT_EQ(e.data["status"], "failed") << e.subject;
    EXPECT_EQ(e.data["error"].get<std::string>().rfind("data.source: ", 0), 0u) << e.subject;
  }
  // Inside the root the same ventilator fans out.
  ASSERT_TRUE(bus->Publish(ToMessage(MakeStartFanout("inside", "inside",
                                                     "jsonl:" + root_ + "/items.jsonl", 10)))
                  .ok());
  ASSERT_TRUE(Eventually([&] { return seen.Of(kProcessChunk).size() == 3; }));
  for (const Event& e : seen.Of(kProcessChunk))
    EXPECT_EQ(e.subject, "inside") << "nothing else was read";
}

// The aggregator's lease redrive of chunk `index` of `source`, from a page that
// starts at the file's beginning (chunks of 10).
Event RedriveStep(const std::string& batch, const std::string& source, int64_t index) {
  return MakeEvent(kFanoutStep, batch + "/redrive/" + std::to_string(index) + "/1", batch, batch,
                   {{"source", source},
                    {"chunk_size", 10},
                    {"step", 0},
                    {"max_chunks", index + 1},
                    {"cursor", {{"offset", 0}, {"next_chunk", 0}, {"next_item", 0}}},
                    {"redrive", {{"chunk_index", index}}}});
}

// A chunk lost with its worker is read again from the start of its page, under
// the same roots as the step that first published it, and published alone.
TEST_F(FilePolicyTest, ARedriveReadsTheLostChunkAgainFromItsPageOnlyUnderTheRoots) {
  auto bus = testing::PrivateBus();
  Seen seen(*bus, {kProcessChunk});
  auto ventilator = Ventilator::Start(*bus, {1, Allow(root_), ""});
  ASSERT_TRUE(ventilator.ok()) << ventilator.status().ToString();
  ASSERT_TRUE(bus->Publish(ToMessage(RedriveStep("again", "jsonl:" + root_ + "/items.jsonl", 1))).ok());
  ASSERT_TRUE(Eventually([&] { return seen.Of(kProcessChunk).size() == 1; }));
  const Event chunk = seen.Of(kProcessChunk).front();
  EXPECT_EQ(chunk.id, "again/chunk/1");
  EXPECT_EQ(chunk.data["first_item"], 10);
  EXPECT_EQ(chunk.data["item_count"], 10);
  EXPECT_EQ(chunk.data["items"][0], (nlohmann::json{{"id", 10}, {"value", 10}}));
  EXPECT_EQ(chunk.data["items"][9], (nlohmann::json{{"id", 19}, {"value", 19}}));
  ASSERT_TRUE(bus->Publish(ToMessage(RedriveStep("away", "jsonl:" + outside_ + "/items.jsonl", 1))).ok());
  EXPECT_EQ(DeadLetterReason(*bus, routes::kVentilatorGroup, "away/redrive/1/1"),
            "data.source: path is not under an allowed --data-dir");
  // No further than a page past its cursor, whatever max_chunks says.
  Event far = RedriveStep("far", "jsonl:" + root_ + "/items.jsonl", 2);
  far.data["page_chunks"] = 2;
  ASSERT_TRUE(bus->Publish(ToMessage(far)).ok());
  EXPECT_EQ(DeadLetterReason(*bus, routes::kVentilatorGroup, "far/redrive/2/1"),
            "data.redrive.chunk_index: more than page_chunks (2) past data.cursor.next_chunk");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(seen.Of(kProcessChunk).size(), 1u) << "one chunk, and nothing from outside the roots";
}

// A process_chunk whose items are the claim check `ref`.
Event ClaimCheckChunk(const std::string& batch, const std::string& path, int64_t offset,
                      int64_t length) {
  return MakeEvent(kProcessChunk, batch + "/chunk/0", batch, batch,
                   {{"chunk_index", 0},
                    {"first_item", 0},
                    {"item_count", 1},
                    {"ref", {{"path", path}, {"offset", offset}, {"length", length}}}});
}

TEST_F(FilePolicyTest, AWorkerRefusesAClaimCheckOutsideItsRootsAtOnceNamingTheField) {
  auto bus = testing::PrivateBus();
  Seen seen(*bus, {kChunkDone});
  WorkerOptions o;
  o.max_attempts = 5;
  o.backoff_base = std::chrono::milliseconds(1);
  o.files = Allow(root_);
  auto processor = MakeProcessor({});
  ASSERT_TRUE(processor.ok());
  auto worker = Worker::Start(*bus, std::move(processor).value(), o);
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  struct Case {
    std::string batch, path;
    int64_t length;
    std::string reason;
  };
  const std::string refused = "data.ref.path: path is not under an allowed --data-dir";
  for (const Case& c : {Case{"shadow", "/etc/shadow", 10, refused},
                        Case{"nofile", "/etc/no-such-file", 10, refused},
                        Case{"sibling", outside_ + "/items.jsonl", 10, refused},
                        Case{"huge", root_ + "/items.jsonl", 1000000000000, "data.ref.length: "},
                        Case{"past", root_ + "/items.jsonl", 100000, "data.ref.length: "}}) {
    ASSERT_TRUE(bus->Publish(ToMessage(ClaimCheckChunk(c.batch, c.path, 0, c.length))).ok());
    const std::string reason = DeadLetterReason(*bus, routes::kWorkerGroup, c.batch + "/chunk/0");
    EXPECT_EQ(reason.rfind(c.reason, 0), 0u) << c.batch << ": " << reason;
  }
  ASSERT_TRUE(Eventually([&] { return seen.Of(kChunkDone).size() == 5; }));
  for (const Event& e : seen.Of(kChunkDone)) {
    EXPECT_EQ(e.data["status"], "failed") << e.subject;
    EXPECT_EQ(e.data["attempts"], 1) << "a refusal is not retried: " << e.subject;
  }
  // Inside the root, the first line: {"id":0,"value":0}\n is 19 bytes, the next one 19 too.
  ASSERT_TRUE(
      bus->Publish(ToMessage(ClaimCheckChunk("inside", root_ + "/items.jsonl", 19, 19))).ok());
  ASSERT_TRUE(Eventually([&] { return seen.Of(kChunkDone).size() == 6; }));
  const Event done = seen.Of(kChunkDone).back();
  EXPECT_EQ(done.subject, "inside");
  EXPECT_EQ(done.data["status"], "succeeded") << done.data.dump();
  EXPECT_EQ(done.data["result"], 1);
}

}  // namespace
}  // namespace fanflow
