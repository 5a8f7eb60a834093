#include "agentry/base/unix_socket.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/logger.h>

namespace agentry {
namespace {

Status apply_group(const std::string& path, std::optional<gid_t> group) {
  if (!group) return Status::ok();
  if (::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    return Status::from_errno(errno, fmt::format("setting the group of {} to {}", path, *group));
  }
  return Status::ok();
}

}  // namespace

Status prepare_socket_dir(std::string dir, const SocketDirPolicy& policy, spdlog::logger& logger) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) return invalid_argument(fmt::format("the {} directory is empty", policy.what));

  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::from_errno(errno, fmt::format("checking directory {}", dir));
    for (std::size_t slash = dir.find('/', 1); slash != std::string::npos; slash = dir.find('/', slash + 1)) {
      const std::string parent = dir.substr(0, slash);
      if (::mkdir(parent.c_str(), policy.parent_mode) != 0 && errno != EEXIST) {
        return Status::from_errno(errno, fmt::format("creating directory {}", parent));
      }
    }
    // Owner-only until the group is right, then exactly `mode` whatever the umask took away.
    if (::mkdir(dir.c_str(), 0700) == 0) {
      AGENTRY_RETURN_IF_ERROR(apply_group(dir, policy.group));
      if (::chmod(dir.c_str(), policy.mode) != 0) {
        return Status::from_errno(errno, fmt::format("setting the mode of {} to {:04o}", dir, policy.mode));
      }
      logger.debug("created {} directory {} (mode {:04o})", policy.what, dir, policy.mode);
      return Status::ok();
    }
    if (errno != EEXIST) return Status::from_errno(errno, fmt::format("creating directory {}", dir));
    if (::lstat(dir.c_str(), &st) != 0) return Status::from_errno(errno, fmt::format("checking directory {}", dir));
  }

  if (S_ISLNK(st.st_mode)) {
    return permission_denied(fmt::format("{} is a symbolic link; refusing to put the {} there", dir, policy.what));
  }
  if (!S_ISDIR(st.st_mode)) return failed_precondition(fmt::format("{} exists and is not a directory", dir));
  if (st.st_uid != ::geteuid()) {
    return permission_denied(fmt::format("{} is owned by uid {}, not by this process's uid {}; refusing to put the {} "
                                         "there",
                                         dir, st.st_uid, ::geteuid(), policy.what));
  }
  if (policy.group && st.st_gid != *policy.group) AGENTRY_RETURN_IF_ERROR(apply_group(dir, policy.group));
  const mode_t current = st.st_mode & 07777;
  const mode_t extra = current & ~policy.mode;
  if (extra == 0) return Status::ok();
  if (!policy.narrow_existing) {
    if ((extra & (S_IWGRP | S_IWOTH)) == 0) return Status::ok();
    return permission_denied(fmt::format("{} is writable by group or others (mode {:04o}); refusing to put the {} there",
                                         dir, current, policy.what));
  }
  const mode_t narrowed = current & policy.mode;
  if (::chmod(dir.c_str(), narrowed) != 0) {
    return Status::from_errno(errno, fmt::format("narrowing the mode of {} to {:04o}", dir, narrowed));
  }
  logger.info("narrowed the mode of {} from {:04o} to {:04o}", dir, current, narrowed);
  return Status::ok();
}

Status check_unix_socket_path(const std::string& path, std::string_view what) {
  if (path.empty()) return invalid_argument(fmt::format("the {} path is empty", what));
  if (path.find('\0') != std::string::npos) return invalid_argument(fmt::format("the {} path contains a NUL byte", what));
  constexpr std::size_t kMax = sizeof(sockaddr_un::sun_path);
  if (path.size() >= kMax) {
    return invalid_argument(fmt::format("socket path {} is {} bytes long; a unix socket path must be shorter than {} bytes",
                                        path, path.size(), kMax));
  }
  return Status::ok();
}

sockaddr_un unix_socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), std::min(path.size(), sizeof(addr.sun_path) - 1));
  return addr;
}

Status remove_stale_socket(const std::string& path, std::string_view what, spdlog::logger& logger) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return Status::from_errno(errno, fmt::format("checking {}", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return failed_precondition(fmt::format("{} exists and is not a socket; refusing to replace it", path));
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return Status::from_errno(errno, "creating a socket");
  const sockaddr_un addr = unix_socket_address(path);
  // Non-blocking: a live listener with a full backlog answers EAGAIN instead of stalling us.
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN ||
      errno == EINPROGRESS) {
    return already_exists(fmt::format("another process is listening on {}", path));
  }
  const int err = errno;
  if (err == ENOENT) return Status::ok();  // removed meanwhile
  if (err != ECONNREFUSED) return Status::from_errno(err, fmt::format("probing the existing socket {}", path));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::from_errno(errno, fmt::format("removing the stale socket {}", path));
  }
  logger.info("removed stale {} {}", what, path);
  return Status::ok();
}

Result<BoundUnixSocket> bind_unix_socket(const std::string& path, mode_t mode, std::optional<gid_t> group,
                                         bool nonblocking) {
  BoundUnixSocket bound;
  bound.fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!bound.fd) return Status::from_errno(errno, "creating a socket");
  // bind() creates the file with the socket inode's mode less the umask: narrowing the
  // inode first acts as a umask of 0177 for this one socket.
  if (::fchmod(bound.fd.get(), 0600) != 0) return Status::from_errno(errno, "setting the mode of a new socket");
  const sockaddr_un addr = unix_socket_address(path);
  if (::bind(bound.fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EADDRINUSE) {
      return already_exists(fmt::format("another process is listening on {} (it appeared while starting)", path));
    }
    return Status::from_errno(errno, fmt::format("binding {}", path));
  }
  auto fail = [&](Status status) -> Result<BoundUnixSocket> {
    ::unlink(path.c_str());
    return status;
  };
  if (Status s = apply_group(path, group); !s) return fail(std::move(s));
  if (::chmod(path.c_str(), mode) != 0) {
    return fail(Status::from_errno(errno, fmt::format("setting the mode of {} to {:04o}", path, mode)));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return fail(Status::from_errno(errno, fmt::format("checking {}", path)));
  bound.dev = st.st_dev;
  bound.ino = st.st_ino;
  if (::listen(bound.fd.get(), SOMAXCONN) != 0) {
    return fail(Status::from_errno(errno, fmt::format("listening on {}", path)));
  }
  return bound;
}

bool remove_own_socket_file(const std::string& path, dev_t dev, ino_t ino) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return true;
  if (st.st_dev != dev || st.st_ino != ino) return false;
  return ::unlink(path.c_str()) == 0 || errno == ENOENT;
}

}  // namespace agentry
