#include "agentry/mgmt/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "agentry/base/log.h"
#include "agentry/base/unique_fd.h"
#include "agentry/base/unix_socket.h"
#include "agentry/mgmt/protocol.h"
#include "agentry/wire/mgmt_frame.h"

namespace agentry::mgmt {

namespace asio = boost::asio;
using LocalSocket = asio::local::stream_protocol::socket;
using ErrorCode = boost::system::error_code;

namespace {

// Bytes asked of each read. Requests are small; this only bounds how many we take at once.
constexpr size_t kReadChunk = 16 * 1024;
// How long a closing connection may take to flush its last frames before it is cut.
constexpr auto kDrainTimeout = std::chrono::seconds(2);
// Pause before accepting again after accept() failed (EMFILE and friends would otherwise spin).
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(200);
// Log bytes per LogsStream frame: bigger chunks are split, snapshots keep their newest bytes.
constexpr size_t kMaxLogPiece = size_t{1} << 20;
constexpr size_t kMaxSnapshot = wire::kMgmtMaxPayload - (size_t{64} << 10);
// Write buffers bigger than this are released once written, instead of kept for reuse.
constexpr size_t kRetainedWriteCapacity = size_t{256} << 10;

}  // namespace

// ==================================================================== Server::Impl

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  class Connection;

  Impl(asio::io_context& io, ServerOptions options)
      : options_(std::move(options)), acceptor_(io), accept_retry_(io), logger_(log::get("mgmt")) {}
  ~Impl() { close(); }

  Status start();
  void close();
  size_t client_count() const { return client_count_.load(std::memory_order_relaxed); }
  const std::string& socket_path() const { return options_.socket_path; }

 private:
  void accept_next();
  void on_accept(const ErrorCode& ec, LocalSocket socket);
  // A connection that has closed leaves the table.
  void forget(uint64_t id);
  void remove_socket_file();

  ServerOptions options_;
  asio::local::stream_protocol::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> connections_;
  std::atomic<size_t> client_count_{0};
  uint64_t next_connection_id_ = 1;
  bool started_ = false;
  bool closed_ = false;
  // Identity of the socket file we bound, so close() never removes a successor's.
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
};

// ==================================================================== Connection

