#include "agentry/udf/io.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <utility>

#include <google/protobuf/message_lite.h>

#include "agentry/wire/uvarint.h"

namespace agentry::udf {
namespace {

uint8_t* as_bytes(char* p) noexcept { return reinterpret_cast<uint8_t*>(p); }

// A broken pipe raises SIGPIPE in the thread that wrote, and its default action kills the
// process. Sockets avoid it with MSG_NOSIGNAL; for pipes the signal is blocked around the
// write and, if the write raised it, taken back with sigtimedwait() before unblocking.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() noexcept {
    sigemptyset(&pipe_only_);
    sigaddset(&pipe_only_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    was_pending_ = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    ::pthread_sigmask(SIG_BLOCK, &pipe_only_, &old_);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;
  ~ScopedSigpipeBlock() {
    if (raised_ && !was_pending_) consume_sigpipe();
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void note_epipe() noexcept { raised_ = true; }

  static void consume_sigpipe() noexcept {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    const timespec zero{};
    while (::sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }

 private:
  sigset_t pipe_only_{};
  sigset_t old_{};
  bool was_pending_ = false;
  bool raised_ = false;
};

constexpr size_t kReadChunk = size_t{64} << 10;
constexpr size_t kMaxSpareChunks = 4;
constexpr int kMaxIov = 64;

}  // namespace

bool wait_fd(int fd, short events, int wake_fd) noexcept {
  pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
  const nfds_t count = wake_fd >= 0 ? 2 : 1;
  for (;;) {
    const int n = ::poll(fds, count, -1);
    if (n < 0 && errno == EINTR) continue;
    if (count == 2 && (fds[1].revents & POLLIN) != 0) return false;
    return true;  // ready, or an error condition the next call will report
  }
}

FdKind fd_kind(int fd) noexcept {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FdKind::kOther;
  if (S_ISSOCK(st.st_mode)) return FdKind::kSocket;
  if (S_ISFIFO(st.st_mode)) return FdKind::kPipe;
  return FdKind::kOther;
}

FdFlagsGuard::FdFlagsGuard(int fd) noexcept : fd_(fd), kind_(fd_kind(fd)) {
  if (kind_ == FdKind::kSocket) {
    nonblocking_ = true;  // by MSG_DONTWAIT, per call
  } else if (kind_ == FdKind::kPipe) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_NONBLOCK) != 0) {
      nonblocking_ = true;
    } else if (flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0) {
      saved_flags_ = flags;
      nonblocking_ = true;
    }
  }
}

void FdFlagsGuard::restore() noexcept {
  if (saved_flags_ >= 0) ::fcntl(fd_, F_SETFL, saved_flags_);
  saved_flags_ = -1;
}

// ================================================================ one message at a time

void append_message(std::string& out, const google::protobuf::MessageLite& message) {
  const size_t size = message.ByteSizeLong();
  char* dst = wire::append_delimited_uninitialized(out, size);
  message.SerializeWithCachedSizesToArray(as_bytes(dst));
}

Status write_all(int fd, std::string_view bytes) {
  const bool socket = fd_kind(fd) == FdKind::kSocket;
  ScopedSigpipeBlock sigpipe;
  while (!bytes.empty()) {
    const ssize_t n = socket ? ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL)
                             : ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {  // somebody made it non-blocking
        wait_fd(fd, POLLOUT, -1);
        continue;
      }
      if (errno == EPIPE) sigpipe.note_epipe();
      return Status::from_errno(errno, "writing a UDF message");
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::ok();
}

Status write_message(int fd, const google::protobuf::MessageLite& message) {
  std::string framed;
  append_message(framed, message);
  return write_all(fd, framed);
}

MessageReader::MessageReader(int fd, size_t max_message_size) : fd_(fd), decoder_(max_message_size) {}

Result<bool> MessageReader::read(google::protobuf::MessageLite& message) { return read_message(fd_, decoder_, message); }

Result<bool> read_message(int fd, wire::DelimitedDecoder& decoder, google::protobuf::MessageLite& message) {
  for (;;) {
    auto next = decoder.next();
    if (!next.is_ok()) return next.status();
    if (next->has_value()) {
      const std::string_view bytes = **next;
      if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
        return invalid_argument("a " + std::to_string(bytes.size()) + "-byte message does not parse as " +
                                message.GetTypeName());
      }
      return true;
    }
    const std::span<char> room = decoder.prepare(kReadChunk);
    const ssize_t n = ::read(fd, room.data(), room.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        decoder.commit(0);
        wait_fd(fd, POLLIN, -1);
        continue;
      }
      const int err = errno;
      decoder.commit(0);
      return Status::from_errno(err, "reading a UDF message");
    }
    decoder.commit(static_cast<size_t>(n));
    if (n == 0) {
      Status end = decoder.finish();
      if (!end.is_ok()) return end;
      return false;
    }
  }
}

