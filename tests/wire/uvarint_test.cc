#include "agentry/wire/uvarint.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace agentry::wire {
namespace {

std::string bytes(std::initializer_list<uint8_t> list) {
  std::string out;
  for (uint8_t b : list) out.push_back(static_cast<char>(b));
  return out;
}

struct Vector {
  uint64_t value;
  std::string encoded;
};

std::vector<Vector> known_vectors() {
  return {
      {0, bytes({0x00})},
      {1, bytes({0x01})},
      {127, bytes({0x7f})},
      {128, bytes({0x80, 0x01})},
      {300, bytes({0xac, 0x02})},
      {16383, bytes({0xff, 0x7f})},
      {16384, bytes({0x80, 0x80, 0x01})},
      {uint64_t{1} << 32, bytes({0x80, 0x80, 0x80, 0x80, 0x10})},
      {uint64_t{1} << 63, bytes({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})},
      {std::numeric_limits<uint64_t>::max(),
       bytes({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})},
  };
}

TEST(Uvarint, EncodesKnownVectors) {
  for (const Vector& v : known_vectors()) {
    SCOPED_TRACE(v.value);
    std::string out = "prefix";
    append_uvarint(out, v.value);
    EXPECT_EQ(out, "prefix" + v.encoded);
    EXPECT_EQ(uvarint_size(v.value), v.encoded.size());

    char buf[kMaxUvarintSize + 1] = {};
    char* end = write_uvarint(buf, v.value);
    EXPECT_EQ(std::string(buf, end), v.encoded);
  }
}

TEST(Uvarint, DecodesKnownVectors) {
  for (const Vector& v : known_vectors()) {
    SCOPED_TRACE(v.value);
    const UvarintDecodeResult r = decode_uvarint(v.encoded);
    ASSERT_EQ(r.outcome, UvarintOutcome::kDecoded);
    EXPECT_EQ(r.value, v.value);
    EXPECT_EQ(r.size, v.encoded.size());
  }
}

TEST(Uvarint, SizeChangesExactlyAtSevenBitBoundaries) {
  static_assert(uvarint_size(0) == 1);
  static_assert(uvarint_size(std::numeric_limits<uint64_t>::max()) == kMaxUvarintSize);
  for (size_t groups = 1; groups < kMaxUvarintSize; ++groups) {
    const uint64_t first_of_next = uint64_t{1} << (7 * groups);
    EXPECT_EQ(uvarint_size(first_of_next - 1), groups);
    EXPECT_EQ(uvarint_size(first_of_next), groups + 1);
  }
}

TEST(Uvarint, IgnoresBytesAfterTheVarint) {
  const UvarintDecodeResult r = decode_uvarint(bytes({0xac, 0x02, 0xff, 0xff}));
  ASSERT_EQ(r.outcome, UvarintOutcome::kDecoded);
  EXPECT_EQ(r.value, 300U);
  EXPECT_EQ(r.size, 2U);
}

TEST(Uvarint, EveryProperPrefixNeedsMore) {
  EXPECT_EQ(decode_uvarint(std::string_view()).outcome, UvarintOutcome::kNeedMore);
  for (const Vector& v : known_vectors()) {
    for (size_t n = 0; n < v.encoded.size(); ++n) {
      SCOPED_TRACE(testing::Message() << v.value << " cut at " << n);
      EXPECT_EQ(decode_uvarint(std::string_view(v.encoded).substr(0, n)).outcome, UvarintOutcome::kNeedMore);
    }
  }
}

TEST(Uvarint, MoreThanTenBytesIsMalformed) {
  const std::string eleven(11, '\xff');
  EXPECT_EQ(decode_uvarint(eleven).outcome, UvarintOutcome::kMalformed);
  // Ten continued bytes are enough to know: no need to wait for an 11th.
  const std::string ten_continued(10, '\x80');
  EXPECT_EQ(decode_uvarint(ten_continued).outcome, UvarintOutcome::kMalformed);
  // Nine continued bytes could still end well.
  EXPECT_EQ(decode_uvarint(std::string(9, '\x80')).outcome, UvarintOutcome::kNeedMore);
}

TEST(Uvarint, TenthByteOverflowingSixtyFourBitsIsMalformed) {
  std::string v(9, '\xff');
  for (const uint8_t tenth : {0x02, 0x03, 0x40, 0x7f}) {
    SCOPED_TRACE(static_cast<int>(tenth));
    EXPECT_EQ(decode_uvarint(v + static_cast<char>(tenth)).outcome, UvarintOutcome::kMalformed);
  }
  // 0x00 and 0x01 are the only valid tenth bytes.
  const UvarintDecodeResult zero = decode_uvarint(std::string(9, '\x80') + '\x00');
  ASSERT_EQ(zero.outcome, UvarintOutcome::kDecoded);
  EXPECT_EQ(zero.value, 0U);
  EXPECT_EQ(zero.size, 10U);
}

TEST(Uvarint, AcceptsNonMinimalEncodings) {
  const UvarintDecodeResult r = decode_uvarint(bytes({0x81, 0x80, 0x00}));
  ASSERT_EQ(r.outcome, UvarintOutcome::kDecoded);
  EXPECT_EQ(r.value, 1U);
  EXPECT_EQ(r.size, 3U);
}

TEST(Uvarint, SpanOverloadAgreesWithStringView) {
  const std::vector<uint8_t> encoded = {0xac, 0x02};
  const UvarintDecodeResult r = decode_uvarint(std::span<const uint8_t>(encoded));
  ASSERT_EQ(r.outcome, UvarintOutcome::kDecoded);
  EXPECT_EQ(r.value, 300U);
  EXPECT_EQ(r.size, 2U);
  EXPECT_EQ(decode_uvarint(std::span<const uint8_t>(encoded.data(), 1)).outcome, UvarintOutcome::kNeedMore);
}

TEST(Uvarint, RoundTripsValuesOfEveryBitWidth) {
  std::mt19937_64 rng(42);
  for (int width = 0; width <= 64; ++width) {
    for (int i = 0; i < 50; ++i) {
      uint64_t value = width == 0 ? 0 : rng() >> (64 - width);
      if (width > 0) value |= uint64_t{1} << (width - 1);  // exactly `width` bits wide
      std::string encoded;
      append_uvarint(encoded, value);
      ASSERT_EQ(encoded.size(), uvarint_size(value));
      const UvarintDecodeResult r = decode_uvarint(encoded);
      ASSERT_EQ(r.outcome, UvarintOutcome::kDecoded);
      ASSERT_EQ(r.value, value);
      ASSERT_EQ(r.size, encoded.size());
    }
  }
}

}  // namespace
}  // namespace agentry::wire
