// `fanflow serve`: the HTTP JSON API and dashboard (src/serve), with the roles
// in this process on inproc://, or in front of the services on a broker.
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "pipeline/batch_run.h"
#include "pipeline/scheduler.h"
#include "serve/serve_app.h"

namespace fanflow::cli {
namespace {

// The token is the file's first line; a missing, unreadable or empty file is an error.
Result<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return InvalidArgument("--token-file '" + path + "': cannot read it");
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty())
    return InvalidArgument("--token-file '" + path + "': the first line (the token) is empty");
  if (token.size() > 4096)
    return InvalidArgument("--token-file '" + path + "': the token is longer than 4096 bytes");
  return token;
}

}  // namespace

int ServeCommand(const BusFlags& bus_flags, const ServeFlags& f, const WorkerFlags& worker_flags,
                 const AggregatorFlags& aggregator_flags,
                 const std::vector<std::string>& data_dirs) {
  ServeConfig config;
  config.listen = f.listen;
  if (!f.token_file.empty()) {
    auto token = ReadToken(f.token_file);
    if (!token.ok()) return Fail(token.status());
    config.token = token.value();
  }
  if (auto listen = ParseListen(f.listen); !listen.ok()) return Fail(listen.status());
  auto files = SourcePolicy::Make(data_dirs, false);
  if (!files.ok()) return Fail(files.status());
  config.batches.files = files.value();
  config.batches.ledger_path = f.ledger;
  config.batches.max_wait = std::chrono::seconds(f.max_wait_s);
  config.batches.new_batch_id = NewBatchId;

  auto bus = OpenBus(bus_flags.url);
  if (!bus.ok()) return Fail(bus.status());
  if (!bus.value()->Capabilities().shared_between_processes) {
    // Nothing else reaches this bus: serve runs the roles itself.
    if (!f.ledger.empty())
      return Fail(InvalidArgument("--ledger: on " + bus_flags.url +
                                  " serve runs its own aggregator; give its ledger with --state"));
    auto processor = BuildProcessor(worker_flags);
    if (!processor.ok()) return Fail(processor.status());
    auto worker = ToWorkerOptions(worker_flags);
    if (!worker.ok()) return Fail(worker.status());
    worker->files = files.value();
    auto aggregator = ToAggregatorOptions(aggregator_flags, "fanflow-ledger.db");
    if (!aggregator.ok()) return Fail(aggregator.status());
    ResolveLease(aggregator_flags, *bus.value(), aggregator.value());
    // In-process queues die with the process: open batches fan out again.
    aggregator->refan_open_batches = true;
    config.embedded = ServeConfig::Embedded{aggregator.value(), processor.value(), worker.value()};
  } else if (!f.role_flags_given.empty()) {
    return Fail(InvalidArgument(
        f.role_flags_given.front() + ": on " + bus.value()->Describe() +
        " serve runs no roles; give it to `fanflow worker` or `fanflow aggregator`"));
  } else if (f.ledger.empty()) {
    return Fail(
        InvalidArgument("--ledger: on " + bus.value()->Describe() +
                        " serve reads the aggregator's ledger (its --state file, on this host) "
                        "to answer for batches; give its path"));
  }
  std::vector<ScheduleEntry> schedule;
  if (!f.schedule.empty()) {
    auto entries = LoadSchedule(f.schedule);
    if (!entries.ok()) return Fail(entries.status());
    schedule = std::move(entries).value();
  }
  std::unique_ptr<Scheduler> scheduler;  // outlives the app, whose background task runs it
  auto app = ServeApp::Start(std::move(bus).value(), std::move(config));
  if (!app.ok()) return Fail(app.status());
  if (!f.schedule.empty()) {
    EventBus& b = app.value()->bus();
    auto created = Scheduler::Create(std::move(schedule), SchedulerOptions{}, SystemSchedulerClock(),
                                     [&b](const ScheduledBatch& slot) { return PublishScheduledStart(b, slot); });
    if (!created.ok()) return Fail(created.status());
    scheduler = std::move(created).value();
    app.value()->RunInBackground([s = scheduler.get()](std::stop_token stop) { s->Run(stop); });
    spdlog::info("serve runs the schedule {}", f.schedule);
  }
  const std::string host = f.listen.substr(0, f.listen.rfind(':'));
  // The first line on stdout, for scripts that asked for port 0.
  std::cout << "listening on http://" << host << ":" << app.value()->port() << std::endl;
  spdlog::info("serve on {} at http://{}:{}/ ({})", app.value()->bus().Describe(), host,
               app.value()->port(),
               f.token_file.empty() ? "no token" : "bearer token from " + f.token_file);
  spdlog::info("serve stopping on {}", WaitForShutdownSignal());
  return kExitSucceeded;
}

}  // namespace fanflow::cli
