// `fanflow`: fan-out / fan-in batch processing over an event bus.
#include <CLI/CLI.hpp>

#include <map>

#include "cli/cli_common.h"
#include "cli/commands.h"

namespace {

using namespace fanflow::cli;

void AddBusFlags(CLI::App* cmd, BusFlags& f) {
  cmd->add_option("--bus", f.url,
                  "event bus URL: inproc:// (in this process), amqp://USER:PASS@HOST:PORT/VHOST, "
                  "amqps://..., mqtt://HOST:PORT, mqtts://...")
      ->envname("FANFLOW_BUS")
      ->capture_default_str();
  cmd->add_option("--log-level", f.log_level, "trace, debug, info, warn, error, critical, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
}

void AddWorkerFlags(CLI::App* cmd, WorkerFlags& f) {
  cmd->add_option("--processor", f.processor,
                  "sum: sums each item's numeric \"value\"; sleep: sleeps value*scale ms per item")
      ->check(CLI::IsMember({"sum", "sleep", "exec"}))
      ->capture_default_str();
  auto* exec = cmd->add_option("--exec", f.exec,
                               "run CMD (via /bin/sh -c) per chunk: chunk JSON on stdin, result JSON on "
                               "stdout, non-zero exit = failed attempt");
  cmd->add_option("--coprocess", f.coprocess,
                  "keep up to --concurrency copies of CMD (via /bin/sh -c) running; each chunk is one "
                  "line on a copy's stdin (its process_chunk event), answered by one line on its stdout: "
                  "{\"result\": ANY} or {\"error\": \"message\"} (topics/COPROCESS.md)")
      ->excludes(exec);
  cmd->add_option("--sleep-scale", f.sleep_scale, "ms slept per unit of value (sleep processor)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--concurrency", f.concurrency,
                  "chunks processed at once in this process, at most (a finished chunk's chunk_done "
                  "awaits its broker confirm without holding a slot)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--prefetch", f.prefetch,
                  "chunks this process may hold unacknowledged, running or waiting for a free slot "
                  "(AMQP prefetch, MQTT Receive Maximum); default: 2x --concurrency on AMQP, 8x on "
                  "MQTT; --prefetch equal to --concurrency shares a burst most evenly between workers. "
                  "On AMQP a chunk also keeps its place until its chunk_done is confirmed (its slot "
                  "goes on at once), so chunks of a few ms want a larger one, e.g. 256 with 8 slots")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--max-attempts", f.max_attempts, "attempts per chunk before it is dead-lettered")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--chunk-timeout", f.chunk_timeout_ms,
                  "ms a chunk attempt may take (0: no limit); past it the attempt fails")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--backoff-ms", f.backoff_ms, "first retry delay; doubles per attempt, jittered")
      ->check(CLI::Range(int64_t{1}, int64_t{3600000}))
      ->capture_default_str();
  cmd->add_option("--rate", f.rate,
                  "start chunks no faster than N/s in this process (token bucket; e.g. 20/s, 0.5/s); "
                  "a chunk waits for its tokens holding its slot, so the queue absorbs a burst");
  cmd->add_option("--rate-unit", f.rate_unit, "what --rate counts: chunks, or items (a chunk costs its item count)")
      ->capture_default_str();
  cmd->add_option("--rate-burst", f.rate_burst,
                  "tokens the bucket holds when idle (0: one second's worth)")
      ->capture_default_str();
}

void AddDataDirFlag(CLI::App* cmd, std::vector<std::string>& dirs, const std::string& help) {
  cmd->add_option("--data-dir", dirs, help + "; symlinks and .. are resolved first; repeatable")
      ->type_name("DIR");
}

void AddAggregatorFlags(CLI::App* cmd, AggregatorFlags& f, const std::string& state_help) {
  cmd->add_option("--state", f.state, state_help);
  cmd->add_option("--sync", f.sync,
                  "ledger durability: normal survives a process crash, full also a power loss")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();
  cmd->add_option("--tolerate", f.tolerate,
                  "failed chunks a batch tolerates before it is `failed` rather than `partial`: N or N%");
  cmd->add_option("--lease", f.lease,
                  "seconds after which an unfinished chunk of a stalled batch is redriven "
                  "(0: off; auto: 30 on MQTT buses, which ack on receipt, off elsewhere)")
      ->capture_default_str();
  cmd->add_option("--deadline", f.deadline_s,
                  "seconds a batch may stay open after its first event; then it completes `timed_out` "
                  "listing its missing chunks (0: no deadline)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--fanout-window", f.fanout_window,
                  "chunks of one batch published and not yet done, at most: the ventilator gets the "
                  "next step once a batch is down to half, so batches share the workers")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--max-batch-chunks", f.max_batch_chunks,
                  "a batch with more chunks is refused (failed, with the reason)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-batch-items", f.max_batch_items,
                  "a batch with more items is refused (failed, with the reason)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--step-lease", f.step_lease_s,
                  "seconds after which a fan-out step the ventilator has not reported is handed out "
                  "again (its ventilator died)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--results", f.results,
                  "write each batch's chunk outcomes (chunk_index, status, result or error), one JSON "
                  "line per chunk in chunk order, to PATH before its batch_complete, which refers to it; "
                  "{batch} in PATH is replaced by the batch id (needed by `fanflow aggregator`)")
      ->type_name("PATH");
}

