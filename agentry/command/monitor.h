// The command monitor: named handlers served over a unix socket (protocol.h has the wire).
//
// The socket exists exactly while at least one handler is registered: the first
// register_handler() creates it and the unregister_handler() that removes the last handler
// deletes it. docs/command-protocol.md describes paths, permissions and statuses.
//
// Threads. A Monitor owns one Asio thread, which never runs handlers, and two kinds of
// threads that do, all started on demand and kept until the Monitor is destroyed:
//   - accepting threads (two once the socket first opens, at most max_handler_threads + 1)
//     wait in accept(). A request that has arrived whole shortly after the accept (the
//     usual case) is handled on the thread that accepted it, provided another thread is
//     left accepting meanwhile;
//   - handler threads (at most max_handler_threads) run the handlers of requests that
//     trickled in and were finished by the Asio thread.
// At most max_handler_threads handlers run at once; further complete requests wait for
// the next thread that finishes one. Consequences for handlers:
//   - A handler runs on one of the Monitor's threads, never on the caller's. Several
//     handlers (or the same handler for several requests) may run at once.
//   - A handler may block for as long as it likes: registration, accepting and reading
//     other clients, and their timeouts go on meanwhile. Only complete requests queue when
//     max_handler_threads handlers are running (their clients simply wait: the request
//     timeout covers reading the request, not running it).
//   - A handler may call register_handler() and unregister_handler(), its own included.
//     Unregistering does not wait for running handlers: a call already dispatched
//     finishes normally.
//   - A handler must not destroy the Monitor.
// register_handler(), unregister_handler() and the accessors may be called from any
// thread, concurrently; none of them waits for a handler. The destructor must not race
// with them (a registration attempted by a handler while the Monitor is being destroyed
// fails); it closes the socket, waits for running handlers to return (so it blocks behind
// a handler that never does), and drops connections still being read or written.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "agentry/base/status.h"
#include "agentry/command/protocol.h"

namespace agentry::command {

// Business logic of one command. Receives the request object's bytes exactly as the client
// sent them (valid JSON, Command matched); returns the response's JSON text, conventionally
// {"Status":0,"StatusMessage":"...",...}. An error is sent as 105 with the error's message
// as StatusMessage; text that is not one JSON object is replaced by a 106 reply. An
// exception escaping the handler is treated as an error (105) carrying its what().
using Handler = std::function<Result<std::string>(std::string_view request_json)>;

struct MonitorOptions {
  // Directory of the socket, created (with missing parents) when needed.
  std::string dir = std::string(kDefaultCommandDir);
  // Permissions of `dir`: a directory we create gets exactly this; an existing one that
  // allows more is narrowed to (its mode & mode), never widened. The socket gets the read
  // and write bits of this mode plus owner read/write: 0770 -> 0660, 0700 -> 0600,
  // 0777 -> 0666.
  mode_t mode = 0770;
  // Group owning `dir` and the socket: a group name or a decimal gid; empty leaves the
  // group as created (the process's).
  std::string group;
  // The whole request must arrive within this, counted from the accept; otherwise the
  // client gets 104 and the connection is closed. Also bounds writing the reply.
  std::chrono::milliseconds request_timeout{std::chrono::seconds(10)};
  // A request larger than this (leading whitespace included) gets 102 "request exceeds
  // <N> bytes".
  std::size_t max_request_bytes = std::size_t{1} << 20;
  // Which socket of `dir` this monitor serves: pipe_name(dir, listener).
  Listener listener = Listener::kAgent;
  // Most handlers running at once (at least 1).
  std::size_t max_handler_threads = 8;
};

class Monitor {
 public:
  // Starts the Asio thread; touches no file until the first handler is registered.
  // Throws std::system_error only if that thread cannot be started.
  explicit Monitor(MonitorOptions options);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Adds the handler for `command` (matched exactly, case-sensitively). Errors:
  //   - kInvalidArgument for an empty name or an empty std::function;
  //   - kAlreadyExists when `command` already has a handler;
  //   - when this is the first handler, any failure to set up the socket (bad group,
  //     directory not ours, "another process is listening on <path>", ...). The handler
  //     is then not registered and the next registration tries again.
  // When it returns OK the socket is accepting connections.
  Status register_handler(std::string command, Handler handler);

  // Removes the handler for `command`; kNotFound if there is none. Removing the last one
  // closes the socket and deletes its file before returning.
  Status unregister_handler(std::string_view command);

  // True while the socket is accepting connections (some handler is registered).
  bool listening() const;
  std::size_t handler_count() const;
  // pipe_name(options.dir, options.listener).
  const std::string& socket_path() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace agentry::command
