#include "pipeline/processor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>

#include "core/bounded_json.h"
#include "core/simdjson_parser.h"
#include "pipeline/child_process.h"
#include "pipeline/coprocess.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;

// Sleeps for `d` unless `stop` is requested first; returns false then.
template <typename Duration>
bool SleepUnlessStopped(Duration d, const std::stop_token& stop) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock<std::mutex> lock(mu);
  cv.wait_for(lock, stop, d, [] { return false; });
  return !stop.stop_requested();
}

Status Interrupted(const std::string& what) { return Cancelled(what + ": interrupted, worker stopping"); }

// An item's numeric "value": `exact` holds it when it is an integer that fits
// in int64 (`integral`), `number` always holds it as a double.
struct ItemNumber {
  bool integral = false;
  int64_t exact = 0;
  double number = 0;
};

// Calls visit(ItemNumber) for each item of the items' JSON text, read off
// simdjson's tape with no DOM built. A repeated "value" key counts its last
// value, as in nlohmann's DOM.
template <typename Visit>
Status ForEachItemValue(std::string_view items_json, Visit visit) {
  auto read = [&](simdjson::dom::element root) -> Status {
    simdjson::dom::array items;
    if (root.get_array().get(items) != simdjson::SUCCESS)
      return InvalidArgument("data.items: must be an array");
    size_t i = 0;
    for (simdjson::dom::element item : items) {
      std::optional<simdjson::dom::element> value;
      if (simdjson::dom::object fields; item.get_object().get(fields) == simdjson::SUCCESS)
        for (auto field : fields)
          if (field.key == "value") value = field.value;
      if (!value || !value->is_number())
        return InvalidArgument("item " + std::to_string(i) + " has no numeric \"value\"");
      ItemNumber n;
      n.number = value->get_double().value_unsafe();
      if (value->is_int64()) {
        n.integral = true;
        n.exact = value->get_int64().value_unsafe();
      }
      visit(n);
      ++i;
    }
    return Status::Ok();
  };
  return WithParsedJson(items_json, read, [] { return InvalidArgument("data.items: not a JSON document"); });
}

// sum and sleep need only each item's "value": they read the items' text.
class ItemValuesProcessor : public Processor {
 public:
  bool TakesItemsText() const final { return true; }
  // Items loaded from a claim check: printed, then read as text.
  Result<nlohmann::json> Process(const ChunkInput& chunk) final {
    const std::string text = chunk.items.dump();
    return ProcessText({chunk.batch_id, chunk.chunk_index, text, chunk.stop, chunk.event});
  }
};

class SumProcessor final : public ItemValuesProcessor {
 public:
  Result<nlohmann::json> ProcessText(const ChunkText& chunk) override {
    int64_t exact = 0;
    double inexact = 0;
    bool integral = true;
    // Integers add exactly while the sum fits in int64; an item beyond int64,
    // a fraction or an overflow makes the result a float, never a wrapped sum
    // (as the aggregator's merge does).
    Status read = ForEachItemValue(chunk.items_json, [&](const ItemNumber& n) {
      int64_t next = 0;
      if (n.integral && !__builtin_add_overflow(exact, n.exact, &next)) {
        exact = next;
      } else {
        integral = false;
        inexact += n.number;
      }
    });
    if (!read.ok()) return read;
    if (integral) return nlohmann::json(exact);
    return nlohmann::json(inexact + static_cast<double>(exact));
  }
};

class SleepProcessor final : public ItemValuesProcessor {
 public:
  SleepProcessor(double scale, std::chrono::milliseconds timeout) : scale_(scale), timeout_(timeout) {}
  Result<nlohmann::json> ProcessText(const ChunkText& chunk) override {
    double total_ms = 0;
    Status read = ForEachItemValue(chunk.items_json, [&](const ItemNumber& n) { total_ms += n.number * scale_; });
    if (!read.ok()) return read;
    if (timeout_.count() > 0 && total_ms > static_cast<double>(timeout_.count())) {
      if (!SleepUnlessStopped(timeout_, chunk.stop)) return Interrupted("sleep");
      return Timeout("chunk took longer than " + std::to_string(timeout_.count()) + " ms");
    }
    if (!SleepUnlessStopped(std::chrono::microseconds(static_cast<int64_t>(total_ms * 1000)), chunk.stop))
      return Interrupted("sleep");
    return nlohmann::json({{"slept_ms", total_ms}});
  }

 private:
  const double scale_;
  const std::chrono::milliseconds timeout_;
};

// Runs the command once per chunk in its own process group, so a timeout can
// end it and everything it started.
class ExecProcessor final : public Processor {
 public:
  ExecProcessor(std::string command, std::chrono::milliseconds timeout)
      : command_(std::move(command)), timeout_(timeout) {}

