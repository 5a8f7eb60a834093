#include "agentry/udf/agent.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <string>
#include <utility>

#include <google/protobuf/arena.h>

#include "agentry/base/log.h"

namespace agentry::udf {
namespace {

// Input batches kept for reuse; their Request objects keep their allocations.
constexpr size_t kMaxFreeBatches = 4;

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

// Parsing onto an arena makes a request's strings and map nodes one bump allocation each,
// and releasing a whole batch one reset, instead of a malloc/free pair per field. The first
// block is ours and survives resets, so a recycled batch usually allocates nothing.
struct Agent::InputBatch {
  static constexpr size_t kFirstBlockSize = size_t{128} << 10;

  static google::protobuf::ArenaOptions arena_options(char* block) {
    google::protobuf::ArenaOptions o;
    o.initial_block = block;
    o.initial_block_size = kFirstBlockSize;
    o.start_block_size = kFirstBlockSize;
    o.max_block_size = size_t{1} << 20;
    return o;
  }

  std::unique_ptr<char[]> first_block{new char[kFirstBlockSize]};
  google::protobuf::Arena arena{arena_options(first_block.get())};
  std::vector<agent::Request*> requests;
  size_t bytes = 0;

  void reset() {
    requests.clear();
    bytes = 0;
    arena.Reset();
  }
};

Agent::Agent(UniqueFd in, UniqueFd out, AgentOptions options)
    : Agent(std::move(in), std::move(out), false, std::move(options)) {}

Agent::Agent(UniqueFd socket, AgentOptions options) : Agent(std::move(socket), UniqueFd(), true, std::move(options)) {}

Agent::Agent(UniqueFd in, UniqueFd out, bool one_socket, AgentOptions options)
    : options_(std::move(options)),
      in_(std::move(in)),
      out_(std::move(out)),
      one_socket_(one_socket),
      in_flags_(in_.get()),
      out_flags_(one_socket_ ? -1 : out_.get()),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      writer_(one_socket_ ? in_.get() : out_.get(), options_.writer) {}

std::unique_ptr<Agent> Agent::stdio(AgentOptions options) {
  return std::make_unique<Agent>(UniqueFd(STDIN_FILENO), UniqueFd(STDOUT_FILENO), std::move(options));
}

Agent::~Agent() {
  writer_.abort();
  in_flags_.restore();
  out_flags_.restore();
}

Status Agent::after_send(Status status) {
  // The handler thread flushes when it runs out of input; a response produced elsewhere
  // while it waits for input would otherwise sit in the buffer.
  if (handler_idle_.load(std::memory_order_acquire)) writer_.flush();
  return status;
}

Status Agent::send(const agent::Response& response) { return after_send(writer_.write(response)); }

Status Agent::send_point(const agent::Point& point) {
  return after_send(writer_.write_embedded(agent::Response::kPointFieldNumber, point));
}

Status Agent::send_begin(const agent::BeginBatch& begin) {
  return after_send(writer_.write_embedded(agent::Response::kBeginFieldNumber, begin));
}

Status Agent::send_end(const agent::EndBatch& end) {
  return after_send(writer_.write_embedded(agent::Response::kEndFieldNumber, end));
}

void Agent::flush() { writer_.flush(); }

void Agent::stop(Status reason) { request_stop(std::move(reason), false); }

void Agent::abort() {
  writer_.abort();  // first, so that nothing more reaches the peer
  request_stop(cancelled("the UDF agent was aborted"), true);
}

void Agent::request_stop(Status reason, bool output_gone) {
  {
    std::lock_guard lock(mu_);
    if (!stop_requested_) {
      stop_requested_ = true;
      stop_reason_ = std::move(reason);
      output_failed_ = output_gone;
    }
    stopping_.store(true, std::memory_order_release);
    handler_cv_.notify_all();
    reader_cv_.notify_all();
  }
  wake_reader();
}

void Agent::wake_reader() noexcept {
  if (!wake_fd_) return;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof one);
}

// ---------------------------------------------------------------- reader thread

void Agent::finish_input(Status status) {
  std::lock_guard lock(mu_);
  input_done_ = true;
  input_status_ = std::move(status);
  handler_cv_.notify_all();
}

// Reads once into the decoder. Returns false when the reader should end (finish_input()
// has then been called).
bool Agent::read_some(wire::DelimitedDecoder& decoder) {
  const int fd = in_.get();
  for (;;) {
    if (stopping_.load(std::memory_order_acquire)) {
      finish_input(Status::ok());
      return false;
    }
    if (!in_flags_.nonblocking() && !wait_fd(fd, POLLIN, wake_fd_.get())) {
      finish_input(Status::ok());
      return false;
    }
    const std::span<char> room = decoder.prepare(options_.read_size);
    const ssize_t n = in_flags_.kind() == FdKind::kSocket ? ::recv(fd, room.data(), room.size(), MSG_DONTWAIT)
                                                          : ::read(fd, room.data(), room.size());
    if (n < 0) {
      const int err = errno;
      decoder.commit(0);
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        if (!wait_fd(fd, POLLIN, wake_fd_.get())) {
          finish_input(Status::ok());
          return false;
        }
        continue;
      }
      finish_input(Status::from_errno(err, "reading UDF requests"));
      return false;
    }
    decoder.commit(static_cast<size_t>(n));
    if (n == 0) {
      Status end = decoder.finish();
      finish_input(end.is_ok() ? Status::ok() : end.with_context("reading UDF requests"));
      return false;
    }
    return true;
  }
}

