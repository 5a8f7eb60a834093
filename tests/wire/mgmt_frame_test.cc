#include "agentry/wire/mgmt_frame.h"

#include <algorithm>
#include <cstring>
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

std::string header_bytes(const MgmtFrameHeader& header) {
  const auto encoded = encode_mgmt_header(header);
  return std::string(encoded.begin(), encoded.end());
}

std::string pattern(size_t size, char seed) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i * 13 + i / 241));
  return s;
}

// A decoded frame with its payload copied out of the decoder.
struct Frame {
  MgmtFrameHeader header;
  std::string payload;
  friend bool operator==(const Frame&, const Frame&) = default;
};

std::string encode_all(const std::vector<Frame>& frames) {
  std::string out;
  for (const Frame& f : frames) {
    EXPECT_TRUE(append_mgmt_frame(out, f.header.type, f.header.seq, f.payload, f.header.flags).is_ok());
  }
  return out;
}

Frame frame(uint8_t type, uint64_t seq, std::string payload, uint8_t flags = 0) {
  const auto length = static_cast<uint32_t>(payload.size());
  return {{type, flags, seq, length}, std::move(payload)};
}

void drain(MgmtFrameDecoder& decoder, std::vector<Frame>& out) {
  for (;;) {
    auto next = decoder.next();
    ASSERT_TRUE(next.is_ok()) << next.status().to_string();
    if (!next->has_value()) return;
    out.push_back({(*next)->header, std::string((*next)->payload)});
  }
}

std::vector<Frame> mixed_frames() {
  return {
      frame(0xA0, 1, ""),
      frame(0xA1, 2, pattern(300, 'a'), kMgmtFlagAckRequired),
      frame(0xA5, 0, pattern(20000, 'b'), kMgmtFlagIsReplay | kMgmtFlagFileRef),
      frame(0xA3, 0xFFFFFFFFFFFFFFFFULL, "x"),
      frame(0xA7, 0x0102030405060708ULL, ""),
  };
}

const std::string kKnownHeader = bytes({
    0xC1, 0xD9,                                      // magic
    0x01,                                            // version
    0xA2,                                            // type: StatusRequest
    0x01,                                            // flags: AckRequired
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,  // seq
    0x00, 0x00, 0x00, 0x05,                          // payload length
});

TEST(MgmtFrame, EncodesTheKnownHeaderBytes) {
  std::string out;
  ASSERT_TRUE(append_mgmt_frame(out, 0xA2, 0x0102030405060708ULL, "hello", kMgmtFlagAckRequired).is_ok());
  ASSERT_EQ(out.size(), 17U + 5U);
  EXPECT_EQ(out.substr(0, 17), kKnownHeader);
  EXPECT_EQ(out.substr(17), "hello");

  const auto header = encode_mgmt_header({0xA2, kMgmtFlagAckRequired, 0x0102030405060708ULL, 5});
  EXPECT_EQ(std::string(header.begin(), header.end()), kKnownHeader);
}

TEST(MgmtFrame, LengthFieldIsBigEndianUint32) {
  const auto header = encode_mgmt_header({0xA1, 0, 0, 0x00ABCDEF});
  EXPECT_EQ(std::string(header.begin() + 13, header.end()), bytes({0x00, 0xAB, 0xCD, 0xEF}));
}

TEST(MgmtFrame, AppendsToExistingOutput) {
  std::string out = "before";
  ASSERT_TRUE(append_mgmt_frame(out, 0xA0, 7, "").is_ok());
  EXPECT_EQ(out.size(), 6U + 17U);
  EXPECT_EQ(out.substr(0, 6), "before");
}

