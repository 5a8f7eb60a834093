// End-to-end tests: the real agentryd binary, real sockets, real child processes.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agentry/wire/mgmt_frame.h"
#include "tests/integration/daemon_fixture.h"

namespace agentry::testing {
namespace {

using ::testing::HasSubstr;

std::string sleeper(const std::string& id, const std::string& extra = "") {
  return "  - id: " + id + "\n    command: /bin/sleep\n    args: ['1000']\n    start_window: 50ms\n" + extra;
}

mgmt::ListEntry must_status(mgmt::Client& c, const std::string& id) {
  auto s = c.status(id);
  EXPECT_TRUE(s.is_ok()) << s.status().message();
  return s.is_ok() ? *s : mgmt::ListEntry{};
}

TEST(Daemon, StartStopRestart) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("s1"));
  auto c = d.client();
  EventWatcher events(d, {"s1"});
  ASSERT_TRUE(events.wait_running(c, "s1"));
  auto st = must_status(c, "s1");
  EXPECT_EQ(st.state, "running");
  ASSERT_GT(st.pid, 0);
  const pid_t first = static_cast<pid_t>(st.pid);

  auto stopped = c.stop("s1");
  ASSERT_TRUE(stopped.is_ok()) << stopped.status().message();
  EXPECT_EQ(stopped->state, "stopped");
  EXPECT_TRUE(wait_pid_gone(first));

  auto started = c.start("s1");
  ASSERT_TRUE(started.is_ok()) << started.status().message();
  EXPECT_EQ(started->state, "running");
  const pid_t second = static_cast<pid_t>(started->pid);
  EXPECT_NE(second, first);

  auto restarted = c.restart("s1");
  ASSERT_TRUE(restarted.is_ok()) << restarted.status().message();
  EXPECT_EQ(restarted->state, "running");
  EXPECT_NE(restarted->pid, second);
  EXPECT_TRUE(wait_pid_gone(second));
}

TEST(Daemon, CrashIsRestartedWithBackoff) {
  TempDir dir;
  Daemon d(dir, R"(processes:
  - id: crasher
    command: /bin/sh
    args: ["-c", "echo dying >&2; exit 3"]
    restart: on-failure
    start_window: 0s
    autostart: false
    backoff: {initial: 20ms, max: 1s, multiplier: 2, jitter: 0}
)");
  EventWatcher events(d, {"crasher"});
  auto c = d.client();
  ASSERT_TRUE(c.start("crasher").is_ok());  // start window 0: running at once
  auto crashed = events.wait_for("crasher", "process.crashed");
  ASSERT_TRUE(crashed);
  EXPECT_EQ(crashed->exit_code, 3);
  EXPECT_THAT(crashed->summary, HasSubstr("exited with status 3"));
  EXPECT_THAT(crashed->summary, HasSubstr("dying"));
  auto restarting = events.wait_for("crasher", "process.restarting");
  ASSERT_TRUE(restarting);
  EXPECT_GT(restarting->delay_ns, 0);
  ASSERT_TRUE(events.wait_for("crasher", "process.starting"));
  // The delay grows with each crash.
  auto second = events.wait_for("crasher", "process.restarting");
  ASSERT_TRUE(second);
  EXPECT_GT(second->delay_ns, restarting->delay_ns);
  EXPECT_GE(second->restarts, 2u);
}

TEST(Daemon, StartLimitFailsThenStartClearsIt) {
  TempDir dir;
  Daemon d(dir, R"(processes:
  - id: doomed
    command: /bin/sh
    args: ["-c", "echo cannot open database >&2; exit 1"]
    restart: always
    start_window: 5s
    start_limit: 3
    autostart: false
    backoff: {initial: 10ms, max: 10ms, jitter: 0}
)");
  EventWatcher events(d, {"doomed"});
  auto c = d.client();
  EXPECT_FALSE(c.start("doomed").is_ok());
  auto failed = events.wait_for("doomed", "process.failed");
  ASSERT_TRUE(failed);
  EXPECT_THAT(failed->summary, HasSubstr("3 consecutive failures"));
  EXPECT_THAT(failed->summary, HasSubstr("cannot open database"));
  auto st = must_status(c, "doomed");
  EXPECT_EQ(st.state, "failed");
  EXPECT_THAT(st.error, HasSubstr("cannot open database"));

  // A manual start forgives the past: it is attempted again (and fails again here).
  auto again = c.start("doomed");
  EXPECT_FALSE(again.is_ok());
  ASSERT_TRUE(events.wait_for("doomed", "process.starting"));
  ASSERT_TRUE(events.wait_for("doomed", "process.failed"));
}

