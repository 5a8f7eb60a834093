#include "agentry/supervisor/spawn.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace agentry::supervisor {
namespace {

// Generous: only reached when something is broken. Nothing in these tests waits for time
// to pass; every wait is for an event (a pidfd or a pipe becoming readable).
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

// Everything until EOF.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    if (!wait_readable(fd)) {
      ADD_FAILURE() << "no EOF on fd " << fd << " within the failure timeout";
      return out;
    }
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// One line, without its '\n'.
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

// Waits for the process behind `pidfd` (our child) to exit and reaps it.
ExitStatus wait_exit(int pidfd) {
  if (!wait_readable(pidfd)) {
    ADD_FAILURE() << "child did not exit within the failure timeout";
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

SpawnRequest request(std::vector<std::string> argv) {
  SpawnRequest r;
  r.executable = argv.at(0);
  r.argv = std::move(argv);
  r.env = {"PATH=/usr/bin:/bin", "LC_ALL=C"};
  return r;
}

struct Outcome {
  ExitStatus status;
  std::string out;
  std::string err;
};

// Spawns with stdout and stderr on pipes, collects both, reaps.
Outcome run(SpawnRequest req) {
  Pipe out = make_pipe();
  Pipe err = make_pipe();
  req.stdout_fd = out.write.get();
  req.stderr_fd = err.write.get();
  auto child = spawn(req);
  if (!child.is_ok()) {
    ADD_FAILURE() << "spawn failed: " << child.status().to_string();
    return {};
  }
  out.write.reset();
  err.write.reset();
  Outcome r;
  r.out = read_all(out.read.get());
  r.err = read_all(err.read.get());
  r.status = wait_exit(child->pidfd.get());
  return r;
}

// Our children as the kernel lists them (zombies included), for "no zombie left" checks
// that do not depend on what other tests left behind.
std::set<pid_t> my_children() {
  std::set<pid_t> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(task.path() / "children");
    pid_t pid;
    while (in >> pid) out.insert(pid);
  }
  return out;
}

size_t count_open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/agentry-spawn-test-XXXXXX";
    const char* p = mkdtemp(tmpl);
    EXPECT_NE(p, nullptr) << std::strerror(errno);
    path_ = p != nullptr ? p : "/nonexistent";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string write_file(const std::string& name, const std::string& content, mode_t mode) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file) << content;
    EXPECT_EQ(chmod(file.c_str(), mode), 0);
    return file;
  }

 private:
  std::string path_;
};

// Orphans of our descendants are reparented to this process while it lives, so tests can
// reap (and check the exit status of) processes whose parent they killed.
class ScopedSubreaper {
 public:
  ScopedSubreaper() { EXPECT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1UL, 0UL, 0UL, 0UL), 0); }
  ~ScopedSubreaper() { prctl(PR_SET_CHILD_SUBREAPER, 0UL, 0UL, 0UL, 0UL); }
  ScopedSubreaper(const ScopedSubreaper&) = delete;
  ScopedSubreaper& operator=(const ScopedSubreaper&) = delete;
};

const ExitStatus kExit0{false, 0, false};

// --- exit statuses ----------------------------------------------------------------------

