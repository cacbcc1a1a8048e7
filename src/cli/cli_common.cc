#include "cli/cli_common.h"

#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "core/printable.h"

namespace fanflow::cli {

void SetUpLogging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("fanflow");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%P] %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

namespace {
sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}
}  // namespace

void BlockShutdownSignals() {
  // A script's shell starts a background command with SIGINT ignored, and an
  // ignored signal is discarded before sigwait could take it: `kill -INT` must
  // stop fanflow however it was started.
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

std::string WaitForShutdownSignal() {
  sigset_t set = ShutdownSignals();
  int sig = 0;
  sigwait(&set, &sig);
  return sig == SIGINT ? "SIGINT" : "SIGTERM";
}

InterruptWatch::InterruptWatch(std::chrono::milliseconds grace, std::function<void()> last_words)
    : grace_(grace), last_words_(std::move(last_words)), thread_([this] { Run(); }) {}

InterruptWatch::~InterruptWatch() {
  bool in_sigwait;
  {
    std::lock_guard<std::mutex> lock(mu_);
    returning_ = true;
    in_sigwait = signal_ == 0;
  }
  returned_.notify_all();
  // Wakes the thread's sigwait; a signal sent to one thread dies with it.
  if (in_sigwait) pthread_kill(thread_.native_handle(), SIGTERM);
  thread_.join();
}

void InterruptWatch::Run() {
  sigset_t set = ShutdownSignals();
  int sig = 0;
  sigwait(&set, &sig);
  std::unique_lock<std::mutex> lock(mu_);
  if (returning_) return;
  signal_ = sig;
  stop_.request_stop();
  if (returned_.wait_for(lock, grace_, [&] { return returning_; })) return;
  if (last_words_) last_words_();
  std::_Exit(128 + sig);
}

std::string InterruptWatch::SignalName() {
  std::lock_guard<std::mutex> lock(mu_);
  return signal_ == SIGINT ? "SIGINT" : signal_ == SIGTERM ? "SIGTERM" : "";
}

int InterruptWatch::ExitCode() {
  std::lock_guard<std::mutex> lock(mu_);
  return 128 + signal_;
}

Result<std::unique_ptr<EventBus>> OpenServiceBus(const std::string& url, const std::string& command,
                                                 bool needs_shared_bus) {
  auto bus = OpenBus(url);
  if (!bus.ok()) return bus;
  if (needs_shared_bus && !bus.value()->Capabilities().shared_between_processes)
    return InvalidArgument("`fanflow " + command + "` talks to other processes, but " +
                           bus.value()->Describe() +
                           " only connects code inside one process: pass --bus amqp://... or "
                           "--bus mqtt://..., or use `fanflow run`");
  spdlog::debug("bus: {}", bus.value()->Describe());
  return bus;
}

int Fail(const Status& status) {
  std::cerr << "fanflow: " << status.ToString() << "\n";
  return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitError;
}

int ExitCodeFor(const Event& e) {
  const std::string status = e.data.value("status", "");
  if (status == "succeeded") return kExitSucceeded;
  if (status == "partial") return kExitPartial;
  if (status == "timed_out") return kExitTimedOut;
  if (status == "cancelled") return kExitCancelled;
  return kExitFailed;
}

std::string Summary(const Event& e, double seconds) {
  const auto& d = e.data;
  const int64_t chunks = d.value("chunks", int64_t{0});
  char rate[64];
  std::snprintf(rate, sizeof rate, "%.2f s, %.0f chunks/s, %.0f items/s", seconds,
                seconds > 0 ? chunks / seconds : 0.0,
                seconds > 0 ? d.value("items", int64_t{0}) / seconds : 0.0);
  std::string s = "batch " + e.subject + ": " + d.value("status", "?") + "\n" +
                  "  items    " + std::to_string(d.value("items", int64_t{0})) + "\n" +
                  "  chunks   " + std::to_string(chunks) + " (" +
                  std::to_string(d.value("succeeded", int64_t{0})) + " succeeded, " +
                  std::to_string(d.value("failed", int64_t{0})) + " failed)\n" +
                  "  result   " + d.value("result", nlohmann::json()).dump() + "\n" +
                  "  duration " + rate + "\n";
  if (d.contains("failed_chunks") && !d["failed_chunks"].empty())
    s += "  failed chunks " + d["failed_chunks"].dump() + "\n";
  // The error may quote a processor's stderr: escaped, one line, for a terminal.
  if (d.contains("error")) s += "  error    " + EscapeForLog(d["error"].get<std::string>()) + "\n";
  if (d.contains("reason")) s += "  reason   " + EscapeForLog(d["reason"].get<std::string>()) + "\n";
  return s;
}

}  // namespace fanflow::cli