  Result<nlohmann::json> Process(const ChunkInput& chunk) override {
    const std::string input =
        nlohmann::json({{"batch_id", chunk.batch_id}, {"chunk_index", chunk.chunk_index},
                        {"items", chunk.items}})
            .dump() + "\n";
    auto child = SpawnShell(command_, {"FANFLOW_BATCH_ID=" + chunk.batch_id,
                                       "FANFLOW_CHUNK_INDEX=" + std::to_string(chunk.chunk_index)});
    if (!child.ok()) return Internal("exec: " + child.status().message());
    const pid_t pid = child->pid;
    std::string stdout_text, stderr_text;
    bool timed_out = false;
    {
      // Ends before waitpid, so it never signals a process group id reused since.
      std::stop_callback kill_on_stop(chunk.stop, [pid] { kill(-pid, SIGKILL); });
      timed_out = Pump(child.value(), input, stdout_text, stderr_text);
      if (timed_out) kill(-pid, SIGKILL);
    }
    int wstatus = 0;
    waitpid(pid, &wstatus, 0);
    if (chunk.stop.stop_requested()) return Interrupted("exec: '" + command_ + "'");
    if (timed_out)
      return Timeout("exec: '" + command_ + "' ran longer than " + std::to_string(timeout_.count()) +
                     " ms and was killed");
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
      stderr_text = StderrTail(std::move(stderr_text));
      return Internal("exec: '" + command_ + "' " + DescribeExit(wstatus) +
                      (stderr_text.empty() ? "" : ": " + stderr_text));
    }
    // Past the limit the text was cut (Pump): too large, even if what was kept is blank.
    if (stdout_text.size() <= kMaxEventBytes &&
        stdout_text.find_first_not_of(" \t\r\n") == std::string::npos)
      return nlohmann::json();
    // The same limits as a message body: the result travels in a chunk_done.
    auto result = ParseBoundedJson(stdout_text, "output");
    if (!result.ok())
      return InvalidArgument("exec: '" + command_ + "' printed an unusable result: " +
                             result.status().message());
    return std::move(result).value();
  }

 private:
  // Feeds stdin and drains stdout/stderr without deadlocking on full pipes.
  // Returns true if the timeout passed first. Closes all three descriptors.
  bool Pump(ChildProcess child, const std::string& input, std::string& out, std::string& err) {
    const auto deadline = Clock::now() + timeout_;
    size_t written = 0;
    fcntl(child.in, F_SETFL, O_NONBLOCK);
    bool timed_out = false;
    while (child.out >= 0 || child.err >= 0) {
      pollfd fds[3] = {{child.in, POLLOUT, 0}, {child.out, POLLIN, 0}, {child.err, POLLIN, 0}};
      int wait_ms = -1;
      if (timeout_.count() > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
          timed_out = true;
          break;
        }
        wait_ms = static_cast<int>(left.count());
      }
      if (poll(fds, 3, wait_ms) < 0 && errno != EINTR) break;
      if (child.in >= 0 && (fds[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
        ssize_t n = write(child.in, input.data() + written, input.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 || written == input.size()) {
          close(child.in);
          child.in = -1;
        }
      }
      // Drained to the end, kept bounded: one byte past the body limit is
      // enough for the parser to refuse it; of stderr only the tail is shown.
      if (child.out >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
        ReadSome(child.out, out, kMaxEventBytes + 1, false);
      if (child.err >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR)))
        ReadSome(child.err, err, kMaxStderrBytes, true);
    }
    for (int fd : {child.in, child.out, child.err})
      if (fd >= 0) close(fd);
    return timed_out;
  }

  static constexpr size_t kMaxStderrBytes = 64 << 10;

  const std::string command_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

Result<nlohmann::json> Processor::ProcessText(const ChunkText& chunk) {
  auto items = ParseBoundedJson(chunk.items_json, "data.items");
  if (!items.ok()) return items.status();
  return Process({chunk.batch_id, chunk.chunk_index, items.value(), chunk.stop, chunk.event});
}

Result<std::unique_ptr<Processor>> MakeProcessor(const ProcessorOptions& o) {
  if (o.name == "coprocess") return MakeCoprocess({o.command, o.copies, o.timeout});
  if (!o.command.empty() || o.name == "exec") {
    if (o.command.empty()) return InvalidArgument("--processor exec needs --exec 'COMMAND'");
    return std::unique_ptr<Processor>(new ExecProcessor(o.command, o.timeout));
  }
  if (o.name == "sum") return std::unique_ptr<Processor>(new SumProcessor());
  if (o.name == "sleep") {
    if (o.sleep_scale < 0) return InvalidArgument("--sleep-scale must be >= 0");
    return std::unique_ptr<Processor>(new SleepProcessor(o.sleep_scale, o.timeout));
  }
  return InvalidArgument("unknown processor '" + o.name + "' (expected sum, sleep, or --exec 'COMMAND')");
}

}  // namespace fanflow
