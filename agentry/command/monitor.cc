#include "agentry/command/monitor.h"

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "agentry/base/log.h"
#include "agentry/base/unique_fd.h"
#include "agentry/base/unix_socket.h"

namespace agentry::command {

namespace asio = boost::asio;
using LocalSocket = asio::local::stream_protocol::socket;
using ErrorCode = boost::system::error_code;

namespace {

// Bytes asked of each read.
constexpr std::size_t kReadChunk = 16 * 1024;
// After an error reply (104, or 102 for a request cut short) the server keeps reading and
// discarding what the client still sends, for at most this long, before it closes: closing
// a unix socket with unread input resets the peer, which could then lose the reply.
constexpr auto kMaxLinger = std::chrono::seconds(1);
// How long an accepting thread waits for the rest of a request before handing the
// connection to the Asio thread. A client usually writes its request right after
// connect(), so the accepting thread, woken by the connect, is often a few microseconds
// early; waiting that out costs one poll(), going asynchronous costs several thread
// hand-offs.
constexpr auto kFastPathWait = std::chrono::milliseconds(2);
// Pause before accepting again after accept() failed for lack of descriptors or memory.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

// ---------------------------------------------------------------- socket file set-up

Result<std::optional<gid_t>> resolve_group(const std::string& group) {
  if (group.empty()) return std::optional<gid_t>();
  if (std::all_of(group.begin(), group.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    unsigned long long number = 0;
    const auto [end, ec] = std::from_chars(group.data(), group.data() + group.size(), number);
    if (ec != std::errc() || end != group.data() + group.size() ||
        number >= static_cast<unsigned long long>(std::numeric_limits<gid_t>::max())) {
      return invalid_argument(fmt::format("group id {} is out of range", group));
    }
    return std::optional<gid_t>(static_cast<gid_t>(number));
  }
  long suggested = ::sysconf(_SC_GETGR_R_SIZE_MAX);
  std::vector<char> buffer(suggested > 0 ? static_cast<std::size_t>(suggested) : 1024);
  for (;;) {
    struct group entry {};
    struct group* found = nullptr;
    const int err = ::getgrnam_r(group.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (err == ERANGE && buffer.size() < (std::size_t{1} << 20)) {
      buffer.resize(buffer.size() * 2);
      continue;
    }
    if (err != 0) return Status::from_errno(err, fmt::format("looking up group {}", group));
    if (found == nullptr) return not_found(fmt::format("there is no group named \"{}\"", group));
    return std::optional<gid_t>(entry.gr_gid);
  }
}

// ---------------------------------------------------------------- handler threads

// Runs tasks on up to max_threads threads, started when a task finds no idle one and kept
// until shutdown().
class WorkerPool {
 public:
  WorkerPool(std::size_t max_threads, std::shared_ptr<spdlog::logger> logger)
      : max_threads_(max_threads), logger_(std::move(logger)) {}
  ~WorkerPool() { shutdown(); }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Fails only when no thread exists and none can be started, or after shutdown().
  Status post(std::function<void()> task) {
    std::unique_lock lock(mu_);
    if (stopping_) return cancelled("the command monitor is shutting down");
    tasks_.push_back(std::move(task));
    if (tasks_.size() > idle_ && threads_.size() < max_threads_) {
      try {
        threads_.emplace_back([this] { run(); });
      } catch (const std::system_error& e) {
        if (threads_.empty()) {
          tasks_.pop_back();
          return resource_exhausted(fmt::format("cannot start a command handler thread: {}", e.what()));
        }
        logger_->warn("cannot start another command handler thread ({}); the request waits for a busy one",
                      e.what());
      }
    }
    const bool wake = idle_ > 0;
    lock.unlock();
    if (wake) wake_.notify_one();
    return Status::ok();
  }

  // Lets the threads finish every queued task, then joins them. Idempotent.
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (tasks_.empty()) {
        if (stopping_) return;
        ++idle_;
        wake_.wait(lock);
        --idle_;
        continue;
      }
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      try {
        task();
      } catch (const std::exception& e) {
        logger_->error("command handler task failed: {}", e.what());
      }
      task = nullptr;  // release what it holds before sleeping
      lock.lock();
    }
  }

  const std::size_t max_threads_;
  std::shared_ptr<spdlog::logger> logger_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;  // grows under mu_ until stopping_
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace

// ==================================================================== Monitor::Impl

// Threads.
//
// Accepting threads wait in accept4() on the listening socket; the kernel hands each new
// connection to exactly one of them. That thread reads what the client has sent without
// blocking, and when the request is complete (the usual case: clients write it right after
// connecting) runs the handler and writes the reply itself, then goes back to accept4().
// A round trip thus costs no hand-off between threads. Before running a handler the
// thread makes sure another one is waiting in accept4(), starting one if needed (up to
// max_handler_threads + 1), so a slow handler never holds up the next client.
//
// Anything that has to wait for the client (the rest of a request, the request timeout,
// room for a large reply, draining after an error reply) moves to one Asio thread, which
// never runs handlers: requests it completes go to a pool of handler threads.
//
// At most max_handler_threads handlers run at once; past that, complete requests wait in
// pending_ for the next thread that finishes a handler.
class Monitor::Impl {
 public:
  explicit Impl(MonitorOptions options);
  ~Impl();

  Status register_handler(std::string command, Handler handler);
  Status unregister_handler(std::string_view command);
  bool listening() const { return listening_.load(std::memory_order_acquire); }
  std::size_t handler_count() const {
    std::lock_guard lock(handlers_mu_);
    return handlers_.size();
  }
  const std::string& socket_path() const { return path_; }

 private:
  class Connection;

  // The listening descriptor, shared by the threads waiting on it: it is closed when the
  // last of them lets go, so no thread ever calls accept4() on a reused descriptor number.
  struct ListenSocket {
    UniqueFd fd;
  };

  Status start_listening();  // lifecycle_mu_ held
  void stop_listening();     // lifecycle_mu_ held
  void accept_loop();        // body of an accepting thread
  bool start_accept_thread_locked();  // mu_ held
  // For an accepting thread about to wait on one client: true (and the thread no longer
  // counts as accepting) if another thread is, or could be started, to accept meanwhile.
  bool leave_accepting();
  void return_to_accepting();

  // A complete request read by an accepting thread: runs its handler on this thread, or
  // hands it on (see the class comment).
  void submit_accepted(const std::shared_ptr<Connection>& connection);
  // A complete request read by the Asio thread: hands it to a handler thread.
  void submit_from_io(const std::shared_ptr<Connection>& connection);
  // Runs `connection`'s handler and sends the reply, then the handlers of requests that
  // were waiting for a thread; finally gives up the handler slot. `accepting` says whether
  // this thread goes back to accept4() afterwards.
  void serve_then_drain(const std::shared_ptr<Connection>& connection, bool accepting);
  void serve(Connection& connection);
  // The reply to one framed request.
  std::string handle(std::string_view request);

  const MonitorOptions options_;
  const std::string path_;
  const std::shared_ptr<spdlog::logger> logger_;
  const std::size_t max_handlers_;

  // Declared before everything that refers to it, so it is destroyed last: its destructor
  // frees the connections still held by pending operations.
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread io_thread_;

  std::mutex mu_;
  std::condition_variable wake_;          // accepting threads with nothing to accept on
  std::shared_ptr<ListenSocket> listen_;  // null while not listening
  std::vector<std::thread> accept_threads_;
  std::size_t accepting_ = 0;  // accepting threads not running a handler
  std::size_t busy_ = 0;       // handlers running, on any thread
  std::deque<std::shared_ptr<Connection>> pending_;
  bool stopping_ = false;
  WorkerPool helpers_;  // handlers of requests completed on the Asio thread

  // Serialises starting and stopping the socket.
  std::mutex lifecycle_mu_;
  bool shutting_down_ = false;
  dev_t socket_dev_ = 0;  // identity of the file we bound, so we never delete a successor's
  ino_t socket_ino_ = 0;
  std::atomic<bool> listening_{false};

  // Guards only the table; held for lookups and updates, never while a handler runs.
  mutable std::mutex handlers_mu_;
  std::map<std::string, std::shared_ptr<const Handler>, std::less<>> handlers_;
};

// ==================================================================== Connection

// One client, from accept to close. The usual request is already there when the
// connection is accepted: start() reads it without blocking, the handler runs, deliver()
// writes the reply and closes, all on the accepting thread and with no asynchronous
// operation. Only when something must be waited for (the rest of the request, room to
// write the reply, the client's leftover bytes after an error reply) does the connection
// go asynchronous: the descriptor moves into an Asio socket served by the Asio thread.
//
// Lives in shared_ptrs held by whoever works on it: the thread running start() or the
// handler, pending_ or a handler task, and the asynchronous operations.
class Monitor::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl& server, UniqueFd fd)
      : server_(server),
        fd_(std::move(fd)),
        reader_(server.options_.max_request_bytes),
        deadline_(std::chrono::steady_clock::now() + server.options_.request_timeout) {}

