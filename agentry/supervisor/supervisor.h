// The Supervisor: runs a set of ProcessSpecs and keeps them in the state the operator asked
// for. It owns every child it starts: spawn (own session, parent-death signal, no leaked
// fds), exit detection (pidfd, plus SIGCHLD for orphans it adopts as child subreaper),
// restart policy with backoff and a start limit, stop with escalation to SIGKILL for the
// whole process group, log capture and lifecycle events.
//
// Threading: everything runs on one io_context thread. Public methods must be called on
// that thread; completion callbacks are invoked on it too. Resource sampling (RSS, CPU)
// runs on a helper thread and only posts its results back.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/supervisor/process_spec.h"

namespace boost::asio {
class io_context;
}

namespace agentry::supervisor {

class OrphanGuard;

enum class ProcessState { kPending, kStarting, kRunning, kStopping, kStopped, kCrashed, kRestarting, kFailed };
std::string_view to_string(ProcessState s);

// Lifecycle event types, as strings on the wire.
namespace event_type {
inline constexpr std::string_view kRegistered = "process.registered";
inline constexpr std::string_view kStarting = "process.starting";
inline constexpr std::string_view kStarted = "process.started";
inline constexpr std::string_view kStopping = "process.stopping";
inline constexpr std::string_view kStopped = "process.stopped";
inline constexpr std::string_view kCrashed = "process.crashed";
inline constexpr std::string_view kRestarting = "process.restarting";
inline constexpr std::string_view kFailed = "process.failed";
inline constexpr std::string_view kRemoved = "process.removed";
inline constexpr std::string_view kUpdated = "process.updated";
inline constexpr std::string_view kUnhealthy = "process.unhealthy";
inline constexpr std::string_view kLogOverflow = "log.overflow";
inline constexpr std::string_view kShutdownStarted = "system.shutdown_started";
inline constexpr std::string_view kShutdownComplete = "system.shutdown_complete";
}  // namespace event_type

struct Event {
  std::string process_id;  // empty for system.* events
  std::string type;
  std::chrono::system_clock::time_point time;
  std::string summary;
  int exit_code = -1;      // when the process exited with a status
  int signal = 0;          // when it was killed by a signal
  uint32_t restarts = 0;
  std::chrono::nanoseconds delay{0};  // for process.restarting
};

struct ProcessStatus {
  std::string id;
  std::string name;
  ProcessState state = ProcessState::kPending;
  int64_t pid = 0;
  uint64_t rss_bytes = 0;
  double cpu_percent = 0;
  uint32_t restarts = 0;
  std::chrono::system_clock::time_point since;       // last state change
  std::chrono::system_clock::time_point started_at;  // last spawn, or epoch
  std::optional<std::chrono::system_clock::time_point> next_restart;
  std::string last_exit;  // "exited with status 3"
  std::string error;      // reason for crashed/failed, or a spawn error
  std::string source;
  std::string command_line;
  uint64_t log_bytes_dropped = 0;  // bytes a too-slow follower did not get
};

// Unsubscribes on destruction.
class Subscription {
 public:
  virtual ~Subscription() = default;
};

using Done = std::function<void(Status)>;
using LogSink = std::function<bool(std::string_view chunk)>;  // false: drop me
using EventSink = std::function<bool(const Event&)>;          // false: drop me

struct SupervisorOptions {
  // Receives each supervised session so no grandchild outlives the daemon. May be null.
  OrphanGuard* guard = nullptr;
  // How often RSS/CPU of every process group is sampled; zero disables sampling.
  std::chrono::milliseconds sample_interval = std::chrono::seconds(5);
  // Extra environment entries every child gets ("KEY=VALUE"), e.g. the command socket.
  std::vector<std::string> extra_env;
  // Become the child subreaper so orphaned grandchildren are reaped here, not by init.
  bool subreaper = true;
};

class Supervisor {
 public:
  Supervisor(boost::asio::io_context& io, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Reconciles the processes that came from `source` with `specs`: new ids are added (and
  // started when autostart), removed ids are stopped and forgotten, and only processes
  // whose spec changed are restarted. Processes from other sources are untouched. `done`
  // runs once every started process reached running or failed to; its Status lists every
  // process that did not come up, with the reason.
  void apply(std::vector<ProcessSpec> specs, std::string source, Done done);
  // Validates, then registers one process (started when autostart).
  Status add(ProcessSpec spec, std::string source, Done started = nullptr);
  void remove(std::string_view id, Done done);

  // start: clears a failed state and the backoff; done when running or when it failed to
  // start. stop: done once the whole process group is gone. restart = stop + start.
  void start(std::string_view id, Done done);
  void stop(std::string_view id, Done done);
  void restart(std::string_view id, Done done);
  Status signal(std::string_view id, int signo);  // to the whole process group
  // A health check failed while `id` ran as pid `pid`: publishes process.unhealthy with the
  // reason, keeps it as the process's error and restarts it (counted as a restart). A
  // report about an earlier pid (the process restarted meanwhile) is ignored.
  void mark_unhealthy(std::string_view id, int64_t pid, std::string reason);
  // Publishes an event from another component (a health check, a config source) to every
  // subscriber, stamped with the current time when `e.time` is unset.
  void publish_event(Event e);
  // Stops everything (in parallel); no restart happens afterwards.
  void shutdown(Done done);

  std::vector<ProcessStatus> list() const;
  Result<ProcessStatus> status(std::string_view id) const;
  Result<ProcessSpec> spec(std::string_view id) const;
  size_t size() const;

  // stream: 0 stdout, 1 stderr.
  Result<std::string> logs_snapshot(std::string_view id, int stream) const;
  Result<std::unique_ptr<Subscription>> watch_logs(std::string_view id, int stream, LogSink sink);
  // Empty filter: every process and the system events.
  std::unique_ptr<Subscription> watch_events(std::set<std::string> ids, EventSink sink);

  // The last `max_lines` lines of a process's stderr, for error reports.
  std::string stderr_tail(std::string_view id, size_t max_lines = 5) const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace agentry::supervisor
