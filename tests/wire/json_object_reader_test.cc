#include "agentry/wire/json_object_reader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace agentry::wire {
namespace {

using ::testing::HasSubstr;
using State = JsonObjectReader::State;

// Outcome of feeding a stream in pieces, with the completion point expressed as an
// offset into the whole stream so different splits can be compared.
struct Outcome {
  State state = State::kNeedMore;
  std::size_t end = 0;  // stream offset one past the object (kComplete) or of the bad byte (kError)
  std::string object;
  Status status;

  friend bool operator==(const Outcome&, const Outcome&) = default;
  friend void PrintTo(const Outcome& o, std::ostream* os) {
    *os << "{state=" << static_cast<int>(o.state) << " end=" << o.end
        << " object=" << ::testing::PrintToString(o.object) << " status=" << o.status.to_string() << "}";
  }
};

Outcome read_chunks(const std::vector<std::string_view>& chunks, JsonObjectReaderOptions options = {}) {
  JsonObjectReader reader(options);
  Outcome out;
  std::size_t offset = 0;
  for (const std::string_view chunk : chunks) {
    const JsonObjectReader::Progress progress = reader.feed(chunk);
    out.state = progress.state;
    if (progress.state != State::kNeedMore) {
      out.end = offset + progress.consumed;
      break;
    }
    EXPECT_EQ(progress.consumed, chunk.size());
    offset += chunk.size();
  }
  EXPECT_EQ(reader.state(), out.state);
  out.object = std::string(reader.buffered());
  out.status = reader.status();
  return out;
}

Outcome read_whole(std::string_view stream, JsonObjectReaderOptions options = {}) {
  return read_chunks({stream}, options);
}

std::vector<std::string_view> bytes_of(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t i = 0; i < s.size(); ++i) out.push_back(s.substr(i, 1));
  return out;
}

// Expects `stream` to hold a complete object of exactly `object_size` bytes after
// `leading` bytes of whitespace.
void expect_complete(std::string_view stream, std::size_t leading, std::size_t object_size) {
  SCOPED_TRACE(::testing::PrintToString(std::string(stream)));
  const Outcome whole = read_whole(stream);
  ASSERT_EQ(whole.state, State::kComplete) << whole.status.to_string();
  EXPECT_EQ(whole.end, leading + object_size);
  EXPECT_EQ(whole.object, stream.substr(leading, object_size));
  EXPECT_TRUE(whole.status.is_ok());
  EXPECT_EQ(read_chunks(bytes_of(stream)), whole);
}

void expect_complete(std::string_view object) { expect_complete(object, 0, object.size()); }

// --- framing --------------------------------------------------------------------------

TEST(JsonObjectReaderTest, EmptyObject) { expect_complete("{}"); }

TEST(JsonObjectReaderTest, FlatObject) {
  expect_complete(R"({"Command":"restart","name":"web","n":1.5e3,"ok":true})");
}

TEST(JsonObjectReaderTest, BracesAndBracketsInsideStrings) {
  expect_complete(R"({"a":"}"})");
  expect_complete(R"({"a":"{"})");
  expect_complete(R"({"}":"]","[":"{{{{","x":"]]]}}}"})");
}

TEST(JsonObjectReaderTest, EscapedQuoteDoesNotEndString) {
  expect_complete(R"({"a":"a\"}"})");
  expect_complete(R"({"a":"\"","b":"\"}\""})");
}

TEST(JsonObjectReaderTest, EscapedBackslashBeforeClosingQuote) {
  // `\\` is a complete escape, so the following quote closes the string.
  expect_complete(R"({"a":"a\\"})");
  expect_complete(R"({"a":"\\\\"})");
  expect_complete(R"({"a":"\\\"}"})");
  expect_complete(R"({"a\\":"b"})");
}

TEST(JsonObjectReaderTest, UnicodeAndOtherEscapes) {
  expect_complete(R"({"a":"\u007d\u005D\u0022","b":"\n\t\/\b\f\r"})");
  expect_complete("{\"a\":\"caf\xC3\xA9 \xF0\x9F\x98\x80 }\"}");
}

TEST(JsonObjectReaderTest, NestedObjectsAndArrays) {
  expect_complete(R"({"a":[{"b":[1,2,{"c":{}}]},[],[[]]],"d":{"e":{"f":[{}]}}})");
}

TEST(JsonObjectReaderTest, WhitespaceBeforeObjectIsSkipped) {
  expect_complete(" \t\r\n {\"a\": 1}", 5, 8);
  // Whitespace alone is not an error yet.
  const Outcome o = read_whole("  \n ");
  EXPECT_EQ(o.state, State::kNeedMore);
  EXPECT_EQ(o.object, "");
}

