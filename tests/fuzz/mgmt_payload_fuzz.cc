// Fuzz target for the management payload decoders.
//
// Input: one selector byte, then the payload. The selector's low four bits pick the message
// type 0xA0..0xAF and so the decoder (0xAF, reserved, exercises the bare ListEntry decoder).
// Besides not crashing, leaking or hanging on any input, whatever decodes must survive a
// round trip: its encoding decodes again and re-encodes to the very same bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agentry/mgmt/protocol.h"

namespace {

using agentry::mgmt::MsgType;

template <typename Decode>
void decode_and_round_trip(std::string_view payload, Decode decode) {
  auto first = decode(payload);
  if (!first.is_ok()) return;
  const std::string encoded = agentry::mgmt::encode_to_string(*first);
  auto second = decode(encoded);
  if (!second.is_ok()) std::abort();
  if (agentry::mgmt::encode_to_string(*second) != encoded) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace m = agentry::mgmt;
  if (size == 0) return 0;
  const auto type = static_cast<MsgType>(0xA0 | (data[0] & 0x0F));
  const std::string_view payload(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (type) {
    case MsgType::kListRequest:
    case MsgType::kReloadRequest:
    case MsgType::kInfoRequest:
      decode_and_round_trip(payload, [type](std::string_view p) { return m::decode_empty_request(p, type); });
      break;
    case MsgType::kStatusRequest:
    case MsgType::kStartRequest:
    case MsgType::kStopRequest:
    case MsgType::kRestartRequest:
      decode_and_round_trip(payload, [type](std::string_view p) { return m::decode_id_request(p, type); });
      break;
    case MsgType::kSignalRequest: decode_and_round_trip(payload, m::decode_signal_request); break;
    case MsgType::kLogsRequest: decode_and_round_trip(payload, m::decode_logs_request); break;
    case MsgType::kEventsSubscribe: decode_and_round_trip(payload, m::decode_events_subscribe); break;
    // Replies and pushed frames: what the client decodes.
    case MsgType::kListResponse: decode_and_round_trip(payload, m::decode_list_response); break;
    case MsgType::kStatusResponse: decode_and_round_trip(payload, m::decode_status_response); break;
    case MsgType::kLogsStream: decode_and_round_trip(payload, m::decode_logs_stream); break;
    case MsgType::kEventsStream: decode_and_round_trip(payload, m::decode_event); break;
    case MsgType::kInfoResponse: decode_and_round_trip(payload, m::decode_daemon_info); break;
    default: decode_and_round_trip(payload, m::decode_list_entry); break;
  }
  return 0;
}
