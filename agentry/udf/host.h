// The host side of the Kapacitor UDF protocol: what Kapacitor does with a UDF, so that a
// UDF can be run, tested, benchmarked and health-checked without Kapacitor.
//
//   HostOptions options;
//   options.keepalive_timeout = std::chrono::seconds(10);
//   auto session = HostSession::start_process({.program = "/usr/bin/my-udf", .args = {"-v"}},
//                                             options, [](const ::agent::Response& r) { ... });
//   if (!session) return session.status();
//   auto info = (*session)->info();                       // wants / provides / options
//   Status s = (*session)->init(options, "task", "node");  // checked against info
//   (*session)->send_point(p); ...                         // results arrive in the callback
//   auto end = (*session)->finish();                       // close input, drain, wait for exit
//
// Transports. A process UDF is started with supervisor::spawn() (own session, parent-death
// signal) with three pipes: requests go to its stdin, responses come from its stdout, and
// every line of its stderr is logged (component "udf") and the last few kept for error
// messages. A socket UDF is a unix stream socket, connected with exponential backoff; the
// end of input is a half-close (shutdown(SHUT_WR)).
//
// Threads. Each session has one I/O thread that owns the descriptors. It polls the UDF's
// output, its stderr, its pidfd, our side of its input and an eventfd for wake-ups, with a
// timeout for the next timer (keepalive, keepalive deadline, flush, kill). It always reads
// the UDF's output as soon as it is readable, whatever else is going on, so a UDF that
// writes while we write can never fill a pipe and deadlock the two sides (Kapacitor issue
// 1964); its own writes are non-blocking. Callers never touch a descriptor: the API
// serializes requests into a shared buffer (one mutex) that the I/O thread writes out in
// large chunks, so a steady stream of points costs about one write() per 64 KiB. Data is
// written when a chunk fills, when a request/response call or flush() asks, and otherwise
// at most `flush_delay` after it was queued.
//
// The data handler (points and batch edges coming back from the UDF) runs on the I/O
// thread. It may block (that is backpressure: the UDF will block on its output in turn) but
// must not call back into the session's blocking calls; abort(), status() and stats() are
// fine. The Response it gets is only valid during the call (the session reuses it: a point
// of the same series as the previous one is decoded in place, see detail::parse_response).
//
// Protocol rules kept here:
//  * one outstanding request per type (info, init, snapshot, restore): a second call while
//    one waits fails with kFailedPrecondition;
//  * a response nobody asked for, and a response of a type this host does not know, is
//    logged and dropped; neither ends the session;
//  * ErrorResponse from the UDF aborts the session with "UDF error: <the UDF's text>";
//  * keepalive: with timeout T, a KeepaliveRequest{time = now ns} every T/2 while the input
//    is open; any response counts as a sign of life; none within T aborts the session with
//    "keepalive timed out, last keepalive received was: <time>" (time of the last response,
//    or of the session start, in UTC RFC 3339 with nanoseconds);
//  * an abort (any of the above, a protocol error, or abort()) stops sending, ends the UDF's
//    input, keeps draining its output (data is no longer delivered) and waits for it to
//    finish; if it has not within kill_grace (default 2T), the process group gets SIGKILL
//    (process) or the socket is shut down (socket);
//  * a UDF that exits or closes its output before we ended its input fails the session
//    with its exit status and the last lines of its stderr, e.g.
//    "UDF process ./my-udf ended mid-stream: exited with status 3; last stderr: panic: x |
//    at y"; a non-zero exit after the end of its input is an error too.
//
// Errors are final: the first one is kept, every later call returns it, and wait()/finish()
// report it. Status codes: kDeadlineExceeded (keepalive), kInternal (the UDF sent an
// ErrorResponse), kUnavailable (the UDF died or closed the connection), kInvalidArgument or
// kOutOfRange or kDataLoss (malformed output), kCancelled (abort() by the caller or the
// destructor).
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agentry/base/backoff.h"
#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/proto/udf.pb.h"
#include "agentry/supervisor/spawn.h"
#include "agentry/wire/delimited.h"

namespace spdlog {
class logger;
}  // namespace spdlog

