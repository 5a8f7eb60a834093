// Exponential backoff with jitter, shared by every reconnect or restart loop.
//
// The protocols disagree on jitter, so both styles exist:
//  - kPlusMinus: delay * (1 + u), u uniform in [-fraction, +fraction]
//    (OpAMP clients: 0.5 s initial, x1.5, +-50 %, 60 s cap; agentry's supervisor);
//  - kSubtractUpToHalf: delay - u, u uniform in [0, delay / 2)
//    (LaunchDarkly's SSE client: 1 s initial, x2, 30 s cap).
// A "stable period" resets the sequence: after mark_stable(t), a call to next(now)
// with now - t >= reset_after starts again from the initial delay.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>

#include "agentry/base/status.h"

namespace agentry {

enum class JitterKind { kNone, kPlusMinus, kSubtractUpToHalf };

struct BackoffPolicy {
  std::chrono::nanoseconds initial = std::chrono::seconds(1);
  std::chrono::nanoseconds max = std::chrono::seconds(60);
  double multiplier = 2.0;
  JitterKind jitter = JitterKind::kNone;
  double jitter_fraction = 0.0;  // used by kPlusMinus only, in [0, 1]
  // Zero disables the reset; the sequence then only restarts on reset().
  std::chrono::nanoseconds reset_after = std::chrono::nanoseconds::zero();

  // Checks the invariants (initial > 0 unless max == 0, max >= initial, multiplier >= 1,
  // fraction in [0, 1]) and names the offending field.
  Status validate() const;
};

class Backoff {
 public:
  using Clock = std::chrono::steady_clock;

  // seed: fixed for reproducible tests; std::nullopt draws one from std::random_device.
  explicit Backoff(BackoffPolicy policy, std::optional<uint64_t> seed = std::nullopt);

  // The delay to wait before the next attempt, with jitter; advances the attempt count.
  // Never negative and never above policy.max.
  std::chrono::nanoseconds next(Clock::time_point now);
  std::chrono::nanoseconds next() { return next(Clock::now()); }

  // The un-jittered delay the next call to next() starts from.
  std::chrono::nanoseconds base_delay() const;

  // The operation succeeded at `now` (connected, process started, event received). If it
  // stays up for reset_after, the following next() starts from the initial delay again.
  void mark_stable(Clock::time_point now);
  void reset();

  // Replaces the initial delay (an SSE `retry:` field); the attempt count is kept.
  void set_initial(std::chrono::nanoseconds initial);

  uint32_t attempts() const { return attempts_; }
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  uint32_t attempts_ = 0;
  std::optional<Clock::time_point> stable_since_;
  std::mt19937_64 rng_;
};

}  // namespace agentry