TEST(Spawn, TrueExitsZero) {
  auto child = spawn(request({"/bin/true"}));
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  EXPECT_GT(child->pid, 0);
  ASSERT_TRUE(child->pidfd.valid());
  EXPECT_EQ(fcntl(child->pidfd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  EXPECT_EQ(wait_exit(child->pidfd.get()), kExit0);
}

TEST(Spawn, ExitCodeIsReported) {
  const Outcome r = run(request({"/bin/sh", "-c", "exit 3"}));
  EXPECT_EQ(r.status, (ExitStatus{false, 3, false}));
  EXPECT_EQ(r.status.describe(), "exited with status 3");
}

TEST(Spawn, DeathBySignalIsReported) {
  const Outcome r = run(request({"/bin/sh", "-c", "kill -KILL $$"}));
  EXPECT_EQ(r.status, (ExitStatus{true, SIGKILL, false}));
  EXPECT_EQ(r.status.describe(), "killed by signal 9 (SIGKILL)");
}

TEST(Spawn, DescribeFormats) {
  EXPECT_EQ((ExitStatus{false, 0, false}).describe(), "exited with status 0");
  EXPECT_EQ((ExitStatus{true, SIGTERM, false}).describe(), "killed by signal 15 (SIGTERM)");
  EXPECT_EQ((ExitStatus{true, SIGSEGV, true}).describe(), "killed by signal 11 (SIGSEGV), core dumped");
  EXPECT_EQ((ExitStatus{true, SIGRTMIN + 2, false}).describe(),
            "killed by signal " + std::to_string(SIGRTMIN + 2) + " (SIGRTMIN+2)");
}

TEST(Spawn, TryReapReturnsNulloptWhileRunning) {
  Pipe in = make_pipe();
  SpawnRequest req = request({"/bin/sh", "-c", "read x"});
  req.stdin_fd = in.read.get();
  auto child = spawn(req);
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  auto early = try_reap(child->pidfd.get());
  ASSERT_TRUE(early.is_ok()) << early.status().to_string();
  EXPECT_FALSE(early->has_value());
  in.write.reset();  // EOF on its stdin: `read` fails and the shell exits 1
  EXPECT_EQ(wait_exit(child->pidfd.get()), (ExitStatus{false, 1, false}));
  auto again = try_reap(child->pidfd.get());
  EXPECT_FALSE(again.is_ok());  // already reaped: ECHILD
}

// --- stdio, argv, env, cwd ----------------------------------------------------------------

TEST(Spawn, StdoutAndStderrAreCapturedExactly) {
  const Outcome r = run(request({"/bin/sh", "-c", "printf 'out\\n\\001two'; printf 'err' >&2"}));
  EXPECT_EQ(r.status, kExit0);
  EXPECT_EQ(r.out, "out\n\001two");
  EXPECT_EQ(r.err, "err");
}

TEST(Spawn, StdinMinusOneLeavesFdZeroClosed) {
  const Outcome r = run(request({"/bin/sh", "-c", "if [ -e /proc/self/fd/0 ]; then echo open; else echo closed; fi"}));
  EXPECT_EQ(r.status, kExit0);
  EXPECT_EQ(r.out, "closed\n");
}

TEST(Spawn, StdinFromPipe) {
  Pipe in = make_pipe();
  ASSERT_EQ(write(in.write.get(), "hello\n", 6), 6);
  in.write.reset();
  SpawnRequest req = request({"/bin/sh", "-c", "read x; echo \"got $x\""});
  req.stdin_fd = in.read.get();
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0);
  EXPECT_EQ(r.out, "got hello\n");
}

// Source fds that are themselves 0..2 (swapped stdout/stderr, stdin from fd 0 marked
// FD_CLOEXEC) must come out right. Done in a forked helper so that this test process's
// own fds 0..2 stay untouched.
TEST(Spawn, StdioSourcesMayBeFdsZeroToTwo) {
  Pipe a = make_pipe();
  Pipe b = make_pipe();
  Pipe in = make_pipe();
  ASSERT_EQ(write(in.write.get(), "line\n", 5), 5);
  in.write.reset();
  const pid_t helper = fork();
  ASSERT_GE(helper, 0);
  if (helper == 0) {
    if (dup2(in.read.get(), 0) != 0 || fcntl(0, F_SETFD, FD_CLOEXEC) != 0) _exit(10);
    if (dup2(a.write.get(), 1) != 1 || dup2(b.write.get(), 2) != 2) _exit(11);
    SpawnRequest req = request({"/bin/sh", "-c", "read x; echo \"out:$x\"; echo \"err:$x\" >&2"});
    req.stdin_fd = 0;
    req.stdout_fd = 2;  // swapped on purpose
    req.stderr_fd = 1;
    auto child = spawn(req);
    if (!child.is_ok()) _exit(12);
    pollfd p{child->pidfd.get(), POLLIN, 0};
    if (poll(&p, 1, kFailureTimeoutMs) != 1) _exit(13);
    auto st = try_reap(child->pidfd.get());
    _exit(st.is_ok() && st->has_value() && **st == kExit0 ? 0 : 14);
  }
  a.write.reset();
  b.write.reset();
  EXPECT_EQ(read_all(a.read.get()), "err:line\n");  // helper's fd 1 = child's stderr
  EXPECT_EQ(read_all(b.read.get()), "out:line\n");
  int status = 0;
  ASSERT_EQ(waitpid(helper, &status, 0), helper);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "helper status " << status;
}

TEST(Spawn, ArgvIsPassedExactly) {
  // The shell prints its own argv (argv[0] included) from /proc, NULs shown as '|'.
  const std::string script = "tr '\\0' '|' < /proc/$$/cmdline; echo";
  SpawnRequest req = request({"custom-name", "-c", script, "arg one", ""});
  req.executable = "/bin/sh";
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0) << r.err;
  EXPECT_EQ(r.out, "custom-name|-c|" + script + "|arg one||\n");
}

