#include "agentry/wire/delimited.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "agentry/wire/uvarint.h"

namespace agentry::wire {

void append_delimited(std::string& out, std::string_view message) {
  char prefix[kMaxUvarintSize];
  const char* prefix_end = write_uvarint(prefix, message.size());
  // Two appends rather than reserve(): std::string grows geometrically on append, while an
  // exact reserve() per message can defeat that on some standard libraries.
  out.append(prefix, static_cast<size_t>(prefix_end - prefix));
  out.append(message);
}

char* append_delimited_uninitialized(std::string& out, size_t len) {
  const size_t start = out.size();
  out.resize(start + uvarint_size(len) + len);
  return write_uvarint(out.data() + start, len);
}

namespace detail {

void StreamBuffer::append(std::string_view bytes) {
  // An empty view may carry a null data(), which memcpy must not see.
  if (bytes.empty()) return;
  make_room(bytes.size());
  std::memcpy(storage_.get() + end_, bytes.data(), bytes.size());
  end_ += bytes.size();
}

std::span<char> StreamBuffer::prepare(size_t min_size) {
  make_room(min_size);
  return {storage_.get() + end_, capacity_ - end_};
}

void StreamBuffer::commit(size_t n) noexcept {
  assert(n <= capacity_ - end_);
  end_ += n;
}

void StreamBuffer::consume(size_t n) noexcept {
  assert(n <= size());
  begin_ += n;
  // Fully drained (the usual case when a read ends on a frame boundary): start over at the
  // front for free instead of sliding bytes later. The bytes stay where they are, so views
  // of them remain readable until the next write.
  if (begin_ == end_) begin_ = end_ = 0;
  frame_hint_ = 0;
}

void StreamBuffer::release() noexcept {
  storage_.reset();
  capacity_ = begin_ = end_ = frame_hint_ = 0;
}

void StreamBuffer::make_room(size_t extra) {
  const size_t live = size();
  const size_t need = live + extra;
  // With the size of the frame in progress known, aim to hold all of it, plus room for what
  // follows it in the same read: bytes of the next frame arrive in chunks like this one.
  const size_t slack = std::min(frame_hint_, std::max(kFrameSlack, extra));
  const size_t frame_target = frame_hint_ == 0 ? 0 : frame_hint_ + slack;
  const size_t target = std::max(need, frame_target);

  // A big frame has gone through and only small ones are in flight: give the memory back.
  if (capacity_ > kMaxRetainedCapacity && target <= kMaxRetainedCapacity / 2) {
    reallocate(std::max(kMinCapacity, 2 * target));
    return;
  }
  const bool frame_fits = frame_hint_ <= capacity_ - begin_;
  if (extra <= capacity_ - end_ && frame_fits) return;
  // Sliding the live bytes down is cheaper than a new allocation, but only while they are at
  // most half the buffer: that leaves at least half of it free afterwards, so each byte is
  // moved a bounded number of times however the stream is chunked.
  if (target <= capacity_ && live <= capacity_ / 2) {
    if (live > 0) std::memmove(storage_.get(), storage_.get() + begin_, live);
    begin_ = 0;
    end_ = live;
    return;
  }
  // A known frame is allocated for exactly, once, however many chunks it arrives in;
  // anything else grows geometrically.
  if (frame_hint_ != 0 && need <= frame_target) {
    reallocate(std::max(frame_target, kMinCapacity));
  } else {
    reallocate(std::max({need, 2 * capacity_, kMinCapacity}));
  }
}

void StreamBuffer::reallocate(size_t new_capacity) {
  const size_t live = size();
  assert(new_capacity >= live);
  // make_unique_for_overwrite: the bytes are about to be overwritten, skip zero-filling them.
  auto fresh = std::make_unique_for_overwrite<char[]>(new_capacity);
  if (live > 0) std::memcpy(fresh.get(), storage_.get() + begin_, live);
  storage_ = std::move(fresh);
  capacity_ = new_capacity;
  begin_ = 0;
  end_ = live;
}

}  // namespace detail

namespace {

// Keeps prefix + message + slack sums far from overflowing size_t.
constexpr size_t kLargestMaxMessageSize = std::numeric_limits<size_t>::max() / 4;

std::string hex_bytes(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    if (!out.empty()) out += ' ';
    out += fmt::format("{:02x}", static_cast<uint8_t>(c));
  }
  return out;
}

}  // namespace

DelimitedDecoder::DelimitedDecoder(size_t max_message_size)
    : max_message_size_(std::min(max_message_size, kLargestMaxMessageSize)) {}

void DelimitedDecoder::feed(std::string_view bytes) {
  if (failed()) return;  // nothing after an error can be decoded; don't hold on to it
  buffer_.append(bytes);
}

std::span<char> DelimitedDecoder::prepare(size_t min_size) { return buffer_.prepare(min_size); }

void DelimitedDecoder::commit(size_t n) noexcept {
  if (failed()) return;
  buffer_.commit(n);
}

bool DelimitedDecoder::decode_prefix() {
  if (prefix_size_ != 0) return true;
  const std::string_view live = buffer_.data();
  const UvarintDecodeResult length = decode_uvarint(live);
  switch (length.outcome) {
    case UvarintOutcome::kNeedMore:
      return true;
    case UvarintOutcome::kMalformed: {
      // decode_uvarint only gives up once it has seen kMaxUvarintSize bytes.
      const std::string_view varint = live.substr(0, kMaxUvarintSize);
      const bool continued = (static_cast<uint8_t>(varint.back()) & 0x80) != 0;
      fail(invalid_argument(
          fmt::format("malformed message length prefix: varint {} ({})",
                      continued ? "longer than 10 bytes" : "overflows 64 bits", hex_bytes(varint))));
      return false;
    }
    case UvarintOutcome::kDecoded:
      break;
  }
  if (length.value > max_message_size_) {
    fail(out_of_range(fmt::format("message length {} bytes exceeds the maximum of {} bytes", length.value,
                                  max_message_size_)));
    return false;
  }
  prefix_size_ = length.size;
  message_size_ = static_cast<size_t>(length.value);
  if (live.size() < prefix_size_ + message_size_) buffer_.set_frame_hint(prefix_size_ + message_size_);
  return true;
}

Result<std::optional<std::string_view>> DelimitedDecoder::next() {
  if (failed() || !decode_prefix()) return status_;
  const std::string_view live = buffer_.data();
  if (prefix_size_ == 0 || live.size() - prefix_size_ < message_size_) {
    return std::optional<std::string_view>();
  }
  const std::string_view message = live.substr(prefix_size_, message_size_);
  buffer_.consume(prefix_size_ + message_size_);
  prefix_size_ = 0;
  message_size_ = 0;
  return std::optional<std::string_view>(message);
}

Status DelimitedDecoder::finish() {
  if (failed()) return status_;
  if (buffer_.size() == 0) return Status::ok();
  if (!decode_prefix()) return status_;
  if (prefix_size_ == 0) {
    return fail(data_loss(fmt::format(
        "unexpected EOF inside a message length prefix ({} varint bytes, all continued)",
        buffer_.size())));
  }
  const size_t received = buffer_.size() - prefix_size_;
  if (received >= message_size_) {
    return failed_precondition("finish() called before next() returned every complete message");
  }
  return fail(data_loss(fmt::format("unexpected EOF, expected {} more bytes (got {} of a {}-byte message)",
                                    message_size_ - received, received, message_size_)));
}

const Status& DelimitedDecoder::fail(Status status) {
  status_ = std::move(status);
  buffer_.release();
  prefix_size_ = 0;
  message_size_ = 0;
  return status_;
}

}  // namespace agentry::wire
