#include "tests/support/command_output.h"

#include "pipeline/source.h"

namespace fanflow::testing {

nlohmann::json LastJsonLine(const std::string& out) {
  auto end = out.find_last_not_of('\n');
  if (end == std::string::npos) return nlohmann::json::value_t::discarded;
  auto start = out.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return nlohmann::json::parse(out.substr(start, end + 1 - start), nullptr, false);
}

int64_t RangeSum(int64_t n, uint64_t seed) {
  int64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += RangeItemValue(seed, i);
  return sum;
}

}  // namespace fanflow::testing