// ================================================================ FramedWriter

FramedWriter::FramedWriter(int fd, FramedWriterOptions options)
    : fd_(fd), options_(options), kind_(fd_kind(fd)), wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

FramedWriter::~FramedWriter() {
  abort();
  if (thread_.joinable()) thread_.join();
}

void FramedWriter::start(std::function<void(const Status&)> on_error) {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  on_error_ = std::move(on_error);
  thread_ = std::thread([this] { run(); });
}

std::string FramedWriter::take_spare_locked() {
  std::string chunk;
  if (!spare_.empty()) {
    chunk = std::move(spare_.back());
    spare_.pop_back();
    chunk.clear();
  }
  return chunk;
}

char* FramedWriter::reserve_locked(std::unique_lock<std::mutex>& lock, size_t size, Status& status) {
  for (;;) {
    if (!error_.is_ok()) {
      status = error_;
      return nullptr;
    }
    if (closing_) {
      status = failed_precondition("the UDF output is closed");
      return nullptr;
    }
    if (!started_ || thread_done_ || pending_bytes_ < options_.max_pending_bytes) break;
    space_cv_.wait(lock);
  }
  if (current_.capacity() < options_.chunk_size) current_.reserve(options_.chunk_size + 1024);
  return wire::append_delimited_uninitialized(current_, size);
}

void FramedWriter::after_append_locked(size_t framed) {
  pending_bytes_ += framed;
  ++stats_.messages;
  if (current_.size() >= options_.chunk_size) {
    ready_.push_back(std::move(current_));
    current_ = take_spare_locked();
    if (ready_.size() == 1) work_cv_.notify_one();  // otherwise the thread was already told
  }
}

Status FramedWriter::write(const google::protobuf::MessageLite& message) {
  const size_t size = message.ByteSizeLong();
  std::unique_lock lock(mu_);
  Status status;
  const size_t before = current_.size();
  char* dst = reserve_locked(lock, size, status);
  if (dst == nullptr) return status;
  message.SerializeWithCachedSizesToArray(as_bytes(dst));
  after_append_locked(current_.size() - before);
  return Status::ok();
}

Status FramedWriter::write_embedded(uint32_t field_number, const google::protobuf::MessageLite& inner) {
  const size_t inner_size = inner.ByteSizeLong();
  const uint64_t tag = (uint64_t{field_number} << 3) | 2U;  // wire type 2: length-delimited
  const size_t size = wire::uvarint_size(tag) + wire::uvarint_size(inner_size) + inner_size;
  std::unique_lock lock(mu_);
  Status status;
  const size_t before = current_.size();
  char* dst = reserve_locked(lock, size, status);
  if (dst == nullptr) return status;
  dst = wire::write_uvarint(dst, tag);
  dst = wire::write_uvarint(dst, inner_size);
  inner.SerializeWithCachedSizesToArray(as_bytes(dst));
  after_append_locked(current_.size() - before);
  return Status::ok();
}

Status FramedWriter::write_priority(const google::protobuf::MessageLite& message) {
  const size_t size = message.ByteSizeLong();
  std::lock_guard lock(mu_);
  if (!error_.is_ok()) return error_;
  if (thread_done_ || (closing_ && !started_)) return failed_precondition("the UDF output is closed");
  if (priority_.size() >= options_.max_priority_bytes) {
    ++stats_.priority_dropped;
    return resource_exhausted("too many urgent UDF responses are waiting to be written");
  }
  char* dst = wire::append_delimited_uninitialized(priority_, size);
  message.SerializeWithCachedSizesToArray(as_bytes(dst));
  ++stats_.messages;
  ++stats_.priority_messages;
  priority_waiting_.store(true, std::memory_order_release);
  work_cv_.notify_one();
  return Status::ok();
}

void FramedWriter::flush() {
  std::lock_guard lock(mu_);
  if (current_.empty() || flush_requested_) return;
  flush_requested_ = true;
  work_cv_.notify_one();
}

Status FramedWriter::close() {
  {
    std::unique_lock lock(mu_);
    if (!started_) {
      lock.unlock();
      start();
      lock.lock();
    }
    closing_ = true;
    work_cv_.notify_one();
    space_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  return error_;
}

void FramedWriter::abort() {
  {
    std::lock_guard lock(mu_);
    if (aborted_) return;
    aborted_ = true;
    abort_flag_.store(true, std::memory_order_release);
    if (error_.is_ok()) error_ = cancelled("the UDF output was aborted");
    current_.clear();
    ready_.clear();
    priority_.clear();
    pending_bytes_ = 0;
    work_cv_.notify_all();
    space_cv_.notify_all();
  }
  if (wake_fd_) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t ignored = ::write(wake_fd_.get(), &one, sizeof one);
  }
}

FramedWriterStats FramedWriter::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

size_t FramedWriter::pending_bytes() const {
  std::lock_guard lock(mu_);
  return pending_bytes_;
}

