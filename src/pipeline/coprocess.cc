#include "pipeline/coprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "core/bounded_json.h"
#include "core/printable.h"
#include "pipeline/child_process.h"

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;

// A reply travels on in a chunk_done: the same limit as a message body.
constexpr size_t kMaxReplyBytes = kMaxEventBytes;
// A stderr line longer than this is logged in pieces.
constexpr size_t kMaxLogLine = 4096;
constexpr std::chrono::milliseconds kExitGrace{1000};
constexpr size_t kMaxTail = 500;  // of stderr, in a failed attempt's error

// One running copy. Owned by one Process call at a time, or idle in the pool.
struct Copy {
  ChildProcess child;
  std::string err_line;  // stderr since its last newline
  std::string err_tail;  // its stderr during the current chunk, the last bytes
};

// What a well-formed reply says: a result, or the copy's own error.
struct Reply {
  bool ok = false;
  nlohmann::json result;
  std::string error;
};

// Status: the line is not a reply (the copy is out of step and is replaced).
Result<Reply> ParseReply(std::string_view line) {
  auto parsed = ParseBoundedJson(line, "reply");
  if (!parsed.ok()) return parsed.status();
  constexpr char kShape[] = "not {\"result\": ANY} or {\"error\": \"message\"}";
  const nlohmann::json& j = parsed.value();
  if (!j.is_object() || j.size() != 1) return InvalidArgument(kShape);
  if (auto it = j.find("result"); it != j.end()) return Reply{true, std::move(*it), ""};
  auto it = j.find("error");
  if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
    return InvalidArgument(std::string(kShape) + " (an error is a non-empty string)");
  return Reply{false, nullptr, it->get<std::string>()};
}

// The line sent for `chunk`: its process_chunk with the items inline.
std::string RequestLine(const ChunkInput& chunk) {
  Event e;
  if (chunk.event) {
    e = MakeEvent(chunk.event->type, chunk.event->id, chunk.event->subject,
                  chunk.event->correlation_id, nlohmann::json::object());
    e.source = chunk.event->source;
    e.time = chunk.event->time;
    for (auto it = chunk.event->data.begin(); it != chunk.event->data.end(); ++it)
      if (it.key() != "items" && it.key() != "ref") e.data[it.key()] = it.value();
  } else {
    e = MakeEvent(kProcessChunk, ChunkEventId(chunk.batch_id, chunk.chunk_index), chunk.batch_id,
                  chunk.batch_id,
                  {{"chunk_index", chunk.chunk_index}, {"item_count", chunk.items.size()}});
  }
  e.data["items"] = chunk.items;
  return EncodeEvent(e) + "\n";
}

class CoprocessPool final : public Processor {
 public:
  explicit CoprocessPool(CoprocessOptions o) : options_(std::move(o)) {}

