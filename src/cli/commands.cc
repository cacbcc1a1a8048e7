#include "cli/commands.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "cli/cli_common.h"
#include "core/bus_url.h"
#include "core/printable.h"
#include "core/routes.h"
#include "pipeline/aggregator.h"
#include "pipeline/batch_run.h"
#include "pipeline/batch_runner.h"
#include "pipeline/batch_waiter.h"
#include "pipeline/ventilator.h"
#include "pipeline/worker.h"

namespace fanflow::cli {
namespace {

using Clock = std::chrono::steady_clock;

// How long roles and broker calls get to let go after SIGINT/SIGTERM.
constexpr std::chrono::milliseconds kStopGrace{1000};
// When `submit --wait` asks the bus whether anything takes its start_fanout.
constexpr std::chrono::milliseconds kPickupCheckAfter{3000};

}  // namespace

Result<std::shared_ptr<Processor>> BuildProcessor(const WorkerFlags& f) {
  ProcessorOptions o;
  o.name = !f.coprocess.empty() ? "coprocess" : f.exec.empty() ? f.processor : "exec";
  o.command = f.coprocess.empty() ? f.exec : f.coprocess;
  o.copies = f.concurrency;
  o.sleep_scale = f.sleep_scale;
  o.timeout = std::chrono::milliseconds(f.chunk_timeout_ms);
  auto p = MakeProcessor(o);
  if (!p.ok()) return p.status();
  return std::shared_ptr<Processor>(std::move(p).value());
}

// For the log: "sum", "exec 'CMD'", "coprocess 'CMD'".
std::string ProcessorName(const WorkerFlags& f) {
  if (!f.coprocess.empty()) return "coprocess '" + EscapeForLog(f.coprocess) + "'";
  if (!f.exec.empty()) return "exec '" + EscapeForLog(f.exec) + "'";
  return f.processor;
}

Result<WorkerOptions> ToWorkerOptions(const WorkerFlags& f) {
  WorkerOptions o;
  o.concurrency = f.concurrency;
  o.prefetch = f.prefetch;
  o.max_attempts = f.max_attempts;
  o.backoff_base = std::chrono::milliseconds(f.backoff_ms);
  auto rate = RateLimit::Parse(f.rate, f.rate_unit, f.rate_burst);
  if (!rate.ok()) return rate.status();
  o.rate = rate.value();
  return o;
}

// With --lease auto, o.lease is left for ResolveLease, once the bus is open.
Result<AggregatorOptions> ToAggregatorOptions(const AggregatorFlags& f, const std::string& default_state) {
  AggregatorOptions o;
  o.state_path = f.state.empty() ? default_state : f.state;
  o.durability = f.sync == "full" ? Durability::kFull : Durability::kNormal;
  auto tolerance = Tolerance::Parse(f.tolerate);
  if (!tolerance.ok()) return tolerance.status();
  o.tolerance = tolerance.value();
  o.deadline = std::chrono::milliseconds(static_cast<int64_t>(f.deadline_s * 1000));
  o.fanout_window = f.fanout_window;
  o.max_batch_chunks = f.max_batch_chunks;
  o.max_batch_items = f.max_batch_items;
  o.step_lease = std::chrono::milliseconds(static_cast<int64_t>(f.step_lease_s * 1000));
  o.results = f.results;
  if (f.lease != "auto") {
    char* end = nullptr;
    double seconds = std::strtod(f.lease.c_str(), &end);
    if (f.lease.empty() || *end != '\0' || seconds < 0)
      return InvalidArgument("--lease '" + f.lease + "': expected seconds (e.g. 30 or 0.5) or auto");
    o.lease = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  }
  return o;
}

// --lease auto: whatever the bus needs (see DefaultLease).
void ResolveLease(const AggregatorFlags& f, const EventBus& bus, AggregatorOptions& o) {
  if (f.lease == "auto") o.lease = DefaultLease(bus);
}

namespace {

// The start_fanout for the flags. Nothing is read here.
Result<Event> BuildStart(const BatchFlags& f, std::string& batch_id) {
  auto start = MakeBatchStart({f.source, f.chunk_size, f.page_chunks, f.claim_check_bytes, f.batch_id,
                               f.correlation_id, f.combine});
  if (start.ok()) batch_id = start->subject;
  return start;
}

// On a terminal, one line on stderr that rewrites itself.
std::function<void(const BatchProgress&)> ProgressLine(const std::string& batch_id,
                                                       Clock::time_point started) {
  if (!isatty(STDERR_FILENO)) return nullptr;
  return [batch_id, started](const BatchProgress& p) {
    double secs = std::chrono::duration<double>(Clock::now() - started).count();
    std::string total = p.total_chunks ? std::to_string(*p.total_chunks) : "?";
    int pct = p.total_chunks && *p.total_chunks > 0
                  ? static_cast<int>(100 * (p.chunks_done + p.chunks_failed) / *p.total_chunks)
                  : 0;
    std::fprintf(stderr, "\r[batch %s] %lld/%s chunks (%d%%), %lld failed, %.1f s   ",
                 batch_id.c_str(), static_cast<long long>(p.chunks_done + p.chunks_failed),
                 total.c_str(), pct, static_cast<long long>(p.chunks_failed), secs);
  };
}

int Report(Result<Event> complete, bool json, Clock::time_point started, bool progress_shown) {
  if (progress_shown) std::fputc('\n', stderr);
  if (!complete.ok()) {
    std::cerr << "fanflow: " << complete.status().ToString() << "\n";
    return complete.status().code() == StatusCode::kTimeout ? kExitTimedOut : kExitError;
  }
  double secs = std::chrono::duration<double>(Clock::now() - started).count();
  if (json)
    std::cout << EncodeEvent(complete.value()) << std::endl;
  else
    std::cout << Summary(complete.value(), secs) << std::flush;
  return ExitCodeFor(complete.value());
}

std::chrono::milliseconds TimeoutOf(const BatchFlags& f) {
  return std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000));
}