  // On the accepting thread, right after the accept.
  void start() {
    std::array<char, kReadChunk> chunk;
    const auto wait_until = std::chrono::steady_clock::now() + kFastPathWait;
    bool may_wait = true;  // until the wait budget is spent or no other thread is accepting
    for (;;) {
      const ssize_t n = ::recv(fd_.get(), chunk.data(), chunk.size(), 0);  // the socket is non-blocking
      if (n > 0) {
        switch (reader_.feed(std::string_view(chunk.data(), static_cast<std::size_t>(n)))) {
          case RequestReader::State::kNeedMore:
            continue;
          case RequestReader::State::kComplete:
            server_.submit_accepted(shared_from_this());
            return;
          case RequestReader::State::kError:
            reject();
            return;
        }
      }
      if (n == 0) {
        // The client ended its side before the object did; it may still be reading.
        deliver(standard_response(kStatusBadRequest));
        return;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return;  // a broken connection: nobody to answer
      if (may_wait && wait_briefly(wait_until)) continue;
      may_wait = false;
      if (go_async()) asio::post(server_.io_, [self = shared_from_this()] { self->begin_reading(); });
      return;
    }
  }

  // The complete request; stable while its handler runs.
  std::string_view request() const noexcept { return reader_.request(); }

  // Sends the reply to the request and closes. Called once per request, on the thread that
  // ran the handler, while nothing else touches the descriptor (the Asio thread, if the
  // connection went asynchronous, has nothing left to do with it but drop a cancelled
  // timer wait). A reply that does not fit in the socket's buffer at once is finished on
  // the Asio thread.
  void deliver(std::string reply) {
    const int fd = socket_ ? socket_->native_handle() : fd_.get();
    ssize_t n = -1;
    do {
      n = ::send(fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(reply.size())) {
      close();
      return;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      close();  // the client is gone
      return;
    }
    reply.erase(0, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (!go_async()) return;
    asio::post(server_.io_, [self = shared_from_this(), rest = std::move(reply)]() mutable {
      self->send_reply(std::move(rest), /*linger=*/false);
    });
  }

 private:
  enum class Phase { kReading, kHandling, kWriting, kDraining, kDone };

  // ------------------------------------------------ synchronous part

  // Waits for input until `until`, provided another thread keeps accepting meanwhile.
  // False when there is no time left, no such thread, or still no input.
  bool wait_briefly(std::chrono::steady_clock::time_point until) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !server_.leave_accepting()) return false;
    pollfd p{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    server_.return_to_accepting();
    return ready > 0;
  }

  // Answers a request the framing refused (102), then drains what the client still sends.
  void reject() {
    server_.logger_->debug("rejected a command request: {}", reader_.error().message());
    if (!go_async()) return;
    asio::post(server_.io_, [self = shared_from_this()] {
      self->send_reply(self->reader_.error_response(), /*linger=*/true);
    });
  }

  // Moves the descriptor into an Asio socket. False (and the connection closed) if the
  // reactor refuses it.
  bool go_async() {
    if (socket_) return true;
    socket_.emplace(server_.io_);
    timer_.emplace(server_.io_);
    ErrorCode ec;
    socket_->assign(asio::local::stream_protocol(), fd_.get(), ec);
    if (ec) {
      server_.logger_->warn("cannot watch a command connection: {}", ec.message());
      fd_.reset();
      return false;
    }
    fd_.release();  // the socket owns it now
    return true;
  }

  void close() {
    if (socket_) {
      ErrorCode ignored;
      socket_->close(ignored);
    } else {
      fd_.reset();
    }
  }

  // ------------------------------------------------ asynchronous part (Asio thread)

  void begin_reading() {
    buffer_ = std::make_unique<std::array<char, kReadChunk>>();
    arm_timer(deadline_);
    read();
  }

  void read() {
    read_pending_ = true;
    socket_->async_read_some(asio::buffer(*buffer_), [self = shared_from_this()](const ErrorCode& ec, std::size_t n) {
      self->on_read(ec, n);
    });
  }

  void on_read(const ErrorCode& ec, std::size_t n) {
    read_pending_ = false;
    switch (phase_) {
      case Phase::kReading:
        break;
      case Phase::kDraining:
        // A read the timeout cancelled may land here; anything else but data ends it.
        if (!ec || ec == asio::error::operation_aborted) {
          read();
        } else {
          finish();
        }
        return;
      case Phase::kHandling:
      case Phase::kWriting:
      case Phase::kDone:
        return;
    }
    if (ec == asio::error::eof) {
      send_reply(standard_response(kStatusBadRequest), /*linger=*/false);
      return;
    }
    if (ec) {
      if (ec != asio::error::operation_aborted) finish();
      return;
    }
    switch (reader_.feed(std::string_view(buffer_->data(), n))) {
      case RequestReader::State::kNeedMore:
        read();
        return;
      case RequestReader::State::kComplete:
        phase_ = Phase::kHandling;
        cancel_timer();
        buffer_.reset();
        server_.submit_from_io(shared_from_this());
        return;
      case RequestReader::State::kError:
        server_.logger_->debug("rejected a command request: {}", reader_.error().message());
        send_reply(reader_.error_response(), /*linger=*/true);
        return;
    }
  }

  // Sends `reply`, then closes; with `linger`, first drains what the client still sends
  // (see kMaxLinger).
  void send_reply(std::string reply, bool linger) {
    if (phase_ == Phase::kDone) return;
    phase_ = Phase::kWriting;
    linger_ = linger;
    reply_ = std::move(reply);
    arm_timer(std::chrono::steady_clock::now() + server_.options_.request_timeout);
    asio::async_write(*socket_, asio::buffer(reply_), [self = shared_from_this()](const ErrorCode& ec, std::size_t) {
      if (self->phase_ == Phase::kWriting) self->on_written(ec);
    });
  }

  void on_written(const ErrorCode& ec) {
    if (ec || !linger_) {
      finish();
      return;
    }
    ErrorCode ignored;
    socket_->shutdown(LocalSocket::shutdown_send, ignored);
    phase_ = Phase::kDraining;
    arm_timer(std::chrono::steady_clock::now() +
              std::min<std::chrono::milliseconds>(kMaxLinger, server_.options_.request_timeout));
    if (!buffer_) buffer_ = std::make_unique<std::array<char, kReadChunk>>();
    if (!read_pending_) read();
  }

  void arm_timer(std::chrono::steady_clock::time_point at) {
    const std::uint64_t generation = ++timer_generation_;
    timer_->expires_at(at);
    timer_->async_wait([self = shared_from_this(), generation](const ErrorCode& ec) {
      if (!ec && generation == self->timer_generation_) self->on_timer();
    });
  }

  void cancel_timer() {
    ++timer_generation_;
    timer_->cancel();
  }

  void on_timer() {
    switch (phase_) {
      case Phase::kReading: {
        ErrorCode ignored;
        socket_->cancel(ignored);  // the pending read completes as aborted and is ignored
        send_reply(standard_response(kStatusTimeout), /*linger=*/true);
        return;
      }
      case Phase::kWriting:
      case Phase::kDraining:
        finish();
        return;
      case Phase::kHandling:
      case Phase::kDone:
        return;
    }
  }

  void finish() {
    phase_ = Phase::kDone;
    cancel_timer();
    ErrorCode ignored;
    socket_->close(ignored);
  }

  Impl& server_;
  UniqueFd fd_;  // until go_async()
  RequestReader reader_;
  const std::chrono::steady_clock::time_point deadline_;  // for the whole request

  // Set by go_async(); used on the Asio thread only, but for deliver().
  std::optional<LocalSocket> socket_;
  std::optional<asio::steady_timer> timer_;
  std::unique_ptr<std::array<char, kReadChunk>> buffer_;
  std::string reply_;
  Phase phase_ = Phase::kReading;
  bool read_pending_ = false;
  bool linger_ = false;
  // Bumped on every arm and cancel, so an expiry already queued is recognised as stale.
  std::uint64_t timer_generation_ = 0;
};

// ==================================================================== Impl

Monitor::Impl::Impl(MonitorOptions options)
    : options_(std::move(options)),
      path_(pipe_name(options_.dir, options_.listener)),
      logger_(log::get("command")),
      max_handlers_(std::max<std::size_t>(options_.max_handler_threads, 1)),
      work_(asio::make_work_guard(io_)),
      helpers_(max_handlers_, logger_) {
  io_thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        logger_->error("command monitor I/O thread: {}", e.what());
      }
    }
  });
}