namespace agentry::udf {

// ---------------------------------------------------------------- options and values

// "BOOL", "INT", "DOUBLE", "STRING", "DURATION".
std::string_view value_type_name(::agent::ValueType type) noexcept;
// "STREAM" / "BATCH".
std::string_view edge_type_name(::agent::EdgeType type) noexcept;

// Checks `options` against what the UDF declared in `info`: every option must be known
// (the error names it and lists the known ones), have exactly as many values as declared,
// and each value must have exactly the declared type (no int -> double coercion), with the
// value set in the alternative its `type` names. Errors are kInvalidArgument, e.g.
//   option "size": value 1 is DOUBLE, expected INT (size takes INT)
//   unknown option "sise" (the UDF's options: as, field, size)
Status check_options(const ::agent::InfoResponse& info, const std::vector<::agent::Option>& options);

// Parses one command-line value as `type`: BOOL "true"/"false" (also t/f/1/0 and the
// capitalized forms), INT a decimal int64, DOUBLE a finite number, STRING as is, DURATION
// a Go-style duration ("10s", "250ms", "1h30m", "1.5s", "-5m"; units ns, us/µs, ms, s, m, h,
// d, w; a bare "0" is allowed) converted to int64 nanoseconds.
Result<::agent::OptionValue> parse_option_value(::agent::ValueType type, std::string_view text);

// Builds typed options from "name=value" (or a bare "name" for an option without values)
// arguments in command-line order, using the types the UDF declared. An option declared
// with N value types takes its values from N consecutive occurrences of "name=...";
// occurrences beyond that start a new instance of the option (Kapacitor passes an option
// that a TICKscript sets twice as two Option entries with the same name). So with
// `size` INT, "size=10" gives one option; with `range` (INT, INT), "range=1" "range=5"
// gives one option with two values; with `field` STRING, "field=a" "field=b" gives two
// options. Errors name the argument.
Result<std::vector<::agent::Option>> parse_options(const ::agent::InfoResponse& info,
                                                 const std::vector<std::string>& args);

// "wants STREAM, provides BATCH" and one line per option: "  size INT", sorted by name.
std::string describe_info(const ::agent::InfoResponse& info);

// RFC 3339 UTC with nanoseconds: "2024-05-01T12:00:00.123456789Z".
std::string format_time_ns(int64_t unix_ns);

// ---------------------------------------------------------------- the session

struct ProcessConfig {
  std::string program{};            // a path, or a name looked up in PATH
  std::vector<std::string> args{};  // arguments after argv[0]
  // "KEY=VALUE" entries added to the environment; an entry replaces a variable of ours
  // with the same name. With inherit_env false they are the whole environment.
  std::vector<std::string> env{};
  bool inherit_env = true;
  std::string cwd{};  // empty: ours
};

struct HostOptions {
  // Keepalive timeout T (see the file comment); zero disables keepalives and the watchdog.
  std::chrono::milliseconds keepalive_timeout = std::chrono::seconds(10);
  // How long an aborted UDF may take to finish before it is killed; zero means 2 * T, or
  // 10 s when keepalives are disabled. Also bounds how long a process may linger after
  // closing its output.
  std::chrono::milliseconds kill_grace{0};
  // Longest time a queued request waits before it is written (when nothing else flushes).
  std::chrono::microseconds flush_delay{1000};
  // Queued bytes that make a chunk worth writing at once.
  size_t write_chunk_bytes = size_t{64} << 10;
  // Calls block while this many bytes wait to be written (a UDF slower than its input).
  size_t max_pending_bytes = size_t{8} << 20;
  // Largest response accepted from the UDF.
  size_t max_message_size = wire::kDefaultMaxDelimitedMessageSize;
  // Lines of the UDF's stderr kept for error messages.
  size_t stderr_tail_lines = 10;
  // Name used in log lines ("udf[name]: ..."); defaults to the program or socket path.
  std::string name;
  // Socket UDFs: retry connecting (ENOENT, ECONNREFUSED, EAGAIN) with this backoff until
  // connect_timeout has passed.
  BackoffPolicy connect_backoff{.initial = std::chrono::milliseconds(10),
                                .max = std::chrono::milliseconds(500),
                                .multiplier = 2.0,
                                .jitter = JitterKind::kPlusMinus,
                                .jitter_fraction = 0.2};
  std::chrono::milliseconds connect_timeout = std::chrono::seconds(10);
  // Process UDFs: try to grow the protocol pipes to this size (fcntl F_SETPIPE_SZ; best
  // effort, 0 leaves the kernel's default).
  int pipe_size = 1 << 20;
};

// How a session ended, when it ended without an error.
struct SessionEnd {
  // Process UDFs: how the process exited (always "exited with status 0" on success).
  // Socket UDFs: std::nullopt.
  std::optional<supervisor::ExitStatus> exit;
};

// Counters for tests and benchmarks (snapshot, taken under the session's lock).
struct HostStats {
  uint64_t requests_sent = 0;      // framed requests queued, keepalives included
  uint64_t responses = 0;          // responses decoded
  uint64_t data_responses = 0;     // of which points and batch edges
  uint64_t dropped_responses = 0;  // unsolicited or unknown, logged and dropped
  uint64_t bytes_written = 0;
  uint64_t write_calls = 0;  // write()/send() system calls on the UDF's input (eventfd not included)
  uint64_t bytes_read = 0;
  uint64_t read_calls = 0;  // read()/recv() system calls on the UDF's output
  uint64_t wakeups = 0;     // eventfd writes by callers to wake the I/O thread
};

class HostSession {
 public:
  // Called on the I/O thread for every point, BeginBatch and EndBatch from the UDF.
  using DataHandler = std::function<void(const ::agent::Response&)>;