// One client. Lives in shared_ptrs: the server's table holds one while the connection is
// open, and every pending asynchronous operation holds another. Manager callbacks (Done,
// sinks) hold only weak_ptrs, so a connection never waits for the manager to let go.
//
// States: open -> draining (no more input or streams; flush what is queued, then close;
// kDrainTimeout at most) -> closed.
class Server::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(const std::shared_ptr<Impl>& server, uint64_t id, LocalSocket socket, std::string peer)
      : server_(server),
        manager_(*server->options_.manager),
        logger_(server->logger_),
        max_queued_(server->options_.max_queued_bytes),
        id_(id),
        peer_(std::move(peer)),
        socket_(std::move(socket)),
        drain_timer_(socket_.get_executor()),
        decoder_(server->options_.max_request_payload) {}

  void start() { start_read(); }

  // Server shutdown: end the streams (followed logs get a last eof=true frame), then drain.
  void close_for_shutdown() {
    server_.reset();  // the server has already dropped us from its table
    if (state_ != State::kOpen) return;
    for (const LogFollow& follow : follows_) {
      queue_frame(MsgType::kLogsStream, 0, /*is_stream=*/false,
                  [&](std::string& out) { encode_logs_stream(follow.id, follow.stream, {}, /*eof=*/true, out); });
    }
    drain();
  }

 private:
  enum class State { kOpen, kDraining, kClosed };

  struct LogFollow {
    std::string id;
    uint8_t stream = 0;
    std::unique_ptr<Subscription> subscription;
  };

  // ---- reading

  // Requests are taken only while nothing stops them: not after the client's EOF, not once
  // a stream overflowed, and not while the replies already queued exceed the budget (a
  // client that pipelines requests without reading replies gets back-pressure; the
  // frames it sent stay in the decoder until the queue drains).
  bool reading_requests() const { return state_ == State::kOpen && !peer_eof_ && !overflowed_; }

  void start_read() {
    if (reading_ || read_paused_ || !reading_requests()) return;
    std::span<char> room = decoder_.prepare(kReadChunk);
    reading_ = true;
    socket_.async_read_some(asio::buffer(room.data(), room.size()),
                            [self = shared_from_this()](const ErrorCode& ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(const ErrorCode& ec, size_t n) {
    reading_ = false;
    if (!reading_requests()) return;
    if (ec == asio::error::eof) {
      on_peer_eof();
      return;
    }
    if (ec) {
      if (ec != asio::error::operation_aborted) logger_->debug("{}: read failed: {}", peer_, ec.message());
      close_now();
      return;
    }
    decoder_.commit(n);
    handle_buffered_requests();
  }

  // Dispatches the complete frames the decoder holds, then reads more. Never called with a
  // read in flight: that read's buffer is the decoder's.
  void handle_buffered_requests() {
    while (reading_requests()) {
      if (queued_bytes() > max_queued_) {
        read_paused_ = true;  // on_written() resumes
        return;
      }
      Result<std::optional<wire::MgmtFrame>> next = decoder_.next();
      if (!next.is_ok()) {
        on_bad_frame();
        return;
      }
      if (!next->has_value()) break;
      // The payload view is only valid until the decoder is used again; dispatch() is done
      // with it when it returns.
      dispatch((*next)->header, (*next)->payload);
    }
    start_read();
  }

  void on_peer_eof() {
    if (Status s = decoder_.finish(); !s.is_ok()) {
      logger_->warn("{}: connection ended inside a frame: {}", peer_, s.message());
      send_error(0, Status(s.code(), fmt::format("bad frame: {}", s.message())));
      drain();
      return;
    }
    // A half-closed client still gets the replies to requests it already sent; its
    // streams end, since a client that stopped talking is taken to have gone away.
    peer_eof_ = true;
    drop_streams();
    if (pending_commands_ == 0) drain();
  }

  void on_bad_frame() {
    const Status& problem = decoder_.status();
    const auto& rejected = decoder_.rejected_header();
    logger_->warn("{}: closing the connection after a bad frame: {}", peer_, problem.message());
    send_error(rejected ? rejected->seq : 0, Status(problem.code(), fmt::format("bad frame: {}", problem.message())));
    drain();
  }

  // ---- requests

  void dispatch(const wire::MgmtFrameHeader& header, std::string_view payload) {
    const uint64_t seq = header.seq;
    const auto type = static_cast<MsgType>(header.type);
    switch (type) {
      case MsgType::kListRequest:
        if (auto req = decode_empty_request(payload, type); !req.is_ok()) return refuse(seq, req.status());
        return reply(MsgType::kListResponse, seq, ListResponse{manager_.list()});
      case MsgType::kStatusRequest: {
        auto req = decode_id_request(payload, type);
        if (!req.is_ok()) return refuse(seq, req.status());
        Result<ListEntry> entry = manager_.status(req->id);
        if (!entry.is_ok()) return reply(MsgType::kStatusResponse, seq, StatusResponse::from_status(entry.status()));
        return reply(MsgType::kStatusResponse, seq, StatusResponse{std::move(entry).value(), {}, {}});
      }
      case MsgType::kStartRequest:
      case MsgType::kStopRequest:
      case MsgType::kRestartRequest: {
        auto req = decode_id_request(payload, type);
        if (!req.is_ok()) return refuse(seq, req.status());
        return run_command(type, seq, std::move(req->id));
      }
      case MsgType::kReloadRequest:
        if (auto req = decode_empty_request(payload, type); !req.is_ok()) return refuse(seq, req.status());
        return run_command(type, seq, {});
      case MsgType::kSignalRequest: {
        auto req = decode_signal_request(payload);
        if (!req.is_ok()) return refuse(seq, req.status());
        const Status sent = manager_.signal(req->id, req->signal);
        return reply(MsgType::kStatusResponse, seq, StatusResponse::from_status(sent, entry_or_empty(req->id)));
      }
      case MsgType::kInfoRequest:
        if (auto req = decode_empty_request(payload, type); !req.is_ok()) return refuse(seq, req.status());
        return reply(MsgType::kInfoResponse, seq, manager_.info());
      case MsgType::kLogsRequest: {
        auto req = decode_logs_request(payload);
        if (!req.is_ok()) return refuse(seq, req.status());
        return start_logs(seq, *req);
      }
      case MsgType::kEventsSubscribe: {
        auto req = decode_events_subscribe(payload);
        if (!req.is_ok()) return refuse(seq, req.status());
        return start_events(std::move(req->ids));
      }
      default:
        // Includes the response and stream types, which a client has no business sending.
        return reply(MsgType::kStatusResponse, seq,
                     StatusResponse{{},
                                    fmt::format("unknown request type 0x{:02x}", header.type),
                                    std::string(status_code_name(StatusCode::kInvalidArgument))});
    }
  }

  // A payload that could not be decoded. kOutOfRange means it was well formed but a value
  // is not allowed (a log stream other than 0 or 1): answered, and the connection stays.
  // Anything else means the client speaks something else: answered, then closed.
  void refuse(uint64_t seq, const Status& status) {
    send_error(seq, status);
    if (status.code() != StatusCode::kOutOfRange) {
      logger_->warn("{}: closing the connection after an undecodable request: {}", peer_, status.message());
      drain();
    }
  }

  ListEntry entry_or_empty(const std::string& id) {
    Result<ListEntry> entry = manager_.status(id);
    return entry.is_ok() ? std::move(entry).value() : ListEntry{};
  }

  // Start, stop, restart and reload finish later; the reply goes out when they do, with
  // its request's seq, and requests behind them are served meanwhile.
  void run_command(MsgType type, uint64_t seq, std::string id) {
    ++pending_commands_;
    Done done = [weak = weak_from_this(), seq, id, once = false](Status status) mutable {
      if (std::exchange(once, true)) return;  // a manager that calls twice gets no second reply
      if (auto self = weak.lock()) self->finish_command(seq, id, std::move(status));
    };
    switch (type) {
      case MsgType::kStartRequest: return manager_.start(id, std::move(done));
      case MsgType::kStopRequest: return manager_.stop(id, std::move(done));
      case MsgType::kRestartRequest: return manager_.restart(id, std::move(done));
      default: return manager_.reload(std::move(done));
    }
  }

  void finish_command(uint64_t seq, const std::string& id, Status status) {
    // Once draining or closed, the server may be gone, and with it the manager.
    if (state_ != State::kOpen) return;
    --pending_commands_;
    reply(MsgType::kStatusResponse, seq,
          StatusResponse::from_status(status, id.empty() ? ListEntry{} : entry_or_empty(id)));
    if (peer_eof_ && pending_commands_ == 0) drain();
  }

  // ---- streams

  void start_logs(uint64_t seq, const LogsRequest& req) {
    if (!req.follow) {
      Result<std::string> snapshot = manager_.logs_snapshot(req.id, req.stream);
      if (!snapshot.is_ok()) return send_error(seq, snapshot.status());
      return send_snapshot(seq, req, *snapshot, /*eof=*/true);
    }
    // Subscribe first: if that fails, nothing has been sent and one error reply says why.
    // Chunks cannot slip in between the two calls: both run on this thread.
    LogSink sink = [weak = weak_from_this(), id = req.id, stream = req.stream](std::string_view chunk) {
      auto self = weak.lock();
      return self != nullptr && self->push_log(id, stream, chunk);
    };
    Result<std::unique_ptr<Subscription>> subscription = manager_.watch_logs(req.id, req.stream, std::move(sink));
    if (!subscription.is_ok()) return send_error(seq, subscription.status());
    Result<std::string> snapshot = manager_.logs_snapshot(req.id, req.stream);
    if (!snapshot.is_ok()) return send_error(seq, snapshot.status());
    send_snapshot(seq, req, *snapshot, /*eof=*/false);
    follows_.push_back(LogFollow{req.id, req.stream, std::move(subscription).value()});
  }

  // The snapshot is the reply to the LogsRequest, so it carries the request's seq.
  void send_snapshot(uint64_t seq, const LogsRequest& req, std::string_view bytes, bool eof) {
    if (bytes.size() > kMaxSnapshot) bytes.remove_prefix(bytes.size() - kMaxSnapshot);  // keep the newest
    queue_frame(MsgType::kLogsStream, seq, /*is_stream=*/false,
                [&](std::string& out) { encode_logs_stream(req.id, req.stream, bytes, eof, out); });
  }

  void start_events(std::vector<std::string> ids) {
    EventSink sink = [weak = weak_from_this()](const Event& event) {
      auto self = weak.lock();
      return self != nullptr && self->push_event(event);
    };
    event_subscriptions_.push_back(manager_.watch_events(std::move(ids), std::move(sink)));
  }

  bool push_log(const std::string& id, uint8_t stream, std::string_view chunk) {
    if (!reading_requests()) return false;
    do {
      const std::string_view piece = chunk.substr(0, kMaxLogPiece);
      chunk.remove_prefix(piece.size());
      const bool queued = queue_frame(MsgType::kLogsStream, 0, /*is_stream=*/true, [&](std::string& out) {
        encode_logs_stream(id, stream, piece, /*eof=*/false, out);
      });
      if (!queued) return stream_overflowed();
    } while (!chunk.empty());
    return true;
  }

  bool push_event(const Event& event) {
    if (!reading_requests()) return false;
    if (!queue_frame(MsgType::kEventsStream, 0, /*is_stream=*/true, [&](std::string& out) { encode(event, out); })) {
      return stream_overflowed();
    }
    return true;
  }

  // The client is max_queued_bytes behind: it is stuck or far too slow. Returning false
  // makes the manager drop the subscription; the connection is then closed without
  // flushing, which frees its queue at once. Closing is posted rather than done here
  // because we are inside the manager's sink call.
  bool stream_overflowed() {
    if (!overflowed_) {
      overflowed_ = true;
      logger_->warn("{}: client is more than {} bytes behind on a stream; dropping it", peer_, max_queued_);
      asio::post(socket_.get_executor(), [self = shared_from_this()] { self->close_now(); });
    }
    return false;
  }

  void drop_streams() {
    // Moved out first: a Subscription's destructor may call back into the manager, which
    // must find this connection's lists in a consistent state.
    auto follows = std::move(follows_);
    auto events = std::move(event_subscriptions_);
    follows_.clear();
    event_subscriptions_.clear();
  }

  // ---- writing

  size_t queued_bytes() const { return pending_.size() + inflight_.size(); }

  template <typename T>
  void reply(MsgType type, uint64_t seq, const T& payload) {
    queue_frame(type, seq, /*is_stream=*/false, [&](std::string& out) { encode(payload, out); });
  }

  void send_error(uint64_t seq, const Status& status) {
    reply(MsgType::kStatusResponse, seq, StatusResponse::from_status(status));
  }

  // Serializes one frame straight into the pending buffer. Stream frames are refused
  // (returning false, nothing queued) when they would take the queue past max_queued_;
  // replies are always queued (request handling pauses instead, see
  // handle_buffered_requests()).
  template <typename WritePayload>
  bool queue_frame(MsgType type, uint64_t seq, bool is_stream, WritePayload&& write_payload) {
    if (state_ == State::kClosed) return false;
    const size_t start = wire::begin_mgmt_frame(pending_, to_byte(type), seq);
    write_payload(pending_);
    if (Status fits = wire::end_mgmt_frame(pending_, start); !fits.is_ok()) {
      // Over 16 MiB (a list of very many processes): say so instead of sending nothing.
      logger_->error("{}: {} reply dropped: {}", peer_, msg_type_name(to_byte(type)), fits.message());
      if (!is_stream) send_error(seq, fits.with_context("reply too large"));
      return false;
    }
    if (is_stream && queued_bytes() > max_queued_) {
      pending_.resize(start);
      return false;
    }
    flush();
    return true;
  }

  // One write in flight at a time; everything queued meanwhile goes out in the next one.
  void flush() {
    if (writing_ || pending_.empty() || state_ == State::kClosed) return;
    std::swap(pending_, inflight_);
    writing_ = true;
    asio::async_write(socket_, asio::buffer(inflight_),
                      [self = shared_from_this()](const ErrorCode& ec, size_t /*n*/) { self->on_written(ec); });
  }

  void on_written(const ErrorCode& ec) {
    writing_ = false;
    inflight_.clear();
    if (inflight_.capacity() > kRetainedWriteCapacity) std::string().swap(inflight_);
    if (state_ == State::kClosed) return;
    if (ec) {
      if (ec != asio::error::operation_aborted) logger_->debug("{}: write failed: {}", peer_, ec.message());
      close_now();
      return;
    }
    flush();
    if (!writing_ && state_ == State::kDraining) {
      close_now();
      return;
    }
    if (read_paused_ && queued_bytes() <= max_queued_) {
      read_paused_ = false;
      handle_buffered_requests();
    }
  }

  // ---- closing

  void drain() {
    if (state_ != State::kOpen) return;
    state_ = State::kDraining;
    drop_streams();
    if (!writing_ && pending_.empty()) {
      close_now();
      return;
    }
    drain_timer_.expires_after(kDrainTimeout);
    drain_timer_.async_wait([self = shared_from_this()](const ErrorCode& ec) {
      if (!ec) self->close_now();
    });
  }

  void close_now() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    drain_timer_.cancel();
    drop_streams();
    ErrorCode ignored;
    socket_.shutdown(LocalSocket::shutdown_both, ignored);
    socket_.close(ignored);
    std::string().swap(pending_);  // inflight_ belongs to the aborted write until it completes
    if (auto server = server_.lock()) server->forget(id_);
    logger_->debug("{}: closed", peer_);
  }

  std::weak_ptr<Impl> server_;
  ManagerApi& manager_;
  std::shared_ptr<spdlog::logger> logger_;
  const size_t max_queued_;
  const uint64_t id_;
  const std::string peer_;  // "mgmt client 3 (pid 123, uid 1000)", for logs
  LocalSocket socket_;
  asio::steady_timer drain_timer_;
  wire::MgmtFrameDecoder decoder_;
  State state_ = State::kOpen;
  bool reading_ = false;
  bool read_paused_ = false;
  bool peer_eof_ = false;
  bool overflowed_ = false;
  bool writing_ = false;
  std::string pending_;   // frames not yet handed to a write
  std::string inflight_;  // the buffer of the write in progress
  size_t pending_commands_ = 0;
  std::vector<LogFollow> follows_;
  std::vector<std::unique_ptr<Subscription>> event_subscriptions_;
};

// ==================================================================== Impl

Status Server::Impl::start() {
  if (started_) return failed_precondition("the management server was already started");
  if (options_.manager == nullptr) return invalid_argument("ServerOptions.manager is not set");
  const std::string& path = options_.socket_path;
  AGENTRY_RETURN_IF_ERROR(check_unix_socket_path(path, "management socket"));
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  // The directory is what really keeps other users out (connect() needs search permission
  // on it), so it must be ours and closed to everyone else.
  SocketDirPolicy policy;
  policy.mode = 0700;
  policy.parent_mode = 0700;
  policy.narrow_existing = false;
  policy.what = "management socket";
  AGENTRY_RETURN_IF_ERROR(prepare_socket_dir(dir, policy, *logger_));
  AGENTRY_RETURN_IF_ERROR(remove_stale_socket(path, "management socket", *logger_));
  Result<BoundUnixSocket> bound = bind_unix_socket(path, 0600, std::nullopt);
  if (!bound) return bound.status();
  UniqueFd fd = std::move(bound->fd);
  socket_dev_ = bound->dev;
  socket_ino_ = bound->ino;
  ErrorCode ec;
  acceptor_.assign(asio::local::stream_protocol(), fd.get(), ec);
  if (ec) {
    ::unlink(path.c_str());
    return internal_error(fmt::format("listening on {}: {}", path, ec.message()));
  }
  fd.release();  // the acceptor owns it now
  started_ = true;
  logger_->info("management socket listening on {}", path);
  accept_next();
  return Status::ok();
}

void Server::Impl::accept_next() {
  acceptor_.async_accept(
      [self = shared_from_this()](const ErrorCode& ec, LocalSocket socket) { self->on_accept(ec, std::move(socket)); });
}

void Server::Impl::on_accept(const ErrorCode& ec, LocalSocket socket) {
  if (closed_) return;
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    logger_->warn("accepting on {} failed: {}; retrying shortly", options_.socket_path, ec.message());
    accept_retry_.expires_after(kAcceptRetryDelay);
    accept_retry_.async_wait([self = shared_from_this()](const ErrorCode& wait_ec) {
      if (!wait_ec && !self->closed_) self->accept_next();
    });
    return;
  }
  accept_next();

  ErrorCode ignored;
  if (connections_.size() >= options_.max_clients) {
    logger_->warn("refusing a management connection: {} clients already connected", connections_.size());
    socket.close(ignored);
    return;
  }
  ucred peer{};
  socklen_t peer_len = sizeof peer;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0) {
    logger_->warn("refusing a management connection: SO_PEERCRED failed: {}", std::strerror(errno));
    socket.close(ignored);
    return;
  }
  if (peer.uid != options_.allowed_uid && peer.uid != 0) {
    logger_->warn("refusing a management connection from pid {} uid {}: only uid {} and root are allowed", peer.pid,
                  peer.uid, options_.allowed_uid);
    socket.close(ignored);
    return;
  }
  const uint64_t id = next_connection_id_++;
  auto connection =
      std::make_shared<Connection>(shared_from_this(), id, std::move(socket),
                                   fmt::format("mgmt client {} (pid {}, uid {})", id, peer.pid, peer.uid));
  connections_.emplace(id, connection);
  client_count_.store(connections_.size(), std::memory_order_relaxed);
  logger_->debug("mgmt client {} connected (pid {}, uid {})", id, peer.pid, peer.uid);
  connection->start();
}