std::unique_ptr<Agent::InputBatch> Agent::take_batch_locked() {
  if (free_batches_.empty()) return std::make_unique<InputBatch>();
  std::unique_ptr<InputBatch> batch = std::move(free_batches_.back());
  free_batches_.pop_back();
  return batch;
}

void Agent::read_loop() {
  wire::DelimitedDecoder decoder(options_.max_message_size);
  std::unique_ptr<InputBatch> batch;
  {
    std::lock_guard lock(mu_);
    batch = take_batch_locked();
  }
  agent::Response keepalive_reply;
  for (;;) {
    if (!read_some(decoder)) return;
    Status bad;
    for (;;) {
      auto next = decoder.next();
      if (!next.is_ok()) {
        bad = next.status().with_context("reading UDF requests");
        break;
      }
      if (!next->has_value()) break;
      const std::string_view bytes = **next;
      auto* request = google::protobuf::Arena::CreateMessage<agent::Request>(&batch->arena);
      if (!request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        bad = invalid_argument("reading UDF requests: a " + std::to_string(bytes.size()) +
                               "-byte message does not parse as a Request");
        break;
      }
      if (request->message_case() == agent::Request::kKeepalive) {
        // Answered here, ahead of all queued output, however busy the handler is.
        keepalive_reply.mutable_keepalive()->set_time(request->keepalive().time());
        (void)writer_.write_priority(keepalive_reply);
        continue;
      }
      batch->requests.push_back(request);
      batch->bytes += bytes.size();
    }

    // Nothing for the handler (only keepalives, or nothing complete yet): drop what the
    // arena holds now, or a stream of keepalives would grow it without bound.
    if (batch->requests.empty()) batch->reset();
    std::unique_lock lock(mu_);
    if (!batch->requests.empty()) {
      queued_bytes_ += batch->bytes;
      queue_.push_back(std::move(batch));
      handler_cv_.notify_one();
      batch = take_batch_locked();
    }
    if (!bad.is_ok()) {
      input_done_ = true;
      input_status_ = std::move(bad);
      handler_cv_.notify_all();
      return;
    }
    // Backpressure: the handler is far behind; stop reading until it catches up.
    reader_cv_.wait(lock, [this] {
      return queued_bytes_ <= options_.max_queued_input_bytes || stopping_.load(std::memory_order_relaxed);
    });
  }
}

// ---------------------------------------------------------------- handler thread