void AddBatchFlags(CLI::App* cmd, BatchFlags& f) {
  cmd->add_option("--source", f.source,
                  "range:N[:SEED] (N generated items {id, value 0..1000}), jsonl:PATH, or - (JSONL on stdin)")
      ->required();
  cmd->add_option("--chunk-size", f.chunk_size, "items per chunk")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))
      ->capture_default_str();
  cmd->add_option("--page-chunks", f.page_chunks, "chunks the ventilator publishes per page")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}))
      ->capture_default_str();
  cmd->add_option("--claim-check-bytes", f.claim_check_bytes,
                  "JSONL chunks larger than this travel as a file reference (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--batch-id", f.batch_id, "batch id (default: generated)");
  cmd->add_option("--correlation-id", f.correlation_id, "correlation id (default: the batch id)");
  cmd->add_option("--combine", f.combine,
                  "how chunk results make the batch result: merge (numbers add, objects merge), concat "
                  "(arrays joined in chunk order) or none (null; see --results). A value the strategy "
                  "cannot combine fails the batch with the reason")
      ->check(CLI::IsMember({"merge", "concat", "none"}))
      ->capture_default_str();
  cmd->add_flag("--json", f.json, "print the batch_complete CloudEvent as one JSON line on stdout");
  cmd->add_option("--timeout", f.timeout_s, "seconds to wait for batch_complete (0: forever)")
      ->check(CLI::NonNegativeNumber);
}

void AddMonitorFlags(CLI::App* cmd, MonitorFlags& f) {
  cmd->add_option("--group", f.group, "watch only this consumer group's queues");
  cmd->add_flag("--once", f.once,
                "print one snapshot (after one --interval, to measure rates) and exit; its alarms are "
                "shown, not published (nothing would resolve them)");
  cmd->add_flag("--json", f.json, "JSON instead of a table: one object per snapshot, one per line");
  cmd->add_option("--interval", f.interval_s, "seconds between samples")->capture_default_str();
  cmd->add_option("--rate-window", f.rate_window_s, "seconds over which rates are measured")
      ->capture_default_str();
  cmd->add_option("--duration", f.duration_s, "stop after this many seconds (0: at SIGINT/SIGTERM)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--state", f.state, "the aggregator's ledger file, to show open batches");
  cmd->add_option("--metrics-port", f.metrics_port,
                  "serve Prometheus metrics on this port at /metrics (0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--metrics-bind", f.metrics_bind, "address the metrics endpoint listens on")
      ->capture_default_str();
  const std::string per_queue = " ([GROUP[/TYPE]=]VALUE, repeatable: the most specific applies)";
  cmd->add_option("--alarm-depth", f.alarms.depth, "alarm when this many messages wait" + per_queue);
  cmd->add_option("--alarm-growth", f.alarms.growth, "alarm when the backlog grows by this many msg/s" + per_queue);
  cmd->add_option("--alarm-oldest-age", f.alarms.oldest_age,
                  "alarm when the oldest waiting message is this many seconds old, or N% of its "
                  "queue's --retention" + per_queue);
  cmd->add_option("--alarm-dead-letters", f.alarms.dead_letters,
                  "alarm when a queue has this many dead letters" + per_queue);
  cmd->add_option("--alarm-stalled", f.alarms.stalled_s,
                  "alarm when an open batch made no progress for this many seconds (needs --state)");
  cmd->add_option("--alarm-dropped", f.alarms.dropped,
                  "alarm when the broker has dropped this many publishes since it started, instead "
                  "of queueing them (Mosquitto's $SYS count; 0: off)")
      ->capture_default_str();
  cmd->add_option("--retention", f.alarms.retention,
                  "seconds the queue keeps a message (its TTL), for --alarm-oldest-age N%" + per_queue);
  cmd->add_option("--dlq-retention", f.alarms.dlq_retention,
                  "seconds its dead-letter queue keeps one; must be longer than --retention" + per_queue);
}

}  // namespace