TEST(Spawn, EnvironmentIsExactlyWhatWasPassed) {
  SpawnRequest req = request({"/usr/bin/env"});
  req.env = {"A=1", "B=two words", "EMPTY="};
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0);
  EXPECT_EQ(r.out, "A=1\nB=two words\nEMPTY=\n");

  req.env.clear();
  const Outcome empty = run(req);
  EXPECT_EQ(empty.status, kExit0);
  EXPECT_EQ(empty.out, "");
}

TEST(Spawn, WorkingDirectory) {
  TempDir dir;
  SpawnRequest req = request({"/bin/pwd", "-P"});
  req.cwd = dir.path();
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0);
  EXPECT_EQ(r.out, std::filesystem::canonical(dir.path()).string() + "\n");
}

// --- PATH search and exec failures ----------------------------------------------------------

TEST(Spawn, ExecCandidates) {
  // Empty elements (in the middle, or trailing) mean the working directory, as in execvp.
  EXPECT_EQ(exec_candidates("sh", "/a:/b/::/c:"),
            (std::vector<std::string>{"/a/sh", "/b/sh", "./sh", "/c/sh", "./sh"}));
  EXPECT_EQ(exec_candidates("./x", "/a:/b"), (std::vector<std::string>{"./x"}));
  EXPECT_EQ(exec_candidates("bin/x", "/a"), (std::vector<std::string>{"bin/x"}));
  EXPECT_TRUE(exec_candidates("", "/a").empty());
  EXPECT_EQ(search_path({"A=1", "PATH=/x:/y", "PATH=/z"}), "/x:/y");
  EXPECT_EQ(search_path({"A=1"}), kDefaultSearchPath);
}

TEST(Spawn, ResolveExecutable) {
  auto sh = resolve_executable("sh", "/nonexistent-agentry:/bin");
  ASSERT_TRUE(sh.is_ok()) << sh.status().to_string();
  EXPECT_EQ(*sh, "/bin/sh");
  auto missing = resolve_executable("agentry-no-such-program", "/usr/bin:/bin");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "'agentry-no-such-program' not found in PATH '/usr/bin:/bin'");
}

TEST(Spawn, PathSearchUsesPathFromEnv) {
  SpawnRequest req = request({"sh", "-c", "echo found"});
  req.env = {"PATH=/nonexistent-agentry-dir:/usr/bin:/bin"};
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0);
  EXPECT_EQ(r.out, "found\n");
}

TEST(Spawn, PathSearchUsesDefaultWithoutPathInEnv) {
  SpawnRequest req = request({"true"});
  req.env.clear();
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0);
}

TEST(Spawn, PathSearchSkipsNonExecutableAndReportsEacces) {
  TempDir dir;
  dir.write_file("true", "not a program\n", 0644);
  dir.write_file("agentry-noexec", "not a program\n", 0644);

  // Like execvp: EACCES in one directory does not stop the search...
  SpawnRequest req = request({"true"});
  req.env = {"PATH=" + dir.path() + ":/usr/bin:/bin"};
  EXPECT_EQ(run(req).status, kExit0);

  // ...but is what gets reported when nothing else is found.
  SpawnRequest denied = request({"agentry-noexec"});
  denied.env = {"PATH=" + dir.path() + ":/usr/bin:/bin"};
  const std::set<pid_t> before = my_children();
  auto child = spawn(denied);
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(child.status().message(), "exec '" + dir.path() + "/agentry-noexec': Permission denied");
  EXPECT_EQ(my_children(), before);
}

