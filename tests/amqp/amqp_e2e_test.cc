// The pipeline as separate `fanflow` processes over RabbitMQ: aggregator,
// ventilator and two workers as services, `fanflow submit --wait --json` as the
// client; then a worker SIGKILLed mid-chunk, the broker restarted mid-batch,
// and foreign publishes with amqp-publish. Each test gets a vhost of its own,
// deleted afterwards. Serial (RUN_SERIAL): a restart hits the whole node.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <map>

#include "core/routes.h"
#include "core/event.h"
#include "pipeline/source.h"
#include "tests/amqp/amqp_test_env.h"
#include "tests/support/command_output.h"
#include "tests/support/subprocess.h"

namespace fanflow::amqp::testing {
namespace {

using fanflow::testing::LastJsonLine;

namespace ft = fanflow::testing;

// Items {"id": i, "value": (i * 37) % 1001} in a JSONL file; returns the sum of values.
int64_t WriteItems(const std::string& path, int n) {
  std::ofstream out(path);
  int64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    int v = (i * 37) % 1001;
    out << "{\"id\":" << i << ",\"value\":" << v << "}\n";
    sum += v;
  }
  return sum;
}

// A vhost of its own on the test node, with the standard topology declared,
// the services running on it, and an observer counting batch_complete events.
class Pipeline {
 public:
  explicit Pipeline(const std::string& worker_processor_flags)
      : vhost_("fanflow-e2e"), dir_(ft::TempDir("amqp-e2e")), url_(vhost_.url()) {
    auto topology = Fanflow({"topology"});
    EXPECT_EQ(topology.exit_code, 0) << topology.err;
    observer_bus_ = MustOpen(url_);
    if (!observer_bus_) return;
    auto sub =
        observer_bus_->Subscribe({"e2e-observer", {kBatchComplete}, 1}, [this](const Delivery& d) {
          auto e = DecodeEvent(d.message.body);
          std::lock_guard<std::mutex> lock(mu_);
          if (e.ok()) completions_[e->subject].push_back(e.value());
          return Verdict::Ack();
        });
    EXPECT_TRUE(sub.ok()) << sub.status().ToString();
    if (sub.ok()) observer_ = std::move(sub).value();
    Start("aggregator", {"aggregator", "--state", dir_ + "/ledger.db"});
    Start("ventilator", {"ventilator", "--data-dir", dir_});  // the tests' items files
    std::vector<std::string> worker = {"worker", "--concurrency", "4"};
    std::istringstream flags(worker_processor_flags);
    for (std::string f; flags >> f;) worker.push_back(f);
    Start("worker1", worker);
    Start("worker2", worker);
  }

  ~Pipeline() {
    for (auto& [name, p] : services_) p->Signal(SIGTERM);
    for (auto& [name, p] : services_) p->Wait(std::chrono::seconds(20));
    observer_.reset();
    observer_bus_.reset();
  }

  ft::ProcessResult Fanflow(std::vector<std::string> args,
                            std::chrono::seconds limit = std::chrono::seconds(60)) {
    args.insert(args.begin(), ft::FanflowBinary());
    args.insert(args.end(), {"--bus", url_, "--log-level", "warn"});
    return ft::RunProcess(args, limit);
  }

  ft::ProcessResult Submit(const std::string& source, const std::string& batch_id) {
    return Fanflow({"submit", "--source", source, "--chunk-size", "100", "--batch-id", batch_id,
                    "--wait", "--json", "--timeout", "300"},
                   std::chrono::seconds(330));
  }

  // The batch_complete events the observer saw for `batch`, after a moment
  // for would-be duplicates to arrive.
  std::vector<Event> Completions(const std::string& batch) {
    WaitFor([&] {
      std::lock_guard<std::mutex> lock(mu_);
      return !completions_[batch].empty();
    });
    std::this_thread::sleep_for(1s);
    std::lock_guard<std::mutex> lock(mu_);
    return completions_[batch];
  }

  bool Completed(const std::string& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    return !completions_[batch].empty();
  }

  ft::BackgroundProcess& service(const std::string& name) { return *services_.at(name); }
  EventBus& bus() { return *observer_bus_; }
  const std::string& url() const { return url_; }
  const std::string& dir() const { return dir_; }
  std::string Logs() {
    std::string all;
    for (auto& [name, p] : services_) all += "--- " + name + "\n" + p->Log();
    return all;
  }

 private:
  void Start(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), ft::FanflowBinary());
    args.insert(args.end(), {"--bus", url_, "--log-level", "info"});
    services_[name] = std::make_unique<ft::BackgroundProcess>(args, dir_ + "/" + name + ".log");
  }

  const ScratchVhost vhost_;
  const std::string dir_, url_;
  std::map<std::string, std::unique_ptr<ft::BackgroundProcess>> services_;
  std::unique_ptr<EventBus> observer_bus_;
  std::unique_ptr<Subscription> observer_;
  std::mutex mu_;
  std::map<std::string, std::vector<Event>> completions_;
};

TEST(AmqpEndToEndTest, AHundredThousandItemsAcrossProcessesSumRight) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  Pipeline p("--processor sum");
  const std::string batch = Unique("b-e2e");
  auto r = p.Submit("range:100000:7", batch);
  ASSERT_EQ(r.exit_code, 0) << r.err << p.Logs();
  auto e = LastJsonLine(r.out);
  ASSERT_FALSE(e.is_discarded()) << r.out;
  int64_t want = 0;
  for (int64_t i = 0; i < 100000; ++i) want += RangeItemValue(7, i);
  EXPECT_EQ(e["type"], kBatchComplete);
  EXPECT_EQ(e["subject"], batch);
  EXPECT_EQ(e["data"]["status"], "succeeded");
  EXPECT_EQ(e["data"]["items"], 100000);
  EXPECT_EQ(e["data"]["chunks"], 1000);
  EXPECT_EQ(e["data"]["result"], want);
  EXPECT_EQ(p.Completions(batch).size(), 1u);
}