bool FramedWriter::take_priority(std::vector<std::string>& segments, size_t insert_at) {
  std::string urgent;
  {
    std::lock_guard lock(mu_);
    priority_waiting_.store(false, std::memory_order_relaxed);
    if (priority_.empty()) return false;
    urgent.swap(priority_);
  }
  insert_at = std::min(insert_at, segments.size());
  segments.insert(segments.begin() + static_cast<std::ptrdiff_t>(insert_at), std::move(urgent));
  return true;
}

void FramedWriter::run() {
  // This thread only ever writes our output: keep SIGPIPE blocked for its whole life, so a
  // broken pipe is an EPIPE error and never a process-killing signal.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);

  std::vector<std::string> segments;
  Status failure;
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] {
      return aborted_ || closing_ || !priority_.empty() || !ready_.empty() || (flush_requested_ && !current_.empty());
    });
    if (aborted_) break;
    if ((flush_requested_ || closing_) && !current_.empty()) {
      ready_.push_back(std::move(current_));
      current_ = take_spare_locked();
    }
    flush_requested_ = false;
    if (ready_.empty() && priority_.empty()) {
      if (closing_) break;
      continue;
    }
    segments.clear();
    if (!priority_.empty()) {
      segments.push_back(std::move(priority_));
      priority_.clear();
    }
    priority_waiting_.store(false, std::memory_order_relaxed);
    size_t taken = 0;
    for (std::string& chunk : ready_) {
      taken += chunk.size();
      segments.push_back(std::move(chunk));
    }
    ready_.clear();
    lock.unlock();

    FramedWriterStats counted;
    Status status = write_segments(segments, counted);

    lock.lock();
    stats_.bytes_written += counted.bytes_written;
    stats_.write_calls += counted.write_calls;
    stats_.would_block += counted.would_block;
    if (!aborted_) pending_bytes_ -= std::min(pending_bytes_, taken);
    for (std::string& segment : segments) {
      if (spare_.size() >= kMaxSpareChunks) break;
      if (segment.capacity() >= options_.chunk_size) spare_.push_back(std::move(segment));
    }
    space_cv_.notify_all();
    if (!status.is_ok()) {
      if (!aborted_ && error_.is_ok()) {
        error_ = status;
        failure = std::move(status);
      }
      break;
    }
  }
  thread_done_ = true;
  current_.clear();
  ready_.clear();
  pending_bytes_ = 0;
  space_cv_.notify_all();
  auto on_error = on_error_;
  lock.unlock();
  if (!failure.is_ok() && on_error) on_error(failure);
}

Status FramedWriter::write_segments(std::vector<std::string>& segments, FramedWriterStats& counted) {
  const bool socket = kind_ == FdKind::kSocket;
  const int fl = socket ? 0 : ::fcntl(fd_, F_GETFL);
  const bool nonblocking = socket || (fl >= 0 && (fl & O_NONBLOCK) != 0);
  size_t index = 0;
  size_t offset = 0;
  iovec iov[kMaxIov];
  for (;;) {
    if (abort_flag_.load(std::memory_order_acquire)) return cancelled("the UDF output was aborted");
    if (priority_waiting_.load(std::memory_order_acquire)) {
      // At a message boundary: before the chunk we are about to start, or after the one
      // we are in the middle of (chunks always end where a message ends).
      take_priority(segments, offset == 0 ? index : index + 1);
    }
    while (index < segments.size() && offset == segments[index].size()) {
      ++index;
      offset = 0;
    }
    if (index == segments.size()) return Status::ok();

    int count = 0;
    for (size_t i = index; i < segments.size() && count < kMaxIov; ++i) {
      const size_t skip = i == index ? offset : 0;
      if (segments[i].size() == skip) continue;
      iov[count].iov_base = segments[i].data() + skip;
      iov[count].iov_len = segments[i].size() - skip;
      ++count;
    }
    if (!nonblocking && !wait_fd(fd_, POLLOUT, wake_fd_.get())) return cancelled("the UDF output was aborted");

    ssize_t n;
    if (socket) {
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(count);
      n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
      n = ::writev(fd_, iov, count);
    }
    ++counted.write_calls;
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        ++counted.would_block;
        if (!wait_fd(fd_, POLLOUT, wake_fd_.get())) return cancelled("the UDF output was aborted");
        continue;
      }
      if (err == EPIPE && !socket) ScopedSigpipeBlock::consume_sigpipe();
      return Status::from_errno(err, "writing UDF responses");
    }
    counted.bytes_written += static_cast<uint64_t>(n);
    auto left = static_cast<size_t>(n);
    while (left > 0 && index < segments.size()) {
      const size_t take = std::min(left, segments[index].size() - offset);
      offset += take;
      left -= take;
      if (offset == segments[index].size()) {
        ++index;
        offset = 0;
      }
    }
  }
}

}  // namespace agentry::udf
