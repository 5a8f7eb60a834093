// Fuzzes the UDF Agent's input path: arbitrary bytes arrive as the request stream of a real
// Agent (reader thread, handler thread, writer thread) over a socketpair, with a small
// message size limit.
//
// Input: byte 0 picks the size limit; bytes 1.. are the stream. The agent must end (no
// hang), and what it answers must agree with an independent reading of the same bytes:
// one response per request handled, in order, up to the first bad message; then exactly
// one ErrorResponse if the stream was bad, or none if it was a clean sequence of requests.
// Keepalives are answered by the reader thread, so those after a bad request may or may
// not be answered; the count is checked against both bounds.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agentry/proto/udf.pb.h"
#include "agentry/udf/agent.h"
#include "agentry/udf/io.h"
#include "agentry/wire/delimited.h"

namespace {

using agentry::Status;

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (false)

// Answers everything, echoing points and batches.
class EchoHandler final : public agentry::udf::Handler {
 public:
  explicit EchoHandler(agentry::udf::Agent& agent) : agent_(agent) {}
  agent::InfoResponse Info() override { return {}; }
  agent::InitResponse Init(const agent::InitRequest&) override {
    agent::InitResponse r;
    r.set_success(true);
    return r;
  }
  agent::SnapshotResponse Snapshot() override { return {}; }
  agent::RestoreResponse Restore(const agent::RestoreRequest& request) override {
    agent::RestoreResponse r;
    r.set_success(request.snapshot().empty());
    return r;
  }
  Status BeginBatch(const agent::BeginBatch& begin) override { return agent_.send_begin(begin); }
  Status Point(const agent::Point& point) override { return agent_.send_point(point); }
  Status EndBatch(const agent::EndBatch& end) override { return agent_.send_end(end); }
  void Stop() override { ++stops; }
  int stops = 0;

 private:
  agentry::udf::Agent& agent_;
};

struct Expected {
  size_t handled = 0;          // non-keepalive requests answered before any error
  size_t keepalives_min = 0;   // keepalives certainly answered
  size_t keepalives_max = 0;   // keepalives possibly answered
  bool error = false;          // an ErrorResponse ends the output
};

Expected expect(std::string_view stream, size_t max) {
  Expected e;
  agentry::wire::DelimitedDecoder decoder(max);
  decoder.feed(stream);
  bool handler_stopped = false;  // a request with no message stops the handler, not the reader
  for (;;) {
    auto next = decoder.next();
    if (!next.is_ok()) {
      e.error = true;
      return e;
    }
    if (!next->has_value()) break;
    agent::Request request;
    if (!request.ParseFromArray((*next)->data(), static_cast<int>((*next)->size()))) {
      e.error = true;
      return e;
    }
    if (request.message_case() == agent::Request::kKeepalive) {
      if (!handler_stopped) ++e.keepalives_min;
      ++e.keepalives_max;
    } else if (request.message_case() == agent::Request::MESSAGE_NOT_SET) {
      handler_stopped = true;
      e.error = true;
    } else if (!handler_stopped) {
      ++e.handled;
    }
  }
  if (!decoder.finish().is_ok()) e.error = true;
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t max = (data[0] & 0x80) != 0 ? size_t{64} << 10 : 1 + static_cast<size_t>(data[0] & 0x7f) * 8;
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Expected want = expect(input, max);

  int fds[2];
  FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  agentry::UniqueFd peer(fds[0]);
  agentry::udf::AgentOptions options;
  options.max_message_size = max;
  options.read_size = 1 + (data[0] % 97);  // small reads: messages arrive in pieces
  agentry::udf::Agent agent(agentry::UniqueFd(fds[1]), options);
  EchoHandler handler(agent);
  Status result;
  std::thread runner([&] { result = agent.run(handler); });
  std::thread feeder([&] {
    (void)agentry::udf::write_all(peer.get(), input);  // fails once the agent stopped reading
    ::shutdown(peer.get(), SHUT_WR);
  });

  size_t keepalives = 0;
  size_t others = 0;
  size_t errors = 0;
  agentry::udf::MessageReader reader(peer.get());
  for (;;) {
    agent::Response response;
    auto got = reader.read(response);
    FUZZ_CHECK(got.is_ok());  // the agent writes whole, valid responses only
    if (!*got) break;
    if (response.has_keepalive()) {
      ++keepalives;
    } else if (response.has_error()) {
      ++errors;
    } else {
      FUZZ_CHECK(errors == 0);
      ++others;
    }
  }
  feeder.join();
  runner.join();

  FUZZ_CHECK(handler.stops == 1);
  FUZZ_CHECK(others == want.handled);
  // Replies refused because too many were waiting (a flood of keepalives) are not sent.
  const uint64_t dropped = agent.writer_stats().priority_dropped;
  FUZZ_CHECK(keepalives + dropped >= want.keepalives_min && keepalives <= want.keepalives_max);
  FUZZ_CHECK(errors == (want.error ? 1U : 0U));
  FUZZ_CHECK(result.is_ok() == !want.error);
  return 0;
}