TEST(Daemon, SigkillOfDaemonLeavesNoProcessBehind) {
  TempDir dir;
  // A child with grandchildren in its session, one of which moved to its own process group.
  Daemon d(dir, R"(processes:
  - id: tree
    command: /bin/sh
    args: ["-c", "sleep 1000 & python3 -c 'import os, time; os.setpgid(0, 0); time.sleep(1000)' & echo started; wait"]
    start_window: 0s
)");
  auto c = d.client();
  // Wait until the tree is complete: the shell prints once it launched both.
  std::string seen;
  ASSERT_TRUE(c.logs("tree", 0, true, [&](std::string_view chunk) {
                 seen.append(chunk);
                 return seen.find("started") == std::string::npos;
               }).is_ok());
  const pid_t sid = static_cast<pid_t>(must_status(c, "tree").pid);
  ASSERT_GT(sid, 0);
  // The python grandchild needs a moment to call setpgid; its pid is in the session either way.
  std::vector<pid_t> members = processes_in_session(sid);
  ASSERT_GE(members.size(), 3u) << "expected sh, sleep and python3 in session " << sid;

  d.stop_with(SIGKILL);
  for (pid_t p : members) EXPECT_TRUE(wait_pid_gone(p)) << "pid " << p << " survived agentryd";
  EXPECT_TRUE(processes_in_session(sid).empty());
}

TEST(Daemon, StopEscalatesToSigkillForTheWholeGroup) {
  TempDir dir;
  Daemon d(dir, R"(processes:
  - id: stubborn
    command: /bin/sh
    args: ["-c", "trap '' TERM; sleep 1000 & echo ready; wait; wait"]
    start_window: 0s
    stop: {signal: TERM, timeout: 200ms}
)");
  auto c = d.client();
  std::string seen;
  ASSERT_TRUE(c.logs("stubborn", 0, true, [&](std::string_view chunk) {
                 seen.append(chunk);
                 return seen.find("ready") == std::string::npos;
               }).is_ok());
  auto c2 = d.client();
  const pid_t sid = static_cast<pid_t>(must_status(c2, "stubborn").pid);
  auto members = processes_in_session(sid);
  ASSERT_GE(members.size(), 2u);
  auto stopped = c2.stop("stubborn");
  ASSERT_TRUE(stopped.is_ok()) << stopped.status().message();
  EXPECT_EQ(stopped->state, "stopped");
  EXPECT_THAT(stopped->last_exit, HasSubstr("signal 9"));
  for (pid_t p : members) EXPECT_TRUE(wait_pid_gone(p)) << "pid " << p << " survived the stop";
}

TEST(Daemon, LogsSnapshotAndFollow) {
  TempDir dir;
  Daemon d(dir, R"(processes:
  - id: talker
    command: /bin/sh
    args: ["-c", "echo hello; echo oops >&2; i=0; while [ $i -lt 5 ]; do echo line$i; i=$((i+1)); done; exec sleep 1000"]
    start_window: 0s
)");
  auto c = d.client();
  std::string followed;
  ASSERT_TRUE(c.logs("talker", 0, true, [&](std::string_view chunk) {
                 followed.append(chunk);
                 return followed.find("line4\n") == std::string::npos;
               }).is_ok());
  EXPECT_THAT(followed, HasSubstr("hello\nline0\n"));
  auto c2 = d.client();
  std::string snap;
  ASSERT_TRUE(c2.logs("talker", 0, false, [&](std::string_view chunk) {
                  snap.append(chunk);
                  return true;
                }).is_ok());
  EXPECT_EQ(snap, "hello\nline0\nline1\nline2\nline3\nline4\n");
  std::string err;
  ASSERT_TRUE(c2.logs("talker", 1, false, [&](std::string_view chunk) {
                  err.append(chunk);
                  return true;
                }).is_ok());
  EXPECT_EQ(err, "oops\n");
  // The connection stays usable after a snapshot.
  EXPECT_TRUE(c2.list().is_ok());
  // CLI view of the same.
  auto cli = run_cli(d, {"logs", "--stream", "stdout", "talker"});
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
  EXPECT_EQ(cli.out, snap);
}

