#include "agentry/command/protocol.h"

#include <array>
#include <limits>
#include <optional>
#include <utility>

namespace agentry::command {

using json = nlohmann::json;

namespace {

constexpr std::string_view kWhitespace = " \t\n\r";

// Compact output that never throws on bad UTF-8 (it becomes U+FFFD instead).
std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// `key` equals `lower` (already lower case) ignoring ASCII case. Go folds a few non-ASCII
// letters too (U+017F and U+212A), but none of them fold to a letter in our key names.
bool key_matches(std::string_view key, std::string_view lower) noexcept {
  if (key.size() != lower.size()) return false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    if (ascii_lower(key[i]) != lower[i]) return false;
  }
  return true;
}

// What one top-level field turned out to hold, by the last key matching its name.
struct Picked {
  bool present = false;
  bool scalar = false;  // false: an object or an array
  json value;           // the scalar, when scalar
};

// A SAX pass over one document that validates all of it and remembers, for each wanted
// top-level field name, the value of the last key matching it ignoring ASCII case. No
// document is built, so the server pays one scan for a request of any size.
template <std::size_t N>
class TopLevelPicker final : public nlohmann::json_sax<json> {
 public:
  explicit TopLevelPicker(const std::array<std::string_view, N>& lower_names) : names_(lower_names) {}

  bool null() override { return scalar(json(nullptr)); }
  bool boolean(bool v) override { return scalar(json(v)); }
  bool number_integer(number_integer_t v) override { return scalar(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return scalar(json(v)); }
  bool number_float(number_float_t v, const string_t& /*text*/) override { return scalar(json(v)); }
  bool string(string_t& v) override { return scalar(json(std::move(v))); }
  bool binary(binary_t& /*v*/) override { return scalar(json()); }  // never produced by the JSON parser

  bool start_object(std::size_t /*elements*/) override {
    if (depth_ == 0) top_is_object_ = true;
    return open();
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t /*elements*/) override { return open(); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    if (depth_ != 1) return true;
    pending_ = -1;
    for (std::size_t i = 0; i < N; ++i) {
      if (key_matches(k, names_[i])) pending_ = static_cast<int>(i);
    }
    return true;
  }

  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& /*error*/) override {
    return false;
  }

  bool top_is_object() const noexcept { return top_is_object_; }
  const Picked& picked(std::size_t i) const noexcept { return picked_[i]; }

 private:
  bool scalar(json value) {
    if (depth_ == 1 && pending_ >= 0) {
      Picked& p = picked_[static_cast<std::size_t>(pending_)];
      p = Picked{true, true, std::move(value)};
      pending_ = -1;
    }
    return true;
  }
  bool open() {
    if (depth_ == 1 && pending_ >= 0) {
      picked_[static_cast<std::size_t>(pending_)] = Picked{true, false, json()};
      pending_ = -1;
    }
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  std::array<std::string_view, N> names_;
  std::array<Picked, N> picked_{};
  std::size_t depth_ = 0;
  int pending_ = -1;
  bool top_is_object_ = false;
};

// Runs `picker` over `text`; false unless the text is exactly one valid JSON object.
template <std::size_t N>
bool pick(std::string_view text, TopLevelPicker<N>& picker) {
  const char* const begin = text.data();
  const char* const end = begin + text.size();
  const bool parsed = json::sax_parse(begin, end, &picker);
  return parsed && picker.top_is_object();
}

// Keeps only the fields of `object` whose names match none of `lower_names`.
template <std::size_t N>
json without_keys(const json& object, const std::array<std::string_view, N>& lower_names) {
  json out = json::object();
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool drop = false;
    for (const std::string_view name : lower_names) drop = drop || key_matches(it.key(), name);
    if (!drop) out[it.key()] = it.value();
  }
  return out;
}

constexpr std::array<std::string_view, 1> kCommandKey{"command"};
constexpr std::array<std::string_view, 2> kResponseKeys{"status", "statusmessage"};

Status not_an_object() { return invalid_argument("the text is not one valid JSON object"); }

}  // namespace

// ------------------------------------------------------------------ status values

std::string_view standard_message(int status) noexcept {
  switch (status) {
    case kStatusNoHandler: return "Could not find a handler for the requested command";
    case kStatusBadRequest: return "Could not parse valid JSON from request";
    case kStatusConnectionError: return "Connection error";
    case kStatusTimeout: return "Connection timeout before reading valid request";
    case kStatusHandlerError: return "The command handler encountered an error processing your request";
    case kStatusInternalError: return "The command handler's response could not be encoded as a JSON object";
    default: return {};
  }
}

std::string make_response(int status, std::string_view message) {
  json out = json::object();
  out["Status"] = status;
  out["StatusMessage"] = std::string(message);
  return dump(out);
}

std::string standard_response(int status) { return make_response(status, standard_message(status)); }

// ------------------------------------------------------------------ sockets