TEST(MgmtFrame, DecodesTheKnownHeader) {
  MgmtFrameError error = MgmtFrameError::kTruncatedPayload;
  auto header = decode_mgmt_header(kKnownHeader + "trailing bytes ignored", kMgmtMaxPayload, &error);
  ASSERT_TRUE(header.is_ok()) << header.status().to_string();
  EXPECT_EQ(*header, (MgmtFrameHeader{0xA2, kMgmtFlagAckRequired, 0x0102030405060708ULL, 5}));
  EXPECT_EQ(error, MgmtFrameError::kTruncatedPayload);  // untouched on success
}

TEST(MgmtFrame, PassesUnknownFlagBitsThrough) {
  std::string out;
  ASSERT_TRUE(append_mgmt_frame(out, 0xAF, 9, "", 0xF0).is_ok());
  auto header = decode_mgmt_header(out);
  ASSERT_TRUE(header.is_ok());
  EXPECT_EQ(header->flags, 0xF0);
}

struct HeaderErrorCase {
  const char* name;
  std::string input;
  uint32_t max_payload;
  MgmtFrameError error;
  StatusCode code;
  std::string message;
};

TEST(MgmtFrame, NamesEachHeaderError) {
  std::string bad_magic = kKnownHeader;
  bad_magic[0] = '\x12';
  bad_magic[1] = '\x34';
  std::string bad_version = kKnownHeader;
  bad_version[2] = '\x02';
  const std::string too_large = header_bytes({0xA1, 0, 3, 17825792});
  const HeaderErrorCase cases[] = {
      {"empty", "", kMgmtMaxPayload, MgmtFrameError::kShortHeader, StatusCode::kDataLoss, "short header: 0 of 17 bytes"},
      {"short", kKnownHeader.substr(0, 5), kMgmtMaxPayload, MgmtFrameError::kShortHeader, StatusCode::kDataLoss,
       "short header: 5 of 17 bytes"},
      {"one short", kKnownHeader.substr(0, 16), kMgmtMaxPayload, MgmtFrameError::kShortHeader, StatusCode::kDataLoss,
       "short header: 16 of 17 bytes"},
      {"bad magic", bad_magic, kMgmtMaxPayload, MgmtFrameError::kBadMagic, StatusCode::kInvalidArgument,
       "bad magic 0x1234, expected 0xc1d9"},
      {"bad magic, short", bad_magic.substr(0, 2), kMgmtMaxPayload, MgmtFrameError::kBadMagic,
       StatusCode::kInvalidArgument, "bad magic 0x1234, expected 0xc1d9"},
      {"bad version", bad_version, kMgmtMaxPayload, MgmtFrameError::kBadVersion, StatusCode::kInvalidArgument,
       "unsupported protocol version 2"},
      {"bad version, short", bad_version.substr(0, 3), kMgmtMaxPayload, MgmtFrameError::kBadVersion,
       StatusCode::kInvalidArgument, "unsupported protocol version 2"},
      {"too large", too_large, kMgmtMaxPayload, MgmtFrameError::kTooLarge, StatusCode::kOutOfRange,
       "payload length 17825792 exceeds 16777216"},
      {"over custom max", kKnownHeader, 4, MgmtFrameError::kTooLarge, StatusCode::kOutOfRange,
       "payload length 5 exceeds 4"},
  };
  for (const HeaderErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    MgmtFrameError error{};
    auto header = decode_mgmt_header(c.input, c.max_payload, &error);
    ASSERT_FALSE(header.is_ok());
    EXPECT_EQ(error, c.error) << mgmt_frame_error_name(error);
    EXPECT_EQ(header.status().code(), c.code);
    EXPECT_EQ(header.status().message(), c.message);
  }
}

