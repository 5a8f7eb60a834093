// The management socket server: a local stream socket on which the CLI (agentry's, or
// cliwrap's) lists, starts, stops and inspects the processes a ManagerApi manages.
//
// Runs on the caller's io_context: every handler, every ManagerApi call and every sink
// callback happens on the thread(s) running it, which must be a single thread (the
// ManagerApi contract). start(), close() and the destructor must be called on that thread,
// or while the io_context is not running. client_count() may be called from anywhere.
//
// What a connection gets (docs/mgmt-protocol.md has the full story):
//   - Requests are read and dispatched in order while earlier ones are still running;
//     each reply carries its request's sequence number and is sent when the request
//     completes, so a slow `stop` does not hold up a `list` behind it. Pushed stream
//     frames (log chunks after the first, events) carry sequence 0.
//   - A broken frame or an undecodable payload is answered with a StatusResponse naming
//     the problem (when a reply is possible at all), then that connection is closed;
//     every other connection is unaffected. An unknown message type is answered with
//     "unknown request type 0xNN" and the connection stays open.
//   - Outgoing bytes are queued per connection and written by one write at a time. Log
//     and event streams may hold at most max_queued_bytes in that queue: a stream frame
//     that would go over it makes the sink return false (the manager drops the
//     subscription and reports the overflow) and the connection is closed at once, queue
//     and all. Nothing the daemon does ever waits for a client to read.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "agentry/base/status.h"
#include "agentry/mgmt/manager_api.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace agentry::mgmt {

struct ServerOptions {
  std::string socket_path;            // see default_socket_path() in client.h
  ManagerApi* manager = nullptr;      // not owned; must outlive the Server
  size_t max_clients = 1024;          // connections beyond this are accepted and closed at once
  size_t max_queued_bytes = 4 << 20;  // per connection, for log and event streams
  uid_t allowed_uid = geteuid();      // peers must run as this uid, or as root
  // Requests are tiny; a frame announcing a larger payload is refused from its header, so a
  // client cannot make the daemon buffer up to the protocol's 16 MiB per connection.
  uint32_t max_request_payload = 1 << 20;
};

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions options);
  ~Server();  // close()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket and starts accepting. Makes the socket's directory (0700) when it is
  // missing, and refuses a directory that is not ours or is writable by group or others. A
  // stale socket file (nobody listening) is replaced; a live one makes start() fail with
  // "another daemon is listening on <path>". The socket is 0600 from the moment it exists.
  Status start();

  // Stops accepting, ends every subscription, and closes every connection: each gets a
  // final LogsStream{eof=true} per followed log and a moment to flush what is queued (if
  // the io_context keeps running), then is closed. Removes the socket file if it is still
  // the one start() created. Idempotent.
  void close();

  size_t client_count() const;
  const std::string& socket_path() const;

 private:
  class Impl;
  // Shared with in-flight asynchronous operations, which may outlive the Server object.
  std::shared_ptr<Impl> impl_;
};

}  // namespace agentry::mgmt
