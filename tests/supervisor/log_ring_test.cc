#include "agentry/supervisor/log_ring.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>

#include <gtest/gtest.h>

namespace agentry::supervisor {
namespace {

// The straightforward model the ring must agree with: keep everything, cut the front.
class ReferenceRing {
 public:
  explicit ReferenceRing(size_t capacity) : capacity_(capacity) {}
  void append(std::string_view data) {
    total_ += data.size();
    bytes_.append(data);
    trim();
  }
  void resize(size_t capacity) {
    capacity_ = capacity;
    trim();
  }
  std::string from(uint64_t offset) const {
    const uint64_t first = total_ - bytes_.size();
    if (offset >= total_) return {};
    return bytes_.substr(static_cast<size_t>(std::max(offset, first) - first));
  }
  const std::string& bytes() const { return bytes_; }
  uint64_t total() const { return total_; }

 private:
  void trim() {
    if (bytes_.size() > capacity_) bytes_.erase(0, bytes_.size() - capacity_);
  }
  size_t capacity_;
  std::string bytes_;
  uint64_t total_ = 0;
};

std::string pattern(size_t n, char first = 'a') {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(first + static_cast<char>(i % 26));
  return s;
}

TEST(LogRing, StartsEmpty) {
  LogRing ring(16);
  EXPECT_EQ(ring.size(), 0u);
  EXPECT_EQ(ring.capacity(), 16u);
  EXPECT_EQ(ring.total_appended(), 0u);
  EXPECT_EQ(ring.first_offset(), 0u);
  EXPECT_EQ(ring.snapshot(), "");
  EXPECT_EQ(ring.snapshot_from(0), "");
}

TEST(LogRing, FillsUpToCapacity) {
  LogRing ring(10);
  ring.append("abc");
  ring.append("");
  ring.append("defg");
  EXPECT_EQ(ring.snapshot(), "abcdefg");
  ring.append("hij");
  EXPECT_EQ(ring.snapshot(), "abcdefghij");
  EXPECT_EQ(ring.size(), 10u);
  EXPECT_EQ(ring.total_appended(), 10u);
}

TEST(LogRing, WrapsAroundKeepingTheNewestBytes) {
  LogRing ring(10);
  ring.append("0123456789");
  ring.append("abc");
  EXPECT_EQ(ring.snapshot(), "3456789abc");
  ring.append("defghij");  // ends exactly at the end of the buffer
  EXPECT_EQ(ring.snapshot(), "abcdefghij");
  ring.append("XY");
  EXPECT_EQ(ring.snapshot(), "cdefghijXY");
  EXPECT_EQ(ring.size(), 10u);
  EXPECT_EQ(ring.total_appended(), 22u);
  EXPECT_EQ(ring.first_offset(), 12u);
}

TEST(LogRing, ChunkLargerThanCapacityKeepsItsTail) {
  LogRing ring(8);
  ring.append("abc");
  ring.append("0123456789ABCDEF");
  EXPECT_EQ(ring.snapshot(), "89ABCDEF");
  EXPECT_EQ(ring.total_appended(), 19u);
  ring.append("xyz");
  EXPECT_EQ(ring.snapshot(), "BCDEFxyz");
  ring.append("12345678");  // exactly the capacity
  EXPECT_EQ(ring.snapshot(), "12345678");
}

TEST(LogRing, LargeCapacityGrowsOnDemand) {
  // Beyond the first allocation: the buffer grows while keeping everything.
  LogRing ring(100'000);
  std::string expected;
  for (int i = 0; i < 5000; ++i) {
    const std::string line = "line " + std::to_string(i) + "\n";
    ring.append(line);
    expected += line;
  }
  expected.erase(0, expected.size() - std::min<size_t>(expected.size(), 100'000));
  EXPECT_EQ(ring.snapshot(), expected);
}

TEST(LogRing, ZeroCapacityOnlyCounts) {
  LogRing ring(0);
  ring.append("hello");
  EXPECT_EQ(ring.size(), 0u);
  EXPECT_EQ(ring.snapshot(), "");
  EXPECT_EQ(ring.total_appended(), 5u);
  EXPECT_EQ(ring.snapshot_from(0), "");
}

TEST(LogRing, TotalCounterIsMonotonic) {
  LogRing ring(4);
  uint64_t expected = 0;
  for (size_t n : {0u, 1u, 3u, 4u, 9u, 2u, 100u}) {
    ring.append(pattern(n));
    expected += n;
    EXPECT_EQ(ring.total_appended(), expected);
  }
  ring.resize(2);
  EXPECT_EQ(ring.total_appended(), expected);
  ring.resize(50);
  EXPECT_EQ(ring.total_appended(), expected);
}

TEST(LogRing, ResizeKeepsTheNewestBytes) {
  LogRing ring(10);
  ring.append("0123456789");
  ring.append("abcd");  // wrapped: 456789abcd
  ring.resize(6);
  EXPECT_EQ(ring.capacity(), 6u);
  EXPECT_EQ(ring.snapshot(), "89abcd");
  ring.append("ef");
  EXPECT_EQ(ring.snapshot(), "abcdef");

  ring.resize(12);  // growing keeps everything and fills further
  EXPECT_EQ(ring.snapshot(), "abcdef");
  ring.append("ghijkl");
  EXPECT_EQ(ring.snapshot(), "abcdefghijkl");
  ring.append("m");
  EXPECT_EQ(ring.snapshot(), "bcdefghijklm");

  ring.resize(0);
  EXPECT_EQ(ring.snapshot(), "");
  ring.resize(3);
  ring.append("xyzw");
  EXPECT_EQ(ring.snapshot(), "yzw");
}

TEST(LogRing, SnapshotFromAnOffset) {
  LogRing ring(10);
  ring.append("0123456789");
  ring.append("abcde");  // offsets 0..14; retained: 5..14 = "56789abcde"
  EXPECT_EQ(ring.first_offset(), 5u);
  EXPECT_EQ(ring.snapshot_from(0), "56789abcde");   // partly overwritten: what remains
  EXPECT_EQ(ring.snapshot_from(5), "56789abcde");
  EXPECT_EQ(ring.snapshot_from(12), "cde");
  EXPECT_EQ(ring.snapshot_from(14), "e");
  EXPECT_EQ(ring.snapshot_from(15), "");            // caught up
  EXPECT_EQ(ring.snapshot_from(1000), "");

  // A follower's loop: remember total_appended(), fetch only what is new.
  uint64_t seen = ring.total_appended();
  ring.append("XYZ");
  EXPECT_EQ(ring.snapshot_from(seen), "XYZ");
  seen = ring.total_appended();
  ring.append("0123456789ABCD");  // more than the ring holds: 4 bytes missed
  EXPECT_EQ(ring.first_offset() - seen, 4u);
  EXPECT_EQ(ring.snapshot_from(seen), "456789ABCD");
}

TEST(LogRing, MovedRingKeepsItsContent) {
  LogRing a(5);
  a.append("hello world");
  LogRing b(std::move(a));
  EXPECT_EQ(b.snapshot(), "world");
  EXPECT_EQ(b.total_appended(), 11u);
  LogRing c(1);
  c = std::move(b);
  EXPECT_EQ(c.snapshot(), "world");
  c.append("!");
  EXPECT_EQ(c.snapshot(), "orld!");
}

// 10'000 random operations per capacity against the reference model.
TEST(LogRing, MatchesReferenceModelUnderRandomOperations) {
  std::mt19937_64 rng(20261122);
  for (size_t capacity : {size_t{1}, size_t{7}, size_t{64}, size_t{1000}, size_t{6000}, size_t{20'000}}) {
    SCOPED_TRACE("capacity " + std::to_string(capacity));
    LogRing ring(capacity);
    ReferenceRing model(capacity);
    size_t current = capacity;
    for (int op = 0; op < 10'000; ++op) {
      const auto kind = rng() % 100;
      if (kind < 2) {
        // Occasionally change the capacity, up or down.
        current = static_cast<size_t>(rng() % (2 * capacity + 1));
        ring.resize(current);
        model.resize(current);
      } else {
        size_t n;
        if (kind < 70) {
          n = static_cast<size_t>(rng() % 40);                     // typical short reads
        } else if (kind < 95) {
          n = static_cast<size_t>(rng() % (current + 1));          // up to a full ring
        } else {
          n = static_cast<size_t>(rng() % (3 * current + 2));      // beyond the capacity
        }
        const std::string data = pattern(n, static_cast<char>('A' + op % 20));
        ring.append(data);
        model.append(data);
      }
      ASSERT_EQ(ring.size(), model.bytes().size()) << "op " << op;
      ASSERT_EQ(ring.total_appended(), model.total()) << "op " << op;
      ASSERT_EQ(ring.snapshot(), model.bytes()) << "op " << op;
      const uint64_t probe = model.total() - std::min<uint64_t>(model.total(), rng() % (current + 10));
      ASSERT_EQ(ring.snapshot_from(probe), model.from(probe)) << "op " << op << " offset " << probe;
    }
  }
}

}  // namespace
}  // namespace agentry::supervisor
