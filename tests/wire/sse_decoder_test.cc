#include "agentry/wire/sse_decoder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace agentry::wire {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using namespace std::string_literals;

const std::string kBom = "\xEF\xBB\xBF";

// Records everything the decoder reports as readable strings, so a whole sequence can be
// compared at once and a mismatch prints legibly.
class RecordingSink : public SseSink {
 public:
  void on_event(const SseEvent& event) override {
    records.push_back("event type=[" + std::string(event.type) + "] data=[" + std::string(event.data) +
                      "] id=[" + std::string(event.last_event_id) + "]");
  }
  void on_retry(std::chrono::milliseconds delay) override {
    records.push_back("retry " + std::to_string(delay.count()));
  }
  void on_comment(std::string_view text) override {
    records.push_back("comment [" + std::string(text) + "]");
  }

  std::vector<std::string> records;
};

std::string ev(std::string_view type, std::string_view data, std::string_view id = "") {
  return "event type=[" + std::string(type) + "] data=[" + std::string(data) + "] id=[" + std::string(id) +
         "]";
}

struct Decoded {
  std::vector<std::string> records;
  Status status;
  bool discarded = false;
};

// Feeds the chunks in order, stopping at the first error, then calls finish().
Decoded decode_chunks(const std::vector<std::string_view>& chunks, SseDecoderOptions options = {}) {
  SseDecoder decoder(options);
  RecordingSink sink;
  Decoded out;
  for (const std::string_view chunk : chunks) {
    out.status = decoder.feed(chunk, sink);
    if (!out.status.is_ok()) break;
  }
  if (out.status.is_ok()) out.discarded = decoder.finish();
  out.records = std::move(sink.records);
  return out;
}

std::vector<std::string> decode(std::string_view stream) {
  Decoded d = decode_chunks({stream});
  EXPECT_TRUE(d.status.is_ok()) << d.status.to_string();
  return d.records;
}

// --- line endings ---------------------------------------------------------------------

TEST(SseDecoderTest, LfTerminatedEvent) {
  EXPECT_THAT(decode("data: hello\n\n"), ElementsAre(ev("", "hello")));
}

TEST(SseDecoderTest, CrTerminatedEvent) {
  EXPECT_THAT(decode("event: a\rdata: hello\r\r"), ElementsAre(ev("a", "hello")));
}

TEST(SseDecoderTest, CrlfTerminatedEvent) {
  EXPECT_THAT(decode("event: a\r\ndata: hello\r\n\r\n"), ElementsAre(ev("a", "hello")));
}

TEST(SseDecoderTest, MixedTerminatorsInOneStream) {
  EXPECT_THAT(decode("data: 1\r\n\ndata: 2\r\rdata: 3\n\r\n"),
              ElementsAre(ev("", "1"), ev("", "2"), ev("", "3")));
}

TEST(SseDecoderTest, CrlfSplitAcrossChunksIsOneTerminator) {
  // Were the LF at the start of a chunk taken as a blank line, "a" would be dispatched
  // alone before "b" arrives.
  Decoded d = decode_chunks({"data: a\r", "\ndata: b\r", "\n\r", "\n"});
  ASSERT_TRUE(d.status.is_ok());
  EXPECT_THAT(d.records, ElementsAre(ev("", "a\nb")));
  EXPECT_FALSE(d.discarded);
}

TEST(SseDecoderTest, CrAtChunkEndSurvivesEmptyChunks) {
  Decoded d = decode_chunks({"data: a\r", "", "", "\n", "\n"});
  ASSERT_TRUE(d.status.is_ok());
  EXPECT_THAT(d.records, ElementsAre(ev("", "a")));
}

TEST(SseDecoderTest, CrAtChunkEndFollowedByOtherByteEndsLineOnly) {
  Decoded d = decode_chunks({"data: a\r", "data: b\r", "\r"});
  EXPECT_THAT(d.records, ElementsAre(ev("", "a\nb")));
}

TEST(SseDecoderTest, CrCrIsTwoLineEnds) {
  Decoded d = decode_chunks({"data: a\r", "\r"});
  EXPECT_THAT(d.records, ElementsAre(ev("", "a")));
}

TEST(SseDecoderTest, LfCrIsTwoLineEnds) { EXPECT_THAT(decode("data: a\n\r"), ElementsAre(ev("", "a"))); }

// --- comments and field syntax --------------------------------------------------------

