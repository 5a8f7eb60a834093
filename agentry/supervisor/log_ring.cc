#include "agentry/supervisor/log_ring.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace agentry::supervisor {
namespace {

// First allocation of a ring that starts receiving data; later ones double.
constexpr size_t kMinAlloc = 4096;

// The up-to-two contiguous pieces that hold `count` bytes ending at index `end`
// (exclusive) of a circular buffer of `alloc` bytes. Requires count <= alloc.
struct Pieces {
  std::string_view first;
  std::string_view second;
};

Pieces circular_range(const char* buf, size_t alloc, size_t end, size_t count) {
  if (count == 0) return {};
  const size_t start = end >= count ? end - count : end + alloc - count;
  const size_t first = std::min(count, alloc - start);
  return {std::string_view(buf + start, first), std::string_view(buf, count - first)};
}

}  // namespace

LogRing::LogRing(size_t capacity) : capacity_(capacity) {}

LogRing::LogRing(LogRing&& other) noexcept
    : capacity_(std::exchange(other.capacity_, 0)),
      buf_(std::move(other.buf_)),
      alloc_(std::exchange(other.alloc_, 0)),
      head_(std::exchange(other.head_, 0)),
      size_(std::exchange(other.size_, 0)),
      total_(std::exchange(other.total_, 0)) {}

LogRing& LogRing::operator=(LogRing&& other) noexcept {
  if (this != &other) {
    capacity_ = std::exchange(other.capacity_, 0);
    buf_ = std::move(other.buf_);
    alloc_ = std::exchange(other.alloc_, 0);
    head_ = std::exchange(other.head_, 0);
    size_ = std::exchange(other.size_, 0);
    total_ = std::exchange(other.total_, 0);
  }
  return *this;
}

void LogRing::append(std::string_view data) {
  total_ += data.size();
  if (data.empty() || capacity_ == 0) return;

  if (data.size() >= capacity_) {
    // The chunk alone fills the ring: nothing older survives, so nothing is preserved.
    if (alloc_ != capacity_) {
      buf_ = std::make_unique_for_overwrite<char[]>(capacity_);
      alloc_ = capacity_;
    }
    std::memcpy(buf_.get(), data.data() + (data.size() - capacity_), capacity_);
    head_ = 0;
    size_ = capacity_;
    return;
  }

  if (size_ + data.size() > alloc_ && alloc_ < capacity_) {
    // Grow geometrically instead of overwriting: the ring is not at its capacity yet.
    const size_t doubled = alloc_ > capacity_ / 2 ? capacity_ : alloc_ * 2;
    reallocate(std::min(capacity_, std::max({size_ + data.size(), doubled, kMinAlloc})));
  }

  // Now either the chunk fits in the free space or the buffer is the whole ring and
  // the oldest bytes give way. In both cases data.size() <= alloc_.
  const size_t n = data.size();
  const size_t first = std::min(n, alloc_ - head_);
  std::memcpy(buf_.get() + head_, data.data(), first);
  if (first < n) std::memcpy(buf_.get(), data.data() + first, n - first);
  head_ += n;
  if (head_ >= alloc_) head_ -= alloc_;
  size_ = std::min(size_ + n, alloc_);
}

std::string LogRing::snapshot() const { return snapshot_from(first_offset()); }

std::string LogRing::snapshot_from(uint64_t offset) const {
  const uint64_t begin = std::max(offset, first_offset());
  if (begin >= total_) return {};
  const auto count = static_cast<size_t>(total_ - begin);  // <= size_
  const Pieces p = circular_range(buf_.get(), alloc_, head_, count);
  std::string out;
  out.reserve(count);
  out.append(p.first);
  out.append(p.second);
  return out;
}

void LogRing::resize(size_t capacity) {
  capacity_ = capacity;
  // Growing needs no copy: the buffer grows on demand in append().
  if (alloc_ > capacity_) reallocate(capacity_);
}

void LogRing::reallocate(size_t new_alloc) {
  const size_t keep = std::min(size_, new_alloc);
  std::unique_ptr<char[]> fresh;
  if (new_alloc > 0) {
    fresh = std::make_unique_for_overwrite<char[]>(new_alloc);
    const Pieces p = circular_range(buf_.get(), alloc_, head_, keep);
    if (!p.first.empty()) std::memcpy(fresh.get(), p.first.data(), p.first.size());
    if (!p.second.empty()) std::memcpy(fresh.get() + p.first.size(), p.second.data(), p.second.size());
  }
  buf_ = std::move(fresh);
  alloc_ = new_alloc;
  size_ = keep;
  head_ = keep == new_alloc ? 0 : keep;
}

}  // namespace agentry::supervisor
