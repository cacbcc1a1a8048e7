// How many failed chunks a batch tolerates before it is `failed` rather than
// `partial` (Step Functions' ToleratedFailureCount / Percentage): the
// aggregator's --tolerate, or a start_fanout's data.tolerate for its batch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace fanflow {

struct Tolerance {
  bool set = false;
  bool percent = false;
  double value = 0;
  // "" (no threshold), "N" or "N%"; an error names `field`.
  [[nodiscard]] static Result<Tolerance> Parse(const std::string& text, std::string_view field = "--tolerate");
  bool Exceeded(int64_t failed, int64_t total) const;
};

}  // namespace fanflow
