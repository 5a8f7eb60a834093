// Socket UDFs: a Server accepts connections on a unix socket and hands each one to an
// Accepter; Kapacitor opens one connection per use of the UDF in a task.
//
//   agentry::udf::AgentAccepter accepter([](agentry::udf::Agent& agent) {
//     return std::make_unique<MirrorHandler>(agent);
//   });
//   auto server = agentry::udf::Server::listen("/run/udf/mirror.sock", accepter);
//   if (!server.is_ok()) ...
//   (*server)->stop_on_signals({SIGINT, SIGTERM});
//   agentry::Status status = (*server)->serve();   // until a signal or stop()
//
// The socket file. listen() removes a stale socket left at the path (one nobody listens on;
// a live one is an error, and so is a path that exists and is not a socket), then creates
// the socket with mode ServerOptions::socket_mode (0600 by default: only our own user may
// connect; Kapacitor usually runs as its own user, so a UDF serving it typically needs
// 0660 and a shared group). The mode is set on the socket before bind(), which on Linux is
// the mode the file is created with (less the umask), so there is no window in which the
// file is more open than asked; it is chmod()ed once more after bind() in case the umask
// took bits away. The socket is bound under a temporary name (<path>.<pid>.tmp) and renamed
// to <path> once it listens, so the path exists only when connecting to it works. The file
// is removed when serve() returns (if it is still ours).
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <functional>
#include <initializer_list>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/udf/agent.h"

namespace agentry::udf {

// Decides what to do with each accepted connection.
class Accepter {
 public:
  virtual ~Accepter() = default;
  // Called on the thread running Server::serve() for every new connection (a connected
  // stream socket, close-on-exec, blocking). Should return quickly: the next accept waits.
  virtual void accept(UniqueFd connection) = 0;
  // Called once when serve() ends, after the listener is closed: end what the connections
  // are doing. Must not block indefinitely.
  virtual void stop() {}
};

// The usual Accepter: one Agent per connection, running on its own thread, with a handler
// made by `factory` (called on the serve() thread, with the connection's agent, before the
// agent runs). stop() aborts every running agent (their queued output is dropped, each
// handler gets Stop()) and joins the threads; it waits only for handler methods that are
// in progress to return. Finished connections are reaped as new ones arrive.
class AgentAccepter : public Accepter {
 public:
  using HandlerFactory = std::function<std::unique_ptr<Handler>(Agent& agent)>;
  explicit AgentAccepter(HandlerFactory factory, AgentOptions options = {});
  ~AgentAccepter() override;  // stop()
  AgentAccepter(const AgentAccepter&) = delete;
  AgentAccepter& operator=(const AgentAccepter&) = delete;

  void accept(UniqueFd connection) override;
  void stop() override;

  // Connections whose agent is still running.
  size_t active_connections() const;

 private:
  struct Connection {
    std::unique_ptr<Agent> agent;
    std::unique_ptr<Handler> handler;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void reap_locked();

  HandlerFactory factory_;
  AgentOptions options_;
  mutable std::mutex mu_;
  std::list<Connection> connections_;
  bool stopped_ = false;
};

struct ServerOptions {
  mode_t socket_mode = 0600;  // see the file comment
  int backlog = SOMAXCONN;
};

class Server {
 public:
  // Creates the unix socket at `path` (see the file comment) and listens on it.
  static Result<std::unique_ptr<Server>> listen(const std::string& path, Accepter& accepter,
                                                ServerOptions options = {});
  // Serves an already listening stream socket (owned from now on). No file to remove.
  Server(UniqueFd listener, Accepter& accepter);
  // serve() must not be running any more (join the thread that runs it first).
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Accepts connections until stop() (or a registered signal), then closes the listener,
  // removes the socket file, calls Accepter::stop() and returns OK. Transient accept
  // failures (a connection aborted, out of descriptors or memory) are logged and retried
  // after a short pause; a failure that means the listener is unusable (it was closed or
  // shut down under us) ends serve() the same way, returning that error. Call once.
  Status serve();

  // Makes serve() return. Any thread, idempotent, never blocks; async-signal-safe.
  void stop() noexcept;

  // After this, delivery of any of `signals` stops this server (and any other server that
  // registered). Installs a process-wide handler for them that does nothing but flag a
  // descriptor the servers watch, replacing any previous handler. Returns an error if a
  // handler could not be installed.
  Status stop_on_signals(std::initializer_list<int> signals = {SIGINT, SIGTERM});

  // The socket path given to listen(); empty for a server made from a descriptor.
  const std::string& socket_path() const noexcept { return path_; }

 private:
  Server(UniqueFd listener, Accepter& accepter, std::string path, dev_t dev, ino_t ino);
  void remove_socket_file() noexcept;

  UniqueFd listener_;
  Accepter& accepter_;
  std::string path_;
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;
  UniqueFd wake_fd_;  // eventfd: readable once stop() was called
  std::atomic<bool> watch_signals_{false};
  std::atomic<bool> served_{false};
};

}  // namespace agentry::udf
