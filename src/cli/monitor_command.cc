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

std::string Num(const std::optional<double>& v, const char* fmt = "%.1f") {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, fmt, *v);
  return buf;
}

std::string Bar(double ratio, int width) {
  const int full = static_cast<int>(std::lround(std::clamp(ratio, 0.0, 1.0) * width));
  return "[" + std::string(full, '#') + std::string(width - full, '-') + "]";
}

std::string Render(const MonitorSnapshot& s, const MonitorFlags& f) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "fanflow monitor  %s  %s%s\n\n", s.bus.c_str(), s.time.c_str(),
                f.once ? "" : "  (Ctrl-C to stop)");
  out += line;
  std::snprintf(line, sizeof line, "%-40s %8s %9s %5s %8s %8s %9s %6s %7s  %s\n", "QUEUE", "DEPTH",
                "IN FLIGHT", "CONS", "IN/s", "OUT/s", "OLDEST s", "DLQ", "DROPPED", "ALARMS");
  out += line;
  for (const QueueRow& r : s.queues) {
    const QueueStats& q = r.stats;
    std::string alarms;
    for (const auto& a : r.alarms) alarms += (alarms.empty() ? "" : ",") + a;
    std::snprintf(line, sizeof line, "%-40s %8lld %9s %5lld %8s %8s %9s %6lld %7lld  %s\n",
                  EscapeForLog(q.queue, 120).c_str(), static_cast<long long>(q.depth),
                  q.in_flight < 0 ? "?" : std::to_string(q.in_flight).c_str(),
                  static_cast<long long>(q.consumers), Num(r.in_rate).c_str(),
                  Num(r.out_rate).c_str(), Num(q.oldest_age_seconds).c_str(),
                  static_cast<long long>(q.dead_letters), static_cast<long long>(q.dropped),
                  alarms.empty() ? "ok" : alarms.c_str());
    out += line;
  }
  if (s.queues.empty()) out += "(no queues known on this bus yet)\n";
  // Broker-wide figures (Mosquitto's $SYS), the same on every row.
  if (!s.queues.empty() && s.queues.front().stats.broker_stored >= 0)
    out += "broker: " + std::to_string(s.queues.front().stats.broker_stored) + " messages stored, " +
           std::to_string(s.queues.front().stats.dropped) + " publishes dropped since it started\n";
  out += "\n";
  if (!s.batches_known) {
    out += "open batches: pass --state with the aggregator's ledger to see them\n";
  } else {
    std::snprintf(line, sizeof line, "%-32s %-24s %5s %13s %7s %9s %9s %9s %11s %9s\n", "OPEN BATCH",
                  "PROGRESS", "", "DONE/TOTAL", "FAILED", "CONFLICTS", "AGE s", "IDLE s", "OUTSTANDING",
                  "OLDEST s");
    out += line;
    for (const BatchRow& b : s.batches) {
      const int64_t done = b.succeeded + b.failed;
      const double ratio =
          b.total_chunks && *b.total_chunks > 0 ? double(done) / double(*b.total_chunks) : 0;
      std::string total = b.total_chunks ? std::to_string(*b.total_chunks) : "?";
      std::snprintf(line, sizeof line, "%-32s %-24s %4.0f%% %13s %7lld %9lld %9.1f %9.1f %11lld %9s\n",
                    EscapeForLog(b.batch_id, 120).c_str(), Bar(ratio, 22).c_str(), ratio * 100,
                    (std::to_string(done) + "/" + total).c_str(), static_cast<long long>(b.failed),
                    static_cast<long long>(b.conflicts), b.age_s, b.idle_s, static_cast<long long>(b.outstanding),
                    Num(b.oldest_outstanding_s).c_str());
      out += line;
    }
    if (s.batches.empty()) out += "(no open batches)\n";
  }
  out += "\n";
  if (s.alarms.empty()) out += "alarms: none raised\n";
  for (const Alarm& a : s.alarms)
    out += "ALARM " + a.check.alarm + " since " + a.raised_at + ": " + EscapeForLog(a.check.message) + "\n";
  return out;
}

void Print(const MonitorSnapshot& s, const MonitorFlags& f, bool tty) {
  if (f.json) {
    std::cout << s.ToJson().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return;
  }
  // On a terminal the table is redrawn in place; elsewhere frames follow each other.
  if (tty && !f.once) std::cout << "\x1b[H\x1b[2J";
  std::cout << Render(s, f) << (tty || f.once ? "" : "\n") << std::flush;
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
