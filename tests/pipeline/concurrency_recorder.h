// Reads what tests/pipeline/concurrency_recorder.sh wrote: an --exec processor
// that measures how many copies of itself run at once and when each started.
#pragma once

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace fanflow::testing {

inline std::string RecorderScript() {
  return FANFLOW_SOURCE_DIR "/tests/pipeline/concurrency_recorder.sh";
}

// The --exec command that records into `dir`, each run lasting `seconds`.
inline std::string RecorderCommand(const std::string& dir, double seconds) {
  return "sh " + RecorderScript() + " " + dir + " " + std::to_string(seconds);
}

struct RecorderLog {
  std::vector<double> starts;  // epoch seconds, ascending, of the batch asked for
  int peak = 0;                // most copies running at once (any batch)
  int runs = 0;                // runs of the batch asked for

  static RecorderLog Read(const std::string& dir, const std::string& batch_id) {
    RecorderLog r;
    std::ifstream in(dir + "/log");
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream s(line);
      std::string word, batch, chunk;
      double at = 0;
      int running = 0;
      s >> word >> at >> running >> batch >> chunk;
      r.peak = std::max(r.peak, running);
      if (batch != batch_id) continue;
      r.starts.push_back(at);
      ++r.runs;
    }
    std::sort(r.starts.begin(), r.starts.end());
    return r;
  }

  // The most starts inside any window of `seconds`.
  int MostStartsWithin(double seconds) const {
    int best = 0;
    for (size_t i = 0, j = 0; j < starts.size(); ++j) {
      while (starts[j] - starts[i] > seconds) ++i;
      best = std::max(best, static_cast<int>(j - i + 1));
    }
    return best;
  }
};

}  // namespace fanflow::testing