void Server::Impl::forget(uint64_t id) {
  connections_.erase(id);
  client_count_.store(connections_.size(), std::memory_order_relaxed);
}

void Server::Impl::remove_socket_file() {
  if (!remove_own_socket_file(options_.socket_path, socket_dev_, socket_ino_)) {
    logger_->warn("{} is no longer our socket; leaving it in place", options_.socket_path);
  }
}

void Server::Impl::close() {
  if (closed_) return;
  closed_ = true;
  accept_retry_.cancel();
  ErrorCode ignored;
  acceptor_.close(ignored);
  if (started_) remove_socket_file();
  // Detach the table first: closing a connection would otherwise erase from it mid-loop.
  auto connections = std::move(connections_);
  connections_.clear();
  client_count_.store(0, std::memory_order_relaxed);
  for (auto& [id, connection] : connections) connection->close_for_shutdown();
  if (started_) logger_->info("management socket {} closed", options_.socket_path);
}

// ==================================================================== Server

Server::Server(asio::io_context& io, ServerOptions options) : impl_(std::make_shared<Impl>(io, std::move(options))) {}

Server::~Server() { impl_->close(); }

Status Server::start() { return impl_->start(); }
void Server::close() { impl_->close(); }
size_t Server::client_count() const { return impl_->client_count(); }
const std::string& Server::socket_path() const { return impl_->socket_path(); }

}  // namespace agentry::mgmt