TEST(SseDecoderTest, CommentsAreReportedAndDoNotFormEvents) {
  EXPECT_THAT(decode(":keep-alive\n\n: with space\n:\n\n"),
              ElementsAre("comment [keep-alive]", "comment [ with space]", "comment []"));
}

TEST(SseDecoderTest, CommentInsideEventDoesNotDisturbIt) {
  EXPECT_THAT(decode("data: a\n:note\ndata: b\n\n"), ElementsAre("comment [note]", ev("", "a\nb")));
}

TEST(SseDecoderTest, ValueSplitsAtFirstColon) {
  EXPECT_THAT(decode("data: a:b: c\n\n"), ElementsAre(ev("", "a:b: c")));
}

TEST(SseDecoderTest, ExactlyOneLeadingSpaceIsDropped) {
  EXPECT_THAT(decode("data:a\n\ndata: a\n\ndata:  a\n\ndata:\ta\n\ndata: \n\n"),
              ElementsAre(ev("", "a"), ev("", "a"), ev("", " a"), ev("", "\ta"), ev("", "")));
}

TEST(SseDecoderTest, LineWithoutColonIsFieldWithEmptyValue) {
  EXPECT_THAT(decode("data\n\n"), ElementsAre(ev("", "")));
  EXPECT_THAT(decode("data\ndata\n\n"), ElementsAre(ev("", "\n")));
  EXPECT_THAT(decode("event\ndata: x\n\n"), ElementsAre(ev("", "x")));
}

TEST(SseDecoderTest, FieldNamesAreCaseSensitive) {
  // "Data" is an unknown field: ignored, but still a field line (see UnknownField...).
  EXPECT_THAT(decode("Data: x\nEVENT: y\n\n"), ElementsAre(ev("", "")));
}

TEST(SseDecoderTest, SpaceBeforeColonIsPartOfName) {
  EXPECT_THAT(decode("data : x\n\n"), ElementsAre(ev("", "")));
}

// --- event and data -------------------------------------------------------------------

TEST(SseDecoderTest, EventTypeIsEmptyByDefaultAndResetAfterDispatch) {
  EXPECT_THAT(decode("event: put\ndata: 1\n\ndata: 2\n\n"), ElementsAre(ev("put", "1"), ev("", "2")));
}

TEST(SseDecoderTest, LastEventFieldWins) {
  EXPECT_THAT(decode("event: a\nevent: b\ndata: x\n\n"), ElementsAre(ev("b", "x")));
}

TEST(SseDecoderTest, DataLinesJoinWithNewlineAndOnlyFinalNewlineIsRemoved) {
  EXPECT_THAT(decode("data: a\ndata: b\ndata: c\n\n"), ElementsAre(ev("", "a\nb\nc")));
  EXPECT_THAT(decode("data: a\ndata:\n\n"), ElementsAre(ev("", "a\n")));
  EXPECT_THAT(decode("data:\ndata:\ndata:\n\n"), ElementsAre(ev("", "\n\n")));
}

TEST(SseDecoderTest, DataMayContainNulAndHighBytes) {
  EXPECT_THAT(decode("data: a\0b\xff\n\n"s), ElementsAre(ev("", "a\0b\xff"s)));
}

TEST(SseDecoderTest, BlankLinesWithoutFieldsDispatchNothing) {
  EXPECT_THAT(decode("\n\n\r\n\r\r"), IsEmpty());
  EXPECT_THAT(decode("data: a\n\n\n\n"), ElementsAre(ev("", "a")));
}

// Our spec dispatches when any field line was seen, unlike the WHATWG rule that needs
// data; these pin that choice down.
TEST(SseDecoderTest, EventWithoutDataIsDispatched) {
  EXPECT_THAT(decode("event: ping\n\n"), ElementsAre(ev("ping", "")));
  EXPECT_THAT(decode("id: 7\n\n"), ElementsAre(ev("", "", "7")));
}

TEST(SseDecoderTest, UnknownFieldIsIgnoredButCountsAsFieldLine) {
  EXPECT_THAT(decode("foo: bar\ndata: x\n\n"), ElementsAre(ev("", "x")));
  EXPECT_THAT(decode("foo: bar\n\n"), ElementsAre(ev("", "")));
}

// --- id -------------------------------------------------------------------------------

TEST(SseDecoderTest, IdPersistsAcrossEvents) {
  SseDecoder decoder;
  RecordingSink sink;
  ASSERT_TRUE(decoder.feed("id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n", sink).is_ok());
  EXPECT_THAT(sink.records, ElementsAre(ev("", "a", "1"), ev("", "b", "1"), ev("", "c", "2")));
  EXPECT_EQ(decoder.last_event_id(), "2");
}

