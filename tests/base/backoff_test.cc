#include "agentry/base/backoff.h"

#include <gtest/gtest.h>

namespace agentry {
namespace {

using namespace std::chrono_literals;
using Clock = Backoff::Clock;

BackoffPolicy plain(std::chrono::nanoseconds initial, std::chrono::nanoseconds max, double mult) {
  BackoffPolicy p;
  p.initial = initial;
  p.max = max;
  p.multiplier = mult;
  return p;
}

TEST(Backoff, ExponentialWithoutJitterUpToCap) {
  Backoff b(plain(1s, 30s, 2.0), 1);
  const Clock::time_point t{};
  EXPECT_EQ(b.next(t), 1s);
  EXPECT_EQ(b.next(t), 2s);
  EXPECT_EQ(b.next(t), 4s);
  EXPECT_EQ(b.next(t), 8s);
  EXPECT_EQ(b.next(t), 16s);
  EXPECT_EQ(b.next(t), 30s);
  EXPECT_EQ(b.next(t), 30s);
  EXPECT_EQ(b.attempts(), 7u);
}

TEST(Backoff, FractionalMultiplier) {
  Backoff b(plain(500ms, 60s, 1.5), 1);
  const Clock::time_point t{};
  EXPECT_EQ(b.next(t), 500ms);
  EXPECT_EQ(b.next(t), 750ms);
  EXPECT_EQ(b.next(t), 1125ms);
}

TEST(Backoff, ManyAttemptsDoNotOverflow) {
  Backoff b(plain(1s, 60s, 10.0), 1);
  for (int i = 0; i < 10000; ++i) {
    auto d = b.next(Clock::time_point{});
    ASSERT_GE(d, 0ns);
    ASSERT_LE(d, 60s);
  }
  EXPECT_EQ(b.base_delay(), 60s);
}

TEST(Backoff, PlusMinusJitterStaysInBandAndVaries) {
  BackoffPolicy p = plain(10s, 100s, 1.0);
  p.jitter = JitterKind::kPlusMinus;
  p.jitter_fraction = 0.5;
  Backoff b(p, 42);
  std::chrono::nanoseconds lo = 1h, hi = 0ns;
  for (int i = 0; i < 2000; ++i) {
    auto d = b.next(Clock::time_point{});
    ASSERT_GE(d, 5s);
    ASSERT_LE(d, 15s);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  // 2000 uniform draws cover both halves of the band.
  EXPECT_LT(lo, 7s);
  EXPECT_GT(hi, 13s);
}

TEST(Backoff, SubtractUpToHalfJitter) {
  BackoffPolicy p = plain(8s, 8s, 2.0);
  p.jitter = JitterKind::kSubtractUpToHalf;
  Backoff b(p, 7);
  std::chrono::nanoseconds lo = 1h;
  for (int i = 0; i < 2000; ++i) {
    auto d = b.next(Clock::time_point{});
    ASSERT_GT(d, 4s);  // subtracts strictly less than half
    ASSERT_LE(d, 8s);
    lo = std::min(lo, d);
  }
  EXPECT_LT(lo, 5s);
}

TEST(Backoff, SameSeedSameSequence) {
  BackoffPolicy p = plain(1s, 60s, 2.0);
  p.jitter = JitterKind::kPlusMinus;
  p.jitter_fraction = 0.2;
  Backoff a(p, 99), b(p, 99);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(a.next(Clock::time_point{}), b.next(Clock::time_point{}));
}

TEST(Backoff, StablePeriodResetsSequence) {
  BackoffPolicy p = plain(1s, 60s, 2.0);
  p.reset_after = 30s;
  Backoff b(p, 1);
  Clock::time_point t{};
  EXPECT_EQ(b.next(t), 1s);
  EXPECT_EQ(b.next(t), 2s);
  b.mark_stable(t);
  // Failed again before the stable period ended: keep growing.
  EXPECT_EQ(b.next(t + 29s), 4s);
  b.mark_stable(t + 29s);
  // Stayed up long enough: start over.
  EXPECT_EQ(b.next(t + 29s + 30s), 1s);
  EXPECT_EQ(b.next(t + 60s), 2s);
}

TEST(Backoff, ZeroResetAfterNeverResets) {
  Backoff b(plain(1s, 60s, 2.0), 1);
  Clock::time_point t{};
  b.next(t);
  b.mark_stable(t);
  EXPECT_EQ(b.next(t + 24h), 2s);
  b.reset();
  EXPECT_EQ(b.next(t), 1s);
}

TEST(Backoff, SetInitialKeepsAttemptCount) {
  Backoff b(plain(1s, 30s, 2.0), 1);
  b.next(Clock::time_point{});
  b.set_initial(3s);
  EXPECT_EQ(b.next(Clock::time_point{}), 6s);
}

TEST(Backoff, ZeroInitialMeansImmediateRetry) {
  Backoff b(plain(0s, 0s, 2.0), 1);
  EXPECT_EQ(b.next(Clock::time_point{}), 0s);
  EXPECT_EQ(b.next(Clock::time_point{}), 0s);
}

TEST(BackoffPolicy, ValidateNamesTheField) {
  BackoffPolicy p = plain(2s, 1s, 2.0);
  EXPECT_NE(p.validate().message().find("backoff.max"), std::string::npos);
  p = plain(1s, 2s, 0.5);
  EXPECT_NE(p.validate().message().find("backoff.multiplier"), std::string::npos);
  p = plain(1s, 2s, 2.0);
  p.jitter_fraction = 1.5;
  EXPECT_NE(p.validate().message().find("backoff.jitter"), std::string::npos);
  EXPECT_TRUE(plain(1s, 2s, 2.0).validate().is_ok());
}

}  // namespace
}  // namespace agentry
