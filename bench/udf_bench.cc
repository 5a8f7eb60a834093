// Round trips through a UDF: agentry's host (agentry/udf/host.h) <-> a C++ mirror UDF built
// on agentry's agent library, which sends every point back unchanged.
//
//   BM_HostMirrorPipes   the mirror as a process UDF: stdin/stdout pipes
//   BM_HostMirrorSocket  the mirror as a socket UDF: one unix stream socket
//   BM_LineProtocol*     the text side of `agentry udf run`
//
// The point is fixed and realistic: measurement, 3 tags, 2 double fields, 1 int, 1 string
// (about 110 bytes framed). Each iteration sends a block of points and waits until all of
// them have come back, so items_per_second is the round-trip rate. The counters give the
// host's write()/read() system calls per point (the mirror's own are in udf_compare.sh,
// which counts with strace).
//
// The mirrors are this binary, started again: `bench_udf --mirror-child` serves the
// protocol on stdin/stdout, `bench_udf --mirror-socket PATH` listens on PATH.
//
// For scale, `bench_udf --echo-child` is a mirror that is not an agent: one thread that
// copies data frames back byte for byte without parsing them (a Request's point field and a
// Response's have the same number, so the bytes are a valid Response) and answers the other
// requests. Through it the round trip costs only the host and the pipes: the host's own
// ceiling (BM_HostEchoPipes).
#include <unistd.h>

#include <cerrno>
#include <span>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <benchmark/benchmark.h>

#include "agentry/udf/agent.h"
#include "agentry/udf/host.h"
#include "agentry/udf/line_protocol.h"
#include "agentry/udf/server.h"
#include "agentry/wire/delimited.h"

namespace {

using agentry::Status;
using agentry::udf::HostOptions;
using agentry::udf::HostSession;

constexpr int64_t kBlock = 100'000;  // points per iteration

// ---------------------------------------------------------------- the mirror UDF

class Mirror final : public agentry::udf::Handler {
 public:
  explicit Mirror(agentry::udf::Agent& agent) : agent_(agent) {}
  ::agent::InfoResponse Info() override {
    ::agent::InfoResponse info;
    info.set_wants(::agent::STREAM);
    info.set_provides(::agent::STREAM);
    return info;
  }
  ::agent::InitResponse Init(const ::agent::InitRequest&) override {
    ::agent::InitResponse r;
    r.set_success(true);
    return r;
  }
  ::agent::SnapshotResponse Snapshot() override { return {}; }
  ::agent::RestoreResponse Restore(const ::agent::RestoreRequest&) override {
    ::agent::RestoreResponse r;
    r.set_success(true);
    return r;
  }
  Status BeginBatch(const ::agent::BeginBatch& b) override { return agent_.send_begin(b); }
  Status Point(const ::agent::Point& p) override { return agent_.send_point(p); }
  Status EndBatch(const ::agent::EndBatch& e) override { return agent_.send_end(e); }
  void Stop() override {}

