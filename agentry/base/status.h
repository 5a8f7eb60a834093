// Error and Result types shared by every agentry module.
//
// Errors from outside (sockets, files, config, the network) are values, not exceptions:
// a Status carries a machine-checkable code plus a message written for the operator
// ("which field, which line, what was expected").
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace agentry {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // malformed input: bad frame, bad config value, bad JSON
  kNotFound,            // no such process, option, file
  kAlreadyExists,       // duplicate registration or id
  kFailedPrecondition,  // call not valid in the current state (not started, already started)
  kOutOfRange,          // a size or count over its limit
  kPermissionDenied,    // peer credentials or file permissions refused
  kResourceExhausted,   // queue full, subscriber too slow
  kUnavailable,         // peer not reachable now; retrying may help
  kDeadlineExceeded,    // timed out
  kCancelled,           // stopped on request
  kDataLoss,            // truncated stream, unexpected EOF inside a message
  kInternal,            // a bug or an unexpected system failure
};

std::string_view status_code_name(StatusCode code) noexcept;

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {
    assert(code != StatusCode::kOk || message_.empty());
  }

  static Status ok() noexcept { return {}; }
  // An error from a failed system call: "<what>: <strerror(err)>" with a code derived from err.
  static Status from_errno(int err, std::string_view what);

  bool is_ok() const noexcept { return code_ == StatusCode::kOk; }
  explicit operator bool() const noexcept { return is_ok(); }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // Prefix the message with context, keeping the code: "loading x.yaml: line 3: ...".
  Status with_context(std::string_view context) const;
  // "INVALID_ARGUMENT: message" (or "OK").
  std::string to_string() const;

  friend bool operator==(const Status& a, const Status& b) noexcept {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status already_exists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status failed_precondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status out_of_range(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status permission_denied(std::string m) { return {StatusCode::kPermissionDenied, std::move(m)}; }
inline Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status deadline_exceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status data_loss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value or the Status explaining why there is none (C++20 has no std::expected).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!status_.is_ok() && "a Result holding a Status must hold an error");
  }

  bool is_ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return is_ok(); }

  const Status& status() const& { return status_; }
  Status take_status() && { return std::move(status_); }

  T& value() & { assert(is_ok()); return *value_; }
  const T& value() const& { assert(is_ok()); return *value_; }
  T&& value() && { assert(is_ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  T value_or(T fallback) const& { return is_ok() ? *value_ : std::move(fallback); }

 private:
  // Exactly one is meaningful: value_ when set, otherwise the (non-OK) status_.
  std::optional<T> value_;
  Status status_;
};

}  // namespace agentry

// Early return for Status-returning functions.
#define AGENTRY_RETURN_IF_ERROR(expr)            \
  do {                                           \
    ::agentry::Status agentry_status_ = (expr);  \
    if (!agentry_status_.is_ok()) return agentry_status_; \
  } while (false)
