#include "pipeline/rate_limiter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace fanflow {
namespace {

using Clock = std::chrono::steady_clock;

TEST(RateLimitTest, ParsesPerSecondRatesAndNamesTheFlagOnErrors) {
  auto r = RateLimit::Parse("20/s", "items", 5);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->per_second, 20);
  EXPECT_EQ(r->unit, RateUnit::kItems);
  EXPECT_EQ(r->Capacity(), 5);
  EXPECT_EQ(RateLimit::Parse("0.5/s", "chunks", 0)->Capacity(), 1) << "at least one token";
  EXPECT_EQ(RateLimit::Parse("40/s", "chunks", 0)->Capacity(), 40) << "one second's worth";
  EXPECT_FALSE(RateLimit::Parse("", "chunks", 0)->enabled());

  struct Case {
    std::string rate, unit, message;
  };
  for (const Case& c :
       {Case{"5/h", "chunks", "--rate '5/h': unknown unit 'h'; accepted forms: N/s"},
        Case{"5", "chunks", "--rate '5': no unit"}, Case{"-3/s", "chunks", "must be a number > 0"},
        Case{"0/s", "chunks", "must be a number > 0"},
        Case{"abc/s", "chunks", "must be a number > 0"},
        Case{"5/s", "bytes", "--rate-unit 'bytes': unknown unit; accepted: chunks, items"}}) {
    auto bad = RateLimit::Parse(c.rate, c.unit, 0);
    ASSERT_FALSE(bad.ok()) << c.rate;
    EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bad.status().message().find(c.message), std::string::npos) << bad.status().message();
  }
  EXPECT_FALSE(RateLimit::Parse("5/s", "chunks", -1).ok());
}

// Eight threads ask as fast as they can; the starts must fit the bucket:
// at most capacity + rate * W in any window W.
TEST(RateLimiterTest, AdmitsNoMoreThanTheBurstPlusTheRateInAnyWindow) {
  RateLimit limit;
  limit.per_second = 50;
  limit.burst = 5;
  RateLimiter limiter(limit);
  std::mutex mu;
  std::vector<double> starts;
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        ASSERT_TRUE(limiter.Acquire(1));
        std::lock_guard<std::mutex> l(mu);
        starts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
    });
  for (auto& t : threads) t.join();
  std::sort(starts.begin(), starts.end());
  ASSERT_EQ(starts.size(), 80u);
  // 80 starts, 5 free: the other 75 take 1.5 s at 50/s.
  EXPECT_GE(starts.back(), 1.4);
  EXPECT_LE(starts.back(), 2.5) << "the limiter must not be much slower than its rate either";
  for (double window : {0.1, 0.5, 1.0}) {
    int most = 0;
    for (size_t i = 0, j = 0; j < starts.size(); ++j) {
      while (starts[j] - starts[i] > window) ++i;
      most = std::max(most, static_cast<int>(j - i + 1));
    }
    EXPECT_LE(most, 5 + 50 * window + 1) << "window " << window;
  }
}

TEST(RateLimiterTest, ChargesAChunkItsItemCountEvenWhenThatExceedsTheBurst) {
  RateLimit limit;
  limit.per_second = 100;
  limit.burst = 10;
  RateLimiter limiter(limit);
  const auto t0 = Clock::now();
  ASSERT_TRUE(limiter.Acquire(50));  // 10 in the bucket, 40 owed
  ASSERT_TRUE(limiter.Acquire(10));  // waits for the debt and its own 10
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_GE(s, 0.45);
  EXPECT_LE(s, 1.0);
}

TEST(RateLimiterTest, CancelWakesWaitersWithoutSpending) {
  RateLimit limit;
  limit.per_second = 0.1;  // a token every 10 s
  RateLimiter limiter(limit);
  ASSERT_TRUE(limiter.Acquire(1));
  std::atomic<int> refused{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.emplace_back([&] {
      if (!limiter.Acquire(1)) ++refused;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = Clock::now();
  limiter.Cancel();
  for (auto& t : waiters) t.join();
  EXPECT_EQ(refused.load(), 3);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
  EXPECT_FALSE(limiter.Acquire(1)) << "refuses at once after Cancel";
}

}  // namespace
}  // namespace fanflow
