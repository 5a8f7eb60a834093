#include "agentry/command/client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

#include <fmt/format.h>

#include "agentry/base/unique_fd.h"
#include "agentry/wire/json_object_reader.h"

namespace agentry::command {

namespace {

using Clock = std::chrono::steady_clock;

std::string connection_error(std::string_view what) {
  return make_response(kStatusConnectionError, fmt::format("{}: {}", standard_message(kStatusConnectionError), what));
}

std::string errno_error(std::string_view what, int err) {
  return connection_error(fmt::format("{}: {}", what, std::strerror(err)));
}

// Milliseconds left until `deadline`, rounded up, at least 0.
int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(left, 0, 1 << 30));
}

std::string exchange(std::string_view request, const std::string& path, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path || path.find('\0') != std::string::npos) {
    return connection_error(fmt::format("\"{}\" is not a usable unix socket path", path));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno_error("creating a socket", errno);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EAGAIN) return errno_error(fmt::format("connecting to {}", path), errno);
    // The server's backlog is full. A blocking unix connect() waits for room for up to
    // SO_SNDTIMEO, so wait that way, within the deadline.
    const int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
      return errno_error("making the socket blocking", errno);
    }
    for (;;) {
      const int left_ms = remaining_ms(deadline);
      if (left_ms == 0) {
        return connection_error(
            fmt::format("connecting to {}: the server did not accept within {} ms", path, timeout.count()));
      }
      const timeval tv{left_ms / 1000, (left_ms % 1000) * 1000};
      if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0) {
        return errno_error("setting the connect timeout", errno);
      }
      if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) break;
      if (errno != EINTR && errno != EAGAIN) return errno_error(fmt::format("connecting to {}", path), errno);
    }
    if (::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0) return errno_error("making the socket non-blocking", errno);
  }

  // Write and read at the same time: a server refusing the request (too big, timed out)
  // replies before it has read everything. The socket is non-blocking and poll() runs only
  // when nothing can proceed, so the usual exchange is send, poll, recv.
  std::size_t written = 0;
  bool writing = true;
  bool try_read = false;  // poll() reported input (or the last recv() got some)
  int write_errno = 0;
  // The reply is one JSON object; it is complete at its closing brace, so there is no need
  // to wait for the server to close.
  wire::JsonObjectReader reply(wire::JsonObjectReaderOptions{.max_bytes = kMaxResponseBytes});
  bool received = false;
  char buffer[16 * 1024];
  for (;;) {
    bool send_blocked = false;
    if (writing) {
      const ssize_t n = ::send(fd.get(), request.data() + written, request.size() - written, MSG_NOSIGNAL);
      if (n >= 0) {
        written += static_cast<std::size_t>(n);
      } else if (errno == EAGAIN) {
        send_blocked = true;
      } else if (errno != EINTR) {
        // The server may have replied and closed: still read what it sent.
        write_errno = errno;
        writing = false;
        try_read = true;
      }
      if (writing && written == request.size()) {
        ::shutdown(fd.get(), SHUT_WR);  // the request is complete; lets the server see EOF
        writing = false;
      }
    }
    if (try_read) {
      const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
      if (n > 0) {
        received = true;
        const wire::JsonObjectReader::Progress progress = reply.feed(std::string_view(buffer, static_cast<std::size_t>(n)));
        if (progress.state == wire::JsonObjectReader::State::kComplete) break;
        if (progress.state == wire::JsonObjectReader::State::kError) {
          if (reply.status().code() == StatusCode::kOutOfRange && reply.bytes_consumed() >= kMaxResponseBytes) {
            return connection_error(fmt::format("the reply from {} exceeds {} bytes", path, kMaxResponseBytes));
          }
          return connection_error(fmt::format("the reply from {} is not a JSON object", path));
        }
        continue;
      }
      if (n == 0) break;  // the server closed
      if (errno == EINTR) continue;
      if (errno == ECONNRESET && received) break;  // closed with part of our request unread
      if (errno != EAGAIN) return errno_error(fmt::format("reading the reply from {}", path), errno);
      try_read = false;
    }
    if (writing && !send_blocked) continue;
    pollfd p{fd.get(), static_cast<short>(POLLIN | (writing ? POLLOUT : 0)), 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return errno_error("waiting for the socket", errno);
    }
    if (ready == 0) {
      return connection_error(fmt::format("no complete reply from {} within {} ms", path, timeout.count()));
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) try_read = true;
  }
  if (!received) {
    if (write_errno != 0) return errno_error(fmt::format("writing the request to {}", path), write_errno);
    return connection_error(fmt::format("{} closed the connection without replying", path));
  }
  if (reply.state() != wire::JsonObjectReader::State::kComplete) {
    return connection_error(fmt::format("the reply from {} ended before its JSON object did", path));
  }
  if (!is_json_object(reply.buffered())) {
    return connection_error(fmt::format("the reply from {} is not a JSON object", path));
  }
  return std::string(reply.buffered());
}

}  // namespace

std::string send_command(std::string_view request_json, const std::string& socket_path,
                         std::chrono::milliseconds timeout) noexcept {
  try {
    return exchange(request_json, socket_path, timeout);
  } catch (const std::exception& e) {  // allocation failure
    return make_response(kStatusConnectionError, e.what());
  }
}

std::string send_command(std::string_view request_json, std::string_view dir, Listener listener,
                         std::chrono::milliseconds timeout) noexcept {
  try {
    return send_command(request_json, pipe_name(dir, listener), timeout);
  } catch (const std::exception& e) {
    return make_response(kStatusConnectionError, e.what());
  }
}

}  // namespace agentry::command