 private:
  agentry::udf::Agent& agent_;
};

int mirror_stdio() {
  auto agent = agentry::udf::Agent::stdio();
  Mirror mirror(*agent);
  return agent->run(mirror).is_ok() ? 0 : 1;
}

int echo_stdio() {
  agentry::wire::DelimitedDecoder decoder;
  std::string out;
  ::agent::Request req;
  ::agent::Response resp;
  for (;;) {
    const std::span<char> buf = decoder.prepare(size_t{64} << 10);
    const ssize_t n = ::read(0, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    decoder.commit(static_cast<size_t>(n));
    for (;;) {
      auto next = decoder.next();
      if (!next.is_ok()) return 1;
      if (!next->has_value()) break;
      const std::string_view frame = **next;
      // BeginBatch, Point, EndBatch: tags 16, 17, 18 with wire type 2 (two-byte varints).
      if (frame.size() >= 2 && (frame[0] == '\x82' || frame[0] == '\x8a' || frame[0] == '\x92') &&
          frame[1] == '\x01') {
        agentry::wire::append_delimited(out, frame);
        continue;
      }
      if (!req.ParseFromArray(frame.data(), static_cast<int>(frame.size()))) return 1;
      resp.Clear();
      if (req.has_info()) {
        resp.mutable_info()->set_wants(::agent::STREAM);
        resp.mutable_info()->set_provides(::agent::STREAM);
      } else if (req.has_init()) {
        resp.mutable_init()->set_success(true);
      } else if (req.has_keepalive()) {
        resp.mutable_keepalive()->set_time(req.keepalive().time());
      } else if (req.has_snapshot()) {
        resp.mutable_snapshot();
      } else if (req.has_restore()) {
        resp.mutable_restore()->set_success(true);
      } else {
        continue;
      }
      agentry::wire::append_delimited(out, resp.SerializeAsString());
    }
    for (size_t off = 0; off < out.size();) {
      const ssize_t w = ::write(1, out.data() + off, out.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return 1;
      off += static_cast<size_t>(w);
    }
    out.clear();
  }
}

int mirror_socket(const char* path) {
  agentry::udf::AgentAccepter accepter(
      [](agentry::udf::Agent& agent) { return std::make_unique<Mirror>(agent); });
  auto server = agentry::udf::Server::listen(path, accepter);
  if (!server.is_ok()) {
    std::fprintf(stderr, "bench_udf mirror: %s\n", server.status().message().c_str());
    return 1;
  }
  if (!(*server)->stop_on_signals({SIGINT, SIGTERM}).is_ok()) return 1;
  return (*server)->serve().is_ok() ? 0 : 1;
}

// ---------------------------------------------------------------- the host side

::agent::Point bench_point() {
  ::agent::Point p;
  p.set_name("cpu");
  (*p.mutable_tags())["host"] = "server-0042";
  (*p.mutable_tags())["region"] = "eu-west-1";
  (*p.mutable_tags())["service"] = "checkout";
  (*p.mutable_fieldsdouble())["usage_user"] = 12.5;
  (*p.mutable_fieldsdouble())["usage_system"] = 3.25;
  (*p.mutable_fieldsint())["processes"] = 231;
  (*p.mutable_fieldsstring())["state"] = "running";
  p.set_time(1'700'000'000'000'000'000);
  return p;
}

// Counts points coming back and lets the benchmark wait for a total.
struct Counter {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int64_t> received{0};
  std::atomic<int64_t> target{0};

  HostSession::DataHandler handler() {
    return [this](const ::agent::Response& r) {
      if (!r.has_point()) return;
      const int64_t n = received.fetch_add(1, std::memory_order_relaxed) + 1;
      if (n >= target.load(std::memory_order_relaxed)) {
        std::lock_guard lock(mu);
        cv.notify_all();
      }
    };
  }
  bool wait_for(int64_t n, HostSession& s) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60),
                       [&] { return received.load() >= n || !s.status().is_ok(); }) &&
           received.load() >= n;
  }
};

std::string self_exe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "/proc/self/exe";
}

void run_round_trips(benchmark::State& state, HostSession& session, Counter& counter) {
  if (!session.init({}, "bench", "bench").is_ok()) {
    state.SkipWithError("init failed");
    return;
  }
  ::agent::Point p = bench_point();
  const int64_t t0 = p.time();
  int64_t sent = 0;
  const auto before = session.stats();
  for (auto _ : state) {
    counter.target.store(sent + kBlock);
    for (int64_t i = 0; i < kBlock; ++i) {
      p.set_time(t0 + sent + i);
      if (!session.send_point(p).is_ok()) {
        state.SkipWithError(session.status().message().c_str());
        return;
      }
    }
    sent += kBlock;
    (void)session.flush();
    if (!counter.wait_for(sent, session)) {
      state.SkipWithError(("points did not come back: " + session.status().message()).c_str());
      return;
    }
  }
  const auto after = session.stats();
  state.SetItemsProcessed(sent);
  const double n = static_cast<double>(sent);
  state.counters["host_writes_per_point"] = static_cast<double>(after.write_calls - before.write_calls) / n;
  state.counters["host_reads_per_point"] = static_cast<double>(after.read_calls - before.read_calls) / n;
  state.counters["host_wakeups_per_point"] = static_cast<double>(after.wakeups - before.wakeups) / n;
  state.counters["bytes_per_point"] = static_cast<double>(after.bytes_written - before.bytes_written) / n;
  if (auto end = session.finish(); !end.is_ok()) state.SkipWithError(end.status().message().c_str());
}

void BM_HostMirrorPipes(benchmark::State& state) {
  Counter counter;
  HostOptions options;
  agentry::udf::ProcessConfig config;
  config.program = self_exe();
  config.args = {"--mirror-child"};
  auto session = HostSession::start_process(config, options, counter.handler());
  if (!session.is_ok()) {
    state.SkipWithError(session.status().message().c_str());
    return;
  }
  run_round_trips(state, **session, counter);
}
BENCHMARK(BM_HostMirrorPipes)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

