// `fanflow schedule --list FILE` prints the next slots of a schedule;
// `fanflow schedule --run FILE` submits a batch per slot until a signal.
#include <spdlog/spdlog.h>

#include <iostream>
#include <thread>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "pipeline/scheduler.h"

namespace fanflow::cli {

int ScheduleCommand(const BusFlags& bus_flags, const ScheduleFlags& f) {
  if (f.list == f.run)
    return Fail(InvalidArgument("schedule: give exactly one of --list or --run"));
  auto entries = LoadSchedule(f.file);
  if (!entries.ok()) return Fail(entries.status());
  SchedulerOptions options;
  options.catch_up =
      f.catch_up == "none" ? SchedulerOptions::CatchUp::kNone : SchedulerOptions::CatchUp::kLatest;
  options.catch_up_within = std::chrono::seconds(static_cast<int64_t>(f.catch_up_within_s));
  if (f.list) {
    std::chrono::sys_seconds from = SystemSchedulerClock().Now();
    if (!f.from.empty()) {
      auto parsed = ParseUtcTime(f.from, "--from");
      if (!parsed.ok()) return Fail(parsed.status());
      from = parsed.value();
    }
    auto scheduler =
        Scheduler::Create(std::move(entries).value(), options, SystemSchedulerClock(), nullptr);
    if (!scheduler.ok()) return Fail(scheduler.status());
    for (const ScheduledBatch& b : scheduler.value()->Upcoming(from, f.count))
      std::cout << FormatSlot(b.slot) << "  " << b.batch_id << "  " << b.entry->cron.text() << "  "
                << b.entry->request["source"].get<std::string>() << "\n";
    return kExitSucceeded;
  }
  auto bus = OpenServiceBus(bus_flags.url, "schedule --run", true);
  if (!bus.ok()) return Fail(bus.status());
  EventBus& b = *bus.value();
  auto scheduler = Scheduler::Create(
      std::move(entries).value(), options, SystemSchedulerClock(),
      [&b](const ScheduledBatch& slot) { return PublishScheduledStart(b, slot); });
  if (!scheduler.ok()) return Fail(scheduler.status());
  spdlog::info("scheduler ready on {}: {}", b.Describe(), f.file);
  std::jthread runner([s = scheduler.value().get()](std::stop_token stop) { s->Run(stop); });
  spdlog::info("scheduler stopping on {}", WaitForShutdownSignal());
  runner.request_stop();
  return kExitSucceeded;
}

}  // namespace fanflow::cli
