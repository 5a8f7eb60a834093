#include "agentry/wire/json_object_reader.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <utility>

namespace agentry::wire {
namespace {

// Buffers grown past this by one large request are released on reset() instead of being
// pinned for the life of a long-running server.
constexpr std::size_t kRetainedCapacity = std::size_t{64} << 10;

// Byte classes, looked up by table so the skip loops test one load per byte.
enum : unsigned char { kPlain = 0, kStructural = 1 };

constexpr std::array<unsigned char, 256> make_table(std::string_view special) {
  std::array<unsigned char, 256> table{};
  for (const char c : special) table[static_cast<unsigned char>(c)] = kStructural;
  return table;
}

// Outside strings only quotes and brackets matter; inside, only the quote and backslash.
constexpr auto kValueTable = make_table("\"{}[]");
constexpr auto kStringTable = make_table("\"\\");

bool is_json_whitespace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// "'x'" for printable ASCII, "byte 0xNN" otherwise, so messages never carry raw control bytes.
std::string describe(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7f) return std::string{'\'', c, '\''};
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", u);
  return std::string("byte ") + hex;
}

Status depth_exceeded(std::size_t max_depth, std::size_t at) {
  return out_of_range("JSON nesting exceeds max_depth (" + std::to_string(max_depth) + ") at byte " +
                      std::to_string(at));
}

}  // namespace

JsonObjectReader::JsonObjectReader(JsonObjectReaderOptions options) : options_(options) {}

JsonObjectReader::Progress JsonObjectReader::feed(std::string_view chunk) {
  if (state_ != State::kNeedMore) return {state_, 0};

  // Scanning stops at the size cap; bytes past it are only looked at to report the error.
  const std::size_t budget = options_.max_bytes - consumed_;
  const std::size_t window = std::min(chunk.size(), budget);
  const char* const begin = chunk.data();
  const char* const end = begin + window;
  const char* p = begin;
  // Where this chunk's share of the object starts; null while still in leading whitespace.
  const char* object_start = phase_ == Phase::kLeading ? nullptr : begin;
  const auto offset = [&](const char* at) { return static_cast<std::size_t>(at - begin); };

  while (p < end) {
    switch (phase_) {
      case Phase::kLeading: {
        while (p < end && is_json_whitespace(*p)) ++p;
        if (p == end) break;
        if (*p != '{') {
          return fail(invalid_argument("expected '{' at byte " + std::to_string(consumed_ + offset(p)) +
                                       ", found " + describe(*p)),
                      offset(p));
        }
        if (options_.max_depth == 0) {
          return fail(depth_exceeded(options_.max_depth, consumed_ + offset(p)), offset(p));
        }
        object_start = p;
        closers_.push_back('}');
        ++p;
        phase_ = Phase::kValue;
        break;
      }
      case Phase::kValue: {
        while (p < end && kValueTable[static_cast<unsigned char>(*p)] == kPlain) ++p;
        if (p == end) break;
        const char c = *p;
        if (c == '"') {
          phase_ = Phase::kString;
        } else if (c == '{' || c == '[') {
          if (closers_.size() >= options_.max_depth) {
            return fail(depth_exceeded(options_.max_depth, consumed_ + offset(p)), offset(p));
          }
          closers_.push_back(c == '{' ? '}' : ']');
        } else {
          if (c != closers_.back()) {
            return fail(invalid_argument("unbalanced '" + std::string(1, c) + "' at byte " +
                                         std::to_string(consumed_ + offset(p)) + ": expected '" +
                                         std::string(1, closers_.back()) + "'"),
                        offset(p));
          }
          closers_.pop_back();
          if (closers_.empty()) {
            ++p;
            buffer_.append(object_start, static_cast<std::size_t>(p - object_start));
            consumed_ += offset(p);
            state_ = State::kComplete;
            return {State::kComplete, offset(p)};
          }
        }
        ++p;
        break;
      }
      case Phase::kString: {
        while (p < end && kStringTable[static_cast<unsigned char>(*p)] == kPlain) ++p;
        if (p == end) break;
        // A backslash escapes exactly one byte. For \uXXXX that byte is the 'u' and the hex
        // digits are plain, so the escape flag covers every form.
        phase_ = *p == '"' ? Phase::kValue : Phase::kEscape;
        ++p;
        break;
      }
      case Phase::kEscape: {
        ++p;
        phase_ = Phase::kString;
        break;
      }
    }
  }

  if (object_start != nullptr) buffer_.append(object_start, static_cast<std::size_t>(end - object_start));
  consumed_ += window;
  if (window < chunk.size()) {
    return fail(out_of_range("JSON object exceeds " + std::to_string(options_.max_bytes) + " bytes"), window);
  }
  return {State::kNeedMore, chunk.size()};
}

JsonObjectReader::Progress JsonObjectReader::fail(Status status, std::size_t offset_in_chunk) {
  state_ = State::kError;
  status_ = std::move(status);
  std::string().swap(buffer_);
  std::string().swap(closers_);
  return {State::kError, offset_in_chunk};
}

void JsonObjectReader::reset() {
  state_ = State::kNeedMore;
  phase_ = Phase::kLeading;
  status_ = Status::ok();
  if (buffer_.capacity() > kRetainedCapacity) {
    std::string().swap(buffer_);
  } else {
    buffer_.clear();
  }
  closers_.clear();
  consumed_ = 0;
}

}  // namespace agentry::wire