TEST(Spawn, PathSearchNotFound) {
  SpawnRequest req = request({"agentry-no-such-program"});
  const std::set<pid_t> before = my_children();
  auto child = spawn(req);
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(child.status().message(),
            "exec 'agentry-no-such-program' (searched PATH '/usr/bin:/bin'): No such file or directory");
  EXPECT_EQ(my_children(), before);
}

TEST(Spawn, ExecFailureOfMissingPathIsAnErrorAndLeavesNoZombie) {
  const std::set<pid_t> before = my_children();
  auto child = spawn(request({"/no/such"}));
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(child.status().message(), "exec '/no/such': No such file or directory");
  EXPECT_EQ(my_children(), before);
}

TEST(Spawn, NoShellFallbackForNonBinaries) {
  TempDir dir;
  const std::string script = dir.write_file("script", "echo hi\n", 0755);  // no #! line
  auto child = spawn(request({script}));
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().message(), "exec '" + script + "': Exec format error");
}

TEST(Spawn, ChdirFailureIsAnError) {
  const std::set<pid_t> before = my_children();
  SpawnRequest req = request({"/bin/true"});
  req.cwd = "/nonexistent-agentry-dir";
  auto child = spawn(req);
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(child.status().message(), "chdir '/nonexistent-agentry-dir': No such file or directory");
  EXPECT_EQ(my_children(), before);
}

TEST(Spawn, StdioFailureIsAnError) {
  SpawnRequest req = request({"/bin/true"});
  req.stdout_fd = 987654;  // not open
  auto child = spawn(req);
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().message(), "dup2 fd 987654 onto stdout: Bad file descriptor");
}

TEST(Spawn, SetgroupsFailureIsAnError) {
  SpawnRequest req = request({"/bin/true"});
  req.supplementary_groups = std::vector<gid_t>(65537, 100);  // over NGROUPS_MAX
  auto child = spawn(req);
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().message(), "setgroups (65537 groups): Invalid argument");
}

TEST(Spawn, InvalidRequestsAreRejectedBeforeForking) {
  SpawnRequest empty_argv = request({"/bin/true"});
  empty_argv.argv.clear();
  EXPECT_EQ(spawn(empty_argv).status().code(), StatusCode::kInvalidArgument);

  SpawnRequest no_exe = request({"/bin/true"});
  no_exe.executable.clear();
  EXPECT_EQ(spawn(no_exe).status().code(), StatusCode::kInvalidArgument);

  SpawnRequest nul = request({"/bin/true"});
  nul.argv.push_back(std::string("a\0b", 3));
  EXPECT_EQ(spawn(nul).status().code(), StatusCode::kInvalidArgument);

  SpawnRequest bad_env = request({"/bin/true"});
  bad_env.env = {"NOEQUALS"};
  EXPECT_EQ(spawn(bad_env).status().code(), StatusCode::kInvalidArgument);

  SpawnRequest bad_fd = request({"/bin/true"});
  bad_fd.stdout_fd = -2;
  EXPECT_EQ(spawn(bad_fd).status().code(), StatusCode::kInvalidArgument);
}

// --- credentials ------------------------------------------------------------------------------

TEST(Spawn, SwitchesToNobody) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  SpawnRequest req = request({"/bin/sh", "-c", "id -u; id -g; id -G; grep -E '^(Uid|Gid):' /proc/self/status"});
  req.uid = 65534;
  req.gid = 65534;
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0) << r.err;
  // Real, effective, saved and fs ids all switched; root's groups are not inherited.
  EXPECT_EQ(r.out, "65534\n65534\n65534\nUid:\t65534\t65534\t65534\t65534\nGid:\t65534\t65534\t65534\t65534\n");

  req.supplementary_groups = std::vector<gid_t>{100};
  req.argv = {"/bin/sh", "-c", "id -G"};
  const Outcome g = run(req);
  EXPECT_EQ(g.status, kExit0) << g.err;
  EXPECT_EQ(g.out, "65534 100\n");
}

