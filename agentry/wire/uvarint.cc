#include "agentry/wire/uvarint.h"

namespace agentry::wire {

namespace {

constexpr uint8_t kContinuation = 0x80;
constexpr uint8_t kPayloadMask = 0x7f;

UvarintDecodeResult decode(const uint8_t* p, size_t n) noexcept {
  // Common case on the wire: lengths under 128 fit one byte.
  if (n > 0 && p[0] < kContinuation) return {UvarintOutcome::kDecoded, p[0], 1};

  const size_t limit = n < kMaxUvarintSize ? n : kMaxUvarintSize;
  uint64_t value = 0;
  for (size_t i = 0; i < limit; ++i) {
    const uint64_t byte = p[i];
    if (i == kMaxUvarintSize - 1) {
      // Nine groups hold bits 0..62; the tenth may only add bit 63 and must end the varint.
      // Anything else is either an 11th byte (continuation bit) or an overflow.
      if (byte > 1) return {UvarintOutcome::kMalformed, 0, 0};
      return {UvarintOutcome::kDecoded, value | (byte << 63), kMaxUvarintSize};
    }
    value |= (byte & kPayloadMask) << (7 * i);
    if (byte < kContinuation) return {UvarintOutcome::kDecoded, value, i + 1};
  }
  // Only reachable with fewer than kMaxUvarintSize bytes, all of them continued.
  return {UvarintOutcome::kNeedMore, 0, 0};
}

}  // namespace

char* write_uvarint(char* dst, uint64_t value) noexcept {
  while (value >= kContinuation) {
    *dst++ = static_cast<char>(static_cast<uint8_t>(value) | kContinuation);
    value >>= 7;
  }
  *dst++ = static_cast<char>(value);
  return dst;
}

void append_uvarint(std::string& out, uint64_t value) {
  char buf[kMaxUvarintSize];
  const char* end = write_uvarint(buf, value);
  out.append(buf, static_cast<size_t>(end - buf));
}

UvarintDecodeResult decode_uvarint(std::string_view bytes) noexcept {
  return decode(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

UvarintDecodeResult decode_uvarint(std::span<const uint8_t> bytes) noexcept {
  return decode(bytes.data(), bytes.size());
}

}  // namespace agentry::wire
