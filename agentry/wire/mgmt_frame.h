// Frames of the management socket protocol (wire-compatible with cliwrap's mgmt package):
// a 17-byte big-endian header, then `length` bytes of payload (MessagePack, decoded
// elsewhere).
//
//   offset 0  magic 0xC1 0xD9        offset 5   sequence number, uint64
//   offset 2  protocol version 0x01  offset 13  payload length, uint32
//   offset 3  message type           offset 17  payload
//   offset 4  flags
//
// Pure codecs: no I/O. Decoding errors carry both a Status (for logs and replies) and a
// MgmtFrameError naming which check failed, so callers and tests need not parse messages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "agentry/base/status.h"
#include "agentry/wire/delimited.h"  // detail::StreamBuffer

namespace agentry::wire {

inline constexpr uint8_t kMgmtMagic0 = 0xC1;
inline constexpr uint8_t kMgmtMagic1 = 0xD9;
inline constexpr uint16_t kMgmtMagic = 0xC1D9;  // both bytes, read big-endian
inline constexpr uint8_t kMgmtVersion = 0x01;
inline constexpr size_t kMgmtHeaderSize = 17;
inline constexpr uint32_t kMgmtMaxPayload = 16 * 1024 * 1024;

// Flag bits. The decoder passes unknown bits through untouched: they are the message
// layer's business, and rejecting them here would break on a peer that adds one.
inline constexpr uint8_t kMgmtFlagAckRequired = 0x01;
inline constexpr uint8_t kMgmtFlagIsReplay = 0x02;
inline constexpr uint8_t kMgmtFlagFileRef = 0x04;

struct MgmtFrameHeader {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint64_t seq = 0;
  uint32_t length = 0;  // payload bytes following the header

  friend bool operator==(const MgmtFrameHeader&, const MgmtFrameHeader&) = default;
};

struct MgmtFrame {
  MgmtFrameHeader header;
  std::string_view payload;  // header.length bytes; see MgmtFrameDecoder for its lifetime
};

// Which check a frame failed. The Status that comes with it has code kDataLoss for the
// two truncation errors, kInvalidArgument for bad magic or version, kOutOfRange for too large.
enum class MgmtFrameError : uint8_t {
  kShortHeader,       // "short header: 5 of 17 bytes": input or stream ended inside a header
  kBadMagic,          // "bad magic 0x1234, expected 0xc1d9"
  kBadVersion,        // "unsupported protocol version 2"
  kTooLarge,          // "payload length 17825792 exceeds 16777216"
  kTruncatedPayload,  // "truncated payload: 10 of 42 bytes": stream ended inside a payload
};

// "short_header", "bad_magic", ...: stable names for logs and metrics labels.
std::string_view mgmt_frame_error_name(MgmtFrameError error) noexcept;

// The 17 header bytes for `header`. Does not check header.length against any maximum.
std::array<uint8_t, kMgmtHeaderSize> encode_mgmt_header(const MgmtFrameHeader& header) noexcept;

// Appends one whole frame. A payload over `max_payload` (default: the protocol's 16 MiB) is
// refused with kOutOfRange and `out` is left unchanged: the peer would reject the frame
// anyway, so a caller with more data, such as a log snapshot, must split it.
Status append_mgmt_frame(std::string& out, uint8_t type, uint64_t seq, std::string_view payload,
                         uint8_t flags = 0, uint32_t max_payload = kMgmtMaxPayload);

// For payloads serialized straight into the output buffer (e.g. a MessagePack writer
// appending to `out`) whose size is not known up front:
//
//   size_t start = begin_mgmt_frame(out, type, seq);
//   write_payload(out);                          // append to out
//   AGENTRY_RETURN_IF_ERROR(end_mgmt_frame(out, start));
//
// begin_mgmt_frame appends a header with a zero length and returns its offset in `out`;
// end_mgmt_frame sets the length to everything appended after the header. If that is over
// `max_payload`, end_mgmt_frame truncates `out` back to `frame_start` (removing the partial
// frame) and returns kOutOfRange.
size_t begin_mgmt_frame(std::string& out, uint8_t type, uint64_t seq, uint8_t flags = 0);
Status end_mgmt_frame(std::string& out, size_t frame_start, uint32_t max_payload = kMgmtMaxPayload);

// Decodes the header at the start of `bytes` (anything after the first 17 bytes is ignored).
// Checks, in order: magic and version (as soon as enough bytes are present, so a 2-byte
// input with the wrong magic is kBadMagic, not kShortHeader), a full 17 bytes, then the
// length against `max_payload`. On failure, `*error` (if given) names the failed check.
Result<MgmtFrameHeader> decode_mgmt_header(std::string_view bytes, uint32_t max_payload = kMgmtMaxPayload,
                                           MgmtFrameError* error = nullptr);

// Incremental decoder for a stream of frames; usage mirrors DelimitedDecoder:
//
//   decoder.feed(chunk);
//   for (;;) {
//     auto next = decoder.next();
//     if (!next.is_ok()) { reply_error(decoder.error(), decoder.rejected_header()); close(); }
//     if (!next->has_value()) break;
//     handle((*next)->header, (*next)->payload);
//   }
//   ... at EOF: decoder.finish()
//
// Bad magic and version are reported as soon as the 2nd and 3rd bytes of a header arrive,
// an oversized length as soon as its header is complete: a server can answer garbage or a
// 17 MiB frame at once and close, without reading further.
//
// Payload views point into the decoder's buffer and stay valid until the next call to
// feed(), prepare(), commit(), next() or finish(). feed() copies its argument. Errors are
// final: every later call reports the same Status and input is discarded. Not thread-safe.
class MgmtFrameDecoder {
 public:
  explicit MgmtFrameDecoder(uint32_t max_payload = kMgmtMaxPayload);

