// systemd's readiness protocol (sd_notify): one datagram to $NOTIFY_SOCKET.
// A no-op when not started by systemd with Type=notify.
#pragma once

#include <string_view>

namespace agentry::agent {

// Sends e.g. "READY=1", "RELOADING=1", "STOPPING=1", "STATUS=..."; returns false when
// there is no notify socket or the send failed (never fatal).
bool sd_notify(std::string_view state);

}  // namespace agentry::agent
