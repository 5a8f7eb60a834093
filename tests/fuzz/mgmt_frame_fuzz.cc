// Fuzzes MgmtFrameDecoder against a one-shot reference parse built on decode_mgmt_header.
//
// Input: byte 0 picks the payload limit and how the rest is cut into chunks; bytes 1.. are
// the stream. Fed in chunks (through feed() and prepare()/commit()), drained after each,
// the decoder must produce the reference's frames and fail with the reference's
// MgmtFrameError. Re-encoding the frames must reproduce the consumed bytes exactly (the
// header has a single encoding), and buffer capacity must stay bounded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/wire/mgmt_frame.h"

namespace {

using agentry::Status;
using agentry::wire::kMgmtHeaderSize;
using agentry::wire::MgmtFrameDecoder;
using agentry::wire::MgmtFrameError;
using agentry::wire::MgmtFrameHeader;

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (false)

// Deterministic chunk sizes from the seed byte, between 0 and 1..2048 bytes.
class Chunker {
 public:
  explicit Chunker(uint8_t seed) : state_(0x85EBCA6BU ^ (seed * 0x01000193U)), max_(size_t{1} << (seed % 12)) {}
  size_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    return state_ % (max_ + 1);
  }
  bool coin() { return (next() & 1) != 0; }

 private:
  uint32_t state_;
  size_t max_;
};

struct Frame {
  MgmtFrameHeader header;
  std::string payload;
};

struct Reference {
  std::vector<Frame> frames;
  size_t consumed = 0;
  std::optional<MgmtFrameError> error;  // nullopt: the stream ends cleanly between frames
};

Reference parse_reference(std::string_view s, uint32_t max) {
  Reference ref;
  size_t pos = 0;
  while (pos < s.size()) {
    MgmtFrameError error{};
    auto header = agentry::wire::decode_mgmt_header(s.substr(pos), max, &error);
    if (!header.is_ok()) {
      ref.error = error;
      break;
    }
    if (s.size() - pos - kMgmtHeaderSize < header->length) {
      ref.error = MgmtFrameError::kTruncatedPayload;
      break;
    }
    ref.frames.push_back({*header, std::string(s.substr(pos + kMgmtHeaderSize, header->length))});
    pos += kMgmtHeaderSize + header->length;
  }
  ref.consumed = pos;
  return ref;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const uint32_t max = (seed & 0x80) != 0 ? uint32_t{1} << 20 : static_cast<uint32_t>(seed & 0x7fU) * 4;

  const Reference ref = parse_reference(stream, max);

  MgmtFrameDecoder decoder(max);
  Chunker chunker(seed);
  std::vector<Frame> got;
  Status end;
  const size_t capacity_bound =
      2 * (size_t{max} + kMgmtHeaderSize + stream.size()) + agentry::wire::detail::StreamBuffer::kMinCapacity;
  for (size_t pos = 0; pos < stream.size() && end.is_ok();) {
    const size_t n = std::min(chunker.next(), stream.size() - pos);
    if (chunker.coin()) {
      decoder.feed(stream.substr(pos, n));
    } else {
      const std::span<char> room = decoder.prepare(n);
      FUZZ_CHECK(room.size() >= n);
      if (n > 0) std::memcpy(room.data(), stream.data() + pos, n);
      decoder.commit(n);
    }
    pos += n;
    for (;;) {
      auto next = decoder.next();
      if (!next.is_ok()) {
        end = next.status();
        break;
      }
      if (!next->has_value()) break;
      got.push_back({(*next)->header, std::string((*next)->payload)});
    }
    FUZZ_CHECK(decoder.capacity() <= capacity_bound);
  }
  if (end.is_ok()) end = decoder.finish();

  FUZZ_CHECK(decoder.error() == ref.error);
  FUZZ_CHECK(end.is_ok() == !ref.error.has_value());
  FUZZ_CHECK(decoder.rejected_header().has_value() == (ref.error == MgmtFrameError::kTooLarge));
  FUZZ_CHECK(got.size() == ref.frames.size());
  for (size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(got[i].header == ref.frames[i].header);
    FUZZ_CHECK(got[i].payload == ref.frames[i].payload);
    FUZZ_CHECK(got[i].header.length == got[i].payload.size());
  }

  if (!end.is_ok()) {
    decoder.feed(stream.substr(0, ref.consumed));
    FUZZ_CHECK(decoder.next().status() == end);
    FUZZ_CHECK(decoder.finish() == end);
  }

  // The encoders reproduce the consumed prefix byte for byte.
  std::string reencoded;
  for (size_t i = 0; i < got.size(); ++i) {
    const Frame& f = got[i];
    if (i % 2 == 0) {
      FUZZ_CHECK(agentry::wire::append_mgmt_frame(reencoded, f.header.type, f.header.seq, f.payload, f.header.flags,
                                                   max)
                     .is_ok());
    } else {
      const size_t start = agentry::wire::begin_mgmt_frame(reencoded, f.header.type, f.header.seq, f.header.flags);
      reencoded += f.payload;
      FUZZ_CHECK(agentry::wire::end_mgmt_frame(reencoded, start, max).is_ok());
    }
  }
  FUZZ_CHECK(reencoded == stream.substr(0, ref.consumed));
  return 0;
}