Monitor::Impl::~Impl() {
  {
    std::lock_guard lock(lifecycle_mu_);
    shutting_down_ = true;
    if (listening_.load()) stop_listening();
  }
  std::deque<std::shared_ptr<Connection>> dropped;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    dropped.swap(pending_);
  }
  wake_.notify_all();
  dropped.clear();  // their clients see the connection close
  // Handlers still running finish and send their replies.
  for (std::thread& thread : accept_threads_) thread.join();
  helpers_.shutdown();
  // Then the Asio thread stops, and the io_context's destructor drops the connections left.
  work_.reset();
  io_.stop();
  io_thread_.join();
}

Status Monitor::Impl::register_handler(std::string command, Handler handler) {
  if (command.empty()) return invalid_argument("a command handler needs a non-empty command name");
  if (!handler) return invalid_argument(fmt::format("the handler for command \"{}\" is empty", command));
  std::lock_guard lifecycle(lifecycle_mu_);
  if (shutting_down_) return failed_precondition("the command monitor is shutting down");
  {
    std::lock_guard lock(handlers_mu_);
    if (handlers_.find(command) != handlers_.end()) {
      return already_exists(fmt::format("command \"{}\" already has a handler", command));
    }
    handlers_.emplace(command, std::make_shared<const Handler>(std::move(handler)));
  }
  if (listening_.load()) return Status::ok();
  Status started = start_listening();
  if (!started) {
    std::lock_guard lock(handlers_mu_);
    handlers_.erase(command);
    return started.with_context(fmt::format("starting the command socket {}", path_));
  }
  return Status::ok();
}

