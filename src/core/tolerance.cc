#include "core/tolerance.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace fanflow {

Result<Tolerance> Tolerance::Parse(const std::string& text, std::string_view field) {
  Tolerance t;
  if (text.empty()) return t;
  std::string number = text;
  if (number.back() == '%') {
    t.percent = true;
    number.pop_back();
  }
  char* end = nullptr;
  t.value = std::strtod(number.c_str(), &end);
  // Digits and a point only: strtod would also take " 5", "inf", "nan" and hex.
  if (number.empty() || !std::isdigit(static_cast<unsigned char>(number[0])) ||
      number.find_first_not_of("0123456789.") != std::string::npos || *end != '\0' ||
      !std::isfinite(t.value) || t.value < 0 || (t.percent && t.value > 100) ||
      (!t.percent && t.value != std::floor(t.value)))
    return InvalidArgument(std::string(field) + ": '" + text +
                           "': expected a whole number of chunks (e.g. 5) or a percentage (e.g. 2.5%)");
  t.set = true;
  return t;
}

bool Tolerance::Exceeded(int64_t failed, int64_t total) const {
  if (!set) return false;
  return percent ? failed * 100.0 > value * static_cast<double>(total) : failed > value;
}

}  // namespace fanflow
