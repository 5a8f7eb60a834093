// Unsigned base-128 varints (unsigned LEB128, the protobuf varint): seven value bits per
// byte, least significant group first, the high bit set on every byte except the last.
// The Kapacitor UDF framing prefixes each message with its length in this form.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace agentry::wire {

// A uint64_t needs ceil(64 / 7) = 10 groups of seven bits.
inline constexpr size_t kMaxUvarintSize = 10;

// Number of bytes the encoding of `value` takes: 1 to 10.
constexpr size_t uvarint_size(uint64_t value) noexcept {
  // bit_width(0) is 0, but zero still takes one byte: OR-ing in bit 0 covers it.
  return (static_cast<size_t>(std::bit_width(value | 1U)) + 6) / 7;
}

// Writes the encoding of `value` at `dst`, which must have uvarint_size(value) writable
// bytes, and returns the position just past it. For callers that size a buffer first.
char* write_uvarint(char* dst, uint64_t value) noexcept;

// Appends the encoding of `value` to `out`.
void append_uvarint(std::string& out, uint64_t value);

enum class UvarintOutcome : uint8_t {
  kDecoded,    // `value` and `size` are set
  kNeedMore,   // every byte available has the continuation bit: the varint goes on past them
  kMalformed,  // more than 10 bytes, or a 10th byte carrying bits beyond 2^64
};

// A plain struct rather than Result<>: decoding a length prefix sits on the per-message
// hot path and "need more bytes" is an ordinary state there, not an error to describe.
struct UvarintDecodeResult {
  UvarintOutcome outcome = UvarintOutcome::kNeedMore;
  uint64_t value = 0;  // only meaningful when kDecoded
  size_t size = 0;     // bytes the varint occupies; only meaningful when kDecoded
};

// Decodes the varint at the start of `bytes`; bytes after it are ignored. Non-minimal
// encodings such as 0x80 0x00 for zero are accepted, as protobuf and Go's encoding/binary
// accept them, so re-encoding a decoded value may come out shorter than its input.
// A kNeedMore answer never needs more than kMaxUvarintSize bytes in total to resolve.
UvarintDecodeResult decode_uvarint(std::string_view bytes) noexcept;
UvarintDecodeResult decode_uvarint(std::span<const uint8_t> bytes) noexcept;

}  // namespace agentry::wire