  void feed(std::string_view bytes);
  // Room to read at least `min_size` bytes straight into; follow with commit(n).
  std::span<char> prepare(size_t min_size);
  void commit(size_t n) noexcept;

  // The next complete frame; std::nullopt when more bytes are needed first. Errors:
  // kBadMagic, kBadVersion, kTooLarge (see error()).
  Result<std::optional<MgmtFrame>> next();

  // Call at EOF, after next() has reported that it needs more. OK if the stream ended
  // between frames; kShortHeader or kTruncatedPayload (kDataLoss) if it ended inside one.
  // kFailedPrecondition (without failing the decoder) if whole frames are still waiting to
  // be taken with next().
  Status finish();

  bool failed() const noexcept { return !status_.is_ok(); }
  const Status& status() const noexcept { return status_; }
  // Which check failed; nullopt while the decoder is healthy.
  std::optional<MgmtFrameError> error() const noexcept { return error_; }
  // The header of the frame refused as kTooLarge, so that the error reply can echo its
  // sequence number. nullopt otherwise.
  const std::optional<MgmtFrameHeader>& rejected_header() const noexcept { return rejected_header_; }

  size_t buffered_bytes() const noexcept { return buffer_.size(); }
  size_t capacity() const noexcept { return buffer_.capacity(); }
  uint32_t max_payload() const noexcept { return max_payload_; }

 private:
  // Checks and decodes the header at the head of the buffer if not done yet. Returns false
  // after failing the decoder; true otherwise, with header_ still empty if the header is
  // incomplete.
  bool decode_header();
  const Status& fail(MgmtFrameError error, Status status);

  detail::StreamBuffer buffer_;
  uint32_t max_payload_;
  std::optional<MgmtFrameHeader> header_;  // of the frame at the head of the buffer
  std::optional<MgmtFrameHeader> rejected_header_;
  std::optional<MgmtFrameError> error_;
  Status status_;
};

}  // namespace agentry::wire