TEST(Daemon, RotationLosesNoLine) {
  TempDir dir;
  constexpr int kLines = 200000;
  const std::string log = dir.file("logs/counter.log");
  Daemon d(dir, "processes:\n  - id: counter\n    command: /usr/bin/seq\n    args: ['1', '" + std::to_string(kLines) +
                    "']\n    restart: never\n    start_window: 0s\n    autostart: false\n    logs: {file: " + log +
                    ", rotate: {size: 64KiB, keep: 100}}\n");
  EventWatcher events(d, {"counter"});
  auto c = d.client();
  ASSERT_TRUE(c.start("counter").is_ok());
  ASSERT_TRUE(events.wait_for("counter", "process.stopped"));
  // The supervisor drains the pipes before it reports the exit, so the file is complete;
  // the follow below double-checks that the last line went through the capture path.
  std::string tail;
  const std::string last = "\n" + std::to_string(kLines) + "\n";
  ASSERT_TRUE(c.logs("counter", 0, true, [&](std::string_view chunk) {
                 tail.append(chunk);
                 if (tail.size() > 64) tail.erase(0, tail.size() - 64);
                 return tail.find(last) == std::string::npos;
               }).is_ok());
  std::vector<std::string> files;
  for (int i = 100; i >= 1; --i) {
    std::string f = log + "." + std::to_string(i);
    if (std::filesystem::exists(f)) files.push_back(f);
  }
  files.push_back(log);
  ASSERT_GT(files.size(), 10u) << "expected many rotations";
  int expect = 1;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line;
    while (std::getline(in, line)) {
      ASSERT_EQ(line, std::to_string(expect)) << "in " << f;
      ++expect;
    }
    EXPECT_LE(std::filesystem::file_size(f), 64u * 1024u) << f;
  }
  EXPECT_EQ(expect, kLines + 1);
}

TEST(Daemon, StalledFollowerIsDroppedAndChildNeverBlocks) {
  TempDir dir;
  Daemon d(dir, R"(processes:
  - id: flood
    command: /bin/sh
    args: ["-c", "head -c 67108864 /dev/zero | tr '\\0' 'x'; echo done"]
    restart: never
    start_window: 0s
    autostart: false
)");
  EventWatcher events(d, {"flood"});
  // A follower that never reads.
  auto stalled = d.client();
  mgmt::LogsRequest req{"flood", 0, true};
  ASSERT_TRUE(stalled.send(mgmt::MsgType::kLogsRequest, mgmt::encode_to_string(req)).is_ok());
  // The follower is registered once its snapshot frame arrives; only then start the flood.
  auto first = stalled.read_frame();
  ASSERT_TRUE(first.is_ok()) << first.status().message();
  auto c = d.client();
  auto started = c.start("flood");
  ASSERT_TRUE(started.is_ok()) << started.status().message();
  auto overflow = events.wait_for("flood", "log.overflow");
  ASSERT_TRUE(overflow) << d.stderr_text();
  EXPECT_THAT(overflow->summary, HasSubstr("too slow"));
  auto stopped = events.wait_for("flood", "process.stopped");
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->exit_code, 0);
  // Everyone else is still served.
  EXPECT_TRUE(c.list().is_ok());
}

