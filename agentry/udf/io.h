// Reading and writing framed UDF messages on file descriptors.
//
// The Kapacitor UDF protocol frames every message as the unsigned varint of its length
// followed by the protobuf bytes (agentry/wire/delimited.h has the codec). This header puts
// that framing on file descriptors, at two levels:
//
//   - Blocking one-message helpers, the equivalent of the Go agent's ReadMessage and
//     WriteMessage: MessageReader / read_message() and write_message(). One write() per
//     message (length and body together, never two calls), SIGPIPE suppressed.
//
//   - FramedWriter: the batched, thread-safe output the Agent uses. Messages are serialized
//     straight into a 64 KiB chunk; a chunk is written when it is full or when somebody
//     calls flush() (the Agent does when its input goes idle), many chunks per writev().
//     A "priority" lane lets a small message (a keepalive reply) overtake everything that
//     is queued: it goes out with the next system call, at the next message boundary.
//
// Descriptor kinds. Sockets are used with send()/recv() and MSG_DONTWAIT | MSG_NOSIGNAL, so
// their flags are never touched. Pipes have no per-call equivalent: FdFlagsGuard switches a
// pipe to O_NONBLOCK for as long as it is used and puts the old flags back afterwards (the
// flag belongs to the open file description, which a parent may share). Anything else (a
// terminal, a regular file) is used with poll() followed by a blocking call. Non-blocking
// I/O is what makes FramedWriter::abort() able to interrupt a write to a peer that stopped
// reading.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/wire/delimited.h"

namespace google::protobuf {
class MessageLite;
}  // namespace google::protobuf

namespace agentry::udf {

// Incoming messages larger than this are refused (the Go reader has no limit at all).
inline constexpr size_t kDefaultMaxMessageSize = wire::kDefaultMaxDelimitedMessageSize;

enum class FdKind : uint8_t { kSocket, kPipe, kOther };
// fstat()-based; kOther when fstat fails.
FdKind fd_kind(int fd) noexcept;

// Waits until `fd` reports one of `events` (or an error condition), or until `wake_fd` (if
// >= 0) is readable. Returns false in the second case. Retries on EINTR.
bool wait_fd(int fd, short events, int wake_fd) noexcept;

// Sets O_NONBLOCK on a pipe for the guard's lifetime and restores the previous flags when
// destroyed (or at restore()). Sockets and other descriptors are left alone.
class FdFlagsGuard {
 public:
  FdFlagsGuard() noexcept = default;
  explicit FdFlagsGuard(int fd) noexcept;
  FdFlagsGuard(const FdFlagsGuard&) = delete;
  FdFlagsGuard& operator=(const FdFlagsGuard&) = delete;
  ~FdFlagsGuard() { restore(); }

  FdKind kind() const noexcept { return kind_; }
  // True when calls on the descriptor will not block: a socket used with MSG_DONTWAIT, or a
  // pipe this guard made non-blocking. False for kOther (poll first, then a blocking call).
  bool nonblocking() const noexcept { return nonblocking_; }
  void restore() noexcept;

 private:
  int fd_ = -1;
  FdKind kind_ = FdKind::kOther;
  bool nonblocking_ = false;
  int saved_flags_ = -1;  // >= 0 when this guard changed the flags
};

// ---------------------------------------------------------------- one message at a time

// Appends `message` framed (length prefix + bytes) to `out`, serializing in place.
void append_message(std::string& out, const google::protobuf::MessageLite& message);

// Writes all of `bytes` to a blocking descriptor, retrying on EINTR and short writes. A
// reader that went away gives an error (EPIPE), never a SIGPIPE.
Status write_all(int fd, std::string_view bytes);

// Writes one framed message with a single write (WriteMessage in the Go agent).
Status write_message(int fd, const google::protobuf::MessageLite& message);

// Reads framed messages from a blocking descriptor (ReadMessage in the Go agent). Not
// thread-safe; keep one reader per descriptor for its whole life, since it buffers.
class MessageReader {
 public:
  explicit MessageReader(int fd, size_t max_message_size = kDefaultMaxMessageSize);

  // true: `message` holds the next message. false: clean end of stream (EOF between
  // messages). Errors: I/O errors, kOutOfRange for a message over the limit, kDataLoss for
  // EOF inside a message, kInvalidArgument for a bad length or unparseable bytes. Errors
  // are final.
  Result<bool> read(google::protobuf::MessageLite& message);

