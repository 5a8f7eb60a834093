// In-memory tail of one output stream (stdout or stderr) of a supervised process.
//
// A LogRing keeps the newest `capacity` bytes that were appended to it and forgets older
// ones. It never blocks and never fails: appending is one or two memcpy calls. Alongside
// the bytes it keeps a monotonic count of everything ever appended, so a reader that
// remembers where it stopped (a `logs -f` client) can ask for what came after that point
// and tell how much it missed when the ring has already overwritten it:
//
//   uint64_t seen = ring.total_appended();
//   ...
//   uint64_t missed = ring.first_offset() > seen ? ring.first_offset() - seen : 0;
//   std::string news = ring.snapshot_from(seen);
//   seen = ring.total_appended();
//
// Memory grows with use, up to the capacity: a process that prints a few lines costs a
// few kilobytes, not the full ring.
//
// Not thread-safe: the daemon's event loop owns every ring and is the only caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace agentry::supervisor {

class LogRing {
 public:
  // A capacity of 0 is allowed: such a ring retains nothing but still counts bytes.
  explicit LogRing(size_t capacity);

  LogRing(const LogRing&) = delete;
  LogRing& operator=(const LogRing&) = delete;
  // A moved-from ring is empty with capacity 0.
  LogRing(LogRing&& other) noexcept;
  LogRing& operator=(LogRing&& other) noexcept;
  ~LogRing() = default;

  // Appends bytes, dropping the oldest ones when full. Of a chunk larger than the
  // capacity only its last `capacity()` bytes are kept.
  void append(std::string_view data);

  // Everything retained, oldest byte first.
  std::string snapshot() const;

  // The retained bytes at stream offsets >= `offset` (offsets count from the first byte
  // ever appended). When the ring no longer holds `offset`, the result starts at
  // first_offset(); when `offset` >= total_appended(), it is empty.
  std::string snapshot_from(uint64_t offset) const;

  size_t size() const noexcept { return size_; }
  size_t capacity() const noexcept { return capacity_; }
  // Bytes appended since construction, including those since overwritten or cut off.
  // Never decreases (not even on resize).
  uint64_t total_appended() const noexcept { return total_; }
  // Stream offset of the oldest retained byte: total_appended() - size().
  uint64_t first_offset() const noexcept { return total_ - size_; }

  // Changes the capacity. Shrinking keeps the newest bytes that fit; growing keeps
  // everything and lets the ring fill further.
  void resize(size_t capacity);

 private:
  // Moves the newest min(size_, new_alloc) bytes into a fresh buffer of `new_alloc`
  // bytes, oldest first at index 0.
  void reallocate(size_t new_alloc);

  size_t capacity_ = 0;  // the most bytes retained
  // Allocated buffer. alloc_ <= capacity_; it only grows to capacity_ as data arrives.
  std::unique_ptr<char[]> buf_;
  size_t alloc_ = 0;
  size_t head_ = 0;      // index in buf_ where the next byte goes (0 when alloc_ is 0)
  size_t size_ = 0;      // bytes retained, ending just before head_ (circularly)
  uint64_t total_ = 0;   // bytes ever appended
};

}  // namespace agentry::supervisor