  // Starts a process UDF. Fails if the program cannot be started (the error is spawn()'s,
  // e.g. "exec '/no/such': No such file or directory").
  static Result<std::unique_ptr<HostSession>> start_process(ProcessConfig config, HostOptions options,
                                                            DataHandler handler);
  // Connects to a socket UDF at `path`, retrying with backoff (see HostOptions).
  static Result<std::unique_ptr<HostSession>> connect_socket(const std::string& path, HostOptions options,
                                                             DataHandler handler);

  // An unfinished session is aborted and its process killed at once.
  ~HostSession();
  HostSession(const HostSession&) = delete;
  HostSession& operator=(const HostSession&) = delete;

  // Asks the UDF to describe itself. The answer is also kept for init().
  Result<::agent::InfoResponse> info();
  // Checks `options` (check_options, asking info() first if needed), then sends Init. A
  // UDF that answers success=false gives kInvalidArgument "UDF rejected init: <error>";
  // the session stays usable (the caller usually gives up).
  Status init(const std::vector<::agent::Option>& options, std::string_view task_id, std::string_view node_id);
  // The UDF's state, opaque bytes.
  Result<std::string> snapshot();
  // Hands back a state from snapshot(). success=false gives "UDF rejected restore: <error>".
  Status restore(std::string_view snapshot);

  // Queue data for the UDF. They block only while max_pending_bytes are waiting.
  Status send_point(const ::agent::Point& point);
  Status begin_batch(const ::agent::BeginBatch& begin);
  Status end_batch(const ::agent::EndBatch& end);
  // Asks for everything queued to be written now (does not wait for it).
  Status flush();

  // Writes everything queued, then ends the UDF's input (closes its stdin / half-closes
  // the socket). Returns once the input is closed, or with the session's error. The UDF
  // is expected to send its last responses and exit / close the connection.
  Status close_input();
  // Waits until the UDF's output has ended and (process) the process has been reaped.
  Result<SessionEnd> wait();
  // close_input() then wait().
  Result<SessionEnd> finish();

  // Aborts the session with `reason` (first error wins; no-op once it has ended). Any
  // thread. Returns at once; use wait() to wait for the UDF to go.
  void abort(Status reason);

  // OK while running and after a clean end; otherwise the error that ended it.
  Status status() const;
  // Process UDFs: the exit status once the process has been reaped.
  std::optional<supervisor::ExitStatus> exit_status() const;
  // The last lines the UDF wrote to its stderr (oldest first).
  std::vector<std::string> stderr_tail() const;
  HostStats stats() const;
  // Process UDFs: the pid (for tests); -1 for sockets.
  pid_t pid() const noexcept { return pid_; }

 private:
  enum class Transport : uint8_t { kProcess, kSocket };
  // Request/response kinds with at most one outstanding request each.
  enum Slot : uint8_t { kInfoSlot, kInitSlot, kSnapshotSlot, kRestoreSlot, kSlotCount };
  struct Pending {
    bool waiting = false;
    bool answered = false;
    ::agent::Response response;
  };

  HostSession(Transport transport, HostOptions options, DataHandler handler, std::string name);

  // --- caller side (any thread)
  Result<::agent::Response> transact(Slot slot, const ::agent::Request& request);
  Status queue_envelope(uint32_t field_number, const google::protobuf::MessageLite& inner);
  // The checks every call makes first. Caller holds mu_.
  Status usable_locked() const;
  // Frames Request{field_number: inner} at the end of outbound_. Caller holds mu_.
  void append_envelope_locked(uint32_t field_number, const google::protobuf::MessageLite& inner, size_t inner_size);
  void wake_locked();
  void fail_locked(Status reason);

