#include "agentry/supervisor/orphan_guard.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "agentry/supervisor/spawn.h"

namespace agentry::supervisor {
namespace {

// ---------------------------------------------------------------------------------------
// Protocol: fixed 8-byte records. Writes of at most PIPE_BUF bytes to a pipe are atomic,
// so the guard always reads whole records.
// ---------------------------------------------------------------------------------------

enum : uint32_t { kOpTrack = 1, kOpUntrack = 2, kOpClean = 3 };

struct Record {
  uint32_t op;
  int32_t sid;
};
static_assert(sizeof(Record) == 8);

constexpr int kPipeSize = 1 << 20;
constexpr int kMaxScanRounds = 100;
constexpr long kRoundPauseNs = 5 * 1000 * 1000;  // between scans that still found processes
constexpr int kStartTimeoutMs = 10'000;
constexpr size_t kGuardStackSize = 64 * 1024;
constexpr int kKernelSignals = 64;
using KernelSigset = uint64_t;

// Open-addressing set of session ids, twice the capacity so probes stay short.
constexpr uint32_t kTableBits = 17;
constexpr uint32_t kTableSize = uint32_t{1} << kTableBits;
static_assert(kTableSize >= 2 * OrphanGuard::kMaxTrackedSessions);

// Everything the guard process uses, allocated by the daemon before the fork. The guard
// is forked from a possibly multi-threaded process, so it may not call malloc or take
// any lock that another daemon thread might have held at the time of the fork.
struct GuardMemory {
  int32_t table[kTableSize];  // 0 = empty slot; sids are > 1
  uint32_t count;
  unsigned char seen[kTableSize];  // per slot: a live member was found in this scan
  int32_t unseen[OrphanGuard::kMaxTrackedSessions];
  int commands_fd;
  int ready_fd;
  unsigned long default_action[4];  // zeroed kernel sigaction: SIG_DFL
  unsigned long ignore_action[4];   // handler SIG_IGN, the rest zero
  KernelSigset empty_mask;
  struct timespec round_pause;
  Record records[512];  // read buffer
  alignas(8) unsigned char dirents[32 * 1024];
  char stat[1024];
  char name[32];
};

// ---------------------------------------------------------------------------------------
// Guard process code. Runs in a fork of the daemon (clone without CLONE_VM): async-signal
// -safe system calls only, on memory from GuardMemory. Not instrumented by ASan/UBSan: it
// runs on a stack the sanitizer runtime does not know about.
// ---------------------------------------------------------------------------------------

#define AGENTRY_GUARD_CODE __attribute__((no_sanitize("address", "undefined")))

AGENTRY_GUARD_CODE uint32_t slot_of(int32_t sid) {
  return (static_cast<uint32_t>(sid) * 0x9E3779B1u) >> (32 - kTableBits);
}

// The slot holding sid, or -1.
AGENTRY_GUARD_CODE long set_find(const GuardMemory* m, int32_t sid) {
  if (sid <= 1) return -1;
  for (uint32_t i = slot_of(sid);; i = (i + 1) & (kTableSize - 1)) {
    if (m->table[i] == sid) return i;
    if (m->table[i] == 0) return -1;
  }
}

AGENTRY_GUARD_CODE void set_insert(GuardMemory* m, int32_t sid) {
  if (sid <= 1) return;
  uint32_t i = slot_of(sid);
  for (; m->table[i] != 0; i = (i + 1) & (kTableSize - 1)) {
    if (m->table[i] == sid) return;
  }
  if (m->count >= OrphanGuard::kMaxTrackedSessions) return;  // the daemon enforces this first
  m->table[i] = sid;
  ++m->count;
}

// Linear-probing erase with backward shift: no tombstones, so lookups never degrade.
AGENTRY_GUARD_CODE void set_erase(GuardMemory* m, int32_t sid) {
  if (sid <= 1) return;
  uint32_t i = slot_of(sid);
  for (; m->table[i] != sid; i = (i + 1) & (kTableSize - 1)) {
    if (m->table[i] == 0) return;
  }
  uint32_t hole = i;
  for (uint32_t j = (hole + 1) & (kTableSize - 1); m->table[j] != 0; j = (j + 1) & (kTableSize - 1)) {
    const uint32_t home = slot_of(m->table[j]);
    // The entry at j may move into the hole unless its home slot lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    m->table[hole] = m->table[j];
    hole = j;
  }
  m->table[hole] = 0;
  --m->count;
}

AGENTRY_GUARD_CODE void close_all_but(int a, int b) {
  const int lo = a < b ? a : b;
  const int hi = a < b ? b : a;
  long r = 0;
  if (lo > 0) r |= syscall(SYS_close_range, 0U, static_cast<unsigned>(lo - 1), 0U);
  if (hi > lo + 1) r |= syscall(SYS_close_range, static_cast<unsigned>(lo + 1), static_cast<unsigned>(hi - 1), 0U);
  r |= syscall(SYS_close_range, static_cast<unsigned>(hi + 1), ~0U, 0U);
  if (r != 0) {  // kernel < 5.9: close the low range by hand
    for (int fd = 0; fd < (1 << 16); ++fd) {
      if (fd != a && fd != b) syscall(SYS_close, fd);
    }
  }
}

// Parses a decimal at `p`, advancing it. Returns -1 if there is no digit.
AGENTRY_GUARD_CODE long parse_long(const char*& p, const char* end) {
  if (p >= end || *p < '0' || *p > '9') return -1;
  long v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
  return v;
}

// Reads /proc/<name>/stat and SIGKILLs the process if it is alive and in a tracked
// session. Returns 1 when it sent a signal. The signal goes through the /proc/<pid>
// directory fd, which pins that exact process: if it exited after the stat was read and
// the pid was reused, pidfd_send_signal fails with ESRCH instead of hitting a stranger.
AGENTRY_GUARD_CODE int kill_if_tracked(GuardMemory* m, int proc_fd, const char* name) {
  const int pid_fd = static_cast<int>(syscall(SYS_openat, proc_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (pid_fd < 0) return 0;  // already gone
  int killed = 0;
  const int stat_fd = static_cast<int>(syscall(SYS_openat, pid_fd, "stat", O_RDONLY | O_CLOEXEC));
  if (stat_fd >= 0) {
    const long n = syscall(SYS_read, stat_fd, m->stat, sizeof(m->stat));
    syscall(SYS_close, stat_fd);
    // "pid (comm) state ppid pgrp session ...": comm may hold spaces and ')', so the
    // fields are counted from the last ')'.
    long close_paren = -1;
    for (long i = n - 1; i >= 0; --i) {
      if (m->stat[i] == ')') {
        close_paren = i;
        break;
      }
    }
    if (close_paren >= 0 && close_paren + 3 < n) {
      const char* end = m->stat + n;
      const char* p = m->stat + close_paren + 2;
      const char state = *p++;
      long session = -1;
      for (int field = 0; field < 3 && p < end && *p == ' '; ++field) {  // ppid, pgrp, session
        ++p;
        session = parse_long(p, end);
        if (session < 0) break;
      }
      // Zombies and dead tasks are past killing and would make every scan "find" them.
      const bool alive = state != 'Z' && state != 'X' && state != 'x';
      const long slot = alive ? set_find(m, static_cast<int32_t>(session)) : -1;
      if (slot >= 0) {
        m->seen[slot] = 1;
        if (syscall(SYS_pidfd_send_signal, pid_fd, SIGKILL, nullptr, 0U) == 0) killed = 1;
      }
    }
  }
  syscall(SYS_close, pid_fd);
  return killed;
}

// One pass over /proc. Returns the number of processes signalled, or -1 if /proc is
// unreadable.
AGENTRY_GUARD_CODE long scan_proc(GuardMemory* m, long self) {
  const int proc_fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (proc_fd < 0) return -1;
  long signalled = 0;
  for (;;) {
    const long n = syscall(SYS_getdents64, proc_fd, m->dirents, sizeof(m->dirents));
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      const auto* d = reinterpret_cast<const struct dirent64*>(m->dirents + off);
      off += d->d_reclen;
      long pid = 0;
      int len = 0;
      for (; d->d_name[len] != '\0'; ++len) {
        const char ch = d->d_name[len];
        if (ch < '0' || ch > '9' || len >= 20) {
          pid = -1;
          break;
        }
        pid = pid * 10 + (ch - '0');
      }
      if (len == 0 || pid <= 1 || pid == self) continue;
      signalled += kill_if_tracked(m, proc_fd, d->d_name);
    }
  }
  syscall(SYS_close, proc_fd);
  return signalled;
}

// Drops every tracked session in which the last scan found no live process. Nothing can
// join a session that has no members, so such a session is over for good; forgetting it
// means that if its number comes back as somebody's new session (pid reuse) while we are
// still scanning, we leave that one alone.
AGENTRY_GUARD_CODE void forget_empty_sessions(GuardMemory* m) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < kTableSize; ++i) {
    if (m->table[i] != 0 && m->seen[i] == 0) m->unseen[n++] = m->table[i];
    m->seen[i] = 0;
  }
  for (uint32_t k = 0; k < n; ++k) set_erase(m, m->unseen[k]);
}

AGENTRY_GUARD_CODE void kill_tracked_sessions(GuardMemory* m) {
  if (m->count == 0) return;
  // The process group of each session leader first: cheap, and it covers the usual case.
  for (uint32_t i = 0; i < kTableSize; ++i) {
    if (m->table[i] > 1) syscall(SYS_kill, -m->table[i], SIGKILL);
  }
  // Then whatever else still carries a tracked session id (other process groups, children
  // forked by processes that had not been killed yet when a previous scan passed by).
  const long self = syscall(SYS_getpid);
  for (int round = 0; round < kMaxScanRounds && m->count > 0; ++round) {
    const long signalled = scan_proc(m, self);
    if (signalled <= 0) return;  // a full scan found nobody (or /proc is unreadable)
    forget_empty_sessions(m);
    syscall(SYS_nanosleep, &m->round_pause, nullptr);  // let the killed processes die
  }
}

// Reads records until end-of-file. Returns normally only on EOF or a read error.
AGENTRY_GUARD_CODE void serve_commands(GuardMemory* m) {
  unsigned char* buf = reinterpret_cast<unsigned char*>(m->records);
  const unsigned long capacity = sizeof(m->records);
  unsigned long have = 0;
  for (;;) {
    const long n = syscall(SYS_read, m->commands_fd, buf + have, capacity - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EOF (or a broken pipe fd, which we treat the same: kill)
    have += static_cast<unsigned long>(n);
    const unsigned long whole = have / sizeof(Record);
    for (unsigned long i = 0; i < whole; ++i) {
      const Record& r = m->records[i];
      switch (r.op) {
        case kOpTrack: set_insert(m, r.sid); break;
        case kOpUntrack: set_erase(m, r.sid); break;
        case kOpClean:
          for (;;) syscall(SYS_exit_group, 0);
        default: break;  // unknown record: ignore
      }
    }
    const unsigned long rest = have - whole * sizeof(Record);
    for (unsigned long k = 0; k < rest; ++k) buf[k] = buf[whole * sizeof(Record) + k];
    have = rest;
  }
}

AGENTRY_GUARD_CODE int guard_main(void* arg) {
  GuardMemory* m = static_cast<GuardMemory*>(arg);

  // Own session and process group: `kill -- -<daemon pgid>` and a terminal hangup of the
  // daemon's session do not reach the guard. A fresh child is never a group leader, so
  // setsid cannot fail; if it somehow does, exit without reporting ready.
  if (syscall(SYS_setsid) < 0) {
    for (;;) syscall(SYS_exit_group, 1);
  }

  // All signals were blocked by the daemon around the fork, so none of its handlers ran
  // here. Back to defaults, then ignore the ones an operator or a tty sends to "stop the
  // service": the guard must outlive the daemon precisely then.
  for (int sig = 1; sig <= kKernelSignals; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    syscall(SYS_rt_sigaction, sig, m->default_action, nullptr, sizeof(KernelSigset));
  }
  // A plain array: a range-for over an initializer_list would call library code here.
  static constexpr int kIgnored[4] = {SIGHUP, SIGINT, SIGTERM, SIGPIPE};
  for (int i = 0; i < 4; ++i) {
    syscall(SYS_rt_sigaction, kIgnored[i], m->ignore_action, nullptr, sizeof(KernelSigset));
  }
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &m->empty_mask, nullptr, sizeof(KernelSigset));

  syscall(SYS_prctl, PR_SET_NAME, "agentry-guard", 0UL, 0UL, 0UL);
  // A forked child never inherits a parent-death signal; keep it that way explicitly.
  syscall(SYS_prctl, PR_SET_PDEATHSIG, 0UL, 0UL, 0UL, 0UL);
  syscall(SYS_chdir, "/");  // do not keep the daemon's working directory busy

  // Keep only the read end of the command pipe (and, until just below, the ready pipe).
  // In particular the guard must not hold the write end, or it would never see EOF.
  close_all_but(m->commands_fd, m->ready_fd);
  const char ready = 'R';
  syscall(SYS_write, m->ready_fd, &ready, 1UL);
  syscall(SYS_close, m->ready_fd);

  serve_commands(m);
  kill_tracked_sessions(m);
  for (;;) syscall(SYS_exit_group, 0);
}

// ---------------------------------------------------------------------------------------
// Daemon side.
// ---------------------------------------------------------------------------------------

class Mapping {
 public:
  explicit Mapping(size_t size) : size_(size) {
    addr_ = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  ~Mapping() {
    if (ok()) munmap(addr_, size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  bool ok() const { return addr_ != MAP_FAILED; }
  void* addr() const { return addr_; }
  size_t size() const { return size_; }

 private:
  size_t size_;
  void* addr_;
};

// Same as in spawn.cc: every signal blocked in this thread, glibc's internal ones too, so
// no daemon signal handler can run in the fresh guard before it resets its dispositions.
class AllSignalsBlocked {
 public:
  AllSignalsBlocked() {
    const KernelSigset all = ~KernelSigset{0};
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &saved_, sizeof(KernelSigset));
  }
  ~AllSignalsBlocked() { syscall(SYS_rt_sigprocmask, SIG_SETMASK, &saved_, nullptr, sizeof(KernelSigset)); }
  AllSignalsBlocked(const AllSignalsBlocked&) = delete;
  AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

 private:
  KernelSigset saved_ = 0;
};

constexpr idtype_t kIdPidfd = static_cast<idtype_t>(3);  // P_PIDFD

// Blocking reap of our own child through its pidfd.
std::optional<ExitStatus> reap(int pidfd) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  int r;
  do {
    r = waitid(kIdPidfd, static_cast<id_t>(pidfd), &info, WEXITED);
  } while (r < 0 && errno == EINTR);
  if (r < 0 || info.si_pid == 0) return std::nullopt;
  ExitStatus st;
  st.signaled = info.si_code != CLD_EXITED;
  st.core_dumped = info.si_code == CLD_DUMPED;
  st.code = info.si_status;
  return st;
}

// Waits up to timeout_ms for `fd` to become readable; false on timeout.
bool wait_readable(int fd, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, left.count() > 0 ? static_cast<int>(left.count()) : 0);
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

}  // namespace

Result<OrphanGuard> OrphanGuard::start() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::from_errno(errno, "orphan guard: pipe2");
  UniqueFd commands_read(fds[0]);
  UniqueFd commands_write(fds[1]);
  // Best effort: a bigger pipe absorbs bursts while the guard is not scheduled. Failure
  // (unprivileged and over /proc/sys/fs/pipe-max-size) leaves the default 64 KiB.
  (void)fcntl(commands_write.get(), F_SETPIPE_SZ, kPipeSize);
  const int flags = fcntl(commands_write.get(), F_GETFL);
  if (flags < 0 || fcntl(commands_write.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::from_errno(errno, "orphan guard: making the pipe non-blocking");
  }
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::from_errno(errno, "orphan guard: pipe2");
  UniqueFd ready_read(fds[0]);
  UniqueFd ready_write(fds[1]);

  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  Mapping memory(sizeof(GuardMemory));
  Mapping stack(page + kGuardStackSize);
  if (!memory.ok() || !stack.ok()) return Status::from_errno(errno, "orphan guard: mmap");
  if (mprotect(stack.addr(), page, PROT_NONE) != 0) return Status::from_errno(errno, "orphan guard: mprotect");

  // Fresh anonymous memory is zero: empty table, SIG_DFL action, empty mask.
  auto* m = static_cast<GuardMemory*>(memory.addr());
  m->commands_fd = commands_read.get();
  m->ready_fd = ready_write.get();
  m->ignore_action[0] = reinterpret_cast<unsigned long>(SIG_IGN);
  m->round_pause.tv_sec = 0;
  m->round_pause.tv_nsec = kRoundPauseNs;

  int pidfd = -1;
  pid_t pid;
  int clone_errno = 0;
  {
    AllSignalsBlocked blocked;
    // No CLONE_VM: the guard gets its own copy of the address space, as with fork(). It
    // runs on its copy of `stack` and uses its copy of `memory`; ours are unmapped below.
    pid = clone(&guard_main, static_cast<char*>(stack.addr()) + stack.size(), CLONE_PIDFD | SIGCHLD, m, &pidfd);
    if (pid < 0) clone_errno = errno;
  }
  if (pid < 0) return Status::from_errno(clone_errno, "orphan guard: clone");
  UniqueFd guard_pidfd(pidfd);
  commands_read.reset();
  ready_write.reset();

  // Wait for the guard to report that it is set up, or to die trying.
  bool ready = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kStartTimeoutMs);
  for (;;) {
    pollfd p[2] = {{ready_read.get(), POLLIN, 0}, {guard_pidfd.get(), POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    const int r = poll(p, 2, left.count() > 0 ? static_cast<int>(left.count()) : 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;  // timeout or poll failure
    if (p[0].revents != 0) {
      char byte = 0;
      ssize_t n;
      do {
        n = read(ready_read.get(), &byte, 1);
      } while (n < 0 && errno == EINTR);
      ready = n == 1 && byte == 'R';
      break;
    }
    if (p[1].revents != 0) break;  // exited before becoming ready
  }
  if (!ready) {
    (void)send_signal(guard_pidfd.get(), SIGKILL);
    const std::optional<ExitStatus> st = reap(guard_pidfd.get());
    return internal_error("orphan guard (pid " + std::to_string(pid) + ") did not start" +
                          (st ? ": " + st->describe() : std::string()));
  }
  return OrphanGuard(pid, std::move(guard_pidfd), std::move(commands_write));
}

OrphanGuard::OrphanGuard(pid_t pid, UniqueFd pidfd, UniqueFd commands) noexcept
    : pid_(pid), pidfd_(std::move(pidfd)), commands_(std::move(commands)) {}

OrphanGuard::OrphanGuard(OrphanGuard&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      commands_(std::move(other.commands_)),
      reaped_(std::exchange(other.reaped_, false)),
      tracked_(std::move(other.tracked_)) {
  other.tracked_.clear();
}

OrphanGuard& OrphanGuard::operator=(OrphanGuard&& other) noexcept {
  if (this != &other) {
    close_and_forget();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    commands_ = std::move(other.commands_);
    reaped_ = std::exchange(other.reaped_, false);
    tracked_ = std::move(other.tracked_);
    other.tracked_.clear();
  }
  return *this;
}

OrphanGuard::~OrphanGuard() { close_and_forget(); }

void OrphanGuard::close_and_forget() noexcept {
  commands_.reset();  // EOF: the guard kills every tracked session and exits
  if (pidfd_ && !reaped_) {
    siginfo_t info;
    std::memset(&info, 0, sizeof info);
    while (waitid(kIdPidfd, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG) < 0 && errno == EINTR) {
    }
  }
  pidfd_.reset();
  reaped_ = false;
  pid_ = -1;
}

std::vector<pid_t> OrphanGuard::tracked_sessions() const { return {tracked_.begin(), tracked_.end()}; }

Status OrphanGuard::send(uint32_t op, pid_t sid, int wait_ms) {
  if (!commands_) return failed_precondition("orphan guard: already shut down");
  const Record record{op, sid};

  // If the guard is gone, write() raises SIGPIPE, whose default action would kill the
  // daemon. Block it in this thread for the write and consume the one the write raised:
  // sigtimedwait takes the thread-directed signal first, which is the one write() sent.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigset_t saved;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &saved);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  ssize_t n;
  int err = 0;
  for (;;) {
    n = write(commands_.get(), &record, sizeof record);
    err = n < 0 ? errno : 0;
    if (err == EINTR) continue;
    if (err != EAGAIN) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{commands_.get(), POLLOUT, 0};
    (void)poll(&p, 1, static_cast<int>(left.count()));
  }
  if (err == EPIPE) {
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);

  if (n == static_cast<ssize_t>(sizeof record)) return Status::ok();
  const std::string who = "orphan guard (pid " + std::to_string(pid_) + ")";
  if (n >= 0) return internal_error(who + ": short write on the command pipe");
  if (err == EAGAIN) return resource_exhausted(who + " is not reading its command pipe, which is full");
  if (err == EPIPE) return unavailable(who + " has exited; start a new guard and track the sessions again");
  return Status::from_errno(err, "writing to " + who);
}

Status OrphanGuard::track(pid_t sid) {
  if (sid <= 1) return invalid_argument("orphan guard: cannot track session " + std::to_string(sid));
  if (sid == getsid(0)) return invalid_argument("orphan guard: refusing to track the supervisor's own session");
  if (tracked_.contains(sid)) return Status::ok();
  if (tracked_.size() >= kMaxTrackedSessions) {
    return out_of_range("orphan guard: already tracking " + std::to_string(tracked_.size()) + " sessions (the limit)");
  }
  AGENTRY_RETURN_IF_ERROR(send(kOpTrack, sid, 0));
  tracked_.insert(sid);
  return Status::ok();
}

Status OrphanGuard::untrack(pid_t sid) {
  if (!tracked_.contains(sid)) return not_found("orphan guard: session " + std::to_string(sid) + " is not tracked");
  AGENTRY_RETURN_IF_ERROR(send(kOpUntrack, sid, 0));
  tracked_.erase(sid);
  return Status::ok();
}

Status OrphanGuard::shutdown_clean(std::chrono::milliseconds timeout) {
  if (!commands_) return failed_precondition("orphan guard: already shut down");
  const int timeout_ms = static_cast<int>(std::min<int64_t>(timeout.count(), 1 << 30));
  // Shutting down may wait: the clean record must get in, or the guard would take the
  // coming EOF as "the daemon died" and kill everything still tracked.
  Status sent = send(kOpClean, 0, timeout_ms);
  commands_.reset();
  tracked_.clear();
  if (!sent.is_ok() && sent.code() != StatusCode::kUnavailable) {
    // The guard is alive but stuck, and it would kill everything once it reads the EOF
    // we just caused. A clean exit wants no killing: stop the guard itself.
    (void)send_signal(pidfd_.get(), SIGKILL);
    (void)reap(pidfd_.get());
    reaped_ = true;
    return sent;
  }
  if (!wait_readable(pidfd_.get(), timeout_ms)) {
    return deadline_exceeded("orphan guard (pid " + std::to_string(pid_) + ") did not exit after a clean shutdown");
  }
  const std::optional<ExitStatus> st = reap(pidfd_.get());
  reaped_ = true;
  if (!sent.is_ok()) return sent;  // it had died on its own before the shutdown
  if (!st) return internal_error("orphan guard (pid " + std::to_string(pid_) + "): reaping failed");
  if (st->signaled || st->code != 0) {
    return internal_error("orphan guard (pid " + std::to_string(pid_) + ") " + st->describe());
  }
  return Status::ok();
}

}  // namespace agentry::supervisor
