// agentryd's own commands on the JSON command socket (agentry::command):
//
//   agent.config.getoption {"Option": "section.field"} -> {"Option", "Value"}; Status 1 no
//                          such option, 2 option empty, 3 malformed key (as upstream)
//   agent.status           -> {"Version", "Pid", "StartedUnixNano", "Config", "Processes"}
//   agent.reload           -> re-read the config file (like SIGHUP); 105 with the reason
//   process.list           -> {"Processes": [{Id, Name, State, Pid, RssBytes, ...}]}
//   process.start|stop|restart {"Id": "web"} -> {"Process": {...}}; 105 with the reason
//
// Command handlers run on the monitor's threads; everything they touch lives on the
// daemon's event loop, so each call is posted there and waited for. close() releases any
// handler still waiting (the loop may be about to stop) before the monitor is destroyed.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "agentry/agent/config.h"
#include "agentry/base/status.h"
#include "agentry/command/monitor.h"
#include "agentry/mgmt/manager_api.h"
#include "agentry/supervisor/supervisor.h"

namespace boost::asio {
class io_context;
}

namespace agentry::agent {

// Runs functions on an io_context's thread on behalf of other threads.
class LoopCaller {
 public:
  explicit LoopCaller(boost::asio::io_context& io) : io_(io) {}

  // Posts `fn` to the loop and waits until it calls the completion it is given (possibly
  // later, from another loop callback). Returns kCancelled once close() was called.
  Result<std::string> call(std::function<void(std::function<void(Result<std::string>)>)> fn);
  // Wakes every waiting call with kCancelled; later calls fail at once.
  void close();

 private:
  struct Call;
  boost::asio::io_context& io_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
};

struct BuiltinContext {
  supervisor::Supervisor* supervisor = nullptr;
  // The configuration currently in force (read on the loop thread).
  std::function<const DaemonConfig&()> config;
  std::function<void(std::function<void(Status)>)> reload;
  std::function<mgmt::DaemonInfo()> info;
};

// Registers every built-in command on `monitor`.
Status register_builtin_commands(command::Monitor& monitor, LoopCaller& loop, BuiltinContext context);

}  // namespace agentry::agent