Status Monitor::Impl::unregister_handler(std::string_view command) {
  std::lock_guard lifecycle(lifecycle_mu_);
  bool none_left = false;
  {
    std::lock_guard lock(handlers_mu_);
    const auto it = handlers_.find(command);
    if (it == handlers_.end()) return not_found(fmt::format("command \"{}\" has no handler", command));
    handlers_.erase(it);
    none_left = handlers_.empty();
  }
  if (none_left && listening_.load()) stop_listening();
  return Status::ok();
}

Status Monitor::Impl::start_listening() {
  if ((options_.mode & ~mode_t{0777}) != 0) {
    return invalid_argument(fmt::format("mode {:04o} has bits outside 0777", options_.mode));
  }
  AGENTRY_RETURN_IF_ERROR(check_unix_socket_path(path_, "command socket"));
  Result<std::optional<gid_t>> gid = resolve_group(options_.group);
  if (!gid) return gid.status();
  SocketDirPolicy policy;
  policy.mode = options_.mode;
  policy.group = *gid;
  // Group members must be able to pass through the parents to reach the socket directory.
  policy.parent_mode = 0755;
  policy.narrow_existing = true;
  policy.what = "command socket";
  AGENTRY_RETURN_IF_ERROR(prepare_socket_dir(options_.dir, policy, *logger_));
  AGENTRY_RETURN_IF_ERROR(remove_stale_socket(path_, "command socket", *logger_));
  const mode_t socket_mode = (options_.mode & 0666) | 0600;
  Result<BoundUnixSocket> bound = bind_unix_socket(path_, socket_mode, *gid);
  if (!bound) return bound.status();
  {
    std::lock_guard lock(mu_);
    // Two accepting threads to begin with, so the first handler to run leaves one waiting.
    while (accept_threads_.size() < 2) {
      if (!start_accept_thread_locked()) {
        ::unlink(path_.c_str());
        return resource_exhausted("cannot start a thread to accept command connections");
      }
    }
    auto socket = std::make_shared<ListenSocket>();
    socket->fd = std::move(bound->fd);
    listen_ = std::move(socket);
  }
  wake_.notify_all();
  socket_dev_ = bound->dev;
  socket_ino_ = bound->ino;
  listening_.store(true, std::memory_order_release);
  logger_->info("command socket {} is listening (mode {:04o}{})", path_, socket_mode,
                options_.group.empty() ? std::string() : ", group " + options_.group);
  return Status::ok();
}

