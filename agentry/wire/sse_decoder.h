// Incremental decoder for a Server-Sent Events (text/event-stream) body.
//
// The transport passes in whatever bytes each read returned; the decoder splits them into
// lines, applies the field rules and hands finished events to a sink. It does no I/O. Between
// calls it keeps only the unfinished tail of the current line and the event being assembled,
// both bounded by SseDecoderOptions.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "agentry/base/status.h"

namespace agentry::wire {

// One dispatched event. The views point into the decoder's buffers and stay valid only for
// the duration of the SseSink::on_event call that receives them.
struct SseEvent {
  // The value of the last `event` field, or empty when the event had none (which the SSE
  // convention reads as "message"; the decoder leaves that interpretation to the caller).
  std::string_view type;
  // The `data` values of the event joined with '\n'.
  std::string_view data;
  // The stream's last event id at dispatch time. It belongs to the stream, not the event:
  // it carries over to later events until an `id` field changes it.
  std::string_view last_event_id;
};

// Receives what the decoder finds. Callbacks run synchronously inside SseDecoder::feed()
// and must not call back into the decoder that invoked them. If a callback throws, the
// exception propagates out of feed() and the decoder must be reset() before further use.
class SseSink {
 public:
  virtual ~SseSink() = default;

  virtual void on_event(const SseEvent& event) = 0;
  // A well-formed `retry` field: the reconnect delay the server asks for.
  virtual void on_retry(std::chrono::milliseconds delay) = 0;
  // A comment line; `text` is everything after the ':'. Servers send comments as
  // keep-alives, so they are the signal to push back a read timeout.
  virtual void on_comment(std::string_view text) = 0;
};

struct SseDecoderOptions {
  // Longest accepted line, terminator excluded. Bounds the bytes held for a line that has
  // not ended yet.
  std::size_t max_line_bytes = std::size_t{1} << 20;
  // Largest accepted event payload (SseEvent::data as it would be dispatched).
  std::size_t max_event_data_bytes = std::size_t{16} << 20;
};

class SseDecoder {
 public:
  explicit SseDecoder(SseDecoderOptions options = {});

  // Decodes `chunk`, which may start or end anywhere, even inside a CRLF pair or the
  // leading byte-order mark. Events completed by the chunk reach `sink` before this returns.
  // Exceeding a limit returns kOutOfRange; from then on every call returns that same
  // error until reset(). Events dispatched before the offending line are still delivered.
  Status feed(std::string_view chunk, SseSink& sink);

  // Marks the end of the stream. An event without its terminating blank line is dropped,
  // per the protocol; returns true when that happened (field lines were pending or an
  // unterminated non-comment line was buffered), so the caller can log the truncation.
  // The decoder is then ready for the next connection's stream: the byte-order mark check
  // is re-armed, while last_event_id() is kept because it outlives a reconnect.
  // In the error state this does nothing and returns false.
  bool finish();

  // Back to the freshly constructed state: clears the error, the buffers and the last
  // event id.
  void reset();

  const std::string& last_event_id() const noexcept { return last_event_id_; }
  // OK, or the sticky error returned by feed().
  const Status& status() const noexcept { return status_; }
  const SseDecoderOptions& options() const noexcept { return options_; }

 private:
  Status decode_lines(std::string_view bytes, SseSink& sink);
  Status process_line(std::string_view line, SseSink& sink);
  void dispatch(SseSink& sink);
  void clear_stream_state();

  SseDecoderOptions options_;
  Status status_;
  std::string tail_;           // start of a line whose terminator has not arrived yet
  std::string data_;           // data values, each followed by '\n'
  std::string type_;           // current `event` field
  std::string last_event_id_;  // persists across events and finish()
  bool have_fields_ = false;   // a field line was seen since the last dispatch
  bool skip_lf_ = false;       // the previous chunk ended in CR; a leading LF completes that CRLF
  bool at_stream_start_ = true;
  std::size_t bom_bytes_matched_ = 0;  // prefix of the UTF-8 BOM seen at stream start
};

}  // namespace agentry::wire
