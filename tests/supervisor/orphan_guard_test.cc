#include "agentry/supervisor/orphan_guard.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "agentry/supervisor/spawn.h"

namespace agentry::supervisor {
namespace {

// Only reached when something is broken; every wait below is for an event.
constexpr int kFailureTimeoutMs = 30'000;

// glibc 2.36's <sys/pidfd.h> lacks extern "C"; use the system call directly.
int open_pidfd_raw(pid_t pid, unsigned flags) { return static_cast<int>(syscall(SYS_pidfd_open, pid, flags)); }

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Pipe make_pipe() {
  int fds[2] = {-1, -1};
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0) << std::strerror(errno);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

bool wait_readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, kFailureTimeoutMs);
  } while (r < 0 && errno == EINTR);
  return r == 1;
}

std::string read_line(int fd) {
  std::string out;
  for (;;) {
    if (!wait_readable(fd)) {
      ADD_FAILURE() << "no line on fd " << fd << " within the failure timeout";
      return out;
    }
    char c;
    const ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || c == '\n') return out;
    out += c;
  }
}

// Waits for a child of ours (possibly adopted as subreaper) to exit and reaps it.
ExitStatus wait_exit(int pidfd) {
  if (!wait_readable(pidfd)) {
    ADD_FAILURE() << "process did not exit within the failure timeout";
    return {true, -1, false};
  }
  auto reaped = try_reap(pidfd);
  if (!reaped.is_ok() || !reaped->has_value()) {
    ADD_FAILURE() << "pidfd readable but nothing reaped: "
                  << (reaped.is_ok() ? std::string("nullopt") : reaped.status().to_string());
    return {true, -1, false};
  }
  return **reaped;
}

bool still_running(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, 0) == 0;
}

UniqueFd open_pidfd(pid_t pid) {
  UniqueFd fd(open_pidfd_raw(pid, 0));
  EXPECT_TRUE(fd.valid()) << "open_pidfd_raw(" << pid << "): " << std::strerror(errno);
  return fd;
}

std::string proc_file(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string proc_status_field(pid_t pid, const std::string& field) {
  std::istringstream in(proc_file(pid, "status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":\t")) return line.substr(field.size() + 2);
  }
  return {};
}

class ScopedSubreaper {
 public:
  ScopedSubreaper() { EXPECT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL), 0); }
  ~ScopedSubreaper() { prctl(PR_SET_CHILD_SUBREAPER, 0UL, 0UL, 0UL, 0UL); }
  ScopedSubreaper(const ScopedSubreaper&) = delete;
  ScopedSubreaper& operator=(const ScopedSubreaper&) = delete;
};

SpawnRequest request(std::vector<std::string> argv) {
  SpawnRequest r;
  r.executable = argv.at(0);
  r.argv = std::move(argv);
  r.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
  return r;
}

// In a forked fake daemon: report one line to the test and wait to be killed. Never
// returns, so the daemon's OrphanGuard is never destroyed: only SIGKILL ends it.
[[noreturn]] void report_and_wait(int fd, const std::string& line) {
  const std::string l = line + "\n";
  if (write(fd, l.data(), l.size()) < 0) _exit(1);
  for (;;) pause();
}

const ExitStatus kKilled{true, SIGKILL, false};
const ExitStatus kExit0{false, 0, false};

// A fake daemon starts a guard and a supervised child whose own child (`grandchild_cmd`,
// which must print the grandchild's pid) lives in the child's session. The test SIGKILLs
// the daemon: the kernel kills the child (PDEATHSIG), the guard must kill the grandchild.
struct Family {
  pid_t child = -1;
  pid_t grandchild = -1;
  pid_t guard = -1;
};

