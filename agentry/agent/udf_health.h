// Health checks for processes that serve a socket UDF (`udf: {socket, keepalive}`).
//
// When such a process reaches running, a checker connects to its socket (with backoff),
// asks for Info and then keeps the session open: the UDF host sends a keepalive every
// keepalive/2 and gives up when none is answered within `keepalive`. A failed connect,
// Info or keepalive makes the process unhealthy: the supervisor publishes
// process.unhealthy with the reason and restarts it. The Info (wants, provides, options)
// is kept for `agentry status` and for OpAMP's available components.
//
// Each checker is a thread blocked in the UDF host library; everything that touches the
// supervisor is posted back to the event loop.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agentry/proto/udf.pb.h"
#include "agentry/supervisor/supervisor.h"

namespace boost::asio {
class io_context;
}

namespace agentry::agent {

class UdfHealth {
 public:
  UdfHealth(boost::asio::io_context& io, supervisor::Supervisor& sup);
  ~UdfHealth();  // stops every checker
  UdfHealth(const UdfHealth&) = delete;
  UdfHealth& operator=(const UdfHealth&) = delete;

  // "healthy; wants stream, provides stream; options: ..." or "checking" or
  // "unhealthy: <reason>"; empty for processes without a udf section.
  std::string describe(const std::string& id) const;
  std::optional<::agent::InfoResponse> info(const std::string& id) const;
  // Every process with a known Info, for OpAMP's available components.
  std::map<std::string, ::agent::InfoResponse> all_info() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace agentry::agent
