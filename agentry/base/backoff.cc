#include "agentry/base/backoff.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace agentry {

Status BackoffPolicy::validate() const {
  using std::chrono::nanoseconds;
  if (initial < nanoseconds::zero()) return invalid_argument("backoff.initial must not be negative");
  if (max < initial) return invalid_argument("backoff.max must be at least backoff.initial");
  if (!(multiplier >= 1.0) || !std::isfinite(multiplier)) {
    return invalid_argument("backoff.multiplier must be a finite number >= 1");
  }
  if (!(jitter_fraction >= 0.0 && jitter_fraction <= 1.0)) {
    return invalid_argument("backoff.jitter must be between 0 and 1");
  }
  if (reset_after < nanoseconds::zero()) return invalid_argument("backoff.reset_after must not be negative");
  return Status::ok();
}

Backoff::Backoff(BackoffPolicy policy, std::optional<uint64_t> seed)
    : policy_(policy), rng_(seed ? *seed : std::random_device{}()) {}

std::chrono::nanoseconds Backoff::base_delay() const {
  // Computed in double and capped, so large attempt counts cannot overflow.
  const double max_ns = static_cast<double>(policy_.max.count());
  double d = static_cast<double>(policy_.initial.count());
  for (uint32_t i = 0; i < attempts_ && d < max_ns; ++i) d *= policy_.multiplier;
  return std::chrono::nanoseconds(static_cast<int64_t>(std::min(d, max_ns)));
}

std::chrono::nanoseconds Backoff::next(Clock::time_point now) {
  if (stable_since_ && policy_.reset_after > std::chrono::nanoseconds::zero() &&
      now - *stable_since_ >= policy_.reset_after) {
    attempts_ = 0;
  }
  stable_since_.reset();

  const double base = static_cast<double>(base_delay().count());
  double delay = base;
  switch (policy_.jitter) {
    case JitterKind::kNone:
      break;
    case JitterKind::kPlusMinus: {
      std::uniform_real_distribution<double> u(-policy_.jitter_fraction, policy_.jitter_fraction);
      delay = base * (1.0 + u(rng_));
      break;
    }
    case JitterKind::kSubtractUpToHalf: {
      if (base > 0) {
        std::uniform_real_distribution<double> u(0.0, base / 2.0);
        delay = base - u(rng_);
      }
      break;
    }
  }
  if (attempts_ < UINT32_MAX) ++attempts_;
  delay = std::clamp(delay, 0.0, static_cast<double>(policy_.max.count()));
  return std::chrono::nanoseconds(static_cast<int64_t>(delay));
}

void Backoff::mark_stable(Clock::time_point now) { stable_since_ = now; }

void Backoff::reset() {
  attempts_ = 0;
  stable_since_.reset();
}

void Backoff::set_initial(std::chrono::nanoseconds initial) {
  policy_.initial = std::max(initial, std::chrono::nanoseconds::zero());
  policy_.max = std::max(policy_.max, policy_.initial);
}

}  // namespace agentry
