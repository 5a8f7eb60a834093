// Listening unix sockets created safely: the directory is ours and no wider than asked,
// a stale socket file from a dead process is replaced, a live one is never stolen, and the
// socket file has its final mode from the instant bind() creates it.
//
// Used by the management server (mgmt) and the command monitor (command); any module that
// listens on a unix socket should go through here.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <optional>
#include <string>
#include <string_view>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"

namespace spdlog {
class logger;
}

namespace agentry {

struct SocketDirPolicy {
  mode_t mode = 0700;             // given to the directory we create; the widest we accept
  std::optional<gid_t> group;     // chown the directory to this group
  mode_t parent_mode = 0700;      // missing parents are created with this mode (less umask)
  // An existing directory wider than `mode`: narrow it (true), or refuse when group or
  // others could write to it (false: the directory belongs to someone else's setup).
  bool narrow_existing = false;
  std::string_view what = "socket";  // "management socket", for messages
};

// Makes `dir` and missing parents; refuses symlinks, non-directories and directories owned
// by another uid, because whoever controls the directory can swap the socket.
Status prepare_socket_dir(std::string dir, const SocketDirPolicy& policy, spdlog::logger& logger);

// Non-empty, no NUL, short enough for sockaddr_un.
Status check_unix_socket_path(const std::string& path, std::string_view what);
// `path` must have passed check_unix_socket_path.
sockaddr_un unix_socket_address(const std::string& path);

// A socket file nobody listens on (its process died) is removed; a live listener is
// kAlreadyExists, any other kind of file kFailedPrecondition. Never blocks.
Status remove_stale_socket(const std::string& path, std::string_view what, spdlog::logger& logger);

struct BoundUnixSocket {
  UniqueFd fd;  // listening, CLOEXEC, blocking unless asked otherwise
  dev_t dev = 0;  // identity of the file we created, so we never delete a successor's
  ino_t ino = 0;
};

// socket + bind + chown/chmod + listen. The inode is narrowed to 0600 before bind(), so
// the file is never reachable with a wider mode than the final one (the process umask is
// left alone: it is process-wide and other threads may be creating files).
Result<BoundUnixSocket> bind_unix_socket(const std::string& path, mode_t mode, std::optional<gid_t> group,
                                         bool nonblocking = false);

// Unlinks `path` only if it is still the file `bound` created. Returns false (and leaves
// it) when somebody replaced it.
bool remove_own_socket_file(const std::string& path, dev_t dev, ino_t ino);

}  // namespace agentry