TEST(JsonObjectReaderTest, TrailingBytesAreLeftToTheCaller) {
  const std::string stream = R"({"a":"}"} {"next":1} garbage ] })";
  JsonObjectReader reader;
  const auto progress = reader.feed(stream);
  ASSERT_EQ(progress.state, State::kComplete);
  EXPECT_EQ(progress.consumed, 9u);
  EXPECT_EQ(reader.buffered(), R"({"a":"}"})");
  EXPECT_EQ(reader.bytes_consumed(), 9u);
  // Once complete the reader takes nothing more.
  const auto again = reader.feed("]]]");
  EXPECT_EQ(again.state, State::kComplete);
  EXPECT_EQ(again.consumed, 0u);
  EXPECT_EQ(reader.buffered(), R"({"a":"}"})");
}

TEST(JsonObjectReaderTest, CompletionOffsetIsWithinTheFinalChunk) {
  JsonObjectReader reader;
  EXPECT_EQ(reader.feed("  {\"a\":").state, State::kNeedMore);
  EXPECT_EQ(reader.feed("").state, State::kNeedMore);
  const auto progress = reader.feed("[1]}\n{");
  ASSERT_EQ(progress.state, State::kComplete);
  EXPECT_EQ(progress.consumed, 4u);
  EXPECT_EQ(reader.buffered(), "{\"a\":[1]}");
  EXPECT_EQ(reader.bytes_consumed(), 11u);
}

TEST(JsonObjectReaderTest, NoCompletionWhileOpen) {
  for (const std::string_view partial :
       {R"({)", R"({"a":"}")", R"({"a":"\")", R"({"a":{})", R"({"a":[{}])"}) {
    JsonObjectReader reader;
    EXPECT_EQ(reader.feed(partial).state, State::kNeedMore) << partial;
  }
}

// --- errors ---------------------------------------------------------------------------

TEST(JsonObjectReaderTest, NotAnObjectIsRejected) {
  struct Case {
    std::string_view stream;
    std::size_t offset;
    std::string_view found;
  };
  for (const Case& c : {Case{"[1,2]", 0, "'['"}, Case{"\"str\"", 0, "'\"'"}, Case{"  \n x{}", 4, "'x'"},
                        Case{"\xEF\xBB\xBF{}", 0, "byte 0xEF"}, Case{"\x01{}", 0, "byte 0x01"},
                        Case{"\x7f{}", 0, "byte 0x7F"}, Case{"}", 0, "'}'"}}) {
    JsonObjectReader reader;
    const auto progress = reader.feed(c.stream);
    EXPECT_EQ(progress.state, State::kError) << c.stream;
    EXPECT_EQ(progress.consumed, c.offset) << c.stream;
    EXPECT_EQ(reader.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(reader.status().message(),
              "expected '{' at byte " + std::to_string(c.offset) + ", found " + std::string(c.found));
  }
}

TEST(JsonObjectReaderTest, ErrorOffsetCountsEarlierChunks) {
  const Outcome o = read_chunks({"  ", " \n", "nope"});
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.end, 4u);
  EXPECT_EQ(o.status.message(), "expected '{' at byte 4, found 'n'");
}

TEST(JsonObjectReaderTest, UnbalancedCloserIsRejected) {
  Outcome o = read_whole(R"({"a":[1,2})");
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.end, 9u);
  EXPECT_EQ(o.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(o.status.message(), "unbalanced '}' at byte 9: expected ']'");
  EXPECT_EQ(o.object, "");

  o = read_whole(R"( {"a":{"b":1]})");
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.status.message(), "unbalanced ']' at byte 12: expected '}'");
}

TEST(JsonObjectReaderTest, ErrorIsStickyUntilReset) {
  JsonObjectReader reader;
  ASSERT_EQ(reader.feed("x").state, State::kError);
  const Status first = reader.status();
  const auto again = reader.feed("{}");
  EXPECT_EQ(again.state, State::kError);
  EXPECT_EQ(again.consumed, 0u);
  EXPECT_EQ(reader.status(), first);

  reader.reset();
  EXPECT_EQ(reader.state(), State::kNeedMore);
  EXPECT_TRUE(reader.status().is_ok());
  EXPECT_EQ(reader.bytes_consumed(), 0u);
  const auto progress = reader.feed("{\"b\":[]}");
  EXPECT_EQ(progress.state, State::kComplete);
  EXPECT_EQ(reader.buffered(), "{\"b\":[]}");
}

TEST(JsonObjectReaderTest, ResetAfterCompletionReadsNextObject) {
  JsonObjectReader reader;
  ASSERT_EQ(reader.feed("{\"a\":\"x").state, State::kNeedMore);
  reader.reset();  // mid-string state must not leak into the next object
  ASSERT_EQ(reader.feed("{\"b\":1}").state, State::kComplete);
  EXPECT_EQ(reader.buffered(), "{\"b\":1}");
}

