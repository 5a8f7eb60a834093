// Fuzzes JsonObjectReader with the stream delivered in pieces.
//
// Input layout: byte 0 seeds the chunk sizes, the rest is the byte stream. The reader's
// verdict (state, where the object ends or the error is, the buffered bytes, the status)
// must not depend on the chunking, and must agree with a deliberately naive byte-by-byte
// model of the same framing rules. Small limits make the size and depth checks reachable.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/wire/json_object_reader.h"

namespace {

using agentry::Status;
using agentry::StatusCode;
using agentry::wire::JsonObjectReader;
using agentry::wire::JsonObjectReaderOptions;
using State = JsonObjectReader::State;

constexpr JsonObjectReaderOptions kOptions{.max_bytes = 512, .max_depth = 8};

void check(bool ok) {
  if (!ok) std::abort();
}

struct Verdict {
  State state = State::kNeedMore;
  std::size_t end = 0;  // stream offset: one past the object, or the offending byte
  std::string object;
  StatusCode code = StatusCode::kOk;
};

Verdict read(const std::vector<std::string_view>& chunks, Status* status) {
  JsonObjectReader reader(kOptions);
  Verdict v;
  std::size_t offset = 0;
  for (const std::string_view chunk : chunks) {
    const JsonObjectReader::Progress p = reader.feed(chunk);
    v.state = p.state;
    if (p.state != State::kNeedMore) {
      check(p.consumed <= chunk.size());
      v.end = offset + p.consumed;
      // Terminal states stick and consume nothing.
      const JsonObjectReader::Progress again = reader.feed("{}");
      check(again.state == p.state && again.consumed == 0);
      break;
    }
    check(p.consumed == chunk.size());
    offset += chunk.size();
  }
  check(reader.state() == v.state);
  check(reader.bytes_consumed() <= kOptions.max_bytes);
  v.object = std::string(reader.buffered());
  v.code = reader.status().code();
  *status = reader.status();
  return v;
}

// The framing rules spelled out one byte at a time, without the reader's fast paths.
Verdict model(std::string_view s) {
  Verdict v;
  std::string closers;
  bool in_string = false;
  bool escaped = false;
  std::size_t start = std::string_view::npos;
  const auto error = [&](std::size_t at, StatusCode code) {
    v.state = State::kError;
    v.end = at;
    v.code = code;
    return v;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i >= kOptions.max_bytes) return error(i, StatusCode::kOutOfRange);
    const char c = s[i];
    if (start == std::string_view::npos) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
      if (c != '{') return error(i, StatusCode::kInvalidArgument);
      start = i;
      closers.push_back('}');
      continue;
    }
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (closers.size() >= kOptions.max_depth) return error(i, StatusCode::kOutOfRange);
      closers.push_back(c == '{' ? '}' : ']');
    } else if (c == '}' || c == ']') {
      if (c != closers.back()) return error(i, StatusCode::kInvalidArgument);
      closers.pop_back();
      if (closers.empty()) {
        v.state = State::kComplete;
        v.end = i + 1;
        v.object = std::string(s.substr(start, i + 1 - start));
        return v;
      }
    }
  }
  if (start != std::string_view::npos) v.object = std::string(s.substr(start));
  return v;
}

bool same(const Verdict& a, const Verdict& b) {
  return a.state == b.state && a.end == b.end && a.object == b.object && a.code == b.code;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::uint32_t state = data[0] * 2654435761u + 1;
  const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<std::string_view> chunks;
  for (std::size_t pos = 0; pos < stream.size();) {
    state = state * 1103515245u + 12345u;
    const std::size_t n = (state >> 16) % 9;
    chunks.push_back(stream.substr(pos, n));
    pos += n;
  }

  Status whole_status;
  Status chunked_status;
  const Verdict whole = read({stream}, &whole_status);
  const Verdict chunked = read(chunks, &chunked_status);
  check(same(whole, chunked));
  check(whole_status == chunked_status);
  check(same(whole, model(stream)));
  if (whole.state == State::kComplete) {
    check(whole.object.size() <= kOptions.max_bytes);
    check(whole.object.front() == '{' && whole.object.back() == '}');
  }
  return 0;
}