void Monitor::Impl::stop_listening() {
  std::shared_ptr<ListenSocket> socket;
  {
    std::lock_guard lock(mu_);
    socket = std::move(listen_);
  }
  // Refuses new connections and wakes every thread blocked in accept4() (EINVAL); the
  // descriptor closes when the last of them drops its reference.
  if (socket) ::shutdown(socket->fd.get(), SHUT_RDWR);
  socket.reset();
  if (!remove_own_socket_file(path_, socket_dev_, socket_ino_)) {
    logger_->warn("{} is no longer our command socket; leaving it in place", path_);
  }
  listening_.store(false, std::memory_order_release);
  logger_->info("command socket {} closed", path_);
}

bool Monitor::Impl::start_accept_thread_locked() {
  if (stopping_ || accept_threads_.size() >= max_handlers_ + 1) return false;
  try {
    accept_threads_.emplace_back([this] { accept_loop(); });
  } catch (const std::system_error& e) {
    logger_->warn("cannot start a thread to accept command connections: {}", e.what());
    return false;
  }
  ++accepting_;
  return true;
}

void Monitor::Impl::accept_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopping_) return;
    std::shared_ptr<ListenSocket> socket = listen_;
    if (!socket) {
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    const int fd = ::accept4(socket->fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    const int err = errno;
    if (fd >= 0) {
      socket.reset();
      try {
        std::make_shared<Connection>(*this, UniqueFd(fd))->start();
      } catch (const std::exception& e) {  // allocation failure; the connection is closed
        logger_->error("serving a command connection: {}", e.what());
      }
      lock.lock();
      continue;
    }
    lock.lock();
    const bool replaced = listen_ != socket;
    socket.reset();
    if (err == EINTR || err == ECONNABORTED || err == EPROTO || (err == EINVAL && replaced)) continue;
    // Out of descriptors or memory: the connection stays queued; retrying at once would spin.
    logger_->warn("accepting on {} failed: {}; retrying in {} ms", path_, std::strerror(err),
                  kAcceptRetryDelay.count());
    wake_.wait_for(lock, kAcceptRetryDelay);
  }
}