TEST(SseDecoderTest, IdTakesEffectEvenIfSetAfterData) {
  EXPECT_THAT(decode("data: a\nid: 5\n\n"), ElementsAre(ev("", "a", "5")));
}

TEST(SseDecoderTest, IdContainingNulIsIgnored) {
  EXPECT_THAT(decode("id: 1\n\nid: 2\0x\ndata: a\n\n"s), ElementsAre(ev("", "", "1"), ev("", "a", "1")));
}

TEST(SseDecoderTest, EmptyIdResetsLastEventId) {
  EXPECT_THAT(decode("id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\n\nid:\ndata: c\n\n"),
              ElementsAre(ev("", "a", "1"), ev("", "b", ""), ev("", "", "3"), ev("", "c", "")));
}

TEST(SseDecoderTest, IdWithoutDispatchStillUpdatesStreamId) {
  SseDecoder decoder;
  RecordingSink sink;
  ASSERT_TRUE(decoder.feed("id: 9\n", sink).is_ok());
  EXPECT_EQ(decoder.last_event_id(), "9");
  EXPECT_TRUE(decoder.finish());  // the event itself was never completed
  EXPECT_THAT(sink.records, IsEmpty());
}

// --- retry ----------------------------------------------------------------------------

TEST(SseDecoderTest, RetryWithDigitsIsReported) {
  EXPECT_THAT(decode("retry: 1500\n\n"), ElementsAre("retry 1500", ev("", "")));
  EXPECT_THAT(decode("retry:7\nretry: 0010\n"), ElementsAre("retry 7", "retry 10"));
}

TEST(SseDecoderTest, RetryThatIsNotAPositiveIntegerIsIgnored) {
  SseDecoder decoder;
  RecordingSink sink;
  ASSERT_TRUE(decoder
                  .feed("retry: \nretry\nretry: 1a\nretry: -1\nretry: +1\nretry:  1\nretry: 1 \nretry: 1.5\n"
                        "retry: 0\nretry: 000\nretry: \xd9\xa1\n",
                        sink)
                  .is_ok());
  EXPECT_THAT(sink.records, IsEmpty());
}

TEST(SseDecoderTest, RetryOverflowIsIgnored) {
  const std::string max = std::to_string(std::chrono::milliseconds::max().count());
  std::string over = max;
  over.back() = static_cast<char>(over.back() + 1);  // max ends in 7, so no carry
  EXPECT_THAT(decode("retry: " + over + "\nretry: 99999999999999999999999999\nretry: " + max + "\n"),
              ElementsAre("retry " + max));
}

// --- byte-order mark ------------------------------------------------------------------

TEST(SseDecoderTest, LeadingBomIsSkipped) {
  EXPECT_THAT(decode(kBom + "data: a\n\n"), ElementsAre(ev("", "a")));
}

TEST(SseDecoderTest, LeadingBomSplitAcrossChunksIsSkipped) {
  const std::string third = "\xBF" + std::string("da");
  Decoded d = decode_chunks({"\xEF", "", "\xBB", third, "ta: a\n\n"});
  EXPECT_THAT(d.records, ElementsAre(ev("", "a")));
}

TEST(SseDecoderTest, BomLaterInStreamIsContent) {
  // A second BOM is part of the field name, making it "<BOM>data": an unknown field.
  EXPECT_THAT(decode(kBom + kBom + "data: a\n\n"), ElementsAre(ev("", "")));
  EXPECT_THAT(decode("data: a\n\n" + kBom + "data: b\n\n"), ElementsAre(ev("", "a"), ev("", "")));
}

TEST(SseDecoderTest, PartialBomIsKeptAsContent) {
  Decoded d = decode_chunks({"\xEF\xBB", "event: x\n\n"});
  EXPECT_THAT(d.records, ElementsAre(ev("", "")));
  // The bytes matched so far must not be lost when the mismatch comes in a later chunk.
  d = decode_chunks({"\xEF", ":c\n"});
  EXPECT_THAT(d.records, IsEmpty());
  d = decode_chunks({"\xEF\xBB", "\n:c\n"});
  EXPECT_THAT(d.records, ElementsAre("comment [c]"));
}

// --- end of stream --------------------------------------------------------------------

