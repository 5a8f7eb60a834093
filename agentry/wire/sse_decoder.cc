#include "agentry/wire/sse_decoder.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

namespace agentry::wire {
namespace {

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

// Buffers that grew past this for one huge line or event are released afterwards rather
// than pinned for the rest of a long-lived stream.
constexpr std::size_t kRetainedCapacity = std::size_t{1} << 20;

void clear_buffer(std::string& s) {
  if (s.capacity() > kRetainedCapacity) {
    std::string().swap(s);
  } else {
    s.clear();
  }
}

// First occurrence of `c` in [from, end), or `end`.
const char* find_byte(const char* from, const char* end, char c) {
  const void* hit = std::memchr(from, c, static_cast<std::size_t>(end - from));
  return hit != nullptr ? static_cast<const char*>(hit) : end;
}

// A `retry` value counts only if it is all ASCII digits and a positive number of
// milliseconds that fits the duration type; anything else is ignored like an unknown field.
std::optional<std::chrono::milliseconds> parse_retry(std::string_view value) {
  using Rep = std::chrono::milliseconds::rep;
  constexpr Rep kMax = std::numeric_limits<Rep>::max();
  if (value.empty()) return std::nullopt;
  Rep ms = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    const Rep digit = c - '0';
    if (ms > (kMax - digit) / 10) return std::nullopt;
    ms = ms * 10 + digit;
  }
  if (ms == 0) return std::nullopt;
  return std::chrono::milliseconds(ms);
}

Status line_too_long(std::size_t limit) {
  return out_of_range("SSE line exceeds max_line_bytes (" + std::to_string(limit) + ")");
}

}  // namespace

SseDecoder::SseDecoder(SseDecoderOptions options) : options_(options) {}

Status SseDecoder::feed(std::string_view chunk, SseSink& sink) {
  if (!status_.is_ok()) return status_;

  if (at_stream_start_) {
    // The BOM may arrive split over several chunks, so the match position is kept.
    while (!chunk.empty() && bom_bytes_matched_ < kUtf8Bom.size() &&
           chunk.front() == kUtf8Bom[bom_bytes_matched_]) {
      ++bom_bytes_matched_;
      chunk.remove_prefix(1);
    }
    if (bom_bytes_matched_ == kUtf8Bom.size()) {
      at_stream_start_ = false;
      bom_bytes_matched_ = 0;
    } else if (chunk.empty()) {
      return Status::ok();  // still undecided
    } else {
      // Not a BOM after all. The bytes matched so far are ordinary text of the first line;
      // none of them is a line terminator, so they can seed the line tail.
      tail_.assign(kUtf8Bom.substr(0, bom_bytes_matched_));
      at_stream_start_ = false;
      bom_bytes_matched_ = 0;
    }
  }

  Status s = decode_lines(chunk, sink);
  if (!s.is_ok()) {
    status_ = s;
    clear_stream_state();
  }
  return s;
}