bool Monitor::Impl::leave_accepting() {
  std::lock_guard lock(mu_);
  if (stopping_ || (accepting_ < 2 && !start_accept_thread_locked())) return false;
  --accepting_;
  return true;
}

void Monitor::Impl::return_to_accepting() {
  std::lock_guard lock(mu_);
  ++accepting_;
}

void Monitor::Impl::submit_accepted(const std::shared_ptr<Connection>& connection) {
  bool run_here = false;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (busy_ >= max_handlers_) {
      pending_.push_back(connection);
      return;
    }
    ++busy_;
    // Run it here only if another thread is left waiting in accept4().
    run_here = accepting_ >= 2 || start_accept_thread_locked();
    if (run_here) --accepting_;
  }
  if (run_here) {
    serve_then_drain(connection, /*accepting=*/true);
    return;
  }
  const Status posted = helpers_.post([this, connection] { serve_then_drain(connection, /*accepting=*/false); });
  if (!posted) {
    {
      std::lock_guard lock(mu_);
      --busy_;
    }
    connection->deliver(make_response(kStatusInternalError, posted.message()));
  }
}

void Monitor::Impl::submit_from_io(const std::shared_ptr<Connection>& connection) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (busy_ >= max_handlers_) {
      pending_.push_back(connection);
      return;
    }
    ++busy_;
  }
  const Status posted = helpers_.post([this, connection] { serve_then_drain(connection, /*accepting=*/false); });
  if (!posted) {
    {
      std::lock_guard lock(mu_);
      --busy_;
    }
    connection->deliver(make_response(kStatusInternalError, posted.message()));
  }
}