TEST(SseDecoderTest, PartialEventAtEofIsDiscarded) {
  Decoded d = decode_chunks({"data: a\n\ndata: b\n"});
  EXPECT_THAT(d.records, ElementsAre(ev("", "a")));
  EXPECT_TRUE(d.discarded);
}

TEST(SseDecoderTest, UnterminatedLineAtEofIsDiscarded) {
  Decoded d = decode_chunks({"data: a\n\ndata: b"});
  EXPECT_THAT(d.records, ElementsAre(ev("", "a")));
  EXPECT_TRUE(d.discarded);
}

TEST(SseDecoderTest, EventEndedWithoutFinalBlankLineIsDiscarded) {
  // The line is complete but the event is not: no blank line follows.
  Decoded d = decode_chunks({"event: put\ndata: {}\r\n"});
  EXPECT_THAT(d.records, IsEmpty());
  EXPECT_TRUE(d.discarded);
}

TEST(SseDecoderTest, CleanEofDiscardsNothing) {
  EXPECT_FALSE(decode_chunks({"data: a\n\n"}).discarded);
  EXPECT_FALSE(decode_chunks({""}).discarded);
  EXPECT_FALSE(decode_chunks({"data: a\n\n:trailing comment"}).discarded);
  EXPECT_FALSE(decode_chunks({"data: a\r\n\r"}).discarded);
}

TEST(SseDecoderTest, FinishPreparesForNextStreamAndKeepsLastEventId) {
  SseDecoder decoder;
  RecordingSink sink;
  ASSERT_TRUE(decoder.feed("id: 42\ndata: a\n\nevent: x\ndata: partial\nda", sink).is_ok());
  EXPECT_TRUE(decoder.finish());
  // A reconnect's stream starts fresh, BOM included, but the id carries over.
  // Had the partial line "da" survived, this would read as an unknown field "dadata".
  ASSERT_TRUE(decoder.feed(kBom + "data: b\n\n", sink).is_ok());
  EXPECT_FALSE(decoder.finish());
  EXPECT_THAT(sink.records, ElementsAre(ev("", "a", "42"), ev("", "b", "42")));
}

// --- limits and errors ----------------------------------------------------------------

TEST(SseDecoderTest, LineAtLimitIsAccepted) {
  const std::string line = "data: " + std::string(10, 'x');  // 16 bytes
  Decoded d = decode_chunks({line + "\n\n"}, {.max_line_bytes = 16});
  ASSERT_TRUE(d.status.is_ok()) << d.status.to_string();
  EXPECT_THAT(d.records, ElementsAre(ev("", std::string(10, 'x'))));
  // Same when it arrives byte by byte and has to be carried between chunks.
  const std::string stream = line + "\r\n\r\n";
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < stream.size(); ++i) bytes.push_back(std::string_view(stream).substr(i, 1));
  d = decode_chunks(bytes, {.max_line_bytes = 16});
  ASSERT_TRUE(d.status.is_ok()) << d.status.to_string();
  EXPECT_THAT(d.records, ElementsAre(ev("", std::string(10, 'x'))));
}

TEST(SseDecoderTest, LineOverLimitIsAnError) {
  const std::string line = "data: " + std::string(11, 'x');  // 17 bytes
  const std::string terminated = line + "\n\n";
  for (const auto& chunks : std::vector<std::vector<std::string_view>>{
           {terminated},  // terminated, in one chunk
           {line},        // unterminated, in one chunk
           {std::string_view(line).substr(0, 9), std::string_view(line).substr(9)},  // carried over
           {std::string_view(line).substr(0, 16), "x\n"},
       }) {
    Decoded d = decode_chunks(chunks, {.max_line_bytes = 16});
    EXPECT_EQ(d.status.code(), StatusCode::kOutOfRange);
    EXPECT_THAT(d.status.message(), HasSubstr("max_line_bytes (16)"));
    EXPECT_THAT(d.records, IsEmpty());
  }
}

TEST(SseDecoderTest, CommentsCountTowardLineLimit) {
  Decoded d = decode_chunks({":" + std::string(20, 'c') + "\n"}, {.max_line_bytes = 16});
  EXPECT_EQ(d.status.code(), StatusCode::kOutOfRange);
}

TEST(SseDecoderTest, EventDataAtLimitIsAccepted) {
  // "abc\ndef" is 7 bytes once joined.
  Decoded d = decode_chunks({"data: abc\ndata: def\n\n"}, {.max_event_data_bytes = 7});
  ASSERT_TRUE(d.status.is_ok()) << d.status.to_string();
  EXPECT_THAT(d.records, ElementsAre(ev("", "abc\ndef")));
}

