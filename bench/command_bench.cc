// Round trips through the command socket: connect, write one request, read the reply,
// close, against a handler that answers at once. Measures what the monitor and
// send_command() add per command (accept, framing, command lookup, handler dispatch, reply
// check), with 1 and 8 clients at a time.
//
// BM_RawSocketBaseline does the same exchange with no protocol at all: one thread blocking
// in accept(), read(), write(), close(), and a blocking client. It is the floor the kernel
// allows on the machine at that moment, so the two can be compared under the same load.
//
//   build/default/bench/bench_command
//
// Items per second is round trips per second, over wall-clock time.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "agentry/base/log.h"
#include "agentry/command/client.h"
#include "agentry/command/monitor.h"

namespace {

using agentry::command::Monitor;
using agentry::command::MonitorOptions;

constexpr std::string_view kRequest = R"({"Command":"bench.echo","Payload":"0123456789abcdef"})";
constexpr std::string_view kReply = R"({"Status":0,"StatusMessage":"ok"})";

// One monitor for the whole program, serving from a fresh temporary directory.
struct Fixture {
  Fixture() {
    agentry::log::Options log_options;
    log_options.level = spdlog::level::warn;
    agentry::log::setup(log_options);
    char pattern[] = "/tmp/agentry-cmd-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
    MonitorOptions options;
    options.dir = dir + "/sock";
    monitor = std::make_unique<Monitor>(options);
    const agentry::Status status =
        monitor->register_handler("bench.echo", [](std::string_view) -> agentry::Result<std::string> {
          return std::string(kReply);
        });
    if (!status) std::abort();
    path = monitor->socket_path();
  }
  ~Fixture() {
    monitor.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string dir;
  std::string path;
  std::unique_ptr<Monitor> monitor;
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// The baseline server: accepts, reads once, answers, closes; nothing else.
struct RawServer {
  RawServer() {
    char pattern[] = "/tmp/agentry-cmd-bench-raw-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    dir = pattern;
    path = dir + "/raw";
    listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) std::abort();
    if (::listen(listener, SOMAXCONN) != 0) std::abort();
    thread = std::thread([this] {
      char buf[4096];
      for (;;) {
        const int conn = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (conn < 0) return;  // shut down
        if (::read(conn, buf, sizeof buf) > 0) {
          if (::write(conn, kReply.data(), kReply.size()) < 0) {
            // the client went away; nothing to do
          }
        }
        ::close(conn);
      }
    });
  }
  ~RawServer() {
    ::shutdown(listener, SHUT_RDWR);  // wakes the blocked accept() with EINVAL
    thread.join();
    ::close(listener);
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  std::string dir;
  std::string path;
  int listener = -1;
  std::thread thread;
};

RawServer& raw_server() {
  static RawServer s;
  return s;
}

void BM_RawSocketBaseline(benchmark::State& state) {
  const std::string& path = raw_server().path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  char buf[256];
  for (auto _ : state) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::write(fd, kRequest.data(), kRequest.size()) != static_cast<ssize_t>(kRequest.size())) {
      state.SkipWithError("raw exchange failed");
      ::close(fd);
      break;
    }
    while (::read(fd, buf, sizeof buf) > 0) {
    }
    ::close(fd);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RawSocketBaseline)->UseRealTime();

void BM_CommandRoundTrip(benchmark::State& state) {
  const std::string& path = fixture().path;
  for (auto _ : state) {
    const std::string reply = agentry::command::send_command(kRequest, path);
    if (reply != kReply) {
      state.SkipWithError(reply.c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_CommandRoundTrip)->UseRealTime()->Threads(1)->Threads(8);

}  // namespace

BENCHMARK_MAIN();
