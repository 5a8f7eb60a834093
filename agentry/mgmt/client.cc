#include "agentry/mgmt/client.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace agentry::mgmt {

namespace {

constexpr size_t kReadChunk = 64 * 1024;

std::string describe(uint8_t type) { return fmt::format("{} (0x{:02x})", msg_type_name(type), type); }

// A reply of the `expected` type is fine; a StatusResponse in its place carries the
// server's refusal; anything else is a protocol error.
Status check_reply(const Frame& frame, MsgType expected) {
  if (frame.type == to_byte(expected)) return Status::ok();
  if (frame.type == to_byte(MsgType::kStatusResponse)) {
    Result<StatusResponse> refusal = decode_status_response(frame.payload);
    if (!refusal.is_ok()) return refusal.status();
    if (Status s = refusal->to_status(); !s.is_ok()) return s;
  }
  return invalid_argument(
      fmt::format("expected a {} reply, got {}", describe(to_byte(expected)), describe(frame.type)));
}

}  // namespace

std::string default_socket_path() {
  if (const char* explicit_path = std::getenv("AGENTRY_SOCKET"); explicit_path != nullptr && *explicit_path != '\0') {
    return explicit_path;
  }
  if (const char* runtime = std::getenv("XDG_RUNTIME_DIR"); runtime != nullptr && *runtime != '\0') {
    return std::string(runtime) + "/agentry/manager.sock";
  }
  if (::geteuid() == 0) return "/run/agentry/manager.sock";
  return fmt::format("/tmp/agentry-{}/manager.sock", ::geteuid());
}

Result<Client> Client::connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return invalid_argument(fmt::format("socket path '{}' must be 1 to {} bytes long", path, sizeof addr.sun_path - 1));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::from_errno(errno, "socket");
  // Local connects complete at once; after an EINTR the retry reports EISCONN if the
  // interrupted attempt got through anyway.
  int rc = 0;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EISCONN) return Status::from_errno(errno, fmt::format("connecting to {}", path));
  return Client(std::move(fd));
}

Status Client::set_receive_timeout(std::chrono::milliseconds timeout) {
  if (!fd_) return failed_precondition("the client is closed");
  timeval tv{};
  if (timeout.count() > 0) {
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  }
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
    return Status::from_errno(errno, "setting the receive timeout");
  }
  return Status::ok();
}

Status Client::write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, "sending to the management socket");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

Result<uint64_t> Client::send(MsgType type, std::string_view payload) {
  if (!fd_) return failed_precondition("the client is closed");
  const uint64_t seq = ++last_seq_;
  out_.clear();
  AGENTRY_RETURN_IF_ERROR(wire::append_mgmt_frame(out_, to_byte(type), seq, payload));
  AGENTRY_RETURN_IF_ERROR(write_all(out_));
  return seq;
}