void BM_HostMirrorSocket(benchmark::State& state) {
  const std::string path = "/tmp/agentry-bench-udf-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  HostOptions server_options;
  server_options.keepalive_timeout = std::chrono::milliseconds(0);  // it does not speak on stdio
  agentry::udf::ProcessConfig server_config;
  server_config.program = self_exe();
  server_config.args = {"--mirror-socket", path};
  auto server = HostSession::start_process(server_config, server_options, {});
  if (!server.is_ok()) {
    state.SkipWithError(server.status().message().c_str());
    return;
  }
  Counter counter;
  auto session = HostSession::connect_socket(path, HostOptions{}, counter.handler());
  if (!session.is_ok()) {
    state.SkipWithError(session.status().message().c_str());
    return;
  }
  run_round_trips(state, **session, counter);
  ::kill((*server)->pid(), SIGTERM);
  (void)(*server)->wait();
}
BENCHMARK(BM_HostMirrorSocket)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

void BM_HostEchoPipes(benchmark::State& state) {
  Counter counter;
  agentry::udf::ProcessConfig config;
  config.program = self_exe();
  config.args = {"--echo-child"};
  auto session = HostSession::start_process(config, HostOptions{}, counter.handler());
  if (!session.is_ok()) {
    state.SkipWithError(session.status().message().c_str());
    return;
  }
  run_round_trips(state, **session, counter);
}
BENCHMARK(BM_HostEchoPipes)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(3.0);

// ---------------------------------------------------------------- the protobuf work per point

// What the host pays per point to send it: sizes, then bytes, framed as Request{point}.
void BM_PointSerialize(benchmark::State& state) {
  const ::agent::Point p = bench_point();
  std::string out;
  for (auto _ : state) {
    out.clear();
    const size_t n = p.ByteSizeLong();
    out.resize(n + 8);
    p.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(out.data() + 8));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PointSerialize);

std::string response_bytes() {
  ::agent::Response r;
  *r.mutable_point() = bench_point();
  return r.SerializeAsString();
}

// What the host pays per point received: one Response parsed into an arena that is reset
// every 256 KiB (what HostSession does) ...
void BM_ResponseParseArena(benchmark::State& state) {
  const std::string bytes = response_bytes();
  google::protobuf::Arena arena;
  for (auto _ : state) {
    if (arena.SpaceUsed() > (size_t{256} << 10)) arena.Reset();
    auto* r = google::protobuf::Arena::CreateMessage<::agent::Response>(&arena);
    benchmark::DoNotOptimize(r->ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResponseParseArena);

// ... versus one heap message reused for every parse ...
void BM_ResponseParseReused(benchmark::State& state) {
  const std::string bytes = response_bytes();
  ::agent::Response r;
  for (auto _ : state) {
    benchmark::DoNotOptimize(r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResponseParseReused);

// ... versus HostSession's decoder (same series: map entries updated in place).
void BM_ResponseParseHost(benchmark::State& state) {
  const std::string bytes = response_bytes();
  ::agent::Response r;
  for (auto _ : state) benchmark::DoNotOptimize(agentry::udf::detail::parse_response(bytes, r));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ResponseParseHost);

// ---------------------------------------------------------------- line protocol

void BM_LineProtocolParse(benchmark::State& state) {
  std::string line;
  (void)agentry::udf::append_line(line, bench_point());
  line.pop_back();
  agentry::udf::LineParseOptions options;
  options.group_by = {"host"};
  ::agent::Point p;
  for (auto _ : state) {
    auto kind = agentry::udf::parse_line(line, 1, options, p);
    benchmark::DoNotOptimize(kind);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(line.size()));
}
BENCHMARK(BM_LineProtocolParse);

void BM_LineProtocolFormat(benchmark::State& state) {
  const ::agent::Point p = bench_point();
  std::string out;
  for (auto _ : state) {
    out.clear();
    (void)agentry::udf::append_line(out, p);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LineProtocolFormat);

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "--mirror-child") == 0) return mirror_stdio();
  if (argc >= 2 && std::strcmp(argv[1], "--echo-child") == 0) return echo_stdio();
  if (argc >= 3 && std::strcmp(argv[1], "--mirror-socket") == 0) return mirror_socket(argv[2]);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