std::string_view listener_name(Listener listener) noexcept {
  switch (listener) {
    case Listener::kAgent: return "agent";
    case Listener::kPlugin: return "plugin";
  }
  return "unknown";
}

Result<Listener> parse_listener(std::string_view name) {
  if (name == listener_name(Listener::kAgent)) return Listener::kAgent;
  if (name == listener_name(Listener::kPlugin)) return Listener::kPlugin;
  return invalid_argument("unknown command listener \"" + std::string(name) + "\" (expected \"agent\" or \"plugin\")");
}

std::string pipe_name(std::string_view dir, Listener listener) {
  std::string path(dir);
  if (path.empty() || path.back() != '/') path.push_back('/');
  path.append(listener_name(listener));
  return path;
}

// ------------------------------------------------------------------ requests

Result<std::string> command_name(std::string_view request_json) {
  TopLevelPicker<1> picker(kCommandKey);
  if (!pick(request_json, picker)) return not_an_object();
  const Picked& command = picker.picked(0);
  if (!command.present || (command.scalar && command.value.is_null())) return std::string();
  if (!command.scalar || !command.value.is_string()) {
    return invalid_argument("the request's Command field is not a string");
  }
  return command.value.get<std::string>();
}

Result<Request> Request::parse(std::string_view request_json) {
  Result<std::string> command = command_name(request_json);
  if (!command) return std::move(command).take_status();
  Request request;
  request.command = std::move(command).value();
  request.fields = json::parse(request_json, nullptr, /*allow_exceptions=*/false);
  // command_name() accepted the same text, so this parse cannot fail; stay defensive.
  if (!request.fields.is_object()) return not_an_object();
  return request;
}

std::string Request::to_json() const {
  json out = fields.is_object() ? without_keys(fields, kCommandKey) : json::object();
  out["Command"] = command;
  return dump(out);
}

Result<Response> Response::parse(std::string_view response_json) {
  TopLevelPicker<2> picker(kResponseKeys);
  if (!pick(response_json, picker)) return not_an_object();
  Response response;
  const Picked& status = picker.picked(0);
  if (status.present && !(status.scalar && status.value.is_null())) {
    const json& v = status.value;
    bool fits = false;
    if (status.scalar && v.is_number_unsigned()) {
      fits = v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max());
    } else if (status.scalar && v.is_number_integer()) {
      const auto n = v.get<std::int64_t>();
      fits = n >= std::numeric_limits<int>::min() && n <= std::numeric_limits<int>::max();
    }
    if (!fits) return invalid_argument("the response's Status field is not an integer that fits an int");
    response.status = static_cast<int>(v.get<std::int64_t>());
  }
  const Picked& message = picker.picked(1);
  if (message.present && !(message.scalar && message.value.is_null())) {
    if (!message.scalar || !message.value.is_string()) {
      return invalid_argument("the response's StatusMessage field is not a string");
    }
    response.status_message = message.value.get<std::string>();
  }
  json all = json::parse(response_json, nullptr, /*allow_exceptions=*/false);
  if (!all.is_object()) return not_an_object();
  response.fields = without_keys(all, kResponseKeys);
  return response;
}

std::string Response::to_json() const {
  json out = fields.is_object() ? without_keys(fields, kResponseKeys) : json::object();
  out["Status"] = status;
  out["StatusMessage"] = status_message;
  return dump(out);
}

bool is_json_object(std::string_view text) noexcept {
  const std::size_t first = text.find_first_not_of(kWhitespace);
  if (first == std::string_view::npos || text[first] != '{') return false;
  try {
    return json::accept(text);
  } catch (...) {  // only allocation failure can get here
    return false;
  }
}

// ------------------------------------------------------------------ RequestReader

RequestReader::RequestReader(std::size_t max_bytes)
    : reader_(wire::JsonObjectReaderOptions{.max_bytes = max_bytes}), max_bytes_(max_bytes) {}

RequestReader::State RequestReader::feed(std::string_view chunk) {
  if (state_ != State::kNeedMore) return state_;
  const wire::JsonObjectReader::Progress progress = reader_.feed(chunk);
  switch (progress.state) {
    case wire::JsonObjectReader::State::kNeedMore:
      break;
    case wire::JsonObjectReader::State::kComplete:
      state_ = State::kComplete;
      break;
    case wire::JsonObjectReader::State::kError:
      state_ = State::kError;
      // The reader stops at the size cap, so reaching it is what tells the size error
      // apart from a nesting one (both are kOutOfRange).
      over_size_ = reader_.status().code() == StatusCode::kOutOfRange && reader_.bytes_consumed() >= max_bytes_;
      break;
  }
  return state_;
}

std::string RequestReader::error_response() const {
  if (over_size_) return make_response(kStatusBadRequest, "request exceeds " + std::to_string(max_bytes_) + " bytes");
  return standard_response(kStatusBadRequest);
}

}  // namespace agentry::command
