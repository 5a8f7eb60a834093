// The UDF side of the Kapacitor UDF protocol: an Agent reads Requests from Kapacitor (or
// agentry's own host), calls a Handler, and writes Responses back.
//
//   class MyHandler : public agentry::udf::Handler { ... holds an Agent& to send points ... };
//
//   int main() {
//     auto agent = agentry::udf::Agent::stdio();   // process UDF: stdin and stdout
//     MyHandler handler(*agent);
//     agentry::Status status = agent->run(handler);
//     return status.is_ok() ? 0 : 1;
//   }
//
// Threads. run() uses three threads:
//   - the thread that calls run() is the handler thread: every Handler method is called
//     there and nowhere else, one at a time, in the order the requests arrived;
//   - a reader thread reads and parses requests. It answers KeepaliveRequests itself
//     (through the writer's priority lane), so a keepalive is answered while the handler is
//     busy or blocked and while a lot of output is queued; everything else is queued for
//     the handler thread (at most AgentOptions::max_queued_input_bytes of it; beyond that
//     the reader stops reading, and keepalives wait too);
//   - a writer thread (FramedWriter) writes responses in batches.
//
// Output batching. send() serializes into a 64 KiB chunk; chunks are written when full, and
// whatever is queued is flushed whenever the handler thread has no more requests to work
// on (input idle), after every Info/Init/Snapshot/Restore response, and when send() is
// called from another thread while the handler thread is idle. A steady stream of points
// therefore costs one write() per chunk, not per point.
//
// Ending. run() returns when
//   - the input reaches EOF: requests already read are handled, Handler::Stop() is called,
//     everything queued is written, the output is closed (shutdown(SHUT_WR) for a socket,
//     close() for a pipe); returns OK;
//   - a handler method fails (non-OK Status, or an exception escapes it): an ErrorResponse
//     carrying the message is written after the responses already queued, then as above;
//     returns that error. Init/Restore responses with success=false are ordinary responses
//     and do not stop anything;
//   - the input is bad (a message over max_message_size, a malformed length, bytes that do
//     not parse as a Request, EOF inside a message): requests before the bad bytes are
//     handled, then as for a handler error;
//   - writing fails (the peer closed its end: EPIPE, ECONNRESET, ...): nothing more can be
//     written; Stop() is still called; returns the write error. Never hangs on it;
//   - stop() or abort() is called (from any thread, including from a handler method).
// Handler::Stop() is called exactly once, on the handler thread, whichever way run() ends
// (after Stop(), no other Handler method is called).
//
// SIGPIPE never kills the process because of the agent: sockets are written with
// MSG_NOSIGNAL, and the writer thread keeps SIGPIPE blocked.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/proto/udf.pb.h"
#include "agentry/udf/io.h"

namespace agentry::udf {

// What a UDF implements. All methods are called on the handler thread (the one running
// Agent::run()), never concurrently. To send points and batches back, call the Agent's
// send_*() methods: from these methods or from any other thread, at any time.
//
// An exception escaping a method counts as an error: std::exception's what() becomes the
// ErrorResponse text.
class Handler {
 public:
  virtual ~Handler() = default;

  // The edge types wanted and provided, and the options Init accepts.
  virtual agent::InfoResponse Info() = 0;
  // Configures the UDF. success=false with an error text rejects the options (Kapacitor
  // then fails the task); the agent keeps running.
  virtual agent::InitResponse Init(const agent::InitRequest& request) = 0;
  // The state to be handed back to Restore() in a later run of the task.
  virtual agent::SnapshotResponse Snapshot() = 0;
  // Restores a Snapshot(). success=false reports a snapshot that could not be used.
  virtual agent::RestoreResponse Restore(const agent::RestoreRequest& request) = 0;

  // A batch starts; its points follow, then EndBatch.
  virtual Status BeginBatch(const agent::BeginBatch& begin) = 0;
  // A point: part of the current batch, or a stream point when no batch is open.
  virtual Status Point(const agent::Point& point) = 0;
  // The batch is complete.
  virtual Status EndBatch(const agent::EndBatch& end) = 0;