// chdir happens after the uid switch, so it is checked against the target user.
TEST(Spawn, ChdirIsCheckedAsTheTargetUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0700), 0);
  SpawnRequest req = request({"/bin/true"});
  req.uid = 65534;
  req.gid = 65534;
  req.cwd = dir.path();
  auto child = spawn(req);
  ASSERT_FALSE(child.is_ok());
  EXPECT_EQ(child.status().message(), "chdir '" + dir.path() + "': Permission denied");
}

// --- descriptors, sessions, signals -------------------------------------------------------------

TEST(Spawn, NoDescriptorLeaksIntoTheChild) {
  UniqueFd leaky(open("/dev/null", O_RDONLY));  // deliberately without O_CLOEXEC
  ASSERT_TRUE(leaky.valid());
  UniqueFd high(fcntl(leaky.get(), F_DUPFD, 100));  // F_DUPFD: no FD_CLOEXEC either
  ASSERT_TRUE(high.valid());
  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnRequest req = request({"/bin/ls", "/proc/self/fd"});
  req.stdin_fd = devnull.get();
  const Outcome r = run(req);
  EXPECT_EQ(r.status, kExit0) << r.err;
  EXPECT_EQ(r.out, "0\n1\n2\n3\n");  // 3 is ls's own directory handle
}

TEST(Spawn, NewSessionMakesTheChildSessionAndGroupLeader) {
  Pipe in = make_pipe();
  SpawnRequest req = request({"/bin/sh", "-c", "read x"});
  req.stdin_fd = in.read.get();
  auto child = spawn(req);
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  EXPECT_EQ(getsid(child->pid), child->pid);
  EXPECT_EQ(getpgid(child->pid), child->pid);
  in.write.reset();
  wait_exit(child->pidfd.get());
}

TEST(Spawn, WithoutNewSessionTheChildStaysInOurs) {
  Pipe in = make_pipe();
  SpawnRequest req = request({"/bin/sh", "-c", "read x"});
  req.stdin_fd = in.read.get();
  req.new_session = false;
  auto child = spawn(req);
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  EXPECT_EQ(getsid(child->pid), getsid(0));
  EXPECT_EQ(getpgid(child->pid), getpgrp());
  in.write.reset();
  wait_exit(child->pidfd.get());
}

