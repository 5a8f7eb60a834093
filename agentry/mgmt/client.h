// A blocking client for the management socket, for the CLI and for tests.
//
// One request at a time per Client, like cliwrap's: not thread-safe; open one per thread.
// Plain POSIX sockets, no Asio, so the CLI stays small.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/mgmt/manager_api.h"
#include "agentry/mgmt/protocol.h"
#include "agentry/wire/mgmt_frame.h"

namespace agentry::mgmt {

// Where the daemon listens unless told otherwise, and where the CLI looks: $AGENTRY_SOCKET,
// else $XDG_RUNTIME_DIR/agentry/manager.sock, else /run/agentry/manager.sock for root,
// else /tmp/agentry-<uid>/manager.sock.
std::string default_socket_path();

// One received frame, owning its payload.
struct Frame {
  uint8_t type = 0;
  uint8_t flags = 0;
  uint64_t seq = 0;
  std::string payload;
};

class Client {
 public:
  using LogCallback = std::function<bool(std::string_view chunk)>;  // false: stop reading
  using EventCallback = std::function<bool(const Event& event)>;    // false: stop reading

  // Connects (blocking). kNotFound when nothing is at `path`, kUnavailable when nothing
  // listens there, kPermissionDenied when we may not connect.
  static Result<Client> connect(const std::string& path);

  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  ~Client() = default;

  // Every later read gives up after `timeout` without data (kDeadlineExceeded); zero,
  // the default, waits forever.
  Status set_receive_timeout(std::chrono::milliseconds timeout);

  // Sends a request with the next sequence number and returns the reply carrying it.
  // Frames with other sequence numbers (left over from a stream) are skipped.
  Result<Frame> call(MsgType type, std::string_view payload);
  // Sends a request without waiting: for streams, followed by read_frame() in a loop.
  // Returns the sequence number used.
  Result<uint64_t> send(MsgType type, std::string_view payload);
  // The next frame from the server. At EOF: kUnavailable if the server closed the
  // connection between frames, kDataLoss if it did so inside one.
  Result<Frame> read_frame();

  // ---- typed requests. A StatusResponse with err set becomes a Status (see
  // StatusResponse::to_status()).
  Result<std::vector<ListEntry>> list();
  Result<ListEntry> status(std::string_view id);
  Result<ListEntry> start(std::string_view id);
  Result<ListEntry> stop(std::string_view id);
  Result<ListEntry> restart(std::string_view id);
  Status reload();
  Result<ListEntry> signal(std::string_view id, int signo);
  Result<DaemonInfo> info();

  // Delivers the log snapshot of `id`'s stream (0 stdout, 1 stderr) to `on_chunk`; with
  // `follow`, then every new chunk until the server ends the stream (OK), the connection
  // drops (kUnavailable or kDataLoss), or on_chunk returns false (OK; the connection then
  // holds unread frames: close it).
  Status logs(std::string_view id, int stream, bool follow, const LogCallback& on_chunk);
  // Subscribes to the events of `ids` (all processes when empty) and delivers them until
  // on_event returns false (OK) or the connection drops.
  Status events(std::vector<std::string> ids, const EventCallback& on_event);

  int fd() const noexcept { return fd_.get(); }
  void close() noexcept { fd_.reset(); }

 private:
  explicit Client(UniqueFd fd) : fd_(std::move(fd)) {}

  Status write_all(std::string_view bytes);
  // call() for requests answered by a StatusResponse.
  Result<ListEntry> command(MsgType type, std::string_view id);

  UniqueFd fd_;
  wire::MgmtFrameDecoder decoder_;
  uint64_t last_seq_ = 0;
  std::string out_;  // reused send buffer
};

}  // namespace agentry::mgmt