// Chunks of ~100 ms (sleep processor: value * 0.002 ms per item); the result
// is the total slept, 0.002 * the sum of the values: a chunk counted twice
// or lost would move it by ~100.
constexpr double kSleepScale = 0.002;
constexpr int kSleepItems = 20000;

void ExpectSleptTotal(const nlohmann::json& e, int64_t sum) {
  EXPECT_EQ(e["data"]["status"], "succeeded") << e.dump();
  EXPECT_EQ(e["data"]["items"], kSleepItems);
  EXPECT_EQ(e["data"]["chunks"], kSleepItems / 100);
  EXPECT_NEAR(e["data"]["result"]["slept_ms"].get<double>(), kSleepScale * static_cast<double>(sum),
              1e-3)
      << e.dump();
}

TEST(AmqpEndToEndTest, AWorkerKilledMidChunkStillEndsInOneRightBatchComplete) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  Pipeline p("--processor sleep --sleep-scale " + std::to_string(kSleepScale));
  const std::string items = p.dir() + "/items.jsonl";
  const int64_t sum = WriteItems(items, kSleepItems);
  const std::string batch = Unique("b-kill");
  ft::ProcessResult r;
  std::thread submit([&] { r = p.Submit("jsonl:" + items, batch); });
  // Both workers are busy with 4 chunks each by then: kill one mid-chunk.
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(p.Completed(batch)) << "the kill should land mid-batch";
  p.service("worker1").Signal(SIGKILL);
  submit.join();
  ASSERT_EQ(r.exit_code, 0) << r.err << p.Logs();
  auto e = LastJsonLine(r.out);
  ASSERT_FALSE(e.is_discarded()) << r.out;
  ExpectSleptTotal(e, sum);
  EXPECT_EQ(p.Completions(batch).size(), 1u);
}

TEST(AmqpEndToEndTest, TheBrokerRestartedMidBatchStillEndsRight) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  Pipeline p("--processor sleep --sleep-scale " + std::to_string(kSleepScale));
  const std::string items = p.dir() + "/items.jsonl";
  const int64_t sum = WriteItems(items, kSleepItems);
  const std::string batch = Unique("b-restart");
  ft::ProcessResult r;
  std::thread submit([&] { r = p.Submit("jsonl:" + items, batch); });
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(p.Completed(batch)) << "the restart should land mid-batch";
  EXPECT_EQ(RabbitmqCtl("stop_app"), 0);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(RabbitmqCtl("start_app"), 0);
  submit.join();
  ASSERT_EQ(r.exit_code, 0) << r.err << p.Logs();
  auto e = LastJsonLine(r.out);
  ASSERT_FALSE(e.is_discarded()) << r.out;
  ExpectSleptTotal(e, sum);
  // A re-announcement may follow a restart, but it is the very same event.
  auto seen = p.Completions(batch);
  ASSERT_GE(seen.size(), 1u);
  for (const auto& c : seen) EXPECT_EQ(c.id, seen.front().id);
}

TEST(AmqpEndToEndTest, AmqpPublishStartsABatchAndItsMalformedMessageIsDeadLettered) {
  FANFLOW_REQUIRE_RABBITMQCTL();
  Pipeline p("--processor sum");
  auto publish = [&](const std::string& body) {
    return ft::RunProcess({"amqp-publish", "--url", p.url(), "-e", "fanflow", "-r", "start_fanout",
                           "-p", "-C", "application/cloudevents+json", "-b", body},
                          std::chrono::seconds(30));
  };
  auto bad = publish("not json {");
  ASSERT_EQ(bad.exit_code, 0) << bad.err;
  const std::string batch = Unique("interop");
  const std::string event = R"({"specversion": "1.0", "id": ")" + batch +
                            R"(/start", "source": "urn:test:amqp-publish",
    "type": "fanflow.start_fanout.v1", "subject": ")" +
                            batch + R"(", "correlationid": ")" + batch + R"(",
    "data": {"source": "range:5000:3", "chunk_size": 100}})";
  auto good = publish(event);
  ASSERT_EQ(good.exit_code, 0) << good.err;

  auto seen = p.Completions(batch);
  ASSERT_EQ(seen.size(), 1u) << p.Logs();
  int64_t want = 0;
  for (int64_t i = 0; i < 5000; ++i) want += RangeItemValue(3, i);
  EXPECT_EQ(seen[0].data["status"], "succeeded");
  EXPECT_EQ(seen[0].data["result"], want);
  std::vector<DeadLetter> dead;
  ASSERT_TRUE(WaitFor([&] {
    auto list = p.bus().ListDeadLetters(routes::kAggregatorGroup);
    if (list.ok()) dead = list.value();
    return dead.size() == 1;
  })) << dead.size();
  EXPECT_EQ(dead[0].body, "not json {");
  EXPECT_EQ(dead[0].type, kStartFanout);
  EXPECT_FALSE(dead[0].reason.empty());
  EXPECT_EQ(dead[0].id.rfind("amqp-", 0), 0u)
      << "no message_id, no CloudEvents id: a hash of the body";
  auto again = p.bus().ListDeadLetters(routes::kAggregatorGroup);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ(again->front().id, dead[0].id) << "the id is stable, so it can be replayed by id";
}

}  // namespace
}  // namespace fanflow::amqp::testing