// After kPickupCheckAfter with no sign of the batch (no batch_sealed, no
// chunk_done), warns once on stderr if the bus says nothing takes its
// start_fanout; the wait goes on. Stops with the returned thread.
std::jthread WarnIfNotPickedUp(EventBus& bus, BatchWaiter& waiter, const std::string& batch_id,
                               bool progress_shown) {
  return std::jthread([&bus, &waiter, batch_id, progress_shown](std::stop_token stop) {
    if (waiter.Wait(kPickupCheckAfter, nullptr, stop).status().code() != StatusCode::kTimeout) return;
    BatchProgress p = waiter.Progress();
    if (p.total_chunks || p.chunks_done + p.chunks_failed > 0) return;
    auto why = WhyStartsAreNotTaken(bus);
    if (!why.ok()) {
      spdlog::warn("[batch {}] could not ask the bus whether a ventilator takes the batch: {}", batch_id,
                   why.status().ToString());
    } else if (why.value()) {
      std::cerr << (progress_shown ? "\n" : "") << "fanflow: warning: nothing has picked up batch " << batch_id
                << " yet: " << *why.value() << "; still waiting\n";
    }
  });
}

}  // namespace

int RunCommand(const BusFlags& bus_flags, const BatchFlags& batch, const WorkerFlags& worker_flags,
               const AggregatorFlags& aggregator_flags, const std::vector<std::string>& data_dirs) {
  const auto started = Clock::now();
  std::string batch_id;
  auto start = BuildStart(batch, batch_id);
  if (!start.ok()) return Fail(start.status());
  auto files = RunFiles(start.value(), data_dirs);
  if (!files.ok()) return Fail(files.status());
  auto processor = BuildProcessor(worker_flags);
  if (!processor.ok()) return Fail(processor.status());
  auto worker_options = ToWorkerOptions(worker_flags);
  if (!worker_options.ok()) return Fail(worker_options.status());
  worker_options->files = files.value();
  TemporaryLedger temporary;
  if (aggregator_flags.state.empty()) temporary.path = MakeTemporaryLedgerPath();
  auto agg_options = ToAggregatorOptions(aggregator_flags, temporary.path);
  if (!agg_options.ok()) return Fail(agg_options.status());
  InterruptWatch watch(kStopGrace, [&temporary] {
    std::fputs("fanflow: the run's roles did not stop within 1 s; exiting without them\n", stderr);
    temporary.Remove();
  });

  auto bus = OpenBus(bus_flags.url);
  if (!bus.ok()) return Fail(bus.status());
  ResolveLease(aggregator_flags, *bus.value(), agg_options.value());
  EventBus& b = *bus.value();
  auto progress = ProgressLine(batch_id, started);
  auto run = BatchRun::Start({b, b, b}, {agg_options.value(), processor.value(), worker_options.value()},
                             start.value(), progress != nullptr);
  if (!run.ok()) return Fail(run.status());

  spdlog::info("[batch {}] run: source {}, chunk size {}, processor {}, concurrency {}, rate {}, bus {}",
               batch_id, batch.source, batch.chunk_size,
               ProcessorName(worker_flags), worker_flags.concurrency,
               worker_options->rate.ToString(), b.Describe());
  // A rerun with the same --batch-id and --state is the same batch: a finished
  // one is answered again, an unfinished one goes on where it stood.
  if (Status p = run.value()->Submit(); !p.ok()) return Fail(p);
  auto complete = run.value()->Wait(TimeoutOf(batch), progress, watch.token());
  if (!watch.interrupted()) return Report(std::move(complete), batch.json, started, progress != nullptr);

  std::cerr << (progress ? "\n" : "") << "fanflow: " << watch.SignalName() << ": stopping the run of batch "
            << batch_id << ": ventilator, workers (their chunks in flight go back to the bus), aggregator\n";
  run.value()->Stop();
  if (!temporary.path.empty()) {
    temporary.Remove();
    std::cerr << "fanflow: stopped; its temporary ledger is removed\n";
  } else {
    std::cerr << "fanflow: stopped; the ledger " << agg_options->state_path
              << " keeps what was counted: the same command with --batch-id " << batch_id
              << " goes on from there\n";
  }
  return watch.ExitCode();
}

