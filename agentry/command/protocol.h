// The JSON command protocol of the Google guest agent's command monitor.
//
// One request per connection: the client writes one JSON object, the server answers with
// one JSON object and closes. docs/command-protocol.md is the reference; in short:
//   - a request is {"Command": "<name>", ...}; the key "Command" is matched ignoring ASCII
//     case, as Go's encoding/json does, and every other field is left for the handler;
//   - a response is {"Status": <int>, "StatusMessage": "<text>", ...}; Status 0 means
//     success by convention, and 101..106 are the protocol's own failures below.
//
// Nothing here does I/O: monitor.h serves requests, client.h sends them.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "agentry/base/status.h"
#include "agentry/wire/json_object_reader.h"

namespace agentry::command {

// ------------------------------------------------------------------ status values

inline constexpr int kStatusOk = 0;
// No handler is registered under the request's Command (or the request has none).
inline constexpr int kStatusNoHandler = 101;
// The request is not one valid JSON object, its Command is not a string, or it is too big.
inline constexpr int kStatusBadRequest = 102;
// The connection failed; also what send_command() returns when it cannot dial, write or read.
inline constexpr int kStatusConnectionError = 103;
// The request was not complete within the server's request timeout.
inline constexpr int kStatusTimeout = 104;
// The handler returned an error; StatusMessage is that error's text.
inline constexpr int kStatusHandlerError = 105;
// The handler's reply is not a JSON object and cannot be sent as one.
inline constexpr int kStatusInternalError = 106;

// The fixed StatusMessage of 101..106 ("Could not find a handler for the requested
// command", ...); empty for any other value.
std::string_view standard_message(int status) noexcept;

// {"Status":<status>,"StatusMessage":<message>} as compact JSON. Bytes of `message` that are
// not valid UTF-8 become U+FFFD, so the result is always valid JSON.
std::string make_response(int status, std::string_view message);
// make_response(status, standard_message(status)).
std::string standard_response(int status);

// ------------------------------------------------------------------ sockets

// The sockets a monitor can serve; each has its own file in the command directory.
enum class Listener { kAgent, kPlugin };

// "agent" or "plugin": the socket's file name.
std::string_view listener_name(Listener listener) noexcept;
// The listener named `name` (exact, lower case), or kInvalidArgument.
Result<Listener> parse_listener(std::string_view name);

// Where a monitor puts its sockets unless configured otherwise.
inline constexpr std::string_view kDefaultCommandDir = "/run/agentry/command";

// The socket path of `listener` under `dir`: dir + "/" + listener_name(listener), without
// doubling a trailing slash of `dir`.
std::string pipe_name(std::string_view dir, Listener listener);

// ------------------------------------------------------------------ requests

// The value of the request's Command field, found without building a document:
//   - "" when there is no such field or its value is null (as in Go, which then finds no
//     handler: the server answers 101);
//   - when several keys match ("Command", "command"), the last one in the text wins;
//   - kInvalidArgument when `request_json` is not exactly one valid JSON object (surrounding
//     whitespace aside), or a matching key holds something other than a string or null.
// Strings must be valid UTF-8.
Result<std::string> command_name(std::string_view request_json);

// A request with all its fields, for handlers and for clients building one.
struct Request {
  std::string command;
  // Every field as sent, including the Command key under whatever spelling it had. Always
  // an object.
  nlohmann::json fields = nlohmann::json::object();

  // Same acceptance rules as command_name().
  static Result<Request> parse(std::string_view request_json);
  // `fields` with the command stored under "Command" (other spellings of the key dropped).
  std::string to_json() const;
};

// A response with all its fields, for clients reading one and handlers building one.
struct Response {
  int status = kStatusOk;
  std::string status_message;
  // Every other field. Always an object; "Status" and "StatusMessage" in it are ignored
  // by to_json() in favour of the members above.
  nlohmann::json fields = nlohmann::json::object();

  // Reads "Status" and "StatusMessage" ignoring ASCII case, last match winning. A missing
  // or null Status reads as 0 and a missing or null StatusMessage as "". kInvalidArgument
  // when the text is not one JSON object, Status is not an integer that fits an int, or
  // StatusMessage is not a string.
  static Result<Response> parse(std::string_view response_json);
  std::string to_json() const;
};

// True when `text` is exactly one valid JSON object (surrounding whitespace aside).
bool is_json_object(std::string_view text) noexcept;

// ------------------------------------------------------------------ server-side framing

// Collects one request from a byte stream delivered in arbitrary pieces, the way the
// server reads it: wire::JsonObjectReader finds where the object ends (strings, escapes
// and nesting handled), bytes after the object are ignored, and anything that cannot be
// the start of a valid object, or grows past max_bytes, ends the read with a 102 reply.
class RequestReader {
 public:
  enum class State { kNeedMore, kComplete, kError };

  explicit RequestReader(std::size_t max_bytes);

  // Sticky once kComplete or kError.
  State feed(std::string_view chunk);
  State state() const noexcept { return state_; }
  // The request object's bytes (complete once state() is kComplete).
  std::string_view request() const noexcept { return reader_.buffered(); }
  // With state() kError: the 102 reply. An over-size request gets "request exceeds <N>
  // bytes"; anything else the standard message.
  std::string error_response() const;
  // With state() kError: why the framing failed, for logs.
  const Status& error() const noexcept { return reader_.status(); }

 private:
  wire::JsonObjectReader reader_;
  std::size_t max_bytes_;
  State state_ = State::kNeedMore;
  bool over_size_ = false;
};

}  // namespace agentry::command
