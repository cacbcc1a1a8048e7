// The `fanflow` commands and their flags. main.cc wires them to CLI11.
#pragma once

#include <string>
#include <vector>

#include "pipeline/aggregator.h"
#include "pipeline/alarm_rules.h"
#include "pipeline/worker.h"

namespace fanflow::cli {

struct BusFlags {
  std::string url = "inproc://";
  std::string log_level = "info";
};

struct WorkerFlags {
  std::string processor = "sum";
  std::string exec;
  std::string coprocess;  // long-lived copies, at most `concurrency`
  double sleep_scale = 1.0;
  int concurrency = 4;
  int prefetch = 0;  // 0: the bus adapter's default
  int max_attempts = 3;
  int64_t chunk_timeout_ms = 0;
  int64_t backoff_ms = 200;
  std::string rate;                  // "" or N/s
  std::string rate_unit = "chunks";  // chunks | items
  double rate_burst = 0;             // 0: one second's worth
};

struct AggregatorFlags {
  std::string state;  // empty: the command's default
  std::string sync = "normal";
  std::string tolerate;
  std::string lease = "auto";  // seconds, or auto: on for MQTT buses
  double deadline_s = 0;       // 0: none
  int64_t fanout_window = 400;
  int64_t max_batch_chunks = 10'000'000;
  int64_t max_batch_items = 1'000'000'000;
  double step_lease_s = 10;
  std::string results;  // a results file per batch ("{batch}": its id); "": none
};

struct BatchFlags {
  std::string source;
  int64_t chunk_size = 100;
  int64_t page_chunks = 100;
  int64_t claim_check_bytes = 256 * 1024;
  std::string batch_id;
  std::string correlation_id;
  std::string combine = "merge";  // merge | concat | none
  bool json = false;
  double timeout_s = 0;
};

struct DlqFlags {
  std::string group;  // "" every group
  std::string id;     // show: required; replay: "" all
  bool json = false;
};

struct MonitorFlags {
  std::string group;
  bool once = false;
  bool json = false;
  double interval_s = 2;
  double rate_window_s = 10;
  double duration_s = 0;  // 0: until SIGINT/SIGTERM
  std::string state;      // the aggregator's ledger, for open batches
  int metrics_port = -1;  // -1: no metrics endpoint; 0: any free port
  std::string metrics_bind = "127.0.0.1";
  AlarmSpecs alarms;
};

// The roles' options from their flags (also for `serve`, which runs them on inproc://).
[[nodiscard]] Result<std::shared_ptr<Processor>> BuildProcessor(const WorkerFlags& f);
[[nodiscard]] Result<WorkerOptions> ToWorkerOptions(const WorkerFlags& f);
// With --lease auto, o.lease is left for ResolveLease, once the bus is open.
[[nodiscard]] Result<AggregatorOptions> ToAggregatorOptions(const AggregatorFlags& f,
                                                            const std::string& default_state);
// --lease auto: whatever the bus needs (see DefaultLease).
void ResolveLease(const AggregatorFlags& f, const EventBus& bus, AggregatorOptions& o);

struct ServeFlags {
  std::string listen = "127.0.0.1:8080";
  std::string token_file;
  std::string ledger;  // on a broker: the aggregator's ledger, read-only
  std::string schedule;  // a schedule file: serve also submits its slots
  int max_wait_s = 600;
  std::vector<std::string> role_flags_given;  // worker/aggregator flags: inproc:// only
};

struct StatusFlags {
  std::string batch_id;
  std::string ledger;
  bool json = false;
};

struct CancelFlags {
  std::string batch_id;
  std::string reason;
  double wait_s = 10;  // 0: publish the cancel and return
  bool json = false;
};

struct ScheduleFlags {
  std::string file;
  bool list = false;     // print the next slots
  bool run = false;      // submit each slot as it comes
  int count = 10;        // --list: slots to print
  std::string from;      // --list: start here (RFC 3339, UTC) instead of now
  std::string catch_up = "latest";  // latest | none
  double catch_up_within_s = 86400;
};

// `data_dirs`: the --data-dir roots files may be read under (sources, claim checks).
int RunCommand(const BusFlags& bus, const BatchFlags& batch, const WorkerFlags& worker,
               const AggregatorFlags& aggregator, const std::vector<std::string>& data_dirs);
int SubmitCommand(const BusFlags& bus, const BatchFlags& batch, bool wait);
int VentilatorCommand(const BusFlags& bus, int concurrency, const std::vector<std::string>& data_dirs);
int WorkerCommand(const BusFlags& bus, const WorkerFlags& worker,
                  const std::vector<std::string>& data_dirs);
int AggregatorCommand(const BusFlags& bus, const AggregatorFlags& aggregator);
int TopologyCommand(const BusFlags& bus);
// action: list | show | replay | purge.
int DlqCommand(const BusFlags& bus, const std::string& action, const DlqFlags& flags);
int MonitorCommand(const BusFlags& bus, const MonitorFlags& flags);
int ServeCommand(const BusFlags& bus, const ServeFlags& flags, const WorkerFlags& worker,
                 const AggregatorFlags& aggregator, const std::vector<std::string>& data_dirs);
int StatusCommand(const BusFlags& bus, const StatusFlags& flags);
int CancelCommand(const BusFlags& bus, const CancelFlags& flags);
int ScheduleCommand(const BusFlags& bus, const ScheduleFlags& flags);

}  // namespace fanflow::cli