TEST(SseDecoderTest, EventDataOverLimitIsAnError) {
  Decoded d = decode_chunks({"data: ok\n\ndata: abc\ndata: defg\n\n"}, {.max_event_data_bytes = 7});
  EXPECT_EQ(d.status.code(), StatusCode::kOutOfRange);
  EXPECT_THAT(d.status.message(), HasSubstr("max_event_data_bytes (7)"));
  EXPECT_THAT(d.records, ElementsAre(ev("", "ok")));  // events before the bad line still arrive
  // An empty extra line would also push the joined data past the limit ("abc\ndef\n").
  d = decode_chunks({"data: abc\ndata: def\ndata\n\n"}, {.max_event_data_bytes = 7});
  EXPECT_EQ(d.status.code(), StatusCode::kOutOfRange);
}

TEST(SseDecoderTest, EventDataLimitIsPerEvent) {
  Decoded d = decode_chunks({"data: abcd\n\ndata: efgh\n\ndata: ijkl\n\n"}, {.max_event_data_bytes = 4});
  ASSERT_TRUE(d.status.is_ok());
  EXPECT_EQ(d.records.size(), 3u);
}

TEST(SseDecoderTest, ErrorIsStickyUntilReset) {
  SseDecoder decoder({.max_line_bytes = 8});
  RecordingSink sink;
  const Status first = decoder.feed("data: too long\n\n", sink);
  ASSERT_EQ(first.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(decoder.status(), first);
  EXPECT_EQ(decoder.feed("data: a\n\n", sink), first);
  EXPECT_EQ(decoder.feed("", sink), first);
  EXPECT_FALSE(decoder.finish());
  EXPECT_EQ(decoder.feed("data: a\n\n", sink), first);
  EXPECT_THAT(sink.records, IsEmpty());

  decoder.reset();
  EXPECT_TRUE(decoder.status().is_ok());
  ASSERT_TRUE(decoder.feed("data: a\n\n", sink).is_ok());
  EXPECT_THAT(sink.records, ElementsAre(ev("", "a")));
}

TEST(SseDecoderTest, ResetClearsEverything) {
  SseDecoder decoder;
  RecordingSink sink;
  ASSERT_TRUE(decoder.feed("id: 1\nevent: x\ndata: pending\r", sink).is_ok());
  decoder.reset();
  EXPECT_EQ(decoder.last_event_id(), "");
  // No leftover type, data or CR state, and the BOM check is re-armed.
  ASSERT_TRUE(decoder.feed(kBom + "\ndata: b\n\n", sink).is_ok());
  EXPECT_THAT(sink.records, ElementsAre(ev("", "b")));
}

// --- chunking equivalence -------------------------------------------------------------

// Exercises every rule at once; the interesting bytes (CR/LF pairs, BOM, NUL) are where a
// chunk boundary is most likely to be mishandled.
const std::string kRichStream = kBom +
                                ": opening comment\r\n"
                                "retry: 2500\r\n"
                                "event: put\r\n"
                                "id: first\r\n"
                                "data: {\"a\":1}\r\n"
                                "data:second line\r\n"
                                "\r\n"
                                "data: lf only\n"
                                "data\n"
                                "\n"
                                "event: patch\r"
                                "data: cr only\r"
                                "id: bad\0id\r"
                                "\r"
                                "id\n"
                                "retry: nope\n"
                                "unknown: field\n"
                                "data:  two spaces\n"
                                ":\n"
                                "\n"
                                "id: last\r\n"
                                "retry: 10\r\n"
                                "event: delete\r\n"
                                "data: x:y\r\n"
                                "\r\n"
                                "\r\n"
                                "data: dropped at eof\n"s;

const std::vector<std::string> kRichExpected = {
    "comment [ opening comment]",
    "retry 2500",
    ev("put", "{\"a\":1}\nsecond line", "first"),
    ev("", "lf only\n", "first"),
    ev("patch", "cr only", "first"),
    "comment []",
    ev("", " two spaces", ""),
    "retry 10",
    ev("delete", "x:y", "last"),
};

TEST(SseDecoderTest, RichStreamDecodesAsExpected) {
  Decoded d = decode_chunks({kRichStream});
  ASSERT_TRUE(d.status.is_ok());
  EXPECT_EQ(d.records, kRichExpected);
  EXPECT_TRUE(d.discarded);
}

TEST(SseDecoderTest, SplitAtEveryCutPointMatchesWholeStream) {
  const std::string_view s = kRichStream;
  for (std::size_t cut = 0; cut <= s.size(); ++cut) {
    Decoded d = decode_chunks({s.substr(0, cut), s.substr(cut)});
    ASSERT_TRUE(d.status.is_ok()) << "cut at " << cut;
    ASSERT_EQ(d.records, kRichExpected) << "cut at " << cut;
    ASSERT_TRUE(d.discarded) << "cut at " << cut;
  }
}

TEST(SseDecoderTest, SplitAtEveryPairOfCutPointsMatchesWholeStream) {
  const std::string_view s = kRichStream;
  for (std::size_t a = 0; a <= s.size(); ++a) {
    for (std::size_t b = a; b <= s.size(); ++b) {
      Decoded d = decode_chunks({s.substr(0, a), s.substr(a, b - a), s.substr(b)});
      ASSERT_EQ(d.records, kRichExpected) << "cuts at " << a << ", " << b;
    }
  }
}

TEST(SseDecoderTest, OneByteAtATimeMatchesWholeStream) {
  const std::string_view s = kRichStream;
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < s.size(); ++i) bytes.push_back(s.substr(i, 1));
  Decoded d = decode_chunks(bytes);
  ASSERT_TRUE(d.status.is_ok());
  EXPECT_EQ(d.records, kRichExpected);
  EXPECT_TRUE(d.discarded);
}