void kill_daemon_and_expect_grandchild_killed(const std::string& grandchild_cmd, bool other_group) {
  ScopedSubreaper subreaper;  // orphans come to us, so we can reap them and see why they died
  Pipe report = make_pipe();
  Pipe out = make_pipe();
  const pid_t daemon = fork();
  ASSERT_GE(daemon, 0);
  if (daemon == 0) {
    auto guard = OrphanGuard::start();
    if (!guard.is_ok()) report_and_wait(report.write.get(), "err " + guard.status().to_string());
    SpawnRequest req = request({"/bin/sh", "-c", grandchild_cmd});
    req.stdout_fd = out.write.get();
    auto child = spawn(req);
    if (!child.is_ok()) report_and_wait(report.write.get(), "err " + child.status().to_string());
    if (Status s = guard->track(child->pid); !s.is_ok()) report_and_wait(report.write.get(), "err " + s.to_string());
    report_and_wait(report.write.get(), std::to_string(child->pid) + " " + std::to_string(guard->pid()));
  }
  out.write.reset();
  report.write.reset();
  Family f;
  std::istringstream(read_line(report.read.get())) >> f.child >> f.guard;
  ASSERT_GT(f.child, 0) << "fake daemon failed";
  f.grandchild = std::stoi(read_line(out.read.get()));
  // All three are alive now (the shell waits for the grandchild), so their pids are pinned.
  UniqueFd child_fd = open_pidfd(f.child);
  UniqueFd grandchild_fd = open_pidfd(f.grandchild);
  UniqueFd guard_fd = open_pidfd(f.guard);
  ASSERT_TRUE(child_fd.valid() && grandchild_fd.valid() && guard_fd.valid());
  EXPECT_EQ(getsid(f.grandchild), f.child);
  if (other_group) {
    EXPECT_EQ(getpgid(f.grandchild), f.grandchild);  // left the session leader's group
  } else {
    EXPECT_EQ(getpgid(f.grandchild), f.child);
  }

  ASSERT_EQ(kill(daemon, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(daemon, &status, 0), daemon);
  // The daemon is reaped: its children (the shell, the guard) are ours now. Once the shell
  // is reaped, so is the grandchild.
  EXPECT_EQ(wait_exit(child_fd.get()), kKilled);
  EXPECT_EQ(wait_exit(grandchild_fd.get()), kKilled);
  EXPECT_EQ(wait_exit(guard_fd.get()), kExit0);
}

TEST(OrphanGuard, StartsInItsOwnSessionWithSignalsIgnored) {
  auto guard = OrphanGuard::start();
  ASSERT_TRUE(guard.is_ok()) << guard.status().to_string();
  const pid_t pid = guard->pid();
  EXPECT_GT(pid, 0);
  EXPECT_EQ(getsid(pid), pid);
  EXPECT_EQ(getpgid(pid), pid);
  EXPECT_NE(getsid(pid), getsid(0));
  EXPECT_EQ(proc_file(pid, "comm"), "agentry-guard\n");
  // SIGHUP(1), SIGINT(2), SIGPIPE(13), SIGTERM(15) ignored; nothing blocked.
  EXPECT_EQ(proc_status_field(pid, "SigIgn"), "0000000000005003");
  EXPECT_EQ(proc_status_field(pid, "SigBlk"), "0000000000000000");
  EXPECT_EQ(fcntl(guard->pidfd(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_TRUE(guard->shutdown_clean(std::chrono::milliseconds(kFailureTimeoutMs)).is_ok());
}

TEST(OrphanGuard, KillsGrandchildWhenDaemonIsKilled) {
  kill_daemon_and_expect_grandchild_killed("sleep 1000 & echo $!; wait", false);
}

// The grandchild moves to a process group of its own: kill(-sid) misses it, the /proc
// session scan does not.
TEST(OrphanGuard, KillsGrandchildInAnotherProcessGroup) {
  kill_daemon_and_expect_grandchild_killed(
      "/usr/bin/python3 -c 'import os, time; os.setpgid(0, 0); print(os.getpid(), flush=True); "
      "time.sleep(1000)' & wait",
      true);
}

// Tracked sessions die with the daemon even without PDEATHSIG; untracked ones do not.
TEST(OrphanGuard, KillsTrackedButNotUntrackedSessions) {
  ScopedSubreaper subreaper;
  Pipe report = make_pipe();
  const pid_t daemon = fork();
  ASSERT_GE(daemon, 0);
  if (daemon == 0) {
    auto guard = OrphanGuard::start();
    if (!guard.is_ok()) report_and_wait(report.write.get(), "err");
    SpawnRequest req = request({"/bin/sleep", "1000"});
    req.parent_death_signal = 0;  // only the guard can kill these
    auto tracked = spawn(req);
    auto untracked = spawn(req);
    if (!tracked.is_ok() || !untracked.is_ok()) report_and_wait(report.write.get(), "err");
    if (!guard->track(tracked->pid).is_ok() || !guard->track(untracked->pid).is_ok() ||
        !guard->untrack(untracked->pid).is_ok()) {
      report_and_wait(report.write.get(), "err");
    }
    report_and_wait(report.write.get(), std::to_string(tracked->pid) + " " + std::to_string(untracked->pid) + " " +
                                            std::to_string(guard->pid()));
  }
  report.write.reset();
  pid_t tracked = -1, untracked = -1, guard = -1;
  std::istringstream(read_line(report.read.get())) >> tracked >> untracked >> guard;
  ASSERT_GT(tracked, 0) << "fake daemon failed";
  UniqueFd tracked_fd = open_pidfd(tracked);
  UniqueFd untracked_fd = open_pidfd(untracked);
  UniqueFd guard_fd = open_pidfd(guard);

  ASSERT_EQ(kill(daemon, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(daemon, &status, 0), daemon);
  EXPECT_EQ(wait_exit(tracked_fd.get()), kKilled);
  EXPECT_EQ(wait_exit(guard_fd.get()), kExit0);
  // The guard is gone, so whatever it was going to kill is dead by now.
  EXPECT_TRUE(still_running(untracked_fd.get()));
  ASSERT_TRUE(send_signal(untracked_fd.get(), SIGKILL).is_ok());
  EXPECT_EQ(wait_exit(untracked_fd.get()), kKilled);
}

TEST(OrphanGuard, CleanShutdownKillsNothing) {
  auto guard = OrphanGuard::start();
  ASSERT_TRUE(guard.is_ok()) << guard.status().to_string();
  SpawnRequest req = request({"/bin/sleep", "1000"});
  auto child = spawn(req);
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  ASSERT_TRUE(guard->track(child->pid).is_ok());
  const Status s = guard->shutdown_clean(std::chrono::milliseconds(kFailureTimeoutMs));
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  // shutdown_clean returned after reaping the guard: it can no longer kill anything.
  EXPECT_TRUE(still_running(child->pidfd.get()));
  EXPECT_EQ(guard->track(child->pid).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(guard->shutdown_clean().code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(send_signal(child->pidfd.get(), SIGKILL).is_ok());
  EXPECT_EQ(wait_exit(child->pidfd.get()), kKilled);
}

// Dropping the object without a clean shutdown is the same as the daemon dying.
TEST(OrphanGuard, DestructionWithoutCleanShutdownKillsTrackedSessions) {
  auto child = spawn(request({"/bin/sleep", "1000"}));
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  UniqueFd guard_fd;
  {
    auto guard = OrphanGuard::start();
    ASSERT_TRUE(guard.is_ok()) << guard.status().to_string();
    guard_fd = UniqueFd(fcntl(guard->pidfd(), F_DUPFD_CLOEXEC, 3));
    ASSERT_TRUE(guard->track(child->pid).is_ok());
  }
  EXPECT_EQ(wait_exit(child->pidfd.get()), kKilled);
  // The guard exits after its scan; the destructor may or may not have reaped it already.
  ASSERT_TRUE(wait_readable(guard_fd.get()));
  auto reaped = try_reap(guard_fd.get());
  if (reaped.is_ok()) {
    ASSERT_TRUE(reaped->has_value());
    EXPECT_EQ(**reaped, kExit0);
  }
}

TEST(OrphanGuard, TrackValidationAndCapacity) {
  auto guard = OrphanGuard::start();
  ASSERT_TRUE(guard.is_ok()) << guard.status().to_string();
  EXPECT_EQ(guard->track(0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(guard->track(1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(guard->track(getsid(0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(guard->untrack(12345).code(), StatusCode::kNotFound);

  // Session ids above PID_MAX_LIMIT (4194304): no real process can ever have them, so a
  // failing test that leaves the guard to "kill" them harms nobody.
  constexpr pid_t kBase = (1 << 22) + 1;
  for (pid_t i = 0; i < static_cast<pid_t>(OrphanGuard::kMaxTrackedSessions); ++i) {
    const Status s = guard->track(kBase + i);
    ASSERT_TRUE(s.is_ok()) << "track #" << i << ": " << s.to_string();
  }
  EXPECT_TRUE(guard->track(kBase).is_ok());  // already tracked: no-op
  const Status over = guard->track(kBase + static_cast<pid_t>(OrphanGuard::kMaxTrackedSessions));
  EXPECT_EQ(over.code(), StatusCode::kOutOfRange) << over.to_string();
  EXPECT_EQ(guard->tracked_sessions().size(), OrphanGuard::kMaxTrackedSessions);
  ASSERT_TRUE(guard->untrack(kBase).is_ok());
  EXPECT_TRUE(guard->track(kBase + static_cast<pid_t>(OrphanGuard::kMaxTrackedSessions)).is_ok());
  EXPECT_TRUE(guard->shutdown_clean(std::chrono::milliseconds(kFailureTimeoutMs)).is_ok());
}

// When the guard dies, writes fail with EPIPE: reported as kUnavailable, and the SIGPIPE
// that write() raises does not kill us (this process keeps SIGPIPE's default action).
TEST(OrphanGuard, DeadGuardIsReportedWithoutSigpipe) {
  struct sigaction dfl {}, old {};
  dfl.sa_handler = SIG_DFL;
  ASSERT_EQ(sigaction(SIGPIPE, &dfl, &old), 0);
  auto guard = OrphanGuard::start();
  ASSERT_TRUE(guard.is_ok()) << guard.status().to_string();
  ASSERT_TRUE(send_signal(guard->pidfd(), SIGKILL).is_ok());
  ASSERT_TRUE(wait_readable(guard->pidfd()));  // exited, so its pipe end is closed
  const Status s = guard->track((1 << 22) + 7);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.to_string();
  sigset_t pending;
  sigpending(&pending);
  EXPECT_FALSE(sigismember(&pending, SIGPIPE));
  sigaction(SIGPIPE, &old, nullptr);
}

TEST(OrphanGuard, MovedFromObjectIsInert) {
  auto guard = OrphanGuard::start();
  ASSERT_TRUE(guard.is_ok()) << guard.status().to_string();
  const pid_t pid = guard->pid();
  OrphanGuard moved = std::move(*guard);
  EXPECT_EQ(moved.pid(), pid);
  EXPECT_EQ(guard->pid(), -1);
  EXPECT_EQ(guard->track((1 << 22) + 1).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(moved.shutdown_clean(std::chrono::milliseconds(kFailureTimeoutMs)).is_ok());
}

}  // namespace
}  // namespace agentry::supervisor