void Monitor::Impl::serve_then_drain(const std::shared_ptr<Connection>& connection, bool accepting) {
  serve(*connection);
  std::unique_lock lock(mu_);
  // Before giving up the slot, take over the requests that found every slot taken.
  while (!pending_.empty() && !stopping_) {
    std::shared_ptr<Connection> next = std::move(pending_.front());
    pending_.pop_front();
    lock.unlock();
    serve(*next);
    next.reset();
    lock.lock();
  }
  --busy_;
  if (accepting) ++accepting_;
}

void Monitor::Impl::serve(Connection& connection) {
  std::string reply;
  try {
    reply = handle(connection.request());
  } catch (const std::exception& e) {  // allocation failure while building a reply
    logger_->error("answering a command request: {}", e.what());
    reply = standard_response(kStatusInternalError);
  }
  connection.deliver(std::move(reply));
}

std::string Monitor::Impl::handle(std::string_view request) {
  Result<std::string> command = command_name(request);
  if (!command) return standard_response(kStatusBadRequest);
  std::shared_ptr<const Handler> handler;
  {
    std::lock_guard lock(handlers_mu_);
    const auto it = handlers_.find(*command);
    if (it != handlers_.end()) handler = it->second;
  }
  if (!handler) return standard_response(kStatusNoHandler);

  std::optional<Result<std::string>> result;
  try {
    result.emplace((*handler)(request));
  } catch (const std::exception& e) {
    logger_->warn("the handler for command \"{}\" threw: {}", *command, e.what());
    return make_response(kStatusHandlerError, e.what());
  } catch (...) {
    logger_->warn("the handler for command \"{}\" threw a non-standard exception", *command);
    return make_response(kStatusHandlerError, "the command handler threw an exception");
  }
  if (!result->is_ok()) {
    const std::string& message = result->status().message();
    return make_response(kStatusHandlerError, message.empty() ? standard_message(kStatusHandlerError) : message);
  }
  if (!is_json_object(result->value())) {
    logger_->warn("the handler for command \"{}\" returned a reply that is not a JSON object", *command);
    return standard_response(kStatusInternalError);
  }
  return std::move(*result).value();
}

// ==================================================================== Monitor

Monitor::Monitor(MonitorOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Monitor::~Monitor() = default;

Status Monitor::register_handler(std::string command, Handler handler) {
  return impl_->register_handler(std::move(command), std::move(handler));
}
Status Monitor::unregister_handler(std::string_view command) { return impl_->unregister_handler(command); }
bool Monitor::listening() const { return impl_->listening(); }
std::size_t Monitor::handler_count() const { return impl_->handler_count(); }
const std::string& Monitor::socket_path() const { return impl_->socket_path(); }

}  // namespace agentry::command
