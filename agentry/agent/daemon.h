// agentryd's composition: configuration -> supervisor, exposed on the management socket.
//
// Owns the runtime directory (one daemon per directory, enforced with a lock), the
// orphan guard, the Supervisor and the mgmt Server, and turns signals into actions:
// SIGTERM/SIGINT stop everything and exit, SIGHUP reloads the configuration.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "agentry/base/status.h"

namespace boost::asio {
class io_context;
}

namespace agentry::agent {

struct DaemonOptions {
  std::string config_path;
  std::string runtime_dir;  // overrides the config's runtime_dir when set
  std::string log_level;    // overrides the config's log_level when set
};

class Daemon {
 public:
  Daemon(boost::asio::io_context& io, DaemonOptions options);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Loads the config, takes the runtime dir lock, starts the socket and the processes.
  // On error nothing keeps running.
  Status start();
  // Re-reads the config file; an invalid file is refused and the running set stays.
  void reload(std::function<void(Status)> done);
  // Stops every process, closes the socket; `done` runs when all processes are gone.
  void shutdown(std::function<void(Status)> done);
  // Returns when shutdown (from a signal or a call) completed; the exit status to use.
  bool finished() const;
  int exit_code() const;

  const std::string& socket_path() const;
  const std::string& runtime_dir() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The runtime directory agentryd uses when neither the config nor a flag names one:
// $XDG_RUNTIME_DIR/agentry, else /run/agentry as root, else /tmp/agentry-<uid>.
std::string default_runtime_dir();

}  // namespace agentry::agent
