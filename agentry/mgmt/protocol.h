// Message types and MessagePack payloads of the management socket.
//
// The frame around each payload lives in agentry/wire/mgmt_frame.h; this file only knows
// what goes inside. Types 0xA0..0xA9 and their payload keys match cliwrap's `mgmt`
// package, so a cliwrap client can talk to agentryd; 0xAA..0xAE are agentry's own, and
// extra keys inside cliwrap's payloads carry agentry-only fields that cliwrap ignores.
// docs/mgmt-protocol.md is the reference for every key.
//
// Encoders append to a std::string (so a frame can be built in place, see
// wire::begin_mgmt_frame). Decoders are lenient where the wire allows it and strict where
// it matters:
//   - any MessagePack integer width is accepted for an integer field, as long as the value
//     fits; str and bin are both accepted for string and byte fields;
//   - unknown keys are skipped, missing keys and nil values leave the field's default;
//   - a value of the wrong type is an error naming the field, e.g.
//     "LogsRequest.s: expected an unsigned integer, got string";
//   - input that is not one well-formed MessagePack value, or that is nested or sized
//     beyond fixed limits, is refused before anything is allocated for it, so a hostile
//     16 MiB payload costs at most a small multiple of its own size.
// Decode errors are kInvalidArgument, except a log stream number other than 0 or 1, which is
// kOutOfRange (the payload is well formed; the server answers it and keeps the connection).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/mgmt/manager_api.h"

namespace agentry::mgmt {

enum class MsgType : uint8_t {
  // cliwrap's types.
  kListRequest = 0xA0,      // empty payload
  kListResponse = 0xA1,     // ListResponse
  kStatusRequest = 0xA2,    // IdRequest
  kStatusResponse = 0xA3,   // StatusResponse; also the reply to every command and error
  kLogsRequest = 0xA4,      // LogsRequest
  kLogsStream = 0xA5,       // LogsStream
  kEventsSubscribe = 0xA6,  // EventsSubscribe
  kEventsStream = 0xA7,     // Event
  kStartRequest = 0xA8,     // IdRequest
  kStopRequest = 0xA9,      // IdRequest
  // agentry's extensions.
  kRestartRequest = 0xAA,  // IdRequest -> StatusResponse
  kReloadRequest = 0xAB,   // empty payload -> StatusResponse (entry empty)
  kSignalRequest = 0xAC,   // SignalRequest -> StatusResponse
  kInfoRequest = 0xAD,     // empty payload -> InfoResponse
  kInfoResponse = 0xAE,    // DaemonInfo
  // 0xAF is reserved.
};

constexpr uint8_t to_byte(MsgType type) noexcept { return static_cast<uint8_t>(type); }

// "ListRequest", "StatusResponse", ...; "unknown" for a byte that names no type.
std::string_view msg_type_name(uint8_t type) noexcept;
// True for the 0xA0..0xAE values above.
bool is_known_msg_type(uint8_t type) noexcept;

// Payloads with no fields (ListRequest, ReloadRequest, InfoRequest). cliwrap sends an empty
// payload; an empty map or nil is accepted too.
struct EmptyRequest {
  bool operator==(const EmptyRequest&) const = default;
};

// StatusRequest, StartRequest, StopRequest, RestartRequest: {id}.
struct IdRequest {
  std::string id;
  bool operator==(const IdRequest&) const = default;
};

// {id, sig}: sends signal `sig` to the process group of `id`.
struct SignalRequest {
  std::string id;
  int signal = 0;
  bool operator==(const SignalRequest&) const = default;
};

// {entries: [ListEntry]}
struct ListResponse {
  std::vector<ListEntry> entries;
  bool operator==(const ListResponse&) const = default;
};

// {entry, err} plus our key `code`: the StatusCode name ("NOT_FOUND", ...) when err is set,
// so that clients can tell "no such process" from a failed command without parsing text.
struct StatusResponse {
  ListEntry entry;
  std::string err;   // "" on success
  std::string code;  // "" on success or when the peer does not send it (cliwrap)
  bool operator==(const StatusResponse&) const = default;

  // err/code as a Status (OK when err is empty). A missing or unknown code maps to
  // kFailedPrecondition: the request reached the manager and was refused.
  Status to_status() const;
  // The reverse: err = message, code = the code's name.
  static StatusResponse from_status(const Status& status, ListEntry entry = {});
};

// {id, s, f}
struct LogsRequest {
  std::string id;
  uint8_t stream = 0;  // 0 stdout, 1 stderr
  bool follow = false;
  bool operator==(const LogsRequest&) const = default;
};

// {id, s, d, eof}
struct LogsStream {
  std::string id;
  uint8_t stream = 0;
  std::string data;  // raw bytes, sent as MessagePack bin
  bool eof = false;
  bool operator==(const LogsStream&) const = default;
};

// {pids}: an empty list subscribes to every process.
struct EventsSubscribe {
  std::vector<std::string> ids;
  bool operator==(const EventsSubscribe&) const = default;
};

// ---- Encoders: append one MessagePack map to `out`. ----
void encode(const EmptyRequest& value, std::string& out);  // {} (cliwrap itself sends nothing)
void encode(const IdRequest& value, std::string& out);
void encode(const SignalRequest& value, std::string& out);
void encode(const ListEntry& value, std::string& out);
void encode(const ListResponse& value, std::string& out);
void encode(const StatusResponse& value, std::string& out);
void encode(const LogsRequest& value, std::string& out);
void encode(const LogsStream& value, std::string& out);
void encode(const EventsSubscribe& value, std::string& out);
void encode(const Event& value, std::string& out);       // EventsStream
void encode(const DaemonInfo& value, std::string& out);  // InfoResponse
// LogsStream without copying the bytes into a LogsStream first.
void encode_logs_stream(std::string_view id, uint8_t stream, std::string_view data, bool eof, std::string& out);

template <typename T>
std::string encode_to_string(const T& value) {
  std::string out;
  encode(value, out);
  return out;
}

// ---- Decoders. ----
// `type` only names the message in error text ("StopRequest.id: ..."); an empty payload
// is valid only for payloads without fields.
Result<EmptyRequest> decode_empty_request(std::string_view payload, MsgType type = MsgType::kListRequest);
Result<IdRequest> decode_id_request(std::string_view payload, MsgType type = MsgType::kStatusRequest);
Result<SignalRequest> decode_signal_request(std::string_view payload);
Result<ListEntry> decode_list_entry(std::string_view payload);
Result<ListResponse> decode_list_response(std::string_view payload);
Result<StatusResponse> decode_status_response(std::string_view payload);
Result<LogsRequest> decode_logs_request(std::string_view payload);
Result<LogsStream> decode_logs_stream(std::string_view payload);
Result<EventsSubscribe> decode_events_subscribe(std::string_view payload);
Result<Event> decode_event(std::string_view payload);             // EventsStream
Result<DaemonInfo> decode_daemon_info(std::string_view payload);  // InfoResponse

// Limits applied by every decoder before building anything (see the file comment).
inline constexpr uint32_t kMaxNestingDepth = 32;
inline constexpr uint32_t kMaxObjectsPerPayload = uint32_t{1} << 20;

}  // namespace agentry::mgmt