TEST(MgmtFrame, MaxPayloadIsInclusive) {
  auto at_max = decode_mgmt_header(header_bytes({0xA1, 0, 0, kMgmtMaxPayload}));
  ASSERT_TRUE(at_max.is_ok());
  EXPECT_EQ(at_max->length, 16U * 1024 * 1024);
  MgmtFrameError error{};
  auto over = decode_mgmt_header(header_bytes({0xA1, 0, 0, kMgmtMaxPayload + 1}), kMgmtMaxPayload, &error);
  EXPECT_EQ(over.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(error, MgmtFrameError::kTooLarge);
}

TEST(MgmtFrame, EncoderRefusesPayloadOverMax) {
  std::string out = "keep";
  const Status status = append_mgmt_frame(out, 0xA1, 1, "12345", 0, 4);
  EXPECT_EQ(status.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(status.message(), "payload length 5 exceeds 4");
  EXPECT_EQ(out, "keep");
  EXPECT_TRUE(append_mgmt_frame(out, 0xA1, 1, "1234", 0, 4).is_ok());
}

TEST(MgmtFrame, InPlacePayloadMatchesAppend) {
  std::string expected = "x";
  ASSERT_TRUE(append_mgmt_frame(expected, 0xA4, 42, "payload", kMgmtFlagAckRequired).is_ok());
  std::string out = "x";
  const size_t start = begin_mgmt_frame(out, 0xA4, 42, kMgmtFlagAckRequired);
  EXPECT_EQ(start, 1U);
  out += "payload";
  ASSERT_TRUE(end_mgmt_frame(out, start).is_ok());
  EXPECT_EQ(out, expected);
}

TEST(MgmtFrame, InPlacePayloadOverMaxRemovesThePartialFrame) {
  std::string out = "earlier frames";
  const size_t start = begin_mgmt_frame(out, 0xA5, 1);
  out += "too long";
  const Status status = end_mgmt_frame(out, start, 7);
  EXPECT_EQ(status.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(out, "earlier frames");
}

TEST(MgmtFrame, ErrorNamesAreDistinct) {
  const MgmtFrameError all[] = {MgmtFrameError::kShortHeader, MgmtFrameError::kBadMagic, MgmtFrameError::kBadVersion,
                                MgmtFrameError::kTooLarge, MgmtFrameError::kTruncatedPayload};
  std::vector<std::string_view> names;
  for (const MgmtFrameError e : all) names.push_back(mgmt_frame_error_name(e));
  EXPECT_EQ(names, (std::vector<std::string_view>{"short_header", "bad_magic", "bad_version", "too_large",
                                                   "truncated_payload"}));
}

TEST(MgmtFrameDecoder, DecodesManyFramesBackToBack) {
  std::vector<Frame> frames;
  for (uint64_t i = 0; i < 1000; ++i) {
    frames.push_back(frame(static_cast<uint8_t>(0xA0 + i % 16), i, pattern(i % 50, static_cast<char>(i)),
                           static_cast<uint8_t>(i % 8)));
  }
  MgmtFrameDecoder decoder;
  decoder.feed(encode_all(frames));
  std::vector<Frame> got;
  drain(decoder, got);
  EXPECT_EQ(got, frames);
  EXPECT_TRUE(decoder.finish().is_ok());
  EXPECT_FALSE(decoder.error().has_value());
}

TEST(MgmtFrameDecoder, SameOutputWhateverTheSplitPoint) {
  const std::vector<Frame> frames = mixed_frames();
  const std::string stream = encode_all(frames);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    MgmtFrameDecoder decoder;
    std::vector<Frame> got;
    decoder.feed(std::string_view(stream).substr(0, cut));
    drain(decoder, got);
    decoder.feed(std::string_view(stream).substr(cut));
    drain(decoder, got);
    ASSERT_EQ(got, frames) << "cut at " << cut;
    ASSERT_TRUE(decoder.finish().is_ok()) << "cut at " << cut;
  }
}

TEST(MgmtFrameDecoder, SameOutputFedOneByteAtATime) {
  const std::vector<Frame> frames = mixed_frames();
  const std::string stream = encode_all(frames);
  MgmtFrameDecoder decoder;
  std::vector<Frame> got;
  for (const char c : stream) {
    decoder.feed(std::string_view(&c, 1));
    drain(decoder, got);
  }
  EXPECT_EQ(got, frames);
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(MgmtFrameDecoder, SameOutputReadingIntoPrepare) {
  const std::vector<Frame> frames = mixed_frames();
  const std::string stream = encode_all(frames);
  MgmtFrameDecoder decoder;
  std::vector<Frame> got;
  constexpr size_t kRead = 1000;
  for (size_t pos = 0; pos < stream.size();) {
    const std::span<char> room = decoder.prepare(kRead);
    ASSERT_GE(room.size(), kRead);
    const size_t n = std::min(kRead, stream.size() - pos);
    std::memcpy(room.data(), stream.data() + pos, n);
    decoder.commit(n);
    pos += n;
    drain(decoder, got);
  }
  EXPECT_EQ(got, frames);
}

TEST(MgmtFrameDecoder, TooLargeIsReportedFromTheHeaderAlone) {
  MgmtFrameDecoder decoder;
  decoder.feed(header_bytes({0xA2, kMgmtFlagAckRequired, 77, kMgmtMaxPayload + 1}));  // no payload at all
  auto next = decoder.next();
  ASSERT_FALSE(next.is_ok());
  EXPECT_EQ(next.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(next.status().message(), "payload length 16777217 exceeds 16777216");
  EXPECT_EQ(decoder.error(), MgmtFrameError::kTooLarge);
  // The reply to the offending request can echo its sequence number.
  ASSERT_TRUE(decoder.rejected_header().has_value());
  EXPECT_EQ(decoder.rejected_header()->seq, 77U);
  EXPECT_EQ(decoder.rejected_header()->type, 0xA2);
  EXPECT_LT(decoder.capacity(), size_t{kMgmtMaxPayload});
}

TEST(MgmtFrameDecoder, MaxPayloadIsInclusive) {
  MgmtFrameDecoder decoder(1024);
  std::vector<Frame> got;
  const Frame at_max = frame(0xA1, 1, pattern(1024, 'm'));
  decoder.feed(encode_all({at_max}));
  drain(decoder, got);
  EXPECT_EQ(got, std::vector<Frame>{at_max});

  decoder.feed(encode_all({frame(0xA1, 2, pattern(1025, 'm'))}));
  EXPECT_EQ(decoder.next().status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(decoder.error(), MgmtFrameError::kTooLarge);
}

TEST(MgmtFrameDecoder, DefaultMaxAcceptsA16MiBPayload) {
  MgmtFrameDecoder decoder;
  const Frame big = frame(0xA5, 3, pattern(kMgmtMaxPayload, 'z'));
  decoder.feed(encode_all({big}));
  std::vector<Frame> got;
  drain(decoder, got);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_TRUE(got[0] == big);
}

TEST(MgmtFrameDecoder, BadMagicIsReportedFromTwoBytes) {
  MgmtFrameDecoder decoder;
  decoder.feed("GE");  // e.g. someone speaking HTTP to the socket
  auto next = decoder.next();
  ASSERT_FALSE(next.is_ok());
  EXPECT_EQ(next.status().message(), "bad magic 0x4745, expected 0xc1d9");
  EXPECT_EQ(decoder.error(), MgmtFrameError::kBadMagic);
  EXPECT_FALSE(decoder.rejected_header().has_value());
}

TEST(MgmtFrameDecoder, BadVersionIsReportedFromThreeBytes) {
  MgmtFrameDecoder decoder;
  decoder.feed(bytes({0xC1, 0xD9, 0x02}));
  auto next = decoder.next();
  ASSERT_FALSE(next.is_ok());
  EXPECT_EQ(next.status().message(), "unsupported protocol version 2");
  EXPECT_EQ(decoder.error(), MgmtFrameError::kBadVersion);
}

TEST(MgmtFrameDecoder, BadMagicAfterAGoodFrame) {
  MgmtFrameDecoder decoder;
  decoder.feed(encode_all({frame(0xA0, 1, "")}) + "\xC1\xDA");
  auto first = decoder.next();
  ASSERT_TRUE(first.is_ok() && first->has_value());
  EXPECT_EQ(decoder.next().status().message(), "bad magic 0xc1da, expected 0xc1d9");
}

TEST(MgmtFrameDecoder, FinishIsCleanBetweenFrames) {
  MgmtFrameDecoder decoder;
  EXPECT_TRUE(decoder.finish().is_ok());
  decoder.feed(encode_all(mixed_frames()));
  std::vector<Frame> got;
  drain(decoder, got);
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(MgmtFrameDecoder, FinishInsideAHeaderIsShortHeader) {
  MgmtFrameDecoder decoder;
  decoder.feed(kKnownHeader.substr(0, 5));
  std::vector<Frame> got;
  drain(decoder, got);
  const Status status = decoder.finish();
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(status.message(), "short header: 5 of 17 bytes");
  EXPECT_EQ(decoder.error(), MgmtFrameError::kShortHeader);
}

TEST(MgmtFrameDecoder, FinishInsideAPayloadIsTruncatedPayload) {
  const std::string stream = encode_all({frame(0xA1, 5, pattern(42, 'p'))});
  MgmtFrameDecoder decoder;
  decoder.feed(std::string_view(stream).substr(0, 17 + 10));
  std::vector<Frame> got;
  drain(decoder, got);
  EXPECT_TRUE(got.empty());
  const Status status = decoder.finish();
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(status.message(), "truncated payload: 10 of 42 bytes");
  EXPECT_EQ(decoder.error(), MgmtFrameError::kTruncatedPayload);
}

TEST(MgmtFrameDecoder, FinishRightAfterAHeaderIsTruncatedPayload) {
  MgmtFrameDecoder decoder;
  decoder.feed(kKnownHeader);
  EXPECT_EQ(decoder.finish().message(), "truncated payload: 0 of 5 bytes");
}

TEST(MgmtFrameDecoder, FinishBeforeDrainingIsACallerError) {
  MgmtFrameDecoder decoder;
  decoder.feed(encode_all({frame(0xA0, 1, "")}));
  EXPECT_EQ(decoder.finish().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(decoder.failed());
}

TEST(MgmtFrameDecoder, ErrorsAreFinal) {
  MgmtFrameDecoder decoder;
  decoder.feed(bytes({0x00, 0x00}));
  const Status error = decoder.next().status();
  ASSERT_EQ(error.code(), StatusCode::kInvalidArgument);
  decoder.feed(encode_all({frame(0xA0, 1, "")}));
  EXPECT_EQ(decoder.next().status(), error);
  EXPECT_EQ(decoder.finish(), error);
  EXPECT_EQ(decoder.error(), MgmtFrameError::kBadMagic);
  EXPECT_EQ(decoder.buffered_bytes(), 0U);
}

TEST(MgmtFrameDecoder, CapacityStaysBoundedOverALongStream) {
  std::string stream;
  for (uint64_t i = 0; i < 50000; ++i) {
    ASSERT_TRUE(append_mgmt_frame(stream, 0xA7, i, pattern((i * 31) % 200, static_cast<char>(i))).is_ok());
  }
  MgmtFrameDecoder decoder;
  size_t count = 0;
  size_t max_capacity = 0;
  constexpr size_t kChunk = 1500;
  for (size_t pos = 0; pos < stream.size(); pos += kChunk) {
    decoder.feed(std::string_view(stream).substr(pos, kChunk));
    for (;;) {
      auto next = decoder.next();
      ASSERT_TRUE(next.is_ok());
      if (!next->has_value()) break;
      ASSERT_EQ((*next)->header.seq, count);
      ++count;
    }
    max_capacity = std::max(max_capacity, decoder.capacity());
  }
  EXPECT_EQ(count, 50000U);
  EXPECT_LE(max_capacity, size_t{16} << 10);
}

}  // namespace
}  // namespace agentry::wire
