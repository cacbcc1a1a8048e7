#include "bench/broker_bench.h"

#include <cstdio>
#include <cstdlib>
#include <random>

#include "bench/medians.h"

namespace fanflow::bench {

std::string CloudEventBody(int bytes) {
  std::string body =
      R"({"specversion":"1.0","id":"b-bench/chunk/000042/done","source":"fanflow","type":)"
      R"("fanflow.chunk_done.v1","time":"2026-11-22T21:45:00.123Z","subject":"b-bench",)"
      R"("datacontenttype":"application/json","correlationid":"b-bench","data":{"index":42,)"
      R"("status":"succeeded","items":100,"attempts":1,"result":50123,"worker":"bench-host-1234"}})";
  const int pad = bytes - static_cast<int>(body.size()) - 10;  // 10: the ,"pad":"" around it
  if (pad > 0) body.insert(body.size() - 2, ",\"pad\":\"" + std::string(pad, 'x') + "\"");
  return body;
}

std::string Unique(const std::string& stem) {
  static std::mt19937_64 rng(std::random_device{}());
  return stem + "_" + std::to_string(rng() % 1000000000);
}

void TableReporter::ReportRuns(const std::vector<Run>& runs) {
  ConsoleReporter::ReportRuns(runs);
  for (const Run& r : runs) {
    if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
    for (const auto& [name, counter] : r.counters) runs_[r.run_name.str()][name].push_back(counter.value);
  }
}

std::vector<double> TableReporter::Values(const std::string& prefix, const std::string& counter) const {
  for (const auto& [name, counters] : runs_)
    if (name.rfind(prefix, 0) == 0)
      if (auto it = counters.find(counter); it != counters.end()) return it->second;
  return {};
}

void PrintRatioRow(const std::string& label, const std::vector<double>& raw,
                   const std::vector<double>& fanflow) {
  if (raw.empty() || fanflow.empty()) return;
  const double r = Median(raw), f = Median(fanflow);
  std::printf("| %s (medians of %zu / %zu runs) | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2f |\n",
              label.c_str(), raw.size(), fanflow.size(), r, Min(raw), Max(raw), f, Min(fanflow),
              Max(fanflow), f / r);
}

void PrintEndToEndTable(const TableReporter& report, const std::string& e2e_prefix,
                        const std::vector<double>& raw_big_rates,
                        const std::vector<double>& raw_small_rates, const std::string& raw_name,
                        const WorkerShape& workers) {
  const std::vector<double> chunks = report.Values(e2e_prefix, "chunks_per_s");
  if (raw_big_rates.empty() || raw_small_rates.empty() || chunks.empty()) return;
  const double raw_chunks = 1 / (1 / Median(raw_big_rates) + 1 / Median(raw_small_rates));
  std::printf(
      "\n| end-to-end pipeline, 200,000 items in chunks of 100, %s | chunks/s | items/s | "
      "p50 chunk ms | p99 chunk ms | raw %s chunks/s | ratio |\n|---|---|---|---|---|---|---|\n",
      workers.Describe().c_str(), raw_name.c_str());
  std::printf("| medians of %zu runs | %.0f (%.0f-%.0f) | %.0f | %.1f | %.1f | %.0f | %.2f |\n", chunks.size(),
              Median(chunks), Min(chunks), Max(chunks), Median(report.Values(e2e_prefix, "items_per_s")),
              Median(report.Values(e2e_prefix, "p50_ms")), Median(report.Values(e2e_prefix, "p99_ms")),
              raw_chunks, Median(chunks) / raw_chunks);
}

std::string UrlFromEnv(const char* bench_variable, const char* test_variable) {
  const char* url = std::getenv(bench_variable);
  if (!url) url = std::getenv(test_variable);
  return url ? url : "";
}

void MeasureEndToEnd(benchmark::State& state, const std::string& url, const WorkerShape& workers) {
  for (auto _ : state) {
    auto f = RunPipeline(url, state.range(0), state.range(1), workers);
    if (!f.ok()) {
      state.SkipWithError(f.status().ToString().c_str());
      return;
    }
    state.SetIterationTime(f->seconds);
    state.counters["chunks_per_s"] = f->chunks_per_second;
    state.counters["items_per_s"] = f->items_per_second;
    state.counters["p50_ms"] = f->p50_chunk_latency_ms;
    state.counters["p99_ms"] = f->p99_chunk_latency_ms;
  }
}

int RunBrokerBench(int argc, char** argv, const std::string& url, const std::string& usage,
                   const std::function<void(const TableReporter&)>& print_tables) {
  std::vector<char*> args(argv, argv + argc);
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  args.insert(args.begin() + 1, interleave.data());
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (url.empty()) {
    std::fprintf(stderr, "%s\n", usage.c_str());
    return 1;
  }
  TableReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  print_tables(reporter);
  benchmark::Shutdown();
  return 0;
}

}  // namespace fanflow::bench