TEST(Spawn, ChildStartsWithDefaultDispositionsAndEmptyMask) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction handle {};
  handle.sa_handler = [](int) {};
  struct sigaction old_term {}, old_hup {}, old_usr1 {};
  ASSERT_EQ(sigaction(SIGTERM, &ignore, &old_term), 0);
  ASSERT_EQ(sigaction(SIGHUP, &ignore, &old_hup), 0);
  ASSERT_EQ(sigaction(SIGUSR1, &handle, &old_usr1), 0);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  sigaddset(&block, SIGINT);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old_mask), 0);

  const Outcome r = run(request({"/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}));

  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGHUP, &old_hup, nullptr);
  sigaction(SIGUSR1, &old_usr1, nullptr);

  EXPECT_EQ(r.status, kExit0) << r.err;
  EXPECT_EQ(r.out, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST(Spawn, SendSignalThroughPidfd) {
  auto child = spawn(request({"/bin/sleep", "1000"}));
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  ASSERT_TRUE(send_signal(child->pidfd.get(), SIGTERM).is_ok());
  const ExitStatus st = wait_exit(child->pidfd.get());
  EXPECT_EQ(st.describe(), "killed by signal 15 (SIGTERM)");
  // Reaped: the pidfd now refers to a process that no longer exists.
  EXPECT_EQ(send_signal(child->pidfd.get(), SIGTERM).code(), StatusCode::kNotFound);
}

TEST(Spawn, SignalGroupReachesTheWholeGroup) {
  Pipe out = make_pipe();
  SpawnRequest req = request({"/bin/sh", "-c", "sleep 1000 & echo $!; wait"});
  req.stdout_fd = out.write.get();
  auto child = spawn(req);
  ASSERT_TRUE(child.is_ok()) << child.status().to_string();
  out.write.reset();
  const pid_t grandchild = std::stoi(read_line(out.read.get()));
  UniqueFd grandchild_fd(open_pidfd_raw(grandchild, 0));  // alive: its parent is waiting for it
  ASSERT_TRUE(grandchild_fd.valid()) << std::strerror(errno);
  EXPECT_EQ(getpgid(grandchild), child->pid);

  ASSERT_TRUE(signal_group(child->pid, SIGKILL).is_ok());
  EXPECT_EQ(wait_exit(child->pidfd.get()), (ExitStatus{true, SIGKILL, false}));
  EXPECT_TRUE(wait_readable(grandchild_fd.get()));  // exited too

  EXPECT_EQ(signal_group(1, SIGKILL).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(signal_group(0, SIGKILL).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(signal_group(-5, SIGKILL).code(), StatusCode::kInvalidArgument);
}

// --- parent death --------------------------------------------------------------------------------

// A forked "daemon" spawns `sleep`, reports its pid and waits; the test SIGKILLs the daemon
// and expects the kernel to SIGKILL the sleep.
void expect_parent_death_kills_child(bool switch_user) {
  ScopedSubreaper subreaper;
  Pipe report = make_pipe();
  const pid_t daemon = fork();
  ASSERT_GE(daemon, 0);
  if (daemon == 0) {
    SpawnRequest req = request({"/bin/sleep", "1000"});
    if (switch_user) {
      req.uid = 65534;
      req.gid = 65534;
    }
    auto child = spawn(req);
    const std::string line = (child.is_ok() ? std::to_string(child->pid) : "-1") + "\n";
    if (write(report.write.get(), line.data(), line.size()) < 0) _exit(1);
    for (;;) pause();
  }
  report.write.reset();
  const pid_t child = std::stoi(read_line(report.read.get()));
  ASSERT_GT(child, 0);
  UniqueFd child_fd(open_pidfd_raw(child, 0));
  ASSERT_TRUE(child_fd.valid()) << std::strerror(errno);

  ASSERT_EQ(kill(daemon, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(daemon, &status, 0), daemon);
  // The daemon is reaped, so the child has been handed to us (the subreaper).
  EXPECT_EQ(wait_exit(child_fd.get()), (ExitStatus{true, SIGKILL, false}));
}

TEST(Spawn, ParentDeathSignalKillsChild) { expect_parent_death_kills_child(false); }

// The kernel clears the parent-death signal on a uid change; spawn() sets it afterwards.
TEST(Spawn, ParentDeathSignalSurvivesTheUidSwitch) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  expect_parent_death_kills_child(true);
}

// --- concurrency -----------------------------------------------------------------------------------

TEST(Spawn, ConcurrentSpawnsFromTwoThreads) {
  const size_t fds_before = count_open_fds();
  std::atomic<int> failures{0};
  auto worker = [&failures] {
    for (int i = 0; i < 200; ++i) {
      Pipe out = make_pipe();
      SpawnRequest req = request({"/bin/sh", "-c", "echo $$"});
      req.stdout_fd = out.write.get();
      auto child = spawn(req);
      if (!child.is_ok()) {
        ++failures;
        continue;
      }
      out.write.reset();
      const std::string said = read_all(out.read.get());
      if (said != std::to_string(child->pid) + "\n") ++failures;
      pollfd p{child->pidfd.get(), POLLIN, 0};
      if (poll(&p, 1, kFailureTimeoutMs) != 1) {
        ++failures;
        continue;
      }
      auto st = try_reap(child->pidfd.get());
      if (!st.is_ok() || !st->has_value() || **st != kExit0) ++failures;
    }
  };
  std::thread a(worker);
  std::thread b(worker);
  a.join();
  b.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(count_open_fds(), fds_before);
}

}  // namespace
}  // namespace agentry::supervisor
