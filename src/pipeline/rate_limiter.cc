#include "pipeline/rate_limiter.h"

#include <cmath>
#include <cstdlib>
#include <sstream>

namespace fanflow {

Result<RateLimit> RateLimit::Parse(const std::string& rate, const std::string& unit, double burst) {
  RateLimit r;
  if (unit == "items")
    r.unit = RateUnit::kItems;
  else if (unit != "chunks")
    return InvalidArgument("--rate-unit '" + unit + "': unknown unit; accepted: chunks, items");
  if (!(burst >= 0) || !std::isfinite(burst))
    return InvalidArgument("--rate-burst must be a number >= 0 (0: one second's worth)");
  r.burst = burst;
  if (rate.empty()) return r;
  const std::string forms = "; accepted forms: N/s, e.g. --rate 20/s or --rate 0.5/s";
  const auto slash = rate.find('/');
  if (slash == std::string::npos) return InvalidArgument("--rate '" + rate + "': no unit" + forms);
  const std::string number = rate.substr(0, slash), per = rate.substr(slash + 1);
  if (per != "s")
    return InvalidArgument("--rate '" + rate + "': unknown unit '" + per + "'" + forms);
  char* end = nullptr;
  r.per_second = std::strtod(number.c_str(), &end);
  if (number.empty() || *end != '\0' || !std::isfinite(r.per_second) || r.per_second <= 0)
    return InvalidArgument("--rate '" + rate + "': the rate must be a number > 0" + forms);
  return r;
}

std::string RateLimit::ToString() const {
  if (!enabled()) return "unlimited";
  std::ostringstream s;
  s << per_second << (unit == RateUnit::kItems ? " items/s" : " chunks/s") << " (burst "
    << Capacity() << ")";
  return s.str();
}

RateLimiter::RateLimiter(const RateLimit& limit)
    : rate_(limit.per_second),
      capacity_(limit.Capacity()),
      tokens_(limit.Capacity()),
      refilled_at_(Clock::now()) {}

bool RateLimiter::Acquire(double tokens) {
  std::unique_lock<std::mutex> lock(mu_);
  if (cancelled_) return false;
  const auto now = Clock::now();
  tokens_ = std::min(capacity_,
                     tokens_ + rate_ * std::chrono::duration<double>(now - refilled_at_).count());
  refilled_at_ = now;
  tokens_ -= tokens;
  if (tokens_ >= 0) return true;
  // The debt is ours and that of everyone who asked before us: we may start
  // once the bucket has refilled it.
  const auto ready = now + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(-tokens_ / rate_));
  if (cancelled_cv_.wait_until(lock, ready, [this] { return cancelled_; })) {
    tokens_ += tokens;  // give back what was never used
    return false;
  }
  return true;
}

void RateLimiter::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  cancelled_cv_.notify_all();
}

}  // namespace fanflow