 private:
  int fd_;
  wire::DelimitedDecoder decoder_;
};

// One-call form for callers that keep the decoder themselves.
Result<bool> read_message(int fd, wire::DelimitedDecoder& decoder, google::protobuf::MessageLite& message);

// ---------------------------------------------------------------- batched output

struct FramedWriterOptions {
  // A chunk is handed to the writing thread once it holds this many bytes.
  size_t chunk_size = size_t{64} << 10;
  // write() blocks while this many bytes are queued and not yet written (backpressure for
  // a peer that reads slower than we produce). The priority lane is not counted.
  size_t max_pending_bytes = size_t{16} << 20;
  // Priority messages beyond this many queued bytes are dropped (counted in stats).
  size_t max_priority_bytes = size_t{64} << 10;
};

// Counters, for tests and benchmarks. Read with FramedWriter::stats().
struct FramedWriterStats {
  uint64_t messages = 0;           // messages accepted by write()/write_*()
  uint64_t priority_messages = 0;  // of which through the priority lane
  uint64_t priority_dropped = 0;   // priority messages refused because the lane was full
  uint64_t bytes_written = 0;      // bytes the kernel accepted
  uint64_t write_calls = 0;        // write/writev/sendmsg system calls made (incl. failed)
  uint64_t would_block = 0;        // of which returned EAGAIN (the peer was not reading)
};

// Thread-safe batched writer of framed messages, with its own writing thread.
//
// Any thread may write(); the message is serialized into the current chunk under a mutex
// (no temporary string). The writing thread sleeps until a chunk is full, flush() is
// called, a priority message arrives, or close() is called; then it writes everything
// queued with as few writev()/sendmsg() calls as the peer allows. So while data flows
// there is one system call per ~64 KiB, and flush() bounds the latency when it stops.
//
// The first write error is final: it is reported once to the on_error callback (on the
// writing thread), every later or blocked write() returns it, and close() returns it.
// Nothing ever waits on a failed writer.
//
// The writer does not own the descriptor and never closes it.
class FramedWriter {
 public:
  // `fd` must stay open until close() or abort() has returned. For pipes the caller should
  // hold an FdFlagsGuard (the Agent does); without one, abort() cannot interrupt a write
  // that is blocked on a full pipe.
  explicit FramedWriter(int fd, FramedWriterOptions options = {});
  ~FramedWriter();  // abort()
  FramedWriter(const FramedWriter&) = delete;
  FramedWriter& operator=(const FramedWriter&) = delete;

  // Starts the writing thread. `on_error` (may be empty) is called at most once, on that
  // thread, with the first write error; it must not call close() or the destructor.
  void start(std::function<void(const Status&)> on_error = {});

  // Queues `message` framed. Blocks while max_pending_bytes are waiting (unless called
  // before start()). Fails once the writer has failed, been closed or aborted.
  Status write(const google::protobuf::MessageLite& message);
  // Queues a message that consists of one embedded-message field `field_number` holding
  // `inner`, serialized directly from `inner`: e.g. Response{point = p} without copying p
  // into a Response.
  Status write_embedded(uint32_t field_number, const google::protobuf::MessageLite& inner);
  // Queues `message` ahead of everything not yet written (at the next message boundary)
  // and wakes the writing thread. Never blocks on backpressure; if the lane already holds
  // max_priority_bytes the message is dropped and kResourceExhausted returned.
  Status write_priority(const google::protobuf::MessageLite& message);

  // Asks the writing thread to write what is queued now, without waiting for it.
  void flush();
  // Writes everything queued, stops the writing thread and returns the first error (OK if
  // all was written). Blocks until the peer has taken the data, or abort() is called from
  // another thread. Later write()s fail.
  Status close();
  // Stops at once: queued data is dropped, a blocked write()/close() returns. Any thread.
  void abort();

  FramedWriterStats stats() const;
  // Bytes queued and not yet written (excluding the priority lane).
  size_t pending_bytes() const;

 private:
  // Reserves room for a framed message of `size` bytes in the current chunk, waiting for
  // space if needed. Returns nullptr (and sets `status`) if the writer cannot take it.
  char* reserve_locked(std::unique_lock<std::mutex>& lock, size_t size, Status& status);
  void after_append_locked(size_t framed);
  void run();
  Status write_segments(std::vector<std::string>& segments, FramedWriterStats& counted);
  bool take_priority(std::vector<std::string>& segments, size_t insert_at);
  std::string take_spare_locked();

  const int fd_;
  const FramedWriterOptions options_;
  const FdKind kind_;
  UniqueFd wake_fd_;  // eventfd: readable once abort() was called

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // the writing thread waits here
  std::condition_variable space_cv_;  // writers blocked on backpressure, close() waits here
  std::string current_;               // chunk being filled
  std::vector<std::string> ready_;    // full or flushed chunks, oldest first
  std::string priority_;              // priority messages not yet taken
  std::vector<std::string> spare_;    // recycled chunk storage
  size_t pending_bytes_ = 0;          // current_ + ready_ + chunks being written
  bool flush_requested_ = false;
  bool closing_ = false;
  bool aborted_ = false;
  bool started_ = false;
  bool thread_done_ = false;
  Status error_;
  std::function<void(const Status&)> on_error_;
  FramedWriterStats stats_;
  std::atomic<bool> priority_waiting_{false};
  std::atomic<bool> abort_flag_{false};  // aborted_, readable without the mutex
  std::thread thread_;
};

}  // namespace agentry::udf