// --- limits ---------------------------------------------------------------------------

TEST(JsonObjectReaderTest, ObjectExactlyAtSizeCapIsAccepted) {
  const std::string object = R"({"k":"0123456789"})";  // 18 bytes
  const JsonObjectReaderOptions options{.max_bytes = object.size()};
  Outcome o = read_whole(object + "trailing bytes beyond the cap", options);
  ASSERT_EQ(o.state, State::kComplete) << o.status.to_string();
  EXPECT_EQ(o.object, object);
  EXPECT_EQ(read_chunks(bytes_of(object), options), o);
}

TEST(JsonObjectReaderTest, ObjectOverSizeCapIsRejected) {
  const std::string object = R"({"k":"0123456789"})";
  const JsonObjectReaderOptions options{.max_bytes = object.size() - 1};
  const Outcome whole = read_whole(object, options);
  EXPECT_EQ(whole.state, State::kError);
  EXPECT_EQ(whole.end, object.size() - 1);  // the first byte past the cap
  EXPECT_EQ(whole.status.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(whole.status.message(), "JSON object exceeds 17 bytes");
  EXPECT_EQ(whole.object, "");
  EXPECT_EQ(read_chunks(bytes_of(object), options), whole);
  // Leading whitespace counts: a client cannot stream blanks forever.
  EXPECT_EQ(read_whole(" {}", {.max_bytes = 2}).state, State::kError);
  EXPECT_EQ(read_whole(std::string(10, ' '), {.max_bytes = 9}).state, State::kError);
}

TEST(JsonObjectReaderTest, DefaultSizeCapIsOneMebibyte) {
  const std::string payload(1 << 20, 'x');
  const Outcome o = read_whole("{\"a\":\"" + payload + "\"}");
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.status.message(), "JSON object exceeds 1048576 bytes");
}

TEST(JsonObjectReaderTest, TwoMebibyteStringWithRaisedCap) {
  std::string payload(2 << 20, 'v');
  for (std::size_t i = 0; i < payload.size(); i += 1000) payload[i] = "{}[]\"\\"[i / 1000 % 6];
  // Keep every quote and backslash escaped so the string stays one string.
  std::string escaped;
  for (const char c : payload) {
    if (c == '"' || c == '\\') escaped.push_back('\\');
    escaped.push_back(c);
  }
  const std::string object = "{\"blob\":\"" + escaped + "\",\"n\":[1]}";
  const JsonObjectReaderOptions options{.max_bytes = 4 << 20};

  std::vector<std::string_view> chunks;
  for (std::size_t i = 0; i < object.size(); i += 16384)
    chunks.push_back(std::string_view(object).substr(i, 16384));
  chunks.push_back("trailing");
  const Outcome o = read_chunks(chunks, options);
  ASSERT_EQ(o.state, State::kComplete) << o.status.to_string();
  EXPECT_EQ(o.end, object.size());
  EXPECT_EQ(o.object, object);
}

// An object nested `depth` levels deep, alternating arrays and objects inside.
std::string nested(std::size_t depth) {
  if (depth == 1) return "{}";
  std::string open = "{";
  std::string close = "}";
  for (std::size_t d = 1; d < depth; ++d) {
    const bool array = d % 2 == 1;
    open += array ? "\"k\":[" : "{\"k\":";
    close = (array ? "]" : "}") + close;
  }
  return open + "0" + close;
}

TEST(JsonObjectReaderTest, DepthAtLimitIsAccepted) {
  EXPECT_EQ(read_whole(nested(3), {.max_depth = 3}).state, State::kComplete);
  EXPECT_EQ(read_whole(nested(512)).state, State::kComplete);
}

