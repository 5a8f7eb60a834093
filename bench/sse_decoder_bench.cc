// Throughput of the text codecs, fed in 16 KiB chunks the way a socket read loop would.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agentry/wire/json_object_reader.h"
#include "agentry/wire/sse_decoder.h"

namespace {

using agentry::wire::JsonObjectReader;
using agentry::wire::SseDecoder;
using agentry::wire::SseEvent;
using agentry::wire::SseSink;

constexpr std::size_t kChunk = 16 << 10;

// Touches what it receives so the work cannot be optimised away.
class CountingSink : public SseSink {
 public:
  void on_event(const SseEvent& e) override {
    ++events;
    bytes += e.data.size() + e.type.size();
  }
  void on_retry(std::chrono::milliseconds) override {}
  void on_comment(std::string_view) override {}

  std::size_t events = 0;
  std::size_t bytes = 0;
};

void decode_in_chunks(benchmark::State& state, const std::string& stream, std::size_t expected_events) {
  for (auto _ : state) {
    SseDecoder decoder;
    CountingSink sink;
    for (std::size_t pos = 0; pos < stream.size(); pos += kChunk) {
      const std::string_view chunk = std::string_view(stream).substr(pos, kChunk);
      if (!decoder.feed(chunk, sink).is_ok()) state.SkipWithError("decode failed");
    }
    if (sink.events != expected_events) state.SkipWithError("wrong event count");
    benchmark::DoNotOptimize(sink.bytes);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(stream.size()));
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(expected_events), benchmark::Counter::kIsIterationInvariantRate);
}

// Large payloads, each a single 64 KiB data line, like a full-environment `put`.
void BM_SseLargeDataLines(benchmark::State& state) {
  const std::string payload(64 << 10, 'x');
  std::string stream;
  constexpr std::size_t kEvents = 64;
  for (std::size_t i = 0; i < kEvents; ++i) stream += "event: put\ndata: " + payload + "\n\n";
  decode_in_chunks(state, stream, kEvents);
}
BENCHMARK(BM_SseLargeDataLines);

// Many small incremental updates.
void BM_SseSmallEvents(benchmark::State& state) {
  const std::string event =
      "event: patch\ndata: "
      R"({"path":"/environments/env-0001","data":{"envKey":"production","version":12345678}})"
      "\n\n";
  std::string stream;
  std::size_t events = 0;
  while (stream.size() < (4u << 20)) {
    stream += event;
    ++events;
  }
  decode_in_chunks(state, stream, events);
}
BENCHMARK(BM_SseSmallEvents);

// The same small events with CRLF line ends, which exercises the CR handling.
void BM_SseSmallEventsCrlf(benchmark::State& state) {
  const std::string event =
      "event: patch\r\ndata: "
      R"({"path":"/environments/env-0001","data":{"envKey":"production","version":12345678}})"
      "\r\n\r\n";
  std::string stream;
  std::size_t events = 0;
  while (stream.size() < (4u << 20)) {
    stream += event;
    ++events;
  }
  decode_in_chunks(state, stream, events);
}
BENCHMARK(BM_SseSmallEventsCrlf);

// A 64 KiB command request: nested objects, arrays and strings with escapes.
void BM_JsonObjectReader64KiB(benchmark::State& state) {
  std::string object = "{\"Command\":\"apply\",\"items\":[";
  for (int i = 0; object.size() < (64u << 10) - 128; ++i) {
    if (i > 0) object += ',';
    object += R"({"name":"proc-)" + std::to_string(i) +
              R"(","args":["--flag","va\"lue {with} [brackets]"],"env":{"PATH":"/usr/bin:/bin","N":)" +
              std::to_string(i * 7) + "}}";
  }
  object += "]}";
  for (auto _ : state) {
    JsonObjectReader reader;
    JsonObjectReader::Progress progress;
    for (std::size_t pos = 0; pos < object.size(); pos += kChunk) {
      progress = reader.feed(std::string_view(object).substr(pos, kChunk));
    }
    if (progress.state != JsonObjectReader::State::kComplete) state.SkipWithError("object not complete");
    benchmark::DoNotOptimize(reader.buffered().data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(object.size()));
}
BENCHMARK(BM_JsonObjectReader64KiB);

}  // namespace

BENCHMARK_MAIN();