  // --- I/O thread
  void run();
  void loop();
  void take_outbound();
  void write_input();
  void read_output();
  void read_stderr();
  void stderr_line(std::string_view line);
  void handle_response();
  void on_timers(std::chrono::steady_clock::time_point now);
  void note_end(const char* what);
  void close_input_fd();
  void abort_io();
  void kill_now();
  void reap();
  void finish_session();
  std::string stderr_suffix() const;
  void fail(Status reason);

  const Transport transport_;
  const HostOptions options_;
  const DataHandler handler_;
  const std::string name_;
  const std::chrono::milliseconds kill_grace_;
  std::shared_ptr<spdlog::logger> log_;

  // Descriptors, owned by the session and used only by the I/O thread once it runs.
  UniqueFd input_fd_;   // process: our end of its stdin
  UniqueFd output_fd_;  // process: our end of its stdout
  UniqueFd stderr_fd_;  // process: our end of its stderr
  UniqueFd sock_fd_;    // socket: the connection (input and output)
  UniqueFd pidfd_;
  UniqueFd wake_fd_;  // eventfd: callers wake the I/O thread
  std::vector<UniqueFd> child_ends_;  // the child's ends of the pipes, closed after spawn
  pid_t pid_ = -1;

  // Shared state, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;  // callers wait here: answers, space, input closed, end
  std::string outbound_;        // framed requests waiting for the I/O thread
  bool flush_requested_ = false;
  bool close_requested_ = false;  // close_input() called
  bool input_closed_ = false;     // our side of the input is closed (or given up)
  bool abort_pending_ = false;    // failure_ set; the I/O thread has not acted on it yet
  bool kill_requested_ = false;   // the destructor wants the UDF gone now
  bool io_armed_ = false;         // the I/O thread has seen outbound_ non-empty and timed it
  bool wake_pending_ = false;     // an eventfd wake-up is in flight
  bool ended_ = false;            // the I/O thread is done
  Status failure_;
  std::optional<::agent::InfoResponse> info_;
  std::array<Pending, kSlotCount> pending_;
  std::optional<supervisor::ExitStatus> exit_;
  std::deque<std::string> stderr_tail_;
  HostStats stats_;

  // I/O thread only.
  wire::DelimitedDecoder decoder_;
  ::agent::Response response_;  // reused for every decoded response (see parse_response)
  std::string writing_;       // chunk being written
  size_t write_offset_ = 0;
  std::string stderr_partial_;
  bool output_eof_ = false;
  bool input_fd_closed_ = false;
  Status truncated_;  // the output ended inside a message
  bool input_broken_ = false;  // the UDF stopped taking input: writes are dropped
  bool aborted_io_ = false;    // abort_io() ran
  bool killed_ = false;
  bool destroying_ = false;  // the destructor asked for the UDF to go now
  bool end_seen_ = false;        // output EOF, process exit or broken input seen
  bool unexpected_end_ = false;  // ... before close_input() had closed the input
  std::chrono::steady_clock::time_point last_response_;
  int64_t last_response_wall_ns_ = 0;
  std::chrono::steady_clock::time_point next_keepalive_;
  std::chrono::steady_clock::time_point flush_at_;
  std::optional<std::chrono::steady_clock::time_point> kill_at_;
  std::optional<std::chrono::steady_clock::time_point> eof_deadline_;  // exited, output still open
  uint64_t unknown_logged_ = 0;

  // Process start-up: spawn() runs on the I/O thread, which outlives the child, so the
  // parent-death signal cannot fire early.
  std::optional<supervisor::SpawnRequest> spawn_request_;
  std::promise<Status> spawn_result_;

  std::thread thread_;
};

namespace detail {

// Parses `bytes` (one agent.Response) into `response`, which is reused from one call to
// the next. Equivalent to response.ParseFromArray(bytes), only faster for the common case:
// a Response holding one Point whose tags and fields have the same keys as the previous
// one (the same series) and whose text is ASCII. Its map entries are then updated in
// place instead of being freed and allocated again. Anything else goes to the protobuf
// parser. False when the bytes are not a valid Response.
bool parse_response(std::string_view bytes, ::agent::Response& response);

}  // namespace detail
}  // namespace agentry::udf