TEST(Daemon, EventsAreFilteredByProcess) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("a") + sleeper("b"));
  auto c = d.client();
  EventWatcher all(d);
  ASSERT_TRUE(all.wait_running(c, "a"));
  ASSERT_TRUE(all.wait_running(c, "b"));
  EventWatcher only_a(d, {"a"});
  ASSERT_TRUE(c.restart("b").is_ok());
  ASSERT_TRUE(c.restart("a").is_ok());
  ASSERT_TRUE(only_a.wait_for("a", "process.started"));
  for (const auto& e : only_a.seen()) EXPECT_EQ(e.process_id, "a") << e.type;
}

TEST(Daemon, ReloadRestartsOnlyChangedProcesses) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("keep") + sleeper("change") + sleeper("drop"));
  auto c = d.client();
  EventWatcher events(d);
  for (const char* id : {"keep", "change", "drop"}) ASSERT_TRUE(events.wait_running(c, id));
  const auto keep_pid = must_status(c, "keep").pid;
  const auto change_pid = must_status(c, "change").pid;
  const auto drop_pid = must_status(c, "drop").pid;

  // An invalid file is refused and nothing changes.
  dir.write("agentry.yaml", "processes:\n  - id: keep\n    command: /bin/sleep\n    restart: sometimes\n");
  Status bad = c.reload();
  ASSERT_FALSE(bad.is_ok());
  EXPECT_THAT(bad.message(), HasSubstr("restart"));
  EXPECT_THAT(bad.message(), HasSubstr(":4:"));
  EXPECT_EQ(must_status(c, "drop").pid, drop_pid);

  dir.write("agentry.yaml", "processes:\n" + sleeper("keep") +
                                "  - id: change\n    command: /bin/sleep\n    args: ['2000']\n    start_window: 50ms\n" +
                                sleeper("added"));
  Status ok = c.reload();
  ASSERT_TRUE(ok.is_ok()) << ok.message() << "\n" << d.stderr_text();
  EXPECT_EQ(must_status(c, "keep").pid, keep_pid);
  auto changed = must_status(c, "change");
  EXPECT_EQ(changed.state, "running");
  EXPECT_NE(changed.pid, change_pid);
  EXPECT_FALSE(c.status("drop").is_ok());
  EXPECT_TRUE(wait_pid_gone(static_cast<pid_t>(drop_pid)));
  EXPECT_EQ(must_status(c, "added").state, "running");

  // SIGHUP does the same as `agentry reload`.
  dir.write("agentry.yaml", "processes:\n" + sleeper("keep"));
  ::kill(d.pid(), SIGHUP);
  ASSERT_TRUE(events.wait_for("added", "process.removed"));
  EXPECT_EQ(must_status(c, "keep").pid, keep_pid);
}

TEST(Daemon, HundredConcurrentClients) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("x") + sleeper("y"));
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&] {
      auto c = mgmt::Client::connect(d.socket_path());
      if (!c) return;
      for (int j = 0; j < 10; ++j) {
        auto l = c->list();
        if (!l || l->size() != 2) return;
      }
      ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 100);
}

// Raw socket helpers for malformed input.
UniqueFd raw_connect(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{60, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Reads until EOF; returns everything received.
std::string read_to_eof(int fd) {
  std::string all;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) return all;
    all.append(buf, static_cast<size_t>(n));
  }
}