Status Agent::handle(Handler& handler, agent::Request& request) {
  try {
    switch (request.message_case()) {
      case agent::Request::kPoint:
        return handler.Point(request.point());
      case agent::Request::kBegin:
        return handler.BeginBatch(request.begin());
      case agent::Request::kEnd:
        return handler.EndBatch(request.end());
      case agent::Request::kInfo: {
        agent::Response response;
        *response.mutable_info() = handler.Info();
        (void)writer_.write(response);  // a broken output stops the agent by itself
        writer_.flush();
        return Status::ok();
      }
      case agent::Request::kInit: {
        agent::Response response;
        *response.mutable_init() = handler.Init(request.init());
        (void)writer_.write(response);
        writer_.flush();
        return Status::ok();
      }
      case agent::Request::kSnapshot: {
        agent::Response response;
        *response.mutable_snapshot() = handler.Snapshot();
        (void)writer_.write(response);
        writer_.flush();
        return Status::ok();
      }
      case agent::Request::kRestore: {
        agent::Response response;
        *response.mutable_restore() = handler.Restore(request.restore());
        (void)writer_.write(response);
        writer_.flush();
        return Status::ok();
      }
      case agent::Request::kKeepalive: {  // normally answered by the reader
        agent::Response response;
        response.mutable_keepalive()->set_time(request.keepalive().time());
        (void)writer_.write_priority(response);
        return Status::ok();
      }
      case agent::Request::MESSAGE_NOT_SET:
        break;
    }
    return invalid_argument("received a Request with no known message in it");
  } catch (...) {
    return internal_error(describe_exception(std::current_exception()));
  }
}

Status Agent::run(Handler& handler) {
  {
    std::lock_guard lock(mu_);
    if (ran_) return failed_precondition("Agent::run() may only be called once");
    ran_ = true;
  }
  writer_.start([this](const Status& error) { request_stop(error, true); });
  std::thread reader([this] { read_loop(); });

  std::deque<std::unique_ptr<InputBatch>> work;
  std::unique_lock lock(mu_);
  for (;;) {
    if (stop_requested_) break;
    if (queue_.empty()) {
      if (input_done_) break;
      handler_idle_.store(true, std::memory_order_release);
      lock.unlock();
      writer_.flush();  // input is idle: write what the last requests produced
      lock.lock();
      handler_cv_.wait(lock, [this] { return stop_requested_ || input_done_ || !queue_.empty(); });
      handler_idle_.store(false, std::memory_order_release);
      continue;
    }
    work.swap(queue_);
    queued_bytes_ = 0;
    reader_cv_.notify_one();
    lock.unlock();
    bool failed = false;
    for (const auto& batch : work) {
      for (agent::Request* request : batch->requests) {
        if (stopping_.load(std::memory_order_acquire)) {
          failed = true;
          break;
        }
        Status status = handle(handler, *request);
        if (!status.is_ok()) {
          request_stop(std::move(status), false);
          failed = true;
          break;
        }
      }
      if (failed) break;
    }
    for (const auto& batch : work) batch->reset();  // outside the lock: frees arena blocks
    lock.lock();
    for (auto& batch : work) {
      if (free_batches_.size() >= kMaxFreeBatches) break;
      free_batches_.push_back(std::move(batch));
    }
    work.clear();
  }

  // Why are we ending? A stop request (handler error, stop(), abort(), write error) wins
  // over the input's own end (EOF, or bad input after the last good request).
  Status reason = stop_requested_ ? stop_reason_ : input_status_;
  const bool output_failed = output_failed_;
  stopping_.store(true, std::memory_order_release);
  handler_idle_.store(false, std::memory_order_release);
  reader_cv_.notify_all();
  lock.unlock();
  wake_reader();

  if (!reason.is_ok() && !output_failed) {
    agent::Response error;
    error.mutable_error()->set_error(reason.message());
    (void)writer_.write(error);
    writer_.flush();
  }
  try {
    handler.Stop();
  } catch (...) {
    log::get("udf")->warn("UDF handler Stop() threw: {}", describe_exception(std::current_exception()));
  }
  Status written = writer_.close();
  reader.join();

  // Close the output so the peer sees EOF, then the input.
  if (one_socket_) {
    ::shutdown(in_.get(), SHUT_WR);
  } else {
    out_flags_.restore();
    out_.reset();
  }
  in_flags_.restore();
  in_.reset();

  if (reason.is_ok() && !written.is_ok()) reason = std::move(written);
  return reason;
}

}  // namespace agentry::udf
