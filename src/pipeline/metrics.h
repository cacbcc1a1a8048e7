// A small metrics registry rendered in the Prometheus text format 0.0.4
// (HELP and TYPE lines, gauges, counters, one-label-set histograms), for
// `fanflow monitor --metrics-port`. No client library: the format is a few
// lines of text. Thread-safe: the sampler writes while the HTTP server renders.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fanflow {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  // Replaces every sample of the gauge `name` (a family rebuilt each round, so
  // a queue or batch that went away stops being reported).
  void SetGaugeFamily(const std::string& name, const std::string& help,
                      const std::vector<std::pair<MetricLabels, double>>& samples);
  void SetGauge(const std::string& name, const std::string& help, const MetricLabels& labels,
                double value);
  // `name` must end in _total.
  void AddToCounter(const std::string& name, const std::string& help, const MetricLabels& labels,
                    double delta);
  // A histogram with the given upper bounds (ascending; +Inf is implied).
  void DefineHistogram(const std::string& name, const std::string& help,
                       std::vector<double> bounds);
  void Observe(const std::string& name, double value);

  std::string Render() const;

 private:
  enum class Kind { kGauge, kCounter, kHistogram };
  struct Family {
    Kind kind = Kind::kGauge;
    std::string help;
    std::map<MetricLabels, double> values;  // gauges, counters
    std::vector<double> bounds;             // histogram
    std::vector<uint64_t> bucket_counts;    // histogram, per bound (not cumulative)
    uint64_t count = 0;
    double sum = 0;
  };
  // Requires mu_.
  Family& FamilyFor(const std::string& name, Kind kind, const std::string& help);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;  // guarded by mu_
};

// The processing latency buckets (seconds) of fanflow_chunk_processing_seconds.
std::vector<double> ChunkLatencyBuckets();

}  // namespace fanflow