TEST(SseDecoderTest, LargeDataLineAcrossManyChunks) {
  std::string payload(300'000, 'p');
  for (std::size_t i = 0; i < payload.size(); i += 97) payload[i] = static_cast<char>('a' + i % 26);
  const std::string stream = "event: big\ndata: " + payload + "\r\n\r\n";
  std::vector<std::string_view> chunks;
  for (std::size_t i = 0; i < stream.size(); i += 4096)
    chunks.push_back(std::string_view(stream).substr(i, 4096));
  Decoded d = decode_chunks(chunks);
  ASSERT_TRUE(d.status.is_ok());
  ASSERT_EQ(d.records.size(), 1u);
  EXPECT_EQ(d.records[0], ev("big", payload));
}

// --- a realistic stream ---------------------------------------------------------------

TEST(SseDecoderTest, LaunchDarklyStyleStream) {
  const std::string put_data =
      R"({"path":"/","data":{"environments":{"env-1":{"envId":"env-1","envKey":"production",)"
      R"("envName":"Production","mobKey":"mob-abc","projKey":"default","projName":"Default",)"
      R"("sdkKey":{"value":"sdk-123"},"version":3}}}})";
  const std::string patch_data = R"({"path":"/environments/env-1","data":{"envId":"env-1","version":4}})";
  const std::string delete_data = R"({"path":"/environments/env-1","version":5})";
  const std::string stream = ":\n\nevent: put\ndata: " + put_data + "\n\n" + ":\n\n" +
                             "event: patch\ndata: " + patch_data + "\n\n" +
                             "event: delete\ndata: " + delete_data + "\n\n";

  // Delivered the way a TLS reader might: in uneven pieces.
  std::vector<std::string_view> chunks;
  const std::string_view s = stream;
  for (std::size_t i = 0, n = 1; i < s.size(); i += n, n = n * 3 % 61 + 1) chunks.push_back(s.substr(i, n));
  Decoded d = decode_chunks(chunks);
  ASSERT_TRUE(d.status.is_ok());
  EXPECT_THAT(d.records, ElementsAre("comment []", ev("put", put_data), "comment []", ev("patch", patch_data),
                                     ev("delete", delete_data)));
  EXPECT_FALSE(d.discarded);
}

// The views handed to the sink must describe the event even when its lines were split
// over chunks whose memory is gone by dispatch time.
TEST(SseDecoderTest, EventViewsDoNotReferToCallerChunks) {
  SseDecoder decoder;
  RecordingSink sink;
  {
    std::string part1 = "event: t\ndata: a";
    ASSERT_TRUE(decoder.feed(part1, sink).is_ok());
    part1.assign(part1.size(), '#');
  }
  {
    std::string part2 = "bc\nid: 1\n";
    ASSERT_TRUE(decoder.feed(part2, sink).is_ok());
    part2.assign(part2.size(), '#');
  }
  ASSERT_TRUE(decoder.feed("\n", sink).is_ok());
  EXPECT_THAT(sink.records, ElementsAre(ev("t", "abc", "1")));
}

}  // namespace
}  // namespace agentry::wire
