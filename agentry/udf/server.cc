#include "agentry/udf/server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include "agentry/base/log.h"

namespace agentry::udf {
namespace {

// Pause after an accept failure caused by resource exhaustion, so that a full descriptor
// table does not turn the accept loop into a busy loop.
constexpr int kAcceptRetryMs = 100;

// The descriptor registered signals make readable (an eventfd that is never reset: once a
// stop signal arrived, every server watching it stops, including ones serving later).
std::atomic<int> g_signal_fd{-1};

extern "C" void on_stop_signal(int /*signo*/) {
  const int saved = errno;
  const int fd = g_signal_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(fd, &one, sizeof one);
  }
  errno = saved;
}

Result<sockaddr_un> socket_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return invalid_argument("the UDF socket path is empty");
  if (path.size() >= sizeof addr.sun_path) {
    return invalid_argument(fmt::format("the UDF socket path {} is longer than the {} bytes a unix socket allows", path,
                                        sizeof addr.sun_path - 1));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// Removes a socket file nobody listens on any more. A live socket, or something that is
// not a socket, is left alone and reported.
Status clear_stale_socket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::ok();
    return Status::from_errno(errno, fmt::format("checking {}", path));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return failed_precondition(fmt::format("{} exists and is not a socket; refusing to replace it", path));
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!probe) return Status::from_errno(errno, "socket");
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN ||
      errno == EINPROGRESS) {
    return already_exists(fmt::format("another process is listening on {}", path));
  }
  const int err = errno;
  if (err == ENOENT) return Status::ok();
  if (err != ECONNREFUSED) return Status::from_errno(err, fmt::format("probing the existing socket {}", path));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::from_errno(errno, fmt::format("removing the stale socket {}", path));
  }
  log::get("udf")->info("removed stale UDF socket {}", path);
  return Status::ok();
}

std::string describe_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

// ================================================================ AgentAccepter

AgentAccepter::AgentAccepter(HandlerFactory factory, AgentOptions options)
    : factory_(std::move(factory)), options_(std::move(options)) {}

AgentAccepter::~AgentAccepter() { stop(); }

void AgentAccepter::reap_locked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->done.load(std::memory_order_acquire)) {
      if (it->thread.joinable()) it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void AgentAccepter::accept(UniqueFd connection) {
  std::lock_guard lock(mu_);
  reap_locked();
  if (stopped_) return;  // the connection is closed on return
  Connection& c = connections_.emplace_back();
  c.agent = std::make_unique<Agent>(std::move(connection), options_);
  try {
    c.handler = factory_(*c.agent);
  } catch (...) {
    log::get("udf")->warn("UDF handler factory threw: {}", describe_exception(std::current_exception()));
  }
  if (!c.handler) {
    connections_.pop_back();
    return;
  }
  c.thread = std::thread([&c] {
    const Status status = c.agent->run(*c.handler);
    if (!status.is_ok() && status.code() != StatusCode::kCancelled) {
      log::get("udf")->warn("UDF connection ended: {}", status.to_string());
    }
    c.done.store(true, std::memory_order_release);
  });
}

void AgentAccepter::stop() {
  std::list<Connection> all;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    all.splice(all.begin(), connections_);
  }
  for (Connection& c : all) c.agent->abort();
  for (Connection& c : all) {
    if (c.thread.joinable()) c.thread.join();
  }
}

size_t AgentAccepter::active_connections() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const Connection& c : connections_) n += c.done.load(std::memory_order_acquire) ? 0 : 1;
  return n;
}

// ================================================================ Server

Server::Server(UniqueFd listener, Accepter& accepter) : Server(std::move(listener), accepter, std::string(), 0, 0) {}

Server::Server(UniqueFd listener, Accepter& accepter, std::string path, dev_t dev, ino_t ino)
    : listener_(std::move(listener)),
      accepter_(accepter),
      path_(std::move(path)),
      socket_dev_(dev),
      socket_ino_(ino),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Server::~Server() {
  if (listener_) {
    listener_.reset();
    remove_socket_file();
  }
}