int SubmitCommand(const BusFlags& bus_flags, const BatchFlags& batch, bool wait) {
  const auto started = Clock::now();
  // The services read a batch's source step by step, whenever the aggregator
  // lets them; a submitter's stdin would end with the submitter.
  if (batch.source == "-")
    return Fail(InvalidArgument("--source -: submit cannot serve its stdin to the services; write the "
                                "items to a file under the ventilator's --data-dir (or use `fanflow run`)"));
  std::string batch_id;
  auto start = BuildStart(batch, batch_id);
  if (!start.ok()) return Fail(start.status());
  InterruptWatch watch(kStopGrace, [&batch_id] {
    std::cerr << "fanflow: the bus did not let go within 1 s; whether batch " << batch_id
              << " was submitted is unknown\n";
  });
  auto bus = OpenServiceBus(bus_flags.url, "submit", true);
  if (!bus.ok()) return Fail(bus.status());

  std::unique_ptr<BatchWaiter> waiter;
  auto progress = ProgressLine(batch_id, started);
  if (wait) {
    auto w = BatchWaiter::Start(*bus.value(), batch_id, progress != nullptr);
    if (!w.ok()) return Fail(w.status());
    waiter = std::move(w).value();
  }
  const Event& s = start.value();
  if (Status p = bus.value()->Publish(Message{s.type, s.id, EncodeEvent(s)}); !p.ok()) return Fail(p);
  spdlog::info("[batch {}] submitted: source {}, chunk size {}", batch_id, batch.source, batch.chunk_size);
  if (!wait) {
    std::cout << (batch.json ? EncodeEvent(s) : batch_id) << std::endl;
    return kExitSucceeded;
  }
  std::jthread pickup = WarnIfNotPickedUp(*bus.value(), *waiter, batch_id, progress != nullptr);
  auto complete = waiter->Wait(TimeoutOf(batch), progress, watch.token());
  if (!watch.interrupted()) return Report(std::move(complete), batch.json, started, progress != nullptr);
  std::cerr << (progress ? "\n" : "") << "fanflow: " << watch.SignalName() << ": stopped waiting; batch "
            << batch_id << " goes on on the bus: follow it with `fanflow monitor --state LEDGER` "
            << "(the aggregator's ledger), or read its batch_complete (topics/README.md)\n";
  return watch.ExitCode();
}

