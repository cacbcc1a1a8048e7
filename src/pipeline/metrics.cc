#include "pipeline/metrics.h"

#include <cmath>
#include <cstdio>

namespace fanflow {
namespace {

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string Escape(const std::string& s, bool in_label) {
  std::string out;
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && in_label)
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

std::string LabelText(const MetricLabels& labels) {
  if (labels.empty()) return "";
  std::string s = "{";
  for (size_t i = 0; i < labels.size(); ++i)
    s += (i ? "," : "") + labels[i].first + "=\"" + Escape(labels[i].second, true) + "\"";
  return s + "}";
}

}  // namespace

Metrics::Family& Metrics::FamilyFor(const std::string& name, Kind kind, const std::string& help) {
  Family& f = families_[name];
  f.kind = kind;
  if (!help.empty()) f.help = help;
  return f;
}

void Metrics::SetGaugeFamily(const std::string& name, const std::string& help,
                             const std::vector<std::pair<MetricLabels, double>>& samples) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = FamilyFor(name, Kind::kGauge, help);
  f.values.clear();
  for (const auto& [labels, value] : samples) f.values[labels] = value;
}

void Metrics::SetGauge(const std::string& name, const std::string& help, const MetricLabels& labels,
                       double value) {
  std::lock_guard<std::mutex> lock(mu_);
  FamilyFor(name, Kind::kGauge, help).values[labels] = value;
}

void Metrics::AddToCounter(const std::string& name, const std::string& help,
                           const MetricLabels& labels, double delta) {
  std::lock_guard<std::mutex> lock(mu_);
  FamilyFor(name, Kind::kCounter, help).values[labels] += delta;
}

void Metrics::DefineHistogram(const std::string& name, const std::string& help,
                              std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = FamilyFor(name, Kind::kHistogram, help);
  if (f.bounds == bounds) return;
  f.bounds = std::move(bounds);
  f.bucket_counts.assign(f.bounds.size(), 0);
  f.count = 0;
  f.sum = 0;
}

void Metrics::Observe(const std::string& name, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end() || it->second.kind != Kind::kHistogram) return;
  Family& f = it->second;
  for (size_t i = 0; i < f.bounds.size(); ++i)
    if (value <= f.bounds[i]) {
      ++f.bucket_counts[i];
      break;
    }
  ++f.count;
  f.sum += value;
}

std::string Metrics::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    static const char* const kTypes[] = {"gauge", "counter", "histogram"};
    out += "# HELP " + name + " " + Escape(f.help, false) + "\n";
    out += "# TYPE " + name + " " + kTypes[static_cast<int>(f.kind)] + "\n";
    if (f.kind != Kind::kHistogram) {
      for (const auto& [labels, value] : f.values)
        out += name + LabelText(labels) + " " + Number(value) + "\n";
      continue;
    }
    uint64_t cumulative = 0;
    for (size_t i = 0; i < f.bounds.size(); ++i) {
      cumulative += f.bucket_counts[i];
      out +=
          name + "_bucket{le=\"" + Number(f.bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(f.count) + "\n";
    out += name + "_sum " + Number(f.sum) + "\n";
    out += name + "_count " + std::to_string(f.count) + "\n";
  }
  return out;
}

std::vector<double> ChunkLatencyBuckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

}  // namespace fanflow