TEST(JsonObjectReaderTest, DepthOverLimitIsRejected) {
  const Outcome o = read_whole(nested(4), {.max_depth = 3});
  EXPECT_EQ(o.state, State::kError);
  EXPECT_EQ(o.status.code(), StatusCode::kOutOfRange);
  EXPECT_THAT(o.status.message(), HasSubstr("max_depth (3)"));
  EXPECT_EQ(read_whole(nested(513)).state, State::kError);
  // Brackets inside strings do not count toward depth.
  EXPECT_EQ(read_whole(R"({"a":"[[[[{{{{"})", {.max_depth = 1}).state, State::kComplete);
}

// --- chunking equivalence -------------------------------------------------------------

const std::string kTricky =
    "\r\n  {\"Command\" : \"run\", \"args\":[\"}\", \"]\", \"\\\"}\", \"\\\\\", \"\\\\\\\"]\"],"
    " \"env\":{\"A\":\"\\u007b\",\"B\":[[],{}]},\"n\":-1.0e+2,\"t\":true,\"z\":null}"
    "{\"second\":1}";
constexpr std::size_t kTrickyLeading = 4;
const std::size_t kTrickyEnd = kTricky.size() - std::string_view("{\"second\":1}").size();

TEST(JsonObjectReaderTest, TrickyStreamCompletesAtTheRightByte) {
  expect_complete(kTricky, kTrickyLeading, kTrickyEnd - kTrickyLeading);
}

TEST(JsonObjectReaderTest, SplitAtEveryCutPointMatchesWhole) {
  const Outcome whole = read_whole(kTricky);
  ASSERT_EQ(whole.state, State::kComplete);
  const std::string_view s = kTricky;
  for (std::size_t cut = 0; cut <= s.size(); ++cut) {
    ASSERT_EQ(read_chunks({s.substr(0, cut), s.substr(cut)}), whole) << "cut at " << cut;
  }
  for (std::size_t a = 0; a <= s.size(); ++a) {
    for (std::size_t b = a; b <= s.size(); ++b) {
      ASSERT_EQ(read_chunks({s.substr(0, a), s.substr(a, b - a), s.substr(b)}), whole)
          << "cuts at " << a << ", " << b;
    }
  }
}

TEST(JsonObjectReaderTest, OneByteAtATimeMatchesWhole) {
  EXPECT_EQ(read_chunks(bytes_of(kTricky)), read_whole(kTricky));
}

// Random valid JSON with adversarial strings: the reader must stop exactly after the
// generated object, however it is split.
class JsonGenerator {
 public:
  explicit JsonGenerator(std::uint32_t seed) : rng_(seed) {}

  std::string object(int depth) {
    std::string out = "{" + ws();
    const int members = static_cast<int>(pick(depth > 4 ? 2 : 5));
    for (int i = 0; i < members; ++i) {
      if (i > 0) out += "," + ws();
      out += string() + ws() + ":" + ws() + value(depth + 1) + ws();
    }
    return out + "}";
  }

 private:
  std::uint32_t pick(std::uint32_t n) { return static_cast<std::uint32_t>(rng_() % n); }

  std::string ws() {
    static constexpr std::string_view kWs[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    return std::string(kWs[pick(std::size(kWs))]);
  }

  std::string string() {
    static constexpr std::string_view kPieces[] = {
        // Structural characters, which must not count inside a string.
        "{", "}", "[", "]", ":", ",",
        // Escapes, including those whose last character is a quote or backslash.
        "\\\"", "\\\\", "\\/", "\\n", "\\u007D", "\\uD83D\\uDE00",
        // Ordinary text.
        "a", " ", "\xC3\xA9",
    };
    std::string out = "\"";
    for (std::uint32_t n = pick(6); n > 0; --n) out += kPieces[pick(std::size(kPieces))];
    return out + "\"";
  }

  std::string value(int depth) {
    switch (pick(depth > 5 ? 4 : 6)) {
      case 0: return string();
      case 1: return std::to_string(static_cast<int>(pick(2000)) - 1000) + (pick(2) != 0 ? ".5e-3" : "");
      case 2: return pick(2) != 0 ? "true" : "null";
      case 3: return "false";
      case 4: return object(depth);
      default: {
        std::string out = "[" + ws();
        for (std::uint32_t i = 0, n = pick(4); i < n; ++i) {
          if (i > 0) out += "," + ws();
          out += value(depth + 1) + ws();
        }
        return out + "]";
      }
    }
  }

  std::mt19937 rng_;
};

TEST(JsonObjectReaderTest, RandomValidObjectsCompleteExactly) {
  for (std::uint32_t seed = 1; seed <= 300; ++seed) {
    JsonGenerator gen(seed);
    const std::string object = gen.object(0);
    const std::string stream = " \n" + object + (seed % 2 == 0 ? "}]\"{" : "{\"x\":1}");
    SCOPED_TRACE("seed " + std::to_string(seed));
    const Outcome whole = read_whole(stream);
    ASSERT_EQ(whole.state, State::kComplete) << whole.status.to_string() << " in " << stream;
    ASSERT_EQ(whole.object, object);
    ASSERT_EQ(whole.end, object.size() + 2);
    // Uneven splits driven by the seed.
    std::vector<std::string_view> chunks;
    const std::string_view s = stream;
    for (std::size_t i = 0, n = seed % 7 + 1; i < s.size(); i += n, n = (n * 5 + seed) % 13 + 1) {
      chunks.push_back(s.substr(i, n));
    }
    ASSERT_EQ(read_chunks(chunks), whole);
  }
}

}  // namespace
}  // namespace agentry::wire