int main(int argc, char** argv) {
  BlockShutdownSignals();
  CLI::App app{
      "fanflow: fan-out / fan-in batch processing over an event bus.\n"
      "A start_fanout is split into process_chunk events, workers process them with a\n"
      "concurrency cap, and an aggregator fires one batch_complete when every chunk is done.\n"
      "Exit codes: 0 succeeded, 1 error, 2 bad usage, 3 partial, 4 failed, 5 timed out, 6 cancelled,\n"
      "130/143 stopped by SIGINT/SIGTERM (run and submit stop within a second and say what goes on)."};
  app.set_version_flag("--version", "fanflow " FANFLOW_VERSION "\nadapters: " FANFLOW_ADAPTERS,
                       "print the version and the bus adapters this build has, and exit");
  app.require_subcommand(1);

  BusFlags bus;
  BatchFlags batch;
  WorkerFlags worker;
  AggregatorFlags aggregator;
  bool wait = false;
  int ventilator_concurrency = 1;
  std::vector<std::string> data_dirs;

  auto* run = app.add_subcommand(
      "run", "ventilator + workers + aggregator in this process: fan a source out and in");
  AddBusFlags(run, bus);
  AddBatchFlags(run, batch);
  AddWorkerFlags(run, worker);
  AddAggregatorFlags(run, aggregator, "ledger file (default: a temporary file, removed after)");
  AddDataDirFlag(run, data_dirs,
                 "one more directory the in-process ventilator and workers may read files under "
                 "(the --source file's own directory always is)");

  auto* submit = app.add_subcommand("submit", "publish a start_fanout for a batch");
  AddBusFlags(submit, bus);
  AddBatchFlags(submit, batch);
  submit->add_flag("--wait", wait,
                   "block until the batch_complete arrives (progress on a terminal). SIGINT/SIGTERM stop "
                   "the wait, not the batch (exit 130/143). After 3 s without a sign of the batch, warns "
                   "once if the bus says nothing takes start_fanout: on AMQP, no queue or no consumer in "
                   "its group; on MQTT, whose broker does not tell about other clients' subscriptions, "
                   "only no group declared for it, or starts waiting in a parked session no consumer "
                   "took over (an aggregator that died keeps its session: that it cannot tell)");

  auto* ventilator = app.add_subcommand("ventilator", "service: turn the aggregator's fan-out steps into chunks");
  AddBusFlags(ventilator, bus);
  ventilator->add_option("--concurrency", ventilator_concurrency, "batches fanned out at once")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  AddDataDirFlag(ventilator, data_dirs,
                 "read a batch's jsonl:PATH source only under this directory (default: none, "
                 "so every jsonl: source is refused; '-' for stdin always is)");

  auto* worker_cmd = app.add_subcommand("worker", "service: process chunks with a concurrency cap");
  AddBusFlags(worker_cmd, bus);
  AddWorkerFlags(worker_cmd, worker);
  AddDataDirFlag(worker_cmd, data_dirs,
                 "read a process_chunk's claim check (data.ref.path) only under this directory "
                 "(default: none, so every claim check is refused)");

  auto* aggregator_cmd = app.add_subcommand("aggregator", "service: admit batches, hand out their fan-out, count chunks, fire batch_complete");
  AddBusFlags(aggregator_cmd, bus);
  AddAggregatorFlags(aggregator_cmd, aggregator, "ledger file (default: fanflow-ledger.db)");

  auto* topology = app.add_subcommand("topology", "declare the standard queues/groups on the bus");
  AddBusFlags(topology, bus);

  DlqFlags dlq;
  auto* dlq_cmd = app.add_subcommand("dlq", "dead letters: list, show, replay, purge");
  dlq_cmd->require_subcommand(1);
  std::map<CLI::App*, std::string> dlq_actions;
  for (const char* action : {"list", "show", "replay", "purge"}) {
    static const std::map<std::string, std::string> kHelp = {
        {"list", "list dead letters: id, group, type, attempts, time, reason"},
        {"show", "print one dead letter with its original event"},
        {"replay", "send dead letters (all, or ID) back to their origin queue"},
        {"purge", "delete dead letters"}};
    auto* sub = dlq_cmd->add_subcommand(action, kHelp.at(action));
    AddBusFlags(sub, bus);
    sub->add_option("--group", dlq.group, "only this consumer group's dead letters");
    sub->add_flag("--json", dlq.json, "JSON output (list/show: one dead letter per line)");
    if (std::string(action) == "show") sub->add_option("id", dlq.id, "the dead letter's id")->required();
    if (std::string(action) == "replay") sub->add_option("id", dlq.id, "the dead letter's id (default: all)");
    dlq_actions[sub] = action;
  }

  MonitorFlags monitor;
  auto* monitor_cmd = app.add_subcommand(
      "monitor", "live table of queues and open batches; alarms on the bus; Prometheus metrics");
  AddBusFlags(monitor_cmd, bus);
  AddMonitorFlags(monitor_cmd, monitor);

  ServeFlags serve;
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "HTTP JSON API and live dashboard: POST /v1/batches (?wait=S blocks for the batch_complete), "
      "GET /v1/batches[/ID[?explain=1]], /metrics, /healthz, / (dashboard). On inproc:// it runs the "
      "aggregator, workers and ventilator itself; on a broker it publishes start_fanout and reads the "
      "aggregator's ledger (--ledger)");
  AddBusFlags(serve_cmd, bus);
  serve_cmd->add_option("--listen", serve.listen, "IPV4:PORT to serve on (port 0: any free one, printed)")
      ->capture_default_str();
  serve_cmd->add_option("--token-file", serve.token_file,
                        "require 'Authorization: Bearer TOKEN' (TOKEN: the file's first line) on every "
                        "endpoint but /healthz and the dashboard's static files (its page sends the token "
                        "from its #token=... fragment)");
  serve_cmd->add_option("--ledger", serve.ledger,
                        "on a broker: the aggregator's --state file on this host, opened read-only");
  serve_cmd->add_option("--schedule", serve.schedule,
                        "JSON list of {name, cron (5 fields, UTC), source, chunk_size, ...}: serve also "
                        "submits a batch per slot, as `fanflow schedule --run FILE` does (the latest slot "
                        "missed within a day is caught up at start; a slot that ran is not run again)");
  serve_cmd->add_option("--max-wait", serve.max_wait_s, "seconds a POST ?wait= may block, at most")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  // The roles' flags: serve runs the roles only on inproc://.
  const size_t serve_own_flags = serve_cmd->get_options().size();
  AddWorkerFlags(serve_cmd, worker);
  AddAggregatorFlags(serve_cmd, aggregator, "inproc://: the ledger file (default: fanflow-ledger.db)");
  std::vector<CLI::Option*> serve_role_flags = serve_cmd->get_options();
  serve_role_flags.erase(serve_role_flags.begin(), serve_role_flags.begin() + serve_own_flags);
  AddDataDirFlag(serve_cmd, data_dirs,
                 "a POSTed jsonl:PATH source must lie under this directory (checked by serve before "
                 "it publishes, and by the in-process ventilator and workers on inproc://)");

  StatusFlags status;
  auto* status_cmd = app.add_subcommand(
      "status", "why a batch is not done: each failed, dead-lettered, outstanding or unpublished chunk, "
                "or how it ended (from the aggregator's ledger, read-only; dead letters from --bus)");
  AddBusFlags(status_cmd, bus);
  status_cmd->add_option("batch", status.batch_id, "the batch id")->required();
  status_cmd->add_option("--ledger", status.ledger, "the aggregator's --state file")->required();
  status_cmd->add_flag("--json", status.json, "one JSON object on stdout");

  CancelFlags cancel;
  auto* cancel_cmd = app.add_subcommand(
      "cancel", "stop a batch: no more fan-out, workers skip its chunks, one batch_complete `cancelled`");
  AddBusFlags(cancel_cmd, bus);
  cancel_cmd->add_option("batch", cancel.batch_id, "the batch id")->required();
  cancel_cmd->add_option("--reason", cancel.reason, "why; copied into the batch_complete");
  cancel_cmd->add_option("--wait", cancel.wait_s,
                         "seconds to wait for the batch_complete (0: publish the cancel and exit). Exit 0: "
                         "the batch is cancelled; 1: it had completed otherwise before (nothing changed), "
                         "or no answer came (unknown batch: see `fanflow dlq list --group aggregator`)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cancel_cmd->add_flag("--json", cancel.json, "print the batch_complete CloudEvent as one JSON line");

  ScheduleFlags schedule;
  auto* schedule_cmd = app.add_subcommand(
      "schedule", "batches on a schedule: --list FILE prints the next slots, --run FILE submits them");
  AddBusFlags(schedule_cmd, bus);
  auto* list_flag = schedule_cmd->add_flag("--list", schedule.list, "print the next slots of FILE and exit");
  auto* run_flag = schedule_cmd->add_flag("--run", schedule.run,
                                          "submit a batch per slot of FILE until SIGINT/SIGTERM");
  list_flag->excludes(run_flag);
  schedule_cmd->add_option("file", schedule.file,
                           "JSON list of {name, cron (5 fields, UTC), source, chunk_size, ...}")
      ->required();
  schedule_cmd->add_option("--count", schedule.count, "--list: slots to print")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  schedule_cmd->add_option("--from", schedule.from, "--list: list from this UTC time (e.g. 2026-12-02T06:00Z), not now");
  schedule_cmd->add_option("--catch-up", schedule.catch_up,
                           "--run: at start-up, submit the latest slot missed while nothing ran (latest) "
                           "or not (none); a slot that did run is not run again (its batch id is known)")
      ->check(CLI::IsMember({"latest", "none"}))
      ->capture_default_str();
  schedule_cmd->add_option("--catch-up-within", schedule.catch_up_within_s,
                           "--run: seconds back a missed slot is still caught up")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  SetUpLogging(bus.log_level);
  if (*run) return RunCommand(bus, batch, worker, aggregator, data_dirs);
  if (*submit) return SubmitCommand(bus, batch, wait);
  if (*ventilator) return VentilatorCommand(bus, ventilator_concurrency, data_dirs);
  if (*worker_cmd) return WorkerCommand(bus, worker, data_dirs);
  if (*aggregator_cmd) return AggregatorCommand(bus, aggregator);
  if (*topology) return TopologyCommand(bus);
  for (const auto& [sub, action] : dlq_actions)
    if (*sub) return DlqCommand(bus, action, dlq);
  if (*monitor_cmd) return MonitorCommand(bus, monitor);
  if (*serve_cmd) {
    for (const CLI::Option* o : serve_role_flags)
      if (o->count() > 0) serve.role_flags_given.push_back(o->get_name());
    return ServeCommand(bus, serve, worker, aggregator, data_dirs);
  }
  if (*status_cmd) return StatusCommand(bus, status);
  if (*cancel_cmd) return CancelCommand(bus, cancel);
  if (*schedule_cmd) return ScheduleCommand(bus, schedule);
  return kExitUsage;
}
