// Length-delimited message framing, as the Kapacitor UDF protocol uses it: each message is
// the unsigned varint of its byte length followed by the message bytes. No footer, no
// checksum; EOF before the first byte of a length is a clean end of stream.
//
// Pure codecs: nothing here touches a file descriptor. The encoders append to a caller's
// std::string so that many messages can be batched into one write; the decoder takes bytes
// in whatever chunks the transport produced and hands back whole messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agentry/base/status.h"

namespace agentry::wire {

// The Go reader Kapacitor uses has no limit at all; a peer's length prefix must never be
// allowed to size our allocations unchecked, so the decoder enforces this by default.
inline constexpr size_t kDefaultMaxDelimitedMessageSize = size_t{64} * 1024 * 1024;

// Appends the length prefix and then `message`.
void append_delimited(std::string& out, std::string_view message);

// Appends the length prefix for a `len`-byte message, grows `out` by `len` bytes and returns
// where those bytes start, so a serializer can write the message straight into `out`:
//
//   char* p = append_delimited_uninitialized(out, msg.ByteSizeLong());
//   msg.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p));
//
// The caller must fill exactly `len` bytes. The pointer is invalidated by any later change
// to `out`. (The bytes are in fact zero-filled: std::string has no way to grow without
// initializing before C++23. That is one memset, still far cheaper than a temporary.)
char* append_delimited_uninitialized(std::string& out, size_t len);

namespace detail {

// The byte queue behind the framing decoders (DelimitedDecoder here, MgmtFrameDecoder in
// mgmt_frame.h). Bytes are appended at the tail and consumed from the head. When the tail
// runs out of room, the unconsumed bytes (usually a fraction of one frame) slide back to
// the front rather than the buffer growing, so a long stream of small frames runs in
// constant memory. A decoder that has read a frame's header announces the frame's size with
// set_frame_hint(); the next growth then allocates the whole frame (plus a little slack for
// whatever follows it in the same read) at once instead of doubling repeatedly, and a large
// allocation is given back once only small frames are flowing again.
//
// Storage moves only inside append(), prepare() and commit(): views returned by data()
// stay valid across consume() and set_frame_hint().
class StreamBuffer {
 public:
  // Below this the buffer is not worth shrinking or allocating smaller.
  static constexpr size_t kMinCapacity = 4096;
  // Capacity above this is released once the frames in flight fit in half of it.
  static constexpr size_t kMaxRetainedCapacity = size_t{1} << 20;
  // Room reserved after a known frame so that the start of the next frame, arriving in the
  // same read, does not force the big one to move: this much or the size of the chunk being
  // added, whichever is larger, but never more than the frame's own size.
  static constexpr size_t kFrameSlack = size_t{64} << 10;

  std::string_view data() const noexcept { return {storage_.get() + begin_, end_ - begin_}; }
  size_t size() const noexcept { return end_ - begin_; }
  size_t capacity() const noexcept { return capacity_; }

  // Copies `bytes` to the tail.
  void append(std::string_view bytes);
  // Writable room at the tail of at least `min_size` bytes, for reading straight into the
  // buffer; commit() then makes the first n of them part of the data.
  std::span<char> prepare(size_t min_size);
  void commit(size_t n) noexcept;
  // Drops `n` bytes from the head. Also forgets the frame hint: the frame it described is
  // the one being consumed.
  void consume(size_t n) noexcept;
  // The frame starting at the head is `frame_size` bytes long in total.
  void set_frame_hint(size_t frame_size) noexcept { frame_hint_ = frame_size; }
  // Drops everything and frees the storage.
  void release() noexcept;

 private:
  void make_room(size_t extra);
  void reallocate(size_t new_capacity);

  std::unique_ptr<char[]> storage_;
  size_t capacity_ = 0;
  size_t begin_ = 0;  // first unconsumed byte
  size_t end_ = 0;    // one past the last byte written
  size_t frame_hint_ = 0;
};

}  // namespace detail

// Incremental decoder for a stream of length-delimited messages.
//
//   DelimitedDecoder decoder;
//   while (read some bytes into chunk) {
//     decoder.feed(chunk);
//     for (;;) {
//       auto next = decoder.next();
//       if (!next.is_ok()) return next.status();   // malformed or over the limit: close
//       if (!next->has_value()) break;             // need more bytes
//       handle(**next);
//     }
//   }
//   return decoder.finish();                       // at EOF: clean end or truncation?
//
// Returned messages are views into the decoder's buffer, not copies. A view stays valid
// until the next call to feed(), prepare(), commit(), next() or finish() on the decoder;
// parse or copy it before then. feed() copies its argument, so the caller may reuse its
// read buffer as soon as feed() returns; to skip even that copy, read into prepare() and
// commit() what arrived.
//
// Memory: consumed space is reused, so a stream of small messages runs in a few KiB. A
// large message gets its declared size allocated once, when its bytes start to arrive, so
// max_message_size() (plus a read's worth of slack) also bounds what a peer can make the
// decoder allocate.
//
// Errors are final: after one, every call reports the same Status and new input is
// discarded. Not thread-safe; one decoder per stream.
class DelimitedDecoder {
 public:
  // A limit above SIZE_MAX / 4 is lowered to it, which keeps the size arithmetic exact.
  explicit DelimitedDecoder(size_t max_message_size = kDefaultMaxDelimitedMessageSize);

  // Appends a chunk of the stream (any size, including empty). Buffers without bound:
  // drain next() before feeding more if memory matters.
  void feed(std::string_view bytes);
  // Room to read at least `min_size` bytes directly into (the returned span may be larger).
  // Valid until the next call on the decoder; follow with commit(bytes actually read).
  std::span<char> prepare(size_t min_size);
  void commit(size_t n) noexcept;

  // The next complete message; std::nullopt when more bytes are needed first. Errors:
  // kOutOfRange for a length over max_message_size() (reported as soon as the length prefix
  // is complete, before any of the message body is read), kInvalidArgument for a length
  // prefix that is not a valid varint.
  Result<std::optional<std::string_view>> next();

  // Call at EOF, after next() has reported that it needs more. OK if the stream ended
  // between messages. kDataLoss if it ended inside one: "unexpected EOF, expected N more
  // bytes ..." inside a message body, or a message naming the varint when it ended inside a
  // length prefix. kFailedPrecondition (without failing the decoder) if whole messages are
  // still waiting to be taken with next().
  Status finish();

  bool failed() const noexcept { return !status_.is_ok(); }
  // OK, or the error that failed the decoder.
  const Status& status() const noexcept { return status_; }
  // Bytes received but not yet returned as messages.
  size_t buffered_bytes() const noexcept { return buffer_.size(); }
  // Bytes currently allocated for buffering.
  size_t capacity() const noexcept { return buffer_.capacity(); }
  size_t max_message_size() const noexcept { return max_message_size_; }

 private:
  // Decodes the length prefix at the head of the buffer if not done yet. Returns false after
  // failing the decoder on a bad or oversized length; true otherwise, with prefix_size_
  // still 0 if the prefix is incomplete. (A bool, not a Status: this runs once per message.)
  bool decode_prefix();
  const Status& fail(Status status);

  detail::StreamBuffer buffer_;
  size_t max_message_size_;
  // Length prefix of the message at the head of the buffer, once decoded: its size in bytes
  // (0 = not decoded yet) and the message size it declares. Kept so that a message arriving
  // in many chunks has its varint decoded and checked once.
  size_t prefix_size_ = 0;
  size_t message_size_ = 0;
  Status status_;
};

}  // namespace agentry::wire
