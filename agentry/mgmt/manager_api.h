// The management operations the control socket exposes, as seen by the mgmt server.
//
// The daemon implements this over its Supervisor; tests implement it with a small
// in-memory fake. Every method is called on the server's io_context thread and must not
// block: long operations (stop waits for exit, start waits for the start window) report
// through a completion callback, invoked later on that same thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"

namespace agentry::mgmt {

// One row of `list` / `status`. The first five fields are cliwrap's ListEntry; the rest
// are agentry extensions carried under extra map keys that cliwrap clients ignore.
struct ListEntry {
  std::string id;
  std::string name;
  std::string state;            // pending, starting, running, stopping, stopped, crashed, restarting, failed
  int64_t pid = 0;              // 0 when not running
  uint64_t rss = 0;             // bytes, whole process group
  // extensions
  double cpu = 0;               // percent of one core, whole process group, last sample
  uint32_t restarts = 0;        // automatic restarts since the last manual start
  int64_t since_ns = 0;         // unix ns of the last state change
  std::string last_exit;        // "exited with status 3", "killed by signal 9 (SIGKILL)", ""
  std::string error;            // why the process is failed/crashed, or ""
  std::string source;           // where its spec came from: file, stream, opamp
  std::string command;          // command line, for display
  int64_t next_restart_ns = 0;  // unix ns of the scheduled restart while restarting, else 0
  std::string udf;              // socket UDF health and Info ("healthy; wants stream, ..."), or ""
  bool operator==(const ListEntry&) const = default;
};

struct Event {
  std::string process_id;       // "" for daemon-wide events (system.*)
  std::string type;             // process.started, process.crashed, log.overflow, ...
  int64_t ts_ns = 0;            // unix ns
  std::string summary;          // one human-readable line
  // extensions (0 / -1 when not applicable)
  int exit_code = -1;
  int signal = 0;
  uint32_t restarts = 0;
  int64_t delay_ns = 0;         // next backoff delay, for process.restarting
  bool operator==(const Event&) const = default;
};

// Unsubscribes when destroyed. Destroying it from inside the sink is allowed.
class Subscription {
 public:
  virtual ~Subscription() = default;
};

// Sinks return false when they can take no more (slow or gone client): the manager then
// drops the subscription and, for logs, publishes a log.overflow event with the count.
using LogSink = std::function<bool(std::string_view chunk)>;
using EventSink = std::function<bool(const Event&)>;
using Done = std::function<void(Status)>;

struct DaemonInfo {
  std::string version;
  int64_t pid = 0;
  int64_t started_ns = 0;
  std::string config_path;
  uint32_t processes = 0;
};

class ManagerApi {
 public:
  virtual ~ManagerApi() = default;

  virtual std::vector<ListEntry> list() = 0;
  virtual Result<ListEntry> status(std::string_view id) = 0;

  virtual void start(std::string_view id, Done done) = 0;
  virtual void stop(std::string_view id, Done done) = 0;
  virtual void restart(std::string_view id, Done done) = 0;
  virtual Status signal(std::string_view id, int signo) = 0;
  // Re-reads the configuration; only processes whose spec changed are restarted.
  virtual void reload(Done done) = 0;
  virtual DaemonInfo info() = 0;

  // stream: 0 stdout, 1 stderr.
  virtual Result<std::string> logs_snapshot(std::string_view id, int stream) = 0;
  // Delivers every chunk written after the call; the snapshot is fetched separately.
  virtual Result<std::unique_ptr<Subscription>> watch_logs(std::string_view id, int stream, LogSink sink) = 0;
  // Empty ids: every process (and daemon-wide events).
  virtual std::unique_ptr<Subscription> watch_events(std::vector<std::string> ids, EventSink sink) = 0;
};

}  // namespace agentry::mgmt
