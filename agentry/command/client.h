// Sending one command to a command monitor (monitor.h) and waiting for its reply.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "agentry/command/protocol.h"

namespace agentry::command {

inline constexpr std::chrono::milliseconds kDefaultCommandTimeout{std::chrono::seconds(10)};
// Replies larger than this are refused (103) instead of being buffered.
inline constexpr std::size_t kMaxResponseBytes = std::size_t{16} << 20;

// Connects to the unix socket at `socket_path`, writes `request_json` (sent as given, so it
// should be one JSON object with a Command field), and returns the server's reply: one JSON
// object, conventionally with Status and StatusMessage (Response::parse reads it).
//
// The reply is complete at the closing brace of its object: the server need not close
// first, and bytes after the object are ignored.
//
// Never throws and never returns anything but a JSON object. Every failure on our side of
// the exchange becomes a 103 reply whose StatusMessage starts with "Connection error: " and
// says what failed: connecting (no such socket, refused, permission denied, backlog full
// until the deadline), writing, reading, no reply before the deadline, the server closing
// without a reply, or a reply that is not a JSON object, is cut short, or exceeds
// kMaxResponseBytes.
// `timeout` bounds the whole exchange, connect included. Blocks the calling thread; safe
// to call from any number of threads at once. SIGPIPE is never raised.
std::string send_command(std::string_view request_json, const std::string& socket_path,
                         std::chrono::milliseconds timeout = kDefaultCommandTimeout) noexcept;

// send_command(request_json, pipe_name(dir, listener), timeout).
std::string send_command(std::string_view request_json, std::string_view dir, Listener listener,
                         std::chrono::milliseconds timeout = kDefaultCommandTimeout) noexcept;

}  // namespace agentry::command
