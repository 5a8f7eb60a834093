// Runs the real agentryd binary for integration tests.
//
// Readiness is event-driven: the test owns a datagram socket passed as NOTIFY_SOCKET and
// waits for agentryd's READY=1 (the same protocol systemd uses). Waiting for a process
// state goes through the event stream or the daemon's own answers; the only clocks are
// generous failure deadlines, never synchronisation.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/mgmt/client.h"

namespace agentry::testing {

inline constexpr std::chrono::seconds kDeadline{60};

// A fresh directory under /tmp, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  void write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);

class Daemon {
 public:
  // Writes `config_yaml` to <dir>/agentry.yaml and starts agentryd on it with its runtime
  // dir in <dir>/run. Returns once agentryd reported READY=1 (or fails the test).
  explicit Daemon(const TempDir& dir, const std::string& config_yaml);
  ~Daemon();  // SIGTERM and wait; SIGKILL if it does not exit within the deadline

  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_; }
  const std::string& config_path() const { return config_; }
  std::string stderr_text() const;

  mgmt::Client client() const;
  // Sends `sig` and waits for exit; returns the wait status.
  int stop_with(int sig);
  bool running() const { return pid_ > 0; }

 private:
  const TempDir& dir_;
  std::string config_;
  std::string socket_;
  std::string stderr_path_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

// Subscribes to events and waits for them with a deadline. The constructor returns once
// the subscription is active: every later event is seen.
class EventWatcher {
 public:
  EventWatcher(const Daemon& d, std::vector<std::string> ids = {});
  // Next event matching `pred`, skipping others; nullopt on deadline or disconnect.
  std::optional<mgmt::Event> wait_for(const std::function<bool(const mgmt::Event&)>& pred,
                                      std::chrono::seconds deadline = kDeadline);
  std::optional<mgmt::Event> wait_for(const std::string& process, const std::string& type,
                                      std::chrono::seconds deadline = kDeadline);
  // True once `id` is running: already (asked through `c`), or after its started event.
  bool wait_running(mgmt::Client& c, const std::string& id);
  std::vector<mgmt::Event> seen() const { return seen_; }

 private:
  mgmt::Client client_;
  std::vector<mgmt::Event> pending_;
  std::vector<mgmt::Event> seen_;
};

// Blocks until `pid` (not necessarily our child) has exited; false on deadline.
bool wait_pid_gone(pid_t pid, std::chrono::seconds deadline = kDeadline);
// Processes whose session id is `sid`, from /proc.
std::vector<pid_t> processes_in_session(pid_t sid);
// The path of the built agentryd / agentry binaries (compile definitions).
std::string daemon_binary();
std::string cli_binary();

// Runs the CLI with `args` against `d`; returns exit status and stdout.
struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
CliResult run_cli(const Daemon& d, const std::vector<std::string>& args);

}  // namespace agentry::testing
