// Reading what `fanflow` printed, and the answers tests check it against.
#pragma once

#include <nlohmann/json.hpp>
#include <cstdint>
#include <string>

namespace fanflow::testing {

// The last non-empty line of `out` parsed as JSON; discarded when there is
// none or it is not JSON (so `is_discarded()` tells a missing result).
nlohmann::json LastJsonLine(const std::string& out);

// The sum of the values of `range:N:SEED`, computed item by item here rather
// than by the pipeline under test.
int64_t RangeSum(int64_t n, uint64_t seed);

}  // namespace fanflow::testing
