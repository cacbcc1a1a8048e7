// `fanflow monitor`: a live table of queues and open batches, alarms on the
// bus, and optionally Prometheus metrics. `--once` prints one snapshot.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/printable.h"
#include "pipeline/metrics_server.h"
#include "pipeline/monitor.h"

namespace fanflow::cli {
namespace {

void Print(const MonitorSnapshot& s, const MonitorFlags& f, bool tty) {
  if (f.json) {
    std::cout << SnapshotToJson(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return;
  }
  // On a terminal the table is redrawn in place; elsewhere frames follow each other.
  if (tty && !f.once) std::cout << "\x1b[H\x1b[2J";
  std::cout << RenderTable(s, f.once) << (tty || f.once ? "" : "\n") << std::flush;
}

// Sleeps up to `d`; true if SIGINT/SIGTERM came (they are blocked in every
// thread, see BlockShutdownSignals, so they wait here to be taken).
bool ShutdownRequestedWithin(std::chrono::milliseconds d) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec ts{static_cast<time_t>(d.count() / 1000), static_cast<long>(d.count() % 1000) * 1000000};
  return sigtimedwait(&set, nullptr, &ts) > 0;
}

Result<MonitorOptions> ToMonitorOptions(const MonitorFlags& f) {
  if (!(f.interval_s > 0)) return InvalidArgument("--interval must be seconds > 0");
  if (!(f.rate_window_s > 0)) return InvalidArgument("--rate-window must be seconds > 0");
  if (!f.group.empty())
    if (Status s = CheckGroupName(f.group); !s.ok()) return InvalidArgument("--group: " + s.message());
  auto rules = AlarmRules::Parse(f.alarms);
  if (!rules.ok()) return rules.status();
  MonitorOptions o;
  o.group = f.group;
  o.rate_window = std::chrono::milliseconds(static_cast<int64_t>(f.rate_window_s * 1000));
  o.state_path = f.state;
  o.rules = std::move(rules).value();
  o.publish_alarms = !f.once;
  return o;
}

}  // namespace

int MonitorCommand(const BusFlags& bus_flags, const MonitorFlags& f) {
  auto options = ToMonitorOptions(f);
  if (!options.ok()) return Fail(options.status());
  auto bus = OpenServiceBus(bus_flags.url, "monitor", true);
  if (!bus.ok()) return Fail(bus.status());
  auto metrics = std::make_shared<Metrics>();
  auto monitor = Monitor::Start(*bus.value(), options.value(), metrics);
  if (!monitor.ok()) return Fail(monitor.status());
  std::unique_ptr<MetricsServer> server;
  if (f.metrics_port >= 0) {
    auto s = MetricsServer::Start(f.metrics_bind, f.metrics_port,
                                  [metrics] { return metrics->Render(); });
    if (!s.ok()) return Fail(s.status());
    server = std::move(s).value();
    spdlog::info("metrics on http://{}:{}/metrics", f.metrics_bind, server->port());
  }
  const auto interval = std::chrono::milliseconds(static_cast<int64_t>(f.interval_s * 1000));
  const bool tty = isatty(STDOUT_FILENO);

  if (f.once) {
    // Two samples one interval apart, so the snapshot has rates.
    if (auto first = monitor.value()->Sample(); !first.ok()) return Fail(first.status());
    if (ShutdownRequestedWithin(interval)) return kExitSucceeded;
    auto snap = monitor.value()->Sample();
    if (!snap.ok()) return Fail(snap.status());
    Print(snap.value(), f, tty);
    return kExitSucceeded;
  }
  const auto stop_at = std::chrono::steady_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(f.duration_s * 1000));
  while (true) {
    auto snap = monitor.value()->Sample();
    if (snap.ok())
      Print(snap.value(), f, tty);
    else
      spdlog::error("monitor: {} (retrying every {} ms)", snap.status().ToString(),
                    interval.count());
    auto wait = interval;
    if (f.duration_s > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          stop_at - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      wait = std::min(wait, left);
    }
    if (ShutdownRequestedWithin(wait)) break;
  }
  return kExitSucceeded;
}

}  // namespace fanflow::cli