Status SseDecoder::decode_lines(std::string_view bytes, SseSink& sink) {
  if (bytes.empty()) return Status::ok();
  if (skip_lf_) {
    skip_lf_ = false;
    if (bytes.front() == '\n') bytes.remove_prefix(1);
  }

  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  // Each terminator kind is located with its own memchr and the result reused until the
  // cursor passes it. That keeps the scan linear and vectorised, where a per-byte loop or
  // find_first_of would test every byte against both characters.
  const char* next_cr = find_byte(p, end, '\r');
  const char* next_lf = find_byte(p, end, '\n');

  while (p < end) {
    if (next_cr < p) next_cr = find_byte(p, end, '\r');
    if (next_lf < p) next_lf = find_byte(p, end, '\n');
    const char* const eol = std::min(next_cr, next_lf);

    if (eol == end) {
      // No terminator in the rest of the chunk: keep the partial line for the next feed.
      const auto rest = static_cast<std::size_t>(end - p);
      if (rest > options_.max_line_bytes - std::min(tail_.size(), options_.max_line_bytes)) {
        return line_too_long(options_.max_line_bytes);
      }
      tail_.append(p, rest);
      return Status::ok();
    }

    const std::string_view piece(p, static_cast<std::size_t>(eol - p));
    if (tail_.empty()) {
      // Common case: the whole line is inside this chunk and is used in place.
      if (piece.size() > options_.max_line_bytes) return line_too_long(options_.max_line_bytes);
      AGENTRY_RETURN_IF_ERROR(process_line(piece, sink));
    } else {
      if (piece.size() > options_.max_line_bytes - std::min(tail_.size(), options_.max_line_bytes)) {
        return line_too_long(options_.max_line_bytes);
      }
      tail_.append(piece);
      AGENTRY_RETURN_IF_ERROR(process_line(tail_, sink));
      clear_buffer(tail_);
    }

    p = eol + 1;
    if (*eol == '\r') {
      if (p == end) {
        skip_lf_ = true;  // the LF of a CRLF may be the first byte of the next chunk
      } else if (*p == '\n') {
        ++p;
      }
    }
  }
  return Status::ok();
}

Status SseDecoder::process_line(std::string_view line, SseSink& sink) {
  if (line.empty()) {
    dispatch(sink);
    return Status::ok();
  }
  if (line.front() == ':') {
    sink.on_comment(line.substr(1));
    return Status::ok();
  }

  // Every other line is a field line, whether or not the field is known or its value
  // accepted; see dispatch() for why that matters.
  have_fields_ = true;
  const std::size_t colon = line.find(':');
  const std::string_view name = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }

  if (name == "data") {
    // data_ holds each value plus '\n'; the dispatched payload drops only the final one,
    // so its size after this line would be data_.size() + value.size().
    const std::size_t limit = options_.max_event_data_bytes;
    if (data_.size() > limit || value.size() > limit - data_.size()) {
      return out_of_range("SSE event data exceeds max_event_data_bytes (" + std::to_string(limit) + ")");
    }
    data_.append(value);
    data_.push_back('\n');
  } else if (name == "event") {
    type_.assign(value);
  } else if (name == "id") {
    // An id containing NUL could not be sent back in a Last-Event-ID header; ignore it.
    if (value.find('\0') == std::string_view::npos) last_event_id_.assign(value);
  } else if (name == "retry") {
    if (const auto delay = parse_retry(value)) sink.on_retry(*delay);
  }
  // Unknown fields are ignored.
  return Status::ok();
}

// Our spec dispatches on a blank line whenever any field line was seen since the last
// dispatch, so an event with only `event:`, `id:` or even an unknown field is delivered
// with empty data. (The WHATWG algorithm instead drops events whose data buffer is empty.)
// Callers ignore event types they do not handle, so the extra empty events are harmless,
// and an `id`-only event still tells the caller the stream position moved.
void SseDecoder::dispatch(SseSink& sink) {
  if (have_fields_) {
    std::string_view data = data_;
    if (!data.empty()) data.remove_suffix(1);  // the '\n' after the last value
    sink.on_event(SseEvent{type_, data, last_event_id_});
  }
  have_fields_ = false;
  clear_buffer(type_);
  clear_buffer(data_);
}

bool SseDecoder::finish() {
  if (!status_.is_ok()) return false;
  // A buffered comment is no loss; a partial BOM is not an event either.
  const bool discarded = have_fields_ || (!tail_.empty() && tail_.front() != ':');
  clear_stream_state();
  return discarded;
}

void SseDecoder::reset() {
  clear_stream_state();
  clear_buffer(last_event_id_);
  status_ = Status::ok();
}

void SseDecoder::clear_stream_state() {
  clear_buffer(tail_);
  clear_buffer(data_);
  clear_buffer(type_);
  have_fields_ = false;
  skip_lf_ = false;
  at_stream_start_ = true;
  bom_bytes_matched_ = 0;
}

}  // namespace agentry::wire
