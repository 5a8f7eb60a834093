// Finds where one JSON object ends in a byte stream.
//
// A command client writes a single JSON object and then waits for the reply without
// closing its side, so the server has to recognise the object's last byte itself. Counting
// braces alone is wrong as soon as a string contains one (`{"a":"}"}`); this reader tracks
// strings, backslash escapes and {}/[] nesting, which is exactly enough to find the end of
// any valid object. It does not check the rest of the grammar: the bytes it collects go to
// a real JSON parser, which reports malformed input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "agentry/base/status.h"

namespace agentry::wire {

struct JsonObjectReaderOptions {
  // Most bytes accepted before the object is complete, leading whitespace included.
  std::size_t max_bytes = std::size_t{1} << 20;
  // Deepest nesting of objects and arrays; the outermost object is depth 1.
  std::size_t max_depth = 512;
};

class JsonObjectReader {
 public:
  enum class State { kNeedMore, kComplete, kError };

  struct Progress {
    State state = State::kNeedMore;
    // How many bytes of the chunk passed to feed() the reader used. On kComplete this is
    // one past the closing '}', so chunk.substr(consumed) is whatever followed the object.
    // On kError it is the offset of the offending byte in that chunk.
    std::size_t consumed = 0;
  };

  explicit JsonObjectReader(JsonObjectReaderOptions options = {});

  // Scans the next chunk of the stream. Once the reader has reached kComplete or kError it
  // stays there: later calls consume nothing and report the same state until reset().
  // Errors (see status()): kInvalidArgument when the first non-whitespace byte is not '{'
  // or a closing bracket does not match the open one; kOutOfRange when the object would
  // exceed max_bytes or nest deeper than max_depth.
  [[nodiscard]] Progress feed(std::string_view chunk);

  State state() const noexcept { return state_; }
  // OK unless state() is kError.
  const Status& status() const noexcept { return status_; }
  // The object's bytes seen so far, from its opening '{' (leading whitespace is skipped);
  // the complete object once state() is kComplete. Empty after an error.
  std::string_view buffered() const noexcept { return buffer_; }
  // Bytes of the stream accepted so far, leading whitespace included.
  std::size_t bytes_consumed() const noexcept { return consumed_; }

  // Ready for a new object; keeps the options.
  void reset();

 private:
  enum class Phase { kLeading, kValue, kString, kEscape };

  Progress fail(Status status, std::size_t offset_in_chunk);

  JsonObjectReaderOptions options_;
  State state_ = State::kNeedMore;
  Phase phase_ = Phase::kLeading;
  Status status_;
  std::string buffer_;
  // Closing bracket expected at each open level, innermost last.
  std::string closers_;
  std::size_t consumed_ = 0;
};

}  // namespace agentry::wire
