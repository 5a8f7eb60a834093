#include "agentry/wire/delimited.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agentry/wire/uvarint.h"

namespace agentry::wire {
namespace {

using ::testing::HasSubstr;

// Deterministic, position-dependent content so that a shifted or mixed-up byte shows.
std::string pattern(size_t size, char seed) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(seed + static_cast<char>(i * 7 + i / 251));
  return s;
}

std::string encode_all(const std::vector<std::string>& messages) {
  std::string out;
  for (const std::string& m : messages) append_delimited(out, m);
  return out;
}

// Takes every complete message now available; fails the test on a decoder error.
void drain(DelimitedDecoder& decoder, std::vector<std::string>& out) {
  for (;;) {
    auto next = decoder.next();
    ASSERT_TRUE(next.is_ok()) << next.status().to_string();
    if (!next->has_value()) return;
    out.emplace_back(**next);
  }
}

// The mixed set the splitting tests use: empty, tiny, a two-byte prefix, a three-byte prefix.
std::vector<std::string> mixed_messages() {
  return {"", "a", pattern(200, 'x'), "", pattern(20000, 'q'), "tail", pattern(127, 'm'), pattern(128, 'n')};
}

TEST(AppendDelimited, WritesVarintLengthThenBytes) {
  std::string out;
  append_delimited(out, "");
  append_delimited(out, "abc");
  EXPECT_EQ(out, std::string("\x00\x03" "abc", 5));

  std::string big;
  append_delimited(big, std::string(300, 'z'));
  ASSERT_EQ(big.size(), 302U);
  EXPECT_EQ(big.substr(0, 2), "\xac\x02");
  EXPECT_EQ(big.substr(2), std::string(300, 'z'));
}

TEST(AppendDelimited, InPlaceSerializationMatchesCopyingEncoder) {
  for (const size_t len : {size_t{0}, size_t{5}, size_t{127}, size_t{128}, size_t{300}, size_t{70000}}) {
    SCOPED_TRACE(len);
    const std::string message = pattern(len, 'k');
    std::string expected = "existing";
    append_delimited(expected, message);

    std::string out = "existing";
    char* dst = append_delimited_uninitialized(out, len);
    ASSERT_EQ(out.size(), expected.size());
    // The returned pointer is where the message bytes go: right after the length prefix.
    EXPECT_EQ(dst, out.data() + 8 + uvarint_size(len));
    EXPECT_EQ(static_cast<size_t>(out.data() + out.size() - dst), len);
    if (len > 0) std::memcpy(dst, message.data(), len);
    EXPECT_EQ(out, expected);
  }
}

TEST(DelimitedDecoder, RoundTripsManyMessagesFromOneBuffer) {
  std::vector<std::string> messages;
  for (size_t i = 0; i < 1000; ++i) messages.push_back(pattern(i % 300, static_cast<char>(i)));
  DelimitedDecoder decoder;
  decoder.feed(encode_all(messages));
  std::vector<std::string> got;
  drain(decoder, got);
  EXPECT_EQ(got, messages);
  EXPECT_EQ(decoder.buffered_bytes(), 0U);
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(DelimitedDecoder, NeedsMoreBeforeAnyInput) {
  DelimitedDecoder decoder;
  auto next = decoder.next();
  ASSERT_TRUE(next.is_ok());
  EXPECT_FALSE(next->has_value());
  decoder.feed("");
  next = decoder.next();
  ASSERT_TRUE(next.is_ok());
  EXPECT_FALSE(next->has_value());
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(DelimitedDecoder, SameOutputWhateverTheSplitPoint) {
  const std::vector<std::string> messages = mixed_messages();
  const std::string stream = encode_all(messages);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    DelimitedDecoder decoder;
    std::vector<std::string> got;
    decoder.feed(std::string_view(stream).substr(0, cut));
    drain(decoder, got);
    decoder.feed(std::string_view(stream).substr(cut));
    drain(decoder, got);
    ASSERT_EQ(got, messages) << "cut at " << cut;
    ASSERT_TRUE(decoder.finish().is_ok()) << "cut at " << cut;
  }
}

TEST(DelimitedDecoder, SameOutputFedOneByteAtATime) {
  const std::vector<std::string> messages = mixed_messages();
  const std::string stream = encode_all(messages);
  DelimitedDecoder decoder;
  std::vector<std::string> got;
  for (const char c : stream) {
    decoder.feed(std::string_view(&c, 1));
    drain(decoder, got);
  }
  EXPECT_EQ(got, messages);
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(DelimitedDecoder, SameOutputReadingIntoPrepare) {
  const std::vector<std::string> messages = mixed_messages();
  const std::string stream = encode_all(messages);
  for (const size_t read_size : {size_t{1}, size_t{3}, size_t{100}, size_t{4096}, size_t{65536}}) {
    SCOPED_TRACE(read_size);
    DelimitedDecoder decoder;
    std::vector<std::string> got;
    for (size_t pos = 0; pos < stream.size();) {
      const std::span<char> room = decoder.prepare(read_size);
      ASSERT_GE(room.size(), read_size);
      const size_t n = std::min(read_size, stream.size() - pos);
      std::memcpy(room.data(), stream.data() + pos, n);
      decoder.commit(n);
      pos += n;
      drain(decoder, got);
    }
    EXPECT_EQ(got, messages);
    EXPECT_TRUE(decoder.finish().is_ok());
  }
}

TEST(DelimitedDecoder, ReturnsViewsIntoItsBufferWithoutCopying) {
  DelimitedDecoder decoder;
  decoder.feed(encode_all({"first", "second"}));
  auto a = decoder.next();
  auto b = decoder.next();
  ASSERT_TRUE(a.is_ok() && a->has_value());
  ASSERT_TRUE(b.is_ok() && b->has_value());
  // Back to back in one buffer: the second view starts right after the first one's bytes
  // and the second's one-byte length prefix.
  EXPECT_EQ(**a, "first");
  EXPECT_EQ(**b, "second");
  EXPECT_EQ((*b)->data(), (*a)->data() + 5 + 1);
}

TEST(DelimitedDecoder, OverMaxIsReportedFromTheLengthPrefixAlone) {
  DelimitedDecoder decoder(1000);
  std::string prefix;
  append_uvarint(prefix, 1001);
  decoder.feed(prefix);  // no message bytes at all
  auto next = decoder.next();
  ASSERT_FALSE(next.is_ok());
  EXPECT_EQ(next.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(next.status().message(), "message length 1001 bytes exceeds the maximum of 1000 bytes");
  EXPECT_TRUE(decoder.failed());
}

TEST(DelimitedDecoder, MaxSizeIsInclusive) {
  DelimitedDecoder decoder(1000);
  const std::string message = pattern(1000, 'e');
  decoder.feed(encode_all({message}));
  std::vector<std::string> got;
  drain(decoder, got);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0], message);
}

TEST(DelimitedDecoder, ZeroMaxAllowsOnlyEmptyMessages) {
  DelimitedDecoder decoder(0);
  decoder.feed(std::string("\x00\x00", 2));
  std::vector<std::string> got;
  drain(decoder, got);
  EXPECT_EQ(got, (std::vector<std::string>{"", ""}));
  decoder.feed("\x01x");
  EXPECT_EQ(decoder.next().status().code(), StatusCode::kOutOfRange);
}

TEST(DelimitedDecoder, OverlongVarintIsInvalidArgument) {
  DelimitedDecoder decoder;
  decoder.feed(std::string(11, '\xff'));
  auto next = decoder.next();
  ASSERT_FALSE(next.is_ok());
  EXPECT_EQ(next.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(next.status().message(), HasSubstr("longer than 10 bytes"));
}

TEST(DelimitedDecoder, OverflowingVarintIsInvalidArgument) {
  DelimitedDecoder decoder;
  decoder.feed(std::string(9, '\xff') + '\x02');
  auto next = decoder.next();
  ASSERT_FALSE(next.is_ok());
  EXPECT_EQ(next.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(next.status().message(), HasSubstr("overflows 64 bits"));
  EXPECT_THAT(next.status().message(), HasSubstr("ff ff ff ff ff ff ff ff ff 02"));
}

TEST(DelimitedDecoder, ErrorsAreFinal) {
  DelimitedDecoder decoder(10);
  decoder.feed("\x05hello\x0b");  // a good message, then a length of 11
  auto first = decoder.next();
  ASSERT_TRUE(first.is_ok() && first->has_value());
  EXPECT_EQ(**first, "hello");
  const Status error = decoder.next().status();
  ASSERT_EQ(error.code(), StatusCode::kOutOfRange);

  decoder.feed("\x02ok");  // valid input after the error changes nothing
  EXPECT_EQ(decoder.next().status(), error);
  EXPECT_EQ(decoder.finish(), error);
  EXPECT_EQ(decoder.status(), error);
  EXPECT_EQ(decoder.buffered_bytes(), 0U);
}

TEST(DelimitedDecoder, FinishIsCleanBetweenMessages) {
  DelimitedDecoder decoder;
  EXPECT_TRUE(decoder.finish().is_ok());  // empty stream
  decoder.feed(encode_all({"one", "", "three"}));
  std::vector<std::string> got;
  drain(decoder, got);
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(DelimitedDecoder, FinishInsideAMessageSaysHowManyBytesAreMissing) {
  const std::string stream = encode_all({pattern(100, 'r')});  // 1-byte prefix + 100
  struct Case {
    size_t fed;
    std::string message;
  };
  const Case cases[] = {
      {1, "unexpected EOF, expected 100 more bytes (got 0 of a 100-byte message)"},
      {43, "unexpected EOF, expected 58 more bytes (got 42 of a 100-byte message)"},
      {100, "unexpected EOF, expected 1 more bytes (got 99 of a 100-byte message)"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.fed);
    DelimitedDecoder decoder;
    decoder.feed(std::string_view(stream).substr(0, c.fed));
    std::vector<std::string> got;
    drain(decoder, got);
    EXPECT_TRUE(got.empty());
    const Status status = decoder.finish();
    EXPECT_EQ(status.code(), StatusCode::kDataLoss);
    EXPECT_EQ(status.message(), c.message);
    EXPECT_TRUE(decoder.failed());
  }
}

TEST(DelimitedDecoder, FinishCountsOnlyTheMessageBytesOfALongPrefix) {
  const std::string stream = encode_all({"ok", pattern(20000, 'w')});  // 3-byte prefix
  DelimitedDecoder decoder;
  decoder.feed(std::string_view(stream).substr(0, 3 + 3 + 500));
  std::vector<std::string> got;
  drain(decoder, got);
  EXPECT_EQ(got, std::vector<std::string>{"ok"});
  EXPECT_EQ(decoder.finish().message(), "unexpected EOF, expected 19500 more bytes (got 500 of a 20000-byte message)");
}

TEST(DelimitedDecoder, FinishInsideALengthPrefixSaysSo) {
  DelimitedDecoder decoder;
  decoder.feed("\x80\x80");
  std::vector<std::string> got;
  drain(decoder, got);
  const Status status = decoder.finish();
  EXPECT_EQ(status.code(), StatusCode::kDataLoss);
  EXPECT_THAT(status.message(), HasSubstr("unexpected EOF inside a message length prefix"));
  EXPECT_THAT(status.message(), HasSubstr("2 varint bytes"));
}

TEST(DelimitedDecoder, FinishBeforeDrainingIsACallerError) {
  DelimitedDecoder decoder;
  decoder.feed(encode_all({"pending"}));
  EXPECT_EQ(decoder.finish().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(decoder.failed());  // the stream itself is fine
  std::vector<std::string> got;
  drain(decoder, got);
  EXPECT_EQ(got, std::vector<std::string>{"pending"});
  EXPECT_TRUE(decoder.finish().is_ok());
}

TEST(DelimitedDecoder, FinishReportsLimitErrorsSeenOnlyThere) {
  DelimitedDecoder decoder(10);
  decoder.feed("\x0b");  // finish() without next(): the length is still checked
  EXPECT_EQ(decoder.finish().code(), StatusCode::kOutOfRange);
}

TEST(DelimitedDecoder, CapacityStaysBoundedOverALongStream) {
  // 100k messages of 0..299 bytes (about 15 MB) in 4093-byte chunks, drained as they come.
  // Without reuse of consumed space the buffer would grow to hold the whole stream.
  std::string stream;
  size_t count = 0;
  for (size_t i = 0; i < 100000; ++i) {
    append_delimited(stream, pattern((i * 37) % 300, static_cast<char>(i)));
  }
  DelimitedDecoder decoder;
  size_t max_capacity = 0;
  constexpr size_t kChunk = 4093;
  for (size_t pos = 0; pos < stream.size(); pos += kChunk) {
    decoder.feed(std::string_view(stream).substr(pos, kChunk));
    for (;;) {
      auto next = decoder.next();
      ASSERT_TRUE(next.is_ok());
      if (!next->has_value()) break;
      ++count;
    }
    max_capacity = std::max(max_capacity, decoder.capacity());
  }
  EXPECT_EQ(count, 100000U);
  EXPECT_TRUE(decoder.finish().is_ok());
  EXPECT_LE(max_capacity, size_t{16} << 10);
}

TEST(DelimitedDecoder, LargeMessageReservesItsSizeOnce) {
  const std::string message = pattern(size_t{3} << 20, 'L');
  const std::string stream = encode_all({message});
  DelimitedDecoder decoder(size_t{4} << 20);
  constexpr size_t kChunk = 4096;
  decoder.feed(std::string_view(stream).substr(0, kChunk));
  ASSERT_FALSE(decoder.next()->has_value());  // learns the length here
  decoder.feed(std::string_view(stream).substr(kChunk, kChunk));
  const size_t reserved = decoder.capacity();
  EXPECT_GE(reserved, stream.size());
  // Room for the frame plus bounded slack, not a doubling.
  EXPECT_LE(reserved, stream.size() + detail::StreamBuffer::kFrameSlack);

  const char* where = nullptr;
  std::vector<std::string> got;
  for (size_t pos = 2 * kChunk; pos < stream.size(); pos += kChunk) {
    decoder.feed(std::string_view(stream).substr(pos, kChunk));
    ASSERT_EQ(decoder.capacity(), reserved) << "reallocated at " << pos;
    auto next = decoder.next();
    ASSERT_TRUE(next.is_ok());
    if (next->has_value()) {
      where = (*next)->data();
      got.emplace_back(**next);
    }
  }
  ASSERT_EQ(got.size(), 1U);
  EXPECT_NE(where, nullptr);
  EXPECT_TRUE(got[0] == message);
}

TEST(DelimitedDecoder, DeclaredLengthOverMaxReservesNothing) {
  DelimitedDecoder decoder(size_t{1} << 20);
  std::string prefix;
  append_uvarint(prefix, (size_t{1} << 20) + 1);
  decoder.feed(prefix);
  EXPECT_EQ(decoder.next().status().code(), StatusCode::kOutOfRange);
  decoder.feed(std::string(1000, 'x'));
  EXPECT_LT(decoder.capacity(), size_t{1} << 20);
}

TEST(DelimitedDecoder, GivesBackMemoryAfterALargeMessage) {
  DelimitedDecoder decoder;
  std::vector<std::string> got;
  decoder.feed(encode_all({pattern(size_t{8} << 20, 'B')}));
  drain(decoder, got);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_GE(decoder.capacity(), size_t{8} << 20);
  for (int i = 0; i < 10; ++i) {
    decoder.feed(encode_all({"small", "messages"}));
    drain(decoder, got);
  }
  EXPECT_EQ(got.size(), 21U);
  EXPECT_LE(decoder.capacity(), detail::StreamBuffer::kMaxRetainedCapacity);
}

TEST(DelimitedDecoder, FeedCopiesSoTheCallerMayReuseItsBuffer) {
  DelimitedDecoder decoder;
  std::string chunk = encode_all({"abc"}).substr(0, 3);  // "\x03ab"
  decoder.feed(chunk);
  chunk.assign("XXXX");  // overwrite the caller's buffer before the message completes
  decoder.feed("c");
  auto next = decoder.next();
  ASSERT_TRUE(next.is_ok() && next->has_value());
  EXPECT_EQ(**next, "abc");
}

}  // namespace
}  // namespace agentry::wire
