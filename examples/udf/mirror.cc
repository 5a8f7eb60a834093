// agentry-udf-mirror: a socket UDF that sends back everything it receives.
//
//   agentry-udf-mirror /run/agentry/mirror.sock
//
// Kapacitor configuration:
//   [udf.functions.mirror]
//     socket = "/run/agentry/mirror.sock"
//     timeout = "10s"
// TICKscript:  |mirror()
//
// No options. STREAM in, STREAM out: every point is echoed unchanged; BeginBatch and
// EndBatch are echoed too, so batches come back whole. Each connection (one per use in a
// task) gets its own agent. Runs until SIGINT or SIGTERM, then removes the socket.
// The socket is created with mode 0600 (see agentry/udf/server.h).
#include <csignal>
#include <cstdio>
#include <memory>

#include "agentry/udf/agent.h"
#include "agentry/udf/server.h"

namespace {

using agentry::Status;

class Mirror final : public agentry::udf::Handler {
 public:
  explicit Mirror(agentry::udf::Agent& agent) : agent_(agent) {}

  agent::InfoResponse Info() override {
    agent::InfoResponse info;
    info.set_wants(agent::STREAM);
    info.set_provides(agent::STREAM);
    return info;
  }
  agent::InitResponse Init(const agent::InitRequest&) override {
    agent::InitResponse response;
    response.set_success(true);
    return response;
  }
  agent::SnapshotResponse Snapshot() override { return {}; }
  agent::RestoreResponse Restore(const agent::RestoreRequest&) override {
    agent::RestoreResponse response;
    response.set_success(true);
    return response;
  }
  Status BeginBatch(const agent::BeginBatch& begin) override { return agent_.send_begin(begin); }
  Status Point(const agent::Point& point) override { return agent_.send_point(point); }
  Status EndBatch(const agent::EndBatch& end) override { return agent_.send_end(end); }
  void Stop() override {}

 private:
  agentry::udf::Agent& agent_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SOCKET_PATH\n", argc > 0 ? argv[0] : "agentry-udf-mirror");
    return 2;
  }
  agentry::udf::AgentAccepter accepter(
      [](agentry::udf::Agent& agent) { return std::make_unique<Mirror>(agent); });
  auto server = agentry::udf::Server::listen(argv[1], accepter);
  if (!server.is_ok()) {
    std::fprintf(stderr, "agentry-udf-mirror: %s\n", server.status().to_string().c_str());
    return 1;
  }
  Status status = (*server)->stop_on_signals({SIGINT, SIGTERM});
  if (status.is_ok()) status = (*server)->serve();
  if (!status.is_ok()) {
    std::fprintf(stderr, "agentry-udf-mirror: %s\n", status.to_string().c_str());
    return 1;
  }
  return 0;
}