int VentilatorCommand(const BusFlags& bus_flags, int concurrency, const std::vector<std::string>& data_dirs) {
  auto files = SourcePolicy::Make(data_dirs, false);
  if (!files.ok()) return Fail(files.status());
  auto bus = OpenServiceBus(bus_flags.url, "ventilator", true);
  if (!bus.ok()) return Fail(bus.status());
  auto ventilator = Ventilator::Start(*bus.value(), {concurrency, files.value(), ""});
  if (!ventilator.ok()) return Fail(ventilator.status());
  spdlog::info("ventilator ready on {} (concurrency {}, {} --data-dir)", bus.value()->Describe(),
               concurrency, files->roots().size());
  spdlog::info("ventilator stopping on {}", WaitForShutdownSignal());
  return kExitSucceeded;
}

int WorkerCommand(const BusFlags& bus_flags, const WorkerFlags& flags,
                  const std::vector<std::string>& data_dirs) {
  auto processor = BuildProcessor(flags);
  if (!processor.ok()) return Fail(processor.status());
  auto options = ToWorkerOptions(flags);
  if (!options.ok()) return Fail(options.status());
  auto files = SourcePolicy::Make(data_dirs, false);
  if (!files.ok()) return Fail(files.status());
  options->files = files.value();
  auto bus = OpenServiceBus(bus_flags.url, "worker", true);
  if (!bus.ok()) return Fail(bus.status());
  auto worker = Worker::Start(*bus.value(), processor.value(), options.value());
  if (!worker.ok()) return Fail(worker.status());
  spdlog::info("worker ready on {}: processor {}, concurrency {}, rate {}, max attempts {}",
               bus.value()->Describe(), ProcessorName(flags),
               flags.concurrency, options->rate.ToString(), flags.max_attempts);
  spdlog::info("worker stopping on {}; finishing chunks in flight", WaitForShutdownSignal());
  return kExitSucceeded;
}

int AggregatorCommand(const BusFlags& bus_flags, const AggregatorFlags& flags) {
  // One path for every batch would keep only the last batch's file.
  if (!flags.results.empty() && flags.results.find("{batch}") == std::string::npos)
    return Fail(InvalidArgument("--results '" + flags.results +
                                "': the aggregator serves many batches; put {batch} in the path, "
                                "e.g. /var/lib/fanflow/{batch}.results.jsonl"));
  auto options = ToAggregatorOptions(flags, "fanflow-ledger.db");
  if (!options.ok()) return Fail(options.status());
  auto bus = OpenServiceBus(bus_flags.url, "aggregator", true);
  if (!bus.ok()) return Fail(bus.status());
  ResolveLease(flags, *bus.value(), options.value());
  auto aggregator = Aggregator::Start(*bus.value(), options.value());
  if (!aggregator.ok()) return Fail(aggregator.status());
  spdlog::info("aggregator ready on {} (lease {} ms)", bus.value()->Describe(), options->lease.count());
  spdlog::info("aggregator stopping on {}", WaitForShutdownSignal());
  return kExitSucceeded;
}

int TopologyCommand(const BusFlags& bus_flags) {
  auto bus = OpenServiceBus(bus_flags.url, "topology", true);
  if (!bus.ok()) return Fail(bus.status());
  for (const std::string& type : KnownEventTypes())
    for (const std::string& group : routes::DefaultGroups(type))
      if (Status s = bus.value()->DeclareGroup(group, {type}); !s.ok()) return Fail(s);
  auto stats = bus.value()->Stats("");
  if (!stats.ok()) return Fail(stats.status());
  for (const QueueStats& q : stats.value())
    std::cout << q.queue << "  group=" << q.group << " type=" << q.type << " depth=" << q.depth
              << " dead_letters=" << q.dead_letters << "\n";
  return kExitSucceeded;
}

}  // namespace fanflow::cli
