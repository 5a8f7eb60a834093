// Fuzzes SseDecoder with the stream delivered in pieces.
//
// Input layout: byte 0 seeds the chunk sizes, the rest is the SSE stream. The stream is
// decoded once in a single feed and once chunked; both runs must report the same events,
// retries, comments, error and end-of-stream result, since chunking is a transport detail.
// Small limits make the size checks reachable with short inputs.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/wire/sse_decoder.h"

namespace {

using agentry::Status;
using agentry::wire::SseDecoder;
using agentry::wire::SseDecoderOptions;
using agentry::wire::SseEvent;
using agentry::wire::SseSink;

constexpr SseDecoderOptions kOptions{.max_line_bytes = 64, .max_event_data_bytes = 128};

// Aborts (so libFuzzer reports the input) when an invariant does not hold.
void check(bool ok) {
  if (!ok) std::abort();
}

class Recorder : public SseSink {
 public:
  void on_event(const SseEvent& e) override {
    check(e.data.size() <= kOptions.max_event_data_bytes);
    check(e.type.size() <= kOptions.max_line_bytes);
    check(e.last_event_id.size() <= kOptions.max_line_bytes);
    check(e.last_event_id.find('\0') == std::string_view::npos);
    log.push_back('E');
    append_field(e.type);
    append_field(e.data);
    append_field(e.last_event_id);
  }
  void on_retry(std::chrono::milliseconds delay) override {
    check(delay.count() > 0);
    log += 'R' + std::to_string(delay.count()) + ';';
  }
  void on_comment(std::string_view text) override {
    check(text.size() < kOptions.max_line_bytes);
    log.push_back('C');
    append_field(text);
  }

  std::string log;  // length-prefixed, so distinct sequences never collide

 private:
  void append_field(std::string_view s) {
    log += std::to_string(s.size());
    log.push_back(':');
    log.append(s);
  }
};

struct Run {
  std::string log;
  Status status;
  bool discarded = false;
};

Run decode(const std::vector<std::string_view>& chunks) {
  SseDecoder decoder(kOptions);
  Recorder sink;
  Run run;
  for (const std::string_view chunk : chunks) {
    run.status = decoder.feed(chunk, sink);
    if (!run.status.is_ok()) {
      // The error must stick.
      check(decoder.feed("data: x\n\n", sink) == run.status);
      check(decoder.status() == run.status);
      break;
    }
  }
  if (run.status.is_ok()) run.discarded = decoder.finish();
  run.log = std::move(sink.log);
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::uint32_t state = data[0] * 2654435761u + 1;
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<std::string_view> chunks;
  for (std::size_t pos = 0; pos < stream.size();) {
    state = state * 1103515245u + 12345u;
    // Mostly tiny pieces, where boundary handling lives, and an occasional empty one.
    const std::size_t n = (state >> 16) % 9;
    chunks.push_back(stream.substr(pos, n));
    pos += n;
  }

  const Run whole = decode({stream});
  const Run chunked = decode(chunks);
  check(whole.log == chunked.log);
  check(whole.status == chunked.status);
  check(whole.discarded == chunked.discarded);
  return 0;
}
