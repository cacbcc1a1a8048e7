// Summaries of a benchmark's repetitions, for the tables the broker benches
// print (medians, with the range around them).
#pragma once

#include <algorithm>
#include <vector>

namespace fanflow::bench {

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
inline double Min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
inline double Max(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

}  // namespace fanflow::bench
