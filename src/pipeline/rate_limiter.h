// Load leveling's second knob after the concurrency cap: a token bucket that
// bounds how fast a worker starts chunks (or items), so a burst on the queue
// reaches the downstream no faster than it can take. The queue absorbs the
// rest. The limit holds per worker process, like --concurrency: a group of K
// workers runs at most K times the rate.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include "core/status.h"

namespace fanflow {

enum class RateUnit { kChunks, kItems };

struct RateLimit {
  double per_second = 0;  // 0: unlimited
  double burst = 0;       // tokens the bucket holds when idle; 0: one second's worth (>= 1)
  RateUnit unit = RateUnit::kChunks;

  bool enabled() const { return per_second > 0; }
  double Capacity() const { return burst > 0 ? burst : std::max(1.0, per_second); }

  // `rate` is "" (unlimited) or "N/s" (e.g. "20/s", "0.5/s"); `unit` is
  // "chunks" or "items"; `burst` >= 0. Errors name the flag and the accepted forms.
  [[nodiscard]] static Result<RateLimit> Parse(const std::string& rate, const std::string& unit,
                                               double burst);
  std::string ToString() const;
};

// A token bucket that lends: Acquire(n) takes n tokens at once, going into
// debt if it must, and waits until the debt is paid off at `per_second`. So
// over any window of W seconds the starts it admits carry at most
// capacity + rate * W tokens, whatever their size, and waiters are served in
// the order they asked. Thread-safe.
class RateLimiter {
 public:
  explicit RateLimiter(const RateLimit& limit);

  // Blocks until `tokens` may be spent. Returns false, spending nothing, if
  // Cancel() is called meanwhile (the caller is shutting down).
  bool Acquire(double tokens);
  // Wakes every waiter with false, and makes later calls return false at once.
  void Cancel();

 private:
  using Clock = std::chrono::steady_clock;

  const double rate_;
  const double capacity_;
  std::mutex mu_;
  std::condition_variable cancelled_cv_;
  // Guarded by mu_.
  double tokens_;  // negative: owed by callers still waiting
  Clock::time_point refilled_at_;
  bool cancelled_ = false;
};

}  // namespace fanflow