TEST(Daemon, MalformedFramesGetAnErrorAndOnlyThatConnectionCloses) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("z"));
  auto bystander = d.client();
  EventWatcher events(d, {"z"});
  ASSERT_TRUE(events.wait_running(bystander, "z"));

  {  // bad magic
    UniqueFd fd = raw_connect(d.socket_path());
    std::string junk(17, '\x42');
    ASSERT_EQ(::write(fd.get(), junk.data(), junk.size()), 17);
    std::string reply = read_to_eof(fd.get());
    EXPECT_GE(reply.size(), 17u);
    EXPECT_THAT(reply, HasSubstr("magic"));
  }
  {  // 17 MiB declared: refused from the header alone
    UniqueFd fd = raw_connect(d.socket_path());
    std::string frame;
    wire::MgmtFrameHeader h{0xA0, 0, 7, 17u << 20};
    auto bytes = wire::encode_mgmt_header(h);
    frame.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    ASSERT_EQ(::write(fd.get(), frame.data(), frame.size()), 17);
    std::string reply = read_to_eof(fd.get());
    EXPECT_THAT(reply, HasSubstr("exceeds"));
  }
  {  // truncated frame, then the client goes away
    UniqueFd fd = raw_connect(d.socket_path());
    std::string frame;
    ASSERT_TRUE(wire::append_mgmt_frame(frame, 0xA2, 1, std::string(100, 'a')).is_ok());
    ASSERT_EQ(::write(fd.get(), frame.data(), 40), 40);
    ::shutdown(fd.get(), SHUT_WR);
    read_to_eof(fd.get());
  }
  {  // garbage MessagePack in a valid frame
    UniqueFd fd = raw_connect(d.socket_path());
    std::string frame;
    ASSERT_TRUE(wire::append_mgmt_frame(frame, 0xA2, 9, "\xc1\xc1\xc1").is_ok());
    ASSERT_EQ(::write(fd.get(), frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
    std::string reply = read_to_eof(fd.get());
    EXPECT_GE(reply.size(), 17u);
  }
  EXPECT_TRUE(bystander.list().is_ok());
  EXPECT_EQ(must_status(bystander, "z").state, "running");
}

TEST(Daemon, SigtermStopsEverythingAndExitsZero) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("p1") + sleeper("p2"));
  auto c = d.client();
  EventWatcher events(d);
  ASSERT_TRUE(events.wait_running(c, "p1"));
  ASSERT_TRUE(events.wait_running(c, "p2"));
  auto p1 = static_cast<pid_t>(must_status(c, "p1").pid);
  auto p2 = static_cast<pid_t>(must_status(c, "p2").pid);
  int status = d.stop_with(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(wait_pid_gone(p1));
  EXPECT_TRUE(wait_pid_gone(p2));
  EXPECT_FALSE(std::filesystem::exists(d.socket_path()));
}

TEST(Daemon, SecondDaemonOnTheSameRuntimeDirIsRefused) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("only"));
  auto c = d.client();
  EventWatcher events(d, {"only"});
  ASSERT_TRUE(events.wait_running(c, "only"));
  // Start a second one by hand with the same runtime dir; it must fail fast and say why.
  const std::string cmd = daemon_binary() + " -c " + d.config_path() + " --runtime-dir " + dir.file("run") +
                          " 2>" + dir.file("second.err");
  int rc = std::system(cmd.c_str());
  EXPECT_NE(rc, 0);
  EXPECT_THAT(read_file(dir.file("second.err")), HasSubstr("already running"));
  EXPECT_EQ(must_status(c, "only").state, "running");
}

TEST(Cli, HumanAndJsonOutputAndErrors) {
  TempDir dir;
  Daemon d(dir, "processes:\n" + sleeper("web"));
  EventWatcher events(d, {"web"});
  auto c = d.client();
  ASSERT_TRUE(events.wait_running(c, "web"));
  auto list = run_cli(d, {"list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr("ID"));
  EXPECT_THAT(list.out, HasSubstr("web"));
  EXPECT_THAT(list.out, HasSubstr("running"));
  auto json = run_cli(d, {"--json", "status", "web"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"state\": \"running\""));
  auto missing = run_cli(d, {"status", "nosuch"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no process 'nosuch'"));
  dir.write("bad.yaml", "processes:\n  - id: x\n    command: /bin/true\n    restart: sometimes\n");
  auto invalid = run_cli(d, {"validate", "-f", dir.file("bad.yaml")});
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_THAT(invalid.err, HasSubstr("bad.yaml:4:"));
}

TEST(Cli, ClearErrorWhenTheDaemonIsNotRunning) {
  TempDir dir;
  std::vector<std::string> args = {cli_binary(), "--socket", dir.file("nothing.sock"), "list"};
  const std::string cmd = args[0] + " --socket " + args[2] + " list 2>" + dir.file("err");
  int rc = std::system(cmd.c_str());
  EXPECT_NE(rc, 0);
  EXPECT_THAT(read_file(dir.file("err")), HasSubstr("cannot reach agentryd"));
}

}  // namespace
}  // namespace agentry::testing
