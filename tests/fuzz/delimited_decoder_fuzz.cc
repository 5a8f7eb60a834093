// Fuzzes DelimitedDecoder against a one-shot reference parse of the same bytes.
//
// Input: byte 0 picks the message size limit and how the rest is cut into chunks; bytes
// 1.. are the stream. The stream is fed to the decoder in chunks (through both feed() and
// prepare()/commit()), draining after each, and must yield exactly the messages and the
// final error class that a straightforward parse of the whole buffer yields. Re-encoding
// the messages must reproduce the consumed bytes, and buffer capacity must stay bounded.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/wire/delimited.h"
#include "agentry/wire/uvarint.h"

namespace {

using agentry::Status;
using agentry::StatusCode;
using agentry::wire::DelimitedDecoder;

#define FUZZ_CHECK(cond)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                            \
    }                                                                          \
  } while (false)

// Deterministic chunk sizes derived from the seed byte: some runs use tiny chunks (often
// 0 or 1 byte), others up to 2 KiB, so both the byte-at-a-time and the bulk paths get hit.
class Chunker {
 public:
  explicit Chunker(uint8_t seed) : state_(0x9E3779B9U ^ (seed * 0x01000193U)), max_(size_t{1} << (seed % 12)) {}
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

struct Reference {
  std::vector<std::string_view> messages;
  bool canonical = true;  // every length prefix is the shortest encoding of its value
  size_t consumed = 0;    // bytes up to the end of the last whole message
  StatusCode end = StatusCode::kOk;
};

// The whole stream at once, written independently of the decoder's incremental logic.
Reference parse_reference(std::string_view s, size_t max) {
  Reference ref;
  size_t pos = 0;
  while (pos < s.size()) {
    const auto length = agentry::wire::decode_uvarint(s.substr(pos));
    if (length.outcome == agentry::wire::UvarintOutcome::kNeedMore) {
      ref.end = StatusCode::kDataLoss;
      break;
    }
    if (length.outcome == agentry::wire::UvarintOutcome::kMalformed) {
      ref.end = StatusCode::kInvalidArgument;
      break;
    }
    if (length.value > max) {
      ref.end = StatusCode::kOutOfRange;
      break;
    }
    if (s.size() - pos - length.size < length.value) {
      ref.end = StatusCode::kDataLoss;
      break;
    }
    ref.canonical = ref.canonical && agentry::wire::uvarint_size(length.value) == length.size;
    ref.messages.push_back(s.substr(pos + length.size, length.value));
    pos += length.size + length.value;
  }
  ref.consumed = pos;
  return ref;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t seed = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Mostly a small limit so that the over-limit path is reachable with short inputs.
  const size_t max = (seed & 0x80) != 0 ? size_t{1} << 20 : static_cast<size_t>(seed & 0x7fU) * 4;

  const Reference ref = parse_reference(stream, max);

  DelimitedDecoder decoder(max);
  Chunker chunker(seed);
  std::vector<std::string> got;
  Status end;
  const size_t capacity_bound = 2 * (max + agentry::wire::kMaxUvarintSize + stream.size()) +
                                agentry::wire::detail::StreamBuffer::kMinCapacity;
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
      got.emplace_back(**next);
    }
    FUZZ_CHECK(decoder.capacity() <= capacity_bound);
  }
  if (end.is_ok()) end = decoder.finish();

  FUZZ_CHECK(end.code() == ref.end);
  FUZZ_CHECK(got.size() == ref.messages.size());
  for (size_t i = 0; i < got.size(); ++i) FUZZ_CHECK(got[i] == ref.messages[i]);

  // Errors are final: more valid input changes nothing.
  if (!end.is_ok()) {
    decoder.feed(std::string_view("\x01x", 2));
    FUZZ_CHECK(decoder.next().status() == end);
    FUZZ_CHECK(decoder.finish() == end);
  }

  // Re-encoding what was decoded reproduces the consumed bytes (exactly, when the input used
  // shortest-form prefixes) and decodes back to the same messages.
  std::string reencoded;
  for (size_t i = 0; i < got.size(); ++i) {
    if (i % 2 == 0) {
      agentry::wire::append_delimited(reencoded, got[i]);
    } else {
      char* dst = agentry::wire::append_delimited_uninitialized(reencoded, got[i].size());
      if (!got[i].empty()) std::memcpy(dst, got[i].data(), got[i].size());
    }
  }
  if (ref.canonical) FUZZ_CHECK(reencoded == stream.substr(0, ref.consumed));
  DelimitedDecoder again(max);
  again.feed(reencoded);
  for (const std::string& message : got) {
    auto next = again.next();
    FUZZ_CHECK(next.is_ok() && next->has_value() && **next == message);
  }
  auto last = again.next();
  FUZZ_CHECK(last.is_ok() && !last->has_value());
  FUZZ_CHECK(again.finish().is_ok());
  return 0;
}