  ~CoprocessPool() override {
    // Asked to end by EOF on stdin; the ones still there after the grace are killed.
    for (auto& c : idle_) {
      close(c->child.in);
      c->child.in = -1;
    }
    const auto deadline = Clock::now() + kExitGrace;
    for (auto& c : idle_) {
      int wstatus = 0;
      pid_t reaped = 0;
      while ((reaped = waitpid(c->child.pid, &wstatus, WNOHANG)) == 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (reaped == 0) {  // still running: only then is its group id surely still its own
        kill(-c->child.pid, SIGKILL);
        waitpid(c->child.pid, &wstatus, 0);
      }
      for (int fd : {c->child.out, c->child.err})
        if (fd >= 0) close(fd);
    }
  }

  Result<nlohmann::json> Process(const ChunkInput& chunk) override {
    auto taken = Take(chunk.batch_id);
    if (!taken.ok()) return taken.status();
    std::unique_ptr<Copy> copy = std::move(taken).value();
    const pid_t pid = copy->child.pid;
    Result<Reply> reply = Internal("no reply");
    {
      // Ends before the copy is reaped, so it never signals a reused group id.
      std::stop_callback kill_on_stop(chunk.stop, [pid] { kill(-pid, SIGKILL); });
      reply = Exchange(*copy, RequestLine(chunk), chunk.batch_id);
    }
    if (chunk.stop.stop_requested()) {
      Retire(std::move(copy), chunk.batch_id, "worker stopping");
      return Cancelled("coprocess: interrupted, worker stopping");
    }
    if (!reply.ok()) {
      const std::string why = Retire(std::move(copy), chunk.batch_id, reply.status().message());
      return Status(reply.status().code(), "coprocess: '" + options_.command + "' (pid " +
                                               std::to_string(pid) + ") " + why);
    }
    Give(std::move(copy));
    if (!reply->ok) return Internal("coprocess: " + reply->error);
    return std::move(reply->result);
  }

 private:
  // An idle copy, or a new one while fewer than `copies` are alive; waits otherwise.
  Result<std::unique_ptr<Copy>> Take(const std::string& batch_id) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      while (true) {
        room_.wait(lock, [this] { return !idle_.empty() || alive_ < options_.copies; });
        if (idle_.empty()) break;
        std::unique_ptr<Copy> c = std::move(idle_.back());
        idle_.pop_back();
        lock.unlock();
        // One that died or wrote between chunks is out of step: a new one instead.
        const std::string why = Unfit(*c, batch_id);
        if (why.empty()) return c;
        Retire(std::move(c), batch_id, why);
        lock.lock();
      }
      ++alive_;
    }
    auto child = SpawnShell(options_.command, {});
    if (!child.ok()) {
      Release();
      return Internal("coprocess: " + child.status().message());
    }
    fcntl(child->in, F_SETFL, O_NONBLOCK);
    spdlog::info("[batch {}] coprocess: started '{}' (pid {})", batch_id,
                 EscapeForLog(options_.command), child->pid);
    auto c = std::make_unique<Copy>();
    c->child = child.value();
    return c;
  }

  void Give(std::unique_ptr<Copy> c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(c));
    }
    room_.notify_one();
  }

  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      --alive_;
    }
    room_.notify_one();
  }

  // Why an idle copy cannot take a chunk ("" if it can); logs its stderr.
  std::string Unfit(Copy& c, const std::string& batch_id) {
    pollfd fds[2] = {{c.child.out, POLLIN, 0}, {c.child.err, POLLIN, 0}};
    if (poll(fds, 2, 0) <= 0) return "";
    if (fds[1].revents) DrainStderr(c, batch_id);
    if (fds[0].revents & POLLIN) return "wrote to stdout between chunks";
    if (fds[0].revents) return "closed its stdout between chunks";
    return "";
  }

  // Sends the line and reads the reply line; a Status when the copy failed it.
  Result<Reply> Exchange(Copy& c, const std::string& line, const std::string& batch_id) {
    const auto deadline = Clock::now() + options_.timeout;
    size_t written = 0;
    std::string out;
    c.err_tail.clear();
    while (true) {
      pollfd fds[3] = {{written < line.size() ? c.child.in : -1, POLLOUT, 0},
                       {c.child.out, POLLIN, 0},
                       {c.child.err, POLLIN, 0}};
      int wait_ms = -1;
      if (options_.timeout.count() > 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
          return Timeout("took longer than --chunk-timeout " +
                         std::to_string(options_.timeout.count()) + " ms");
        wait_ms = static_cast<int>(left.count());
      }
      if (poll(fds, 3, wait_ms) < 0 && errno != EINTR)
        return Internal("poll: " + std::string(strerror(errno)));
      if (fds[0].revents & (POLLERR | POLLHUP)) return Internal("closed its stdin mid-chunk");
      if (fds[0].revents & POLLOUT) {
        ssize_t n = write(c.child.in, line.data() + written, line.size() - written);
        if (n > 0) written += static_cast<size_t>(n);
        if (n < 0 && errno != EAGAIN && errno != EINTR)
          return Internal("closed its stdin mid-chunk");
      }
      if (fds[2].revents) DrainStderr(c, batch_id);
      if (!fds[1].revents) continue;
      const size_t scanned = out.size();  // no newline before: only the new bytes are searched
      if (!ReadSome(c.child.out, out, kMaxReplyBytes + 1, false))
        return Internal("ended mid-chunk");
      const size_t newline = out.find('\n', scanned);
      if (newline == std::string::npos) {
        if (out.size() > kMaxReplyBytes)
          return InvalidArgument("replied with a line longer than " +
                                 std::to_string(kMaxReplyBytes) + " bytes");
        continue;
      }
      if (newline + 1 != out.size()) return InvalidArgument("replied with more than one line");
      if (written < line.size()) return InvalidArgument("replied before it read the whole chunk");
      out.pop_back();
      if (!out.empty() && out.back() == '\r') out.pop_back();
      auto reply = ParseReply(out);
      if (!reply.ok())
        return InvalidArgument("replied '" + EscapeForLog(out, 200) +
                               "': " + reply.status().message());
      return reply;
    }
  }

  // Logs each complete stderr line (bounded) with the chunk's batch id.
  void DrainStderr(Copy& c, const std::string& batch_id) {
    if (c.child.err < 0) return;
    std::string got;
    ReadSome(c.child.err, got, 1 << 16, true);
    c.err_line += got;
    c.err_tail += got;
    if (c.err_tail.size() > kMaxTail) c.err_tail.erase(0, c.err_tail.size() - kMaxTail);
    size_t start = 0;
    for (size_t nl; (nl = c.err_line.find('\n', start)) != std::string::npos; start = nl + 1)
      LogStderr(c, batch_id, std::string_view(c.err_line).substr(start, nl - start));
    c.err_line.erase(0, start);
    if (c.err_line.size() > kMaxLogLine || (c.child.err < 0 && !c.err_line.empty())) {
      LogStderr(c, batch_id, c.err_line);
      c.err_line.clear();
    }
  }

  void LogStderr(const Copy& c, const std::string& batch_id, std::string_view line) {
    spdlog::warn("[batch {}] coprocess pid {} stderr: {}", batch_id, c.child.pid,
                 EscapeForLog(line, kMaxLogLine));
  }

  // Kills and reaps a copy that failed; returns `why` with how it ended and the
  // tail of its stderr. Its slot is free again.
  std::string Retire(std::unique_ptr<Copy> c, const std::string& batch_id, const std::string& why) {
    kill(-c->child.pid, SIGKILL);
    // What it wrote last, bounded: a grandchild outside the group may hold the pipe.
    const auto until = Clock::now() + std::chrono::milliseconds(200);
    while (c->child.err >= 0 && Clock::now() < until) {
      pollfd p{c->child.err, POLLIN, 0};
      if (poll(&p, 1, 50) > 0) DrainStderr(*c, batch_id);
    }
    int wstatus = 0;
    waitpid(c->child.pid, &wstatus, 0);
    for (int fd : {c->child.in, c->child.out, c->child.err})
      if (fd >= 0) close(fd);
    // Killed by us is no news; an exit code or another signal is.
    std::string how = WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL
                          ? ""
                          : " (" + DescribeExit(wstatus) + ")";
    if (std::string tail = StderrTail(c->err_tail); !tail.empty()) how += ": " + tail;
    spdlog::warn("[batch {}] coprocess pid {} replaced: {}{}", batch_id, c->child.pid,
                 EscapeForLog(why), EscapeForLog(how));
    Release();
    return why + how;
  }

  const CoprocessOptions options_;
  std::mutex mu_;
  std::condition_variable room_;
  std::vector<std::unique_ptr<Copy>> idle_;  // guarded by mu_
  int alive_ = 0;                            // guarded by mu_: idle and taken
};

}  // namespace

Result<std::unique_ptr<Processor>> MakeCoprocess(const CoprocessOptions& o) {
  if (o.command.empty()) return InvalidArgument("--coprocess: needs a command");
  if (o.copies < 1) return InvalidArgument("--coprocess: needs at least one copy (--concurrency)");
  return std::unique_ptr<Processor>(new CoprocessPool(o));
}

}  // namespace fanflow
