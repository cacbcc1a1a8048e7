// What the two broker benches (amqp_pipeline_bench, mqtt_pipeline_bench) share:
// the message sizes of a real pipeline, a CloudEvent body of a given size, a
// reporter that keeps every repetition's counters for the tables printed at
// the end, the end-to-end table, and main().
#pragma once

#include <benchmark/benchmark.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "bench/pipeline_run.h"

namespace fanflow::bench {

// A chunk_done, and a process_chunk of 100 range items: what the end-to-end
// run moves, one of each per chunk.
inline constexpr int kChunkDoneBytes = 330;
inline constexpr int kProcessChunkBytes = 2600;

// A CloudEvent of about `bytes` bytes (at least a chunk_done's ~330).
std::string CloudEventBody(int bytes);

// "<stem>_<random number>": names of a run's own queues, topics and groups.
std::string Unique(const std::string& stem);

// The console output as usual; every repetition's counters kept by run name.
class TableReporter : public benchmark::ConsoleReporter {
 public:
  TableReporter() : ConsoleReporter(OO_Tabular) {}  // no colour codes in logs
  void ReportRuns(const std::vector<Run>& runs) override;

  // `counter` of every repetition of the run whose name starts with `prefix`.
  std::vector<double> Values(const std::string& prefix, const std::string& counter) const;

 private:
  std::map<std::string, std::map<std::string, std::vector<double>>> runs_;  // name -> counter -> values
};

// Prints a table row "| label (medians of N / M runs) | raw (min-max) | fanflow (min-max) | ratio |";
// nothing when either side has no values.
void PrintRatioRow(const std::string& label, const std::vector<double>& raw,
                   const std::vector<double>& fanflow);

// The end-to-end run of `e2e_prefix` (counters chunks_per_s, items_per_s,
// p50_ms, p99_ms) against the raw client's ceiling for the same messages:
// each chunk is one process_chunk and one chunk_done, each published and
// consumed once, so the raw client moves 1 / (1/big + 1/small) chunks/s, from
// the median msg/s of its runs with those two sizes.
void PrintEndToEndTable(const TableReporter& report, const std::string& e2e_prefix,
                        const std::vector<double>& raw_big_rates,
                        const std::vector<double>& raw_small_rates, const std::string& raw_name,
                        const WorkerShape& workers);

// The first of the two environment variables that is set, or "".
std::string UrlFromEnv(const char* bench_variable, const char* test_variable);

// One real fan-out / fan-in (bench/pipeline_run) per iteration over `url`, of
// state.range(0) items in chunks of state.range(1), with `workers` (on MQTT
// each slot waits on its chunk_done's PUBACK; on AMQP a chunk holds its place
// in the prefetch until its chunk_done is confirmed, not its thread); sets
// counters chunks_per_s, items_per_s, p50_ms and p99_ms.
void MeasureEndToEnd(benchmark::State& state, const std::string& url, const WorkerShape& workers);

// Runs the benchmarks with interleaved repetitions (load on shared cores drifts
// between runs), then `print_tables`. Exits 1 with `usage` when `url` is empty.
int RunBrokerBench(int argc, char** argv, const std::string& url, const std::string& usage,
                   const std::function<void(const TableReporter&)>& print_tables);

}  // namespace fanflow::bench