  // The agent is ending. Send anything still owed before returning: once Stop() returns
  // the output is flushed and closed, and send() fails.
  virtual void Stop() = 0;
};

struct AgentOptions {
  // Incoming messages larger than this end the agent with an ErrorResponse.
  size_t max_message_size = kDefaultMaxMessageSize;
  // Requests read but not yet handled, in bytes; the reader pauses above this.
  size_t max_queued_input_bytes = size_t{16} << 20;
  // How much the reader asks for per read().
  size_t read_size = size_t{64} << 10;
  FramedWriterOptions writer;
};

class Agent {
 public:
  // Requests are read from `in` and responses written to `out` (pipes, usually the
  // process's stdin and stdout). The agent owns both and closes them.
  Agent(UniqueFd in, UniqueFd out, AgentOptions options = {});
  // One connected socket for both directions (socket UDFs). Owned; closed at destruction.
  explicit Agent(UniqueFd socket, AgentOptions options = {});
  // Standard input and output (the descriptors 0 and 1 are taken over and closed).
  static std::unique_ptr<Agent> stdio(AgentOptions options = {});

  // If run() was never called, queued output is dropped. Must not be destroyed while run()
  // is executing or while other threads may still call send().
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Serves requests until the input ends, an error occurs, or stop()/abort(); see the file
  // comment. Blocking; call once. The handler must outlive the call.
  Status run(Handler& handler);

  // Queue a response. Thread-safe, callable at any time from any thread (including the
  // handler's methods, and before run()). Blocks while a lot of output is waiting for a
  // slow peer (FramedWriterOptions::max_pending_bytes). Fails once the output is closed or
  // broken. The typed forms serialize the payload directly, without building a Response.
  Status send(const agent::Response& response);
  Status send_point(const agent::Point& point);
  Status send_begin(const agent::BeginBatch& begin);
  Status send_end(const agent::EndBatch& end);
  // Writes what is queued without waiting for more (the agent also does this by itself
  // when its input goes idle).
  void flush();

  // Ends run() early. Thread-safe, idempotent; the first call's reason wins. Requests read
  // but not yet handled are dropped, Stop() is called, queued responses are written and the
  // output is closed. A non-OK `reason` is also sent to the peer as an ErrorResponse and
  // returned by run(). Returns at once; run() finishes the work.
  void stop(Status reason = Status::ok());
  // Like stop(), but queued output is dropped and a blocked write is interrupted, so run()
  // returns as soon as the handler thread is free (a handler method that never returns
  // still holds it). run() returns kCancelled unless stop() gave a reason first.
  void abort();

  // Counters of the output side (messages, write system calls, ...).
  FramedWriterStats writer_stats() const { return writer_.stats(); }

 private:
  // Requests parsed from one read, on an arena (defined in agent.cc).
  struct InputBatch;

  Agent(UniqueFd in, UniqueFd out, bool one_socket, AgentOptions options);
  void read_loop();
  bool read_some(wire::DelimitedDecoder& decoder);
  void finish_input(Status status);
  std::unique_ptr<InputBatch> take_batch_locked();
  Status handle(Handler& handler, agent::Request& request);
  // output_gone: the output can take nothing more (write error, abort): no ErrorResponse.
  void request_stop(Status reason, bool output_gone);
  void wake_reader() noexcept;
  Status after_send(Status status);

  const AgentOptions options_;
  UniqueFd in_;
  UniqueFd out_;  // invalid when in_ is one socket for both directions
  const bool one_socket_;
  FdFlagsGuard in_flags_;
  FdFlagsGuard out_flags_;
  UniqueFd wake_fd_;  // eventfd: readable once the reader should stop
  FramedWriter writer_;

  std::mutex mu_;
  std::condition_variable handler_cv_;  // the handler thread waits for input here
  std::condition_variable reader_cv_;   // the reader waits for queue space here
  std::deque<std::unique_ptr<InputBatch>> queue_;
  std::vector<std::unique_ptr<InputBatch>> free_batches_;
  size_t queued_bytes_ = 0;
  bool input_done_ = false;  // the reader has finished (EOF, error or stop)
  Status input_status_;      // why, when it was an error
  bool stop_requested_ = false;
  bool output_failed_ = false;  // the stop came from a write error or abort()
  Status stop_reason_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> handler_idle_{true};
  bool ran_ = false;
};

}  // namespace agentry::udf