Result<Frame> Client::read_frame() {
  if (!fd_) return failed_precondition("the client is closed");
  for (;;) {
    Result<std::optional<wire::MgmtFrame>> next = decoder_.next();
    if (!next.is_ok()) return next.status().with_context("bad frame from the server");
    if (next->has_value()) {
      const wire::MgmtFrame& frame = **next;
      return Frame{frame.header.type, frame.header.flags, frame.header.seq, std::string(frame.payload)};
    }
    std::span<char> room = decoder_.prepare(kReadChunk);
    const ssize_t n = ::recv(fd_.get(), room.data(), room.size(), 0);
    if (n > 0) {
      decoder_.commit(static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      if (Status end = decoder_.finish(); !end.is_ok()) {
        return data_loss(fmt::format("the server closed the connection inside a frame: {}", end.message()));
      }
      return unavailable("the server closed the connection");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return deadline_exceeded("no data from the server within the receive timeout");
    return Status::from_errno(errno, "reading from the management socket");
  }
}

Result<Frame> Client::call(MsgType type, std::string_view payload) {
  Result<uint64_t> seq = send(type, payload);
  if (!seq.is_ok()) return seq.status();
  for (;;) {
    Result<Frame> frame = read_frame();
    if (!frame.is_ok() || frame->seq == *seq) return frame;
  }
}

Result<std::vector<ListEntry>> Client::list() {
  Result<Frame> reply = call(MsgType::kListRequest, {});  // cliwrap sends no payload either
  if (!reply.is_ok()) return reply.status();
  AGENTRY_RETURN_IF_ERROR(check_reply(*reply, MsgType::kListResponse));
  Result<ListResponse> decoded = decode_list_response(reply->payload);
  if (!decoded.is_ok()) return decoded.status();
  return std::move(decoded->entries);
}

Result<ListEntry> Client::command(MsgType type, std::string_view id) {
  Result<Frame> reply = call(type, encode_to_string(IdRequest{std::string(id)}));
  if (!reply.is_ok()) return reply.status();
  AGENTRY_RETURN_IF_ERROR(check_reply(*reply, MsgType::kStatusResponse));
  Result<StatusResponse> decoded = decode_status_response(reply->payload);
  if (!decoded.is_ok()) return decoded.status();
  AGENTRY_RETURN_IF_ERROR(decoded->to_status());
  return std::move(decoded->entry);
}

Result<ListEntry> Client::status(std::string_view id) { return command(MsgType::kStatusRequest, id); }
Result<ListEntry> Client::start(std::string_view id) { return command(MsgType::kStartRequest, id); }
Result<ListEntry> Client::stop(std::string_view id) { return command(MsgType::kStopRequest, id); }
Result<ListEntry> Client::restart(std::string_view id) { return command(MsgType::kRestartRequest, id); }

Status Client::reload() {
  Result<Frame> reply = call(MsgType::kReloadRequest, {});
  if (!reply.is_ok()) return reply.status();
  AGENTRY_RETURN_IF_ERROR(check_reply(*reply, MsgType::kStatusResponse));
  Result<StatusResponse> decoded = decode_status_response(reply->payload);
  if (!decoded.is_ok()) return decoded.status();
  return decoded->to_status();
}

Result<ListEntry> Client::signal(std::string_view id, int signo) {
  Result<Frame> reply = call(MsgType::kSignalRequest, encode_to_string(SignalRequest{std::string(id), signo}));
  if (!reply.is_ok()) return reply.status();
  AGENTRY_RETURN_IF_ERROR(check_reply(*reply, MsgType::kStatusResponse));
  Result<StatusResponse> decoded = decode_status_response(reply->payload);
  if (!decoded.is_ok()) return decoded.status();
  AGENTRY_RETURN_IF_ERROR(decoded->to_status());
  return std::move(decoded->entry);
}

Result<DaemonInfo> Client::info() {
  Result<Frame> reply = call(MsgType::kInfoRequest, {});
  if (!reply.is_ok()) return reply.status();
  AGENTRY_RETURN_IF_ERROR(check_reply(*reply, MsgType::kInfoResponse));
  return decode_daemon_info(reply->payload);
}

Status Client::logs(std::string_view id, int stream, bool follow, const LogCallback& on_chunk) {
  if (stream != 0 && stream != 1)
    return invalid_argument(fmt::format("stream {} is not 0 (stdout) or 1 (stderr)", stream));
  const LogsRequest request{std::string(id), static_cast<uint8_t>(stream), follow};
  Result<uint64_t> seq = send(MsgType::kLogsRequest, encode_to_string(request));
  if (!seq.is_ok()) return seq.status();
  for (;;) {
    Result<Frame> frame = read_frame();
    if (!frame.is_ok()) return frame.status();
    // Our server sends the snapshot with the request's seq and later chunks with 0;
    // cliwrap's uses 0 throughout. Either way, a frame with another seq is not ours.
    if (frame->seq != *seq && frame->seq != 0) continue;
    if (frame->type == to_byte(MsgType::kStatusResponse) && frame->seq == *seq) {
      return check_reply(*frame, MsgType::kLogsStream);  // the refusal, or a protocol error
    }
    if (frame->type != to_byte(MsgType::kLogsStream)) continue;
    Result<LogsStream> chunk = decode_logs_stream(frame->payload);
    if (!chunk.is_ok()) return chunk.status();
    if (!chunk->data.empty() && !on_chunk(chunk->data)) return Status::ok();
    if (chunk->eof || !follow) return Status::ok();
  }
}

Status Client::events(std::vector<std::string> ids, const EventCallback& on_event) {
  Result<uint64_t> seq = send(MsgType::kEventsSubscribe, encode_to_string(EventsSubscribe{std::move(ids)}));
  if (!seq.is_ok()) return seq.status();
  for (;;) {
    Result<Frame> frame = read_frame();
    if (!frame.is_ok()) return frame.status();
    if (frame->type == to_byte(MsgType::kStatusResponse) && frame->seq == *seq) {
      return check_reply(*frame, MsgType::kEventsStream);
    }
    if (frame->type != to_byte(MsgType::kEventsStream)) continue;
    Result<Event> event = decode_event(frame->payload);
    if (!event.is_ok()) return event.status();
    if (!on_event(*event)) return Status::ok();
  }
}

}  // namespace agentry::mgmt