Result<std::unique_ptr<Server>> Server::listen(const std::string& path, Accepter& accepter, ServerOptions options) {
  auto addr = socket_address(path);
  if (!addr.is_ok()) return addr.status();
  AGENTRY_RETURN_IF_ERROR(clear_stale_socket(path, *addr));

  // Bound under a temporary name next to the target and renamed into place once it
  // listens: whoever sees `path` appear can connect at once (no ECONNREFUSED window
  // between bind() and listen()). A connection finds the socket by its inode, which the
  // rename keeps. Paths too long for the suffix are bound directly.
  std::string bound_path = fmt::format("{}.{}.tmp", path, ::getpid());
  auto bound_addr = socket_address(bound_path);
  if (!bound_addr.is_ok()) {
    bound_path = path;
    bound_addr = addr;
  } else {
    ::unlink(bound_path.c_str());  // left by an earlier process that had our pid
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::from_errno(errno, "socket");
  // Linux creates the socket file with the socket inode's mode, less the umask: setting
  // it here means the file never exists with a wider mode (and leaves the process-wide
  // umask alone, which other threads may rely on).
  if (::fchmod(fd.get(), options.socket_mode) != 0) {
    return Status::from_errno(errno, fmt::format("setting the mode of the socket for {}", path));
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*bound_addr), sizeof *bound_addr) != 0) {
    if (errno == EADDRINUSE) return already_exists(fmt::format("{} appeared while the UDF server was starting", path));
    return Status::from_errno(errno, fmt::format("binding {}", bound_path));
  }
  auto fail = [&bound_path](const std::string& what) {
    const Status failed = Status::from_errno(errno, what);
    ::unlink(bound_path.c_str());
    return failed;
  };
  // In case the umask took away bits the caller asked for.
  if (::chmod(bound_path.c_str(), options.socket_mode) != 0) return fail(fmt::format("setting the mode of {}", path));
  if (::listen(fd.get(), options.backlog) != 0) return fail(fmt::format("listening on {}", path));
  if (bound_path != path && ::rename(bound_path.c_str(), path.c_str()) != 0) {
    return fail(fmt::format("moving the UDF socket into place at {}", path));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Status::from_errno(errno, fmt::format("checking {}", path));
  return std::unique_ptr<Server>(new Server(std::move(fd), accepter, path, st.st_dev, st.st_ino));
}

void Server::remove_socket_file() noexcept {
  if (path_.empty()) return;
  struct stat st {};
  // Only if it is still the file we created: a newer server may have replaced it.
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ && st.st_ino == socket_ino_) {
    ::unlink(path_.c_str());
  }
  path_.clear();
}

void Server::stop() noexcept {
  if (!wake_fd_) return;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof one);
}

Status Server::stop_on_signals(std::initializer_list<int> signals) {
  static std::once_flag once;
  static Status created;
  std::call_once(once, [] {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
      created = Status::from_errno(errno, "eventfd");
      return;
    }
    g_signal_fd.store(fd);
  });
  AGENTRY_RETURN_IF_ERROR(created);
  for (int signo : signals) {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    if (::sigaction(signo, &action, nullptr) != 0) {
      return Status::from_errno(errno, fmt::format("installing a handler for signal {}", signo));
    }
  }
  watch_signals_.store(true);
  return Status::ok();
}

Status Server::serve() {
  if (served_.exchange(true)) return failed_precondition("Server::serve() may only be called once");
  auto logger = log::get("udf");
  Status result;
  if (!listener_) {
    result = failed_precondition("the UDF server has no listening socket");
  } else {
    const int flags = ::fcntl(listener_.get(), F_GETFL);
    if (flags >= 0) ::fcntl(listener_.get(), F_SETFL, flags | O_NONBLOCK);  // poll, then accept: never block
  }
  bool pausing = false;
  while (result.is_ok()) {
    pollfd fds[3];
    nfds_t count = 0;
    fds[count++] = {wake_fd_.get(), POLLIN, 0};
    const int signal_fd = watch_signals_.load() ? g_signal_fd.load() : -1;
    if (signal_fd >= 0) fds[count++] = {signal_fd, POLLIN, 0};
    const nfds_t listener_index = count;
    if (!pausing) fds[count++] = {listener_.get(), POLLIN, 0};
    const int n = ::poll(fds, count, pausing ? kAcceptRetryMs : -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = Status::from_errno(errno, "waiting for UDF connections");
      break;
    }
    bool stop_requested = false;
    for (nfds_t i = 0; i < listener_index; ++i) stop_requested = stop_requested || (fds[i].revents & POLLIN) != 0;
    if (stop_requested) break;
    if (pausing) {
      pausing = n != 0;  // a timeout ends the pause
      continue;
    }
    // A healthy listening socket only ever reports POLLIN. One that was closed, or shut
    // down, under us reports these; accept() on it may just say EAGAIN, forever.
    if ((fds[listener_index].revents & POLLNVAL) != 0) {
      result = failed_precondition("the UDF server's listening socket was closed under it");
      break;
    }
    if ((fds[listener_index].revents & (POLLHUP | POLLERR)) != 0) {
      result = failed_precondition("the UDF server's listening socket was shut down under it");
      break;
    }
    const int connection = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) {
      const int err = errno;
      switch (err) {
        case EINTR: case EAGAIN: case ECONNABORTED: case EPROTO:  // NOLINT(bugprone-branch-clone)
          continue;
        case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
          logger->warn("accepting a UDF connection: {}; retrying in {} ms", std::strerror(err), kAcceptRetryMs);
          pausing = true;
          continue;
        default:
          result = Status::from_errno(err, "accepting UDF connections");
          continue;  // ends the loop
      }
    }
    try {
      accepter_.accept(UniqueFd(connection));
    } catch (...) {
      logger->warn("UDF accepter threw: {}", describe_exception(std::current_exception()));
    }
  }
  listener_.reset();
  remove_socket_file();
  try {
    accepter_.stop();
  } catch (...) {
    logger->warn("UDF accepter stop() threw: {}", describe_exception(std::current_exception()));
  }
  return result;
}

}  // namespace agentry::udf
