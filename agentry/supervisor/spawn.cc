#include "agentry/supervisor/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace agentry::supervisor {
namespace {

// ---------------------------------------------------------------------------------------
// Code that runs in the vfork-style child.
//
// Between clone() and execve() the child shares the daemon's memory, and the daemon's other
// threads keep running. Anything in the child that touches shared state (malloc, locks,
// errno in the parent thread's TLS, the dynamic linker's lazy binding, the sanitizer
// runtimes) could corrupt the daemon or deadlock. So the child code below:
//  * only reads a ChildContext prepared by the parent and writes its ChildReport;
//  * makes system calls with inline assembly: no PLT, no errno, no libc at all;
//  * is excluded from ASan/UBSan instrumentation. ASan would otherwise poison and
//    unpoison shadow memory for frames on a stack it does not know about, and call
//    __asan_handle_no_return before _exit with the parent thread's stack bounds.
// ---------------------------------------------------------------------------------------

#define AGENTRY_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))
#define AGENTRY_CHILD_INLINE AGENTRY_CHILD_CODE __attribute__((always_inline)) inline

// Kernel sigset_t: one bit per signal 1..64 on the architectures we build for.
using KernelSigset = uint64_t;
constexpr int kKernelSignals = 64;
static_assert(NSIG - 1 == kKernelSignals, "kernel sigset size assumption");

// Returns the raw kernel result: >= 0 on success, -errno on failure.
#if defined(__x86_64__)
AGENTRY_CHILD_INLINE long raw_syscall(long n, long a = 0, long b = 0, long c = 0, long d = 0) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
                   : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
AGENTRY_CHILD_INLINE long raw_syscall(long n, long a = 0, long b = 0, long c = 0, long d = 0) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory", "cc");
  return x0;
}
#else
#error "spawn.cc: add a raw system call sequence for this architecture"
#endif

template <typename T>
AGENTRY_CHILD_INLINE long as_arg(T* p) {
  return reinterpret_cast<long>(p);
}

// Which step failed in the child; the parent turns it into a message.
enum ChildStep : int {
  kStepNone = 0,
  kStepSignals,
  kStepSetsid,
  kStepSetgroups,
  kStepSetgid,
  kStepSetuid,
  kStepPdeathsig,
  kStepParentGone,
  kStepChdir,
  kStepStdio,
  kStepCloseFds,
  kStepExec,
};

// Written by the child only when it is about to _exit(127). The parent reads it after
// clone() returns: CLONE_VFORK keeps the parent thread suspended until the child has
// exec'd or exited, and the kernel's wake-up orders the child's stores before the read.
struct ChildReport {
  int step;   // ChildStep
  int error;  // errno
  int index;  // stdio target (0..2), candidate index, signal number; -1 = n/a
};

// Everything the child needs, prepared by the parent. Plain data only: the child must not
// call into C++ (not even vector::data(), which is a real call in an -O0 build).
struct ChildContext {
  const char* const* argv;
  const char* const* envp;
  const char* const* candidates;
  int candidate_count;
  const char* cwd;  // nullptr: keep
  int stdio[3];     // source fd for 0, 1, 2; -1: close
  bool set_groups;
  const gid_t* groups;
  long group_count;
  bool set_gid;
  gid_t gid;
  bool set_uid;
  uid_t uid;
  int pdeath_signal;
  bool new_session;
  pid_t parent_pid;
  // An all-zero kernel struct sigaction is {SIG_DFL, no flags, no restorer, empty mask},
  // whatever the architecture's field order; 4 words is at least its size.
  unsigned long default_action[4];
  KernelSigset empty_mask;
  ChildReport report;
};

[[noreturn]] AGENTRY_CHILD_INLINE void child_fail(ChildContext* c, int step, long result, int index) {
  c->report.error = static_cast<int>(-result);
  c->report.index = index;
  c->report.step = step;
  // exit_group only ends the child: it is its own thread group (no CLONE_THREAD).
  for (;;) raw_syscall(SYS_exit_group, 127);
}

AGENTRY_CHILD_INLINE bool search_continues(long r) {
  // execvp's rule: these mean "not in this directory", keep looking.
  return r == -ENOENT || r == -ENOTDIR || r == -ESTALE || r == -ENODEV || r == -ETIMEDOUT;
}

AGENTRY_CHILD_CODE int child_main(void* arg) {
  ChildContext* c = static_cast<ChildContext*>(arg);
  long r;

  // Signals. The parent blocked every signal before clone(), so none of the daemon's
  // handlers can run here (on the daemon's memory) before the dispositions are reset.
  // Everything goes back to SIG_DFL, ignored signals included: the program starts with
  // the defaults, whatever the daemon does with its own signals.
  for (int sig = 1; sig <= kKernelSignals; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    r = raw_syscall(SYS_rt_sigaction, sig, as_arg(c->default_action), 0, sizeof(KernelSigset));
    if (r < 0) child_fail(c, kStepSignals, r, sig);
  }
  r = raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, as_arg(&c->empty_mask), 0, sizeof(KernelSigset));
  if (r < 0) child_fail(c, kStepSignals, r, -1);

  if (c->new_session) {
    r = raw_syscall(SYS_setsid);
    if (r < 0) child_fail(c, kStepSetsid, r, -1);
  }

  // Credentials: groups first (needs privilege), then gid, then uid.
  if (c->set_groups) {
    r = raw_syscall(SYS_setgroups, c->group_count, as_arg(c->groups));
    if (r < 0) child_fail(c, kStepSetgroups, r, -1);
  }
  if (c->set_gid) {
    r = raw_syscall(SYS_setresgid, c->gid, c->gid, c->gid);
    if (r < 0) child_fail(c, kStepSetgid, r, -1);
  }
  if (c->set_uid) {
    r = raw_syscall(SYS_setresuid, c->uid, c->uid, c->uid);
    if (r < 0) child_fail(c, kStepSetuid, r, -1);
  }

  // Parent-death signal, after the credentials: the kernel resets it to 0 whenever the
  // effective or fs uid/gid changes (commit_creds), so setting it first would lose it.
  // If the daemon died before prctl() took effect, we have been reparented already and
  // no signal will come: notice that through getppid() and give up.
  if (c->pdeath_signal != 0) {
    r = raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, c->pdeath_signal);
    if (r < 0) child_fail(c, kStepPdeathsig, r, -1);
    if (raw_syscall(SYS_getppid) != c->parent_pid) child_fail(c, kStepParentGone, -ESRCH, -1);
  }

  // After the uid change, so a directory only the target user may enter works, and one
  // it may not enter fails here rather than at the program's first file access.
  if (c->cwd != nullptr) {
    r = raw_syscall(SYS_chdir, as_arg(c->cwd));
    if (r < 0) child_fail(c, kStepChdir, r, -1);
  }

  // Standard descriptors. A source that is itself 0, 1 or 2 could be overwritten by an
  // earlier dup onto that number, so move such sources above 2 first. This also gives the
  // right result for stdin_fd == 0: dup3 onto a different number always clears
  // FD_CLOEXEC, whereas dup2(0, 0) would keep it. The temporaries die in close_range.
  int src[3];
  for (int i = 0; i < 3; ++i) {
    src[i] = c->stdio[i];
    if (src[i] >= 0 && src[i] <= 2) {
      r = raw_syscall(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 3);
      if (r < 0) child_fail(c, kStepStdio, r, i);
      src[i] = static_cast<int>(r);
    }
  }
  for (int i = 0; i < 3; ++i) {
    const int s = src[i];
    if (s < 0) {
      raw_syscall(SYS_close, i);  // EBADF when it was not open: fine
    } else {
      r = raw_syscall(SYS_dup3, s, i, 0);
      if (r < 0) child_fail(c, kStepStdio, r, i);
    }
  }

  // Every other descriptor. Whatever the daemon's threads opened without O_CLOEXEC (or
  // opened in the instant before clone) ends here. Marking them close-on-exec is much
  // cheaper than closing them while the daemon waits (with 1000 children the daemon holds
  // ~3000 pipe ends); exec closes them all at once. Kernels before 5.11 lack the flag.
  constexpr unsigned kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC
  r = raw_syscall(SYS_close_range, 3, ~0U, kCloseRangeCloexec);
  if (r == -EINVAL) r = raw_syscall(SYS_close_range, 3, ~0U, 0);
  if (r == -ENOSYS) {  // kernel < 5.9: close up to the descriptor limit
    struct {
      uint64_t cur;
      uint64_t max;
    } limit = {0, 0};
    uint64_t end = 1 << 20;
    if (raw_syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, as_arg(&limit)) == 0 && limit.cur < end) {
      end = limit.cur;
    }
    for (uint64_t fd = 3; fd < end; ++fd) raw_syscall(SYS_close, static_cast<long>(fd));
  } else if (r < 0) {
    child_fail(c, kStepCloseFds, r, -1);
  }

  int first_eacces = -1;
  long last = -ENOENT;
  for (int i = 0; i < c->candidate_count; ++i) {
    r = raw_syscall(SYS_execve, as_arg(c->candidates[i]), as_arg(c->argv), as_arg(c->envp));
    last = r;
    if (r == -EACCES) {
      if (first_eacces < 0) first_eacces = i;
      continue;
    }
    if (search_continues(r)) continue;
    child_fail(c, kStepExec, r, i);
  }
  if (first_eacces >= 0) child_fail(c, kStepExec, -EACCES, first_eacces);
  child_fail(c, kStepExec, last, -1);  // -1: nothing found anywhere
}

// ---------------------------------------------------------------------------------------
// Parent side.
// ---------------------------------------------------------------------------------------

constexpr size_t kChildStackSize = 64 * 1024;

// The stack the vfork child runs on, one per calling thread. CLONE_VFORK keeps the calling
// thread suspended until the child has exec'd or exited, after which nothing uses the
// stack any more, so a thread can reuse its own stack for every spawn. Each thread has its
// own, so concurrent spawns never share one. A guard page below catches overflow.
class ChildStack {
 public:
  ChildStack() = default;
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  ~ChildStack() {
    if (base_ != nullptr) munmap(base_, total_);
  }

  Result<char*> top() {
    if (base_ == nullptr) {
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      const size_t total = page + kChildStackSize;
      void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
      if (base == MAP_FAILED) return Status::from_errno(errno, "mmap child stack");
      if (mprotect(base, page, PROT_NONE) != 0) {
        const int err = errno;
        munmap(base, total);
        return Status::from_errno(err, "mprotect child stack guard page");
      }
      base_ = base;
      total_ = total;
    }
    return static_cast<char*>(base_) + total_;  // stacks grow down on x86-64 and arm64
  }

 private:
  void* base_ = nullptr;
  size_t total_ = 0;
};

thread_local ChildStack t_child_stack;

// Blocks every signal, glibc's internal SIGCANCEL/SIGSETXID included, which
// pthread_sigmask() refuses to block. Raw system call for that reason; glibc's own
// posix_spawn does the same.
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

// glibc 2.36 has P_PIDFD in idtype_t; spell the kernel value so older headers work too.
constexpr idtype_t kIdPidfd = static_cast<idtype_t>(3);

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

ExitStatus exit_status_from(const siginfo_t& info) {
  ExitStatus st;
  switch (info.si_code) {
    case CLD_EXITED:
      st.code = info.si_status;
      break;
    case CLD_DUMPED:
      st.core_dumped = true;
      st.signaled = true;
      st.code = info.si_status;
      break;
    default:  // CLD_KILLED (we never ask for stop/continue events)
      st.signaled = true;
      st.code = info.si_status;
      break;
  }
  return st;
}

// Blocking reap of a child that is known to be exiting.
void reap_failed_child(int pidfd) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  while (waitid(kIdPidfd, static_cast<id_t>(pidfd), &info, WEXITED) < 0 && errno == EINTR) {
  }
}

const char* stdio_name(int index) {
  switch (index) {
    case 0: return "stdin";
    case 1: return "stdout";
    default: return "stderr";
  }
}

Status child_failure(const ChildReport& report, const SpawnRequest& req, const ChildContext& ctx,
                     const std::vector<std::string>& candidates, std::string_view path) {
  std::string what;
  switch (report.step) {
    case kStepSignals:
      what = "resetting signal ";
      what += report.index > 0 ? "disposition " + std::to_string(report.index) : "mask";
      break;
    case kStepSetsid: what = "setsid"; break;
    case kStepSetgroups:
      what = "setgroups (" + std::to_string(ctx.group_count) + " groups)";
      break;
    case kStepSetgid: what = "setgid " + std::to_string(ctx.gid); break;
    case kStepSetuid: what = "setuid " + std::to_string(ctx.uid); break;
    case kStepPdeathsig: what = "prctl(PR_SET_PDEATHSIG, " + std::to_string(ctx.pdeath_signal) + ")"; break;
    case kStepParentGone:
      return cancelled("spawn '" + req.executable + "': the supervisor exited while the child was starting");
    case kStepChdir: what = "chdir '" + req.cwd + "'"; break;
    case kStepStdio:
      what = "dup2 fd " + std::to_string(ctx.stdio[report.index]) + " onto " + stdio_name(report.index);
      break;
    case kStepCloseFds: what = "close_range"; break;
    case kStepExec:
      if (report.index >= 0 && static_cast<size_t>(report.index) < candidates.size()) {
        what = "exec '" + candidates[static_cast<size_t>(report.index)] + "'";
      } else if (req.executable.find('/') != std::string::npos) {
        what = "exec '" + req.executable + "'";
      } else {
        what = "exec '" + req.executable + "' (searched PATH '" + std::string(path) + "')";
      }
      break;
    default:
      return internal_error("spawn: child reported unknown step " + std::to_string(report.step));
  }
  return Status::from_errno(report.error, what);
}

Status validate(const SpawnRequest& req) {
  if (req.executable.empty()) return invalid_argument("spawn: executable is empty");
  if (has_nul(req.executable)) return invalid_argument("spawn: executable contains a NUL byte");
  if (req.argv.empty()) return invalid_argument("spawn '" + req.executable + "': argv is empty (it needs argv[0])");
  for (const auto& a : req.argv) {
    if (has_nul(a)) return invalid_argument("spawn '" + req.executable + "': an argument contains a NUL byte");
  }
  for (const auto& e : req.env) {
    if (has_nul(e)) return invalid_argument("spawn '" + req.executable + "': an environment entry contains a NUL byte");
    const size_t eq = e.find('=');
    if (eq == std::string::npos || eq == 0) {
      return invalid_argument("spawn '" + req.executable + "': environment entry '" + e + "' is not KEY=VALUE");
    }
  }
  if (has_nul(req.cwd)) return invalid_argument("spawn '" + req.executable + "': cwd contains a NUL byte");
  for (int fd : {req.stdin_fd, req.stdout_fd, req.stderr_fd}) {
    if (fd < -1) return invalid_argument("spawn '" + req.executable + "': bad stdio fd " + std::to_string(fd));
  }
  if (req.parent_death_signal < 0 || req.parent_death_signal > kKernelSignals) {
    return invalid_argument("spawn '" + req.executable + "': bad parent_death_signal " +
                            std::to_string(req.parent_death_signal));
  }
  return Status::ok();
}

}  // namespace

std::string_view search_path(const std::vector<std::string>& env) {
  for (const auto& entry : env) {
    if (entry.starts_with("PATH=")) return std::string_view(entry).substr(5);
  }
  return kDefaultSearchPath;
}

std::vector<std::string> exec_candidates(std::string_view executable, std::string_view path_env) {
  std::vector<std::string> out;
  if (executable.empty()) return out;
  if (executable.find('/') != std::string_view::npos) {
    out.emplace_back(executable);
    return out;
  }
  size_t start = 0;
  for (;;) {
    const size_t end = path_env.find(':', start);
    const std::string_view dir = path_env.substr(start, end == std::string_view::npos ? end : end - start);
    std::string candidate(dir.empty() ? std::string_view(".") : dir);
    if (candidate.back() != '/') candidate += '/';
    candidate += executable;
    out.push_back(std::move(candidate));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

Result<std::string> resolve_executable(std::string_view name, std::string_view path_env) {
  const std::vector<std::string> candidates = exec_candidates(name, path_env);
  if (candidates.empty()) return invalid_argument("executable name is empty");
  bool denied = false;
  std::string denied_path;
  int last_error = ENOENT;
  for (const auto& candidate : candidates) {
    struct stat st {};
    if (stat(candidate.c_str(), &st) != 0) {
      last_error = errno;
      continue;
    }
    if (S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0) return candidate;
    if (!denied) denied_path = candidate;
    denied = true;
  }
  if (denied) return Status::from_errno(EACCES, "'" + denied_path + "'");
  if (name.find('/') != std::string_view::npos) return Status::from_errno(last_error, "'" + std::string(name) + "'");
  return not_found("'" + std::string(name) + "' not found in PATH '" + std::string(path_env) + "'");
}

Result<SpawnedChild> spawn(const SpawnRequest& req) {
  AGENTRY_RETURN_IF_ERROR(validate(req));

  // Everything the child reads is built here, before clone().
  std::vector<const char*> argv;
  argv.reserve(req.argv.size() + 1);
  for (const auto& a : req.argv) argv.push_back(a.c_str());
  argv.push_back(nullptr);

  std::vector<const char*> envp;
  envp.reserve(req.env.size() + 1);
  for (const auto& e : req.env) envp.push_back(e.c_str());
  envp.push_back(nullptr);

  const std::string_view path = search_path(req.env);
  const std::vector<std::string> candidates = exec_candidates(req.executable, path);
  std::vector<const char*> candidate_ptrs;
  candidate_ptrs.reserve(candidates.size());
  for (const auto& c : candidates) candidate_ptrs.push_back(c.c_str());

  ChildContext ctx;
  std::memset(&ctx, 0, sizeof ctx);
  ctx.argv = argv.data();
  ctx.envp = envp.data();
  ctx.candidates = candidate_ptrs.data();
  ctx.candidate_count = static_cast<int>(candidate_ptrs.size());
  ctx.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  ctx.stdio[0] = req.stdin_fd;
  ctx.stdio[1] = req.stdout_fd;
  ctx.stdio[2] = req.stderr_fd;
  if (req.supplementary_groups) {
    ctx.set_groups = true;
    ctx.groups = req.supplementary_groups->data();
    ctx.group_count = static_cast<long>(req.supplementary_groups->size());
  } else if (req.uid || req.gid) {
    ctx.set_groups = true;  // clear the daemon's groups: setgroups(0, NULL)
  }
  if (req.gid) {
    ctx.set_gid = true;
    ctx.gid = *req.gid;
  }
  if (req.uid) {
    ctx.set_uid = true;
    ctx.uid = *req.uid;
  }
  ctx.pdeath_signal = req.parent_death_signal;
  ctx.new_session = req.new_session;
  ctx.parent_pid = getpid();
  ctx.report.step = kStepNone;
  ctx.report.index = -1;

  Result<char*> stack_top = t_child_stack.top();
  if (!stack_top) return stack_top.status();

  int pidfd = -1;
  pid_t pid;
  int clone_errno = 0;
  {
    AllSignalsBlocked blocked;
    pid = clone(&child_main, *stack_top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &ctx, &pidfd);
    if (pid < 0) clone_errno = errno;
  }
  if (pid < 0) return Status::from_errno(clone_errno, "spawn '" + req.executable + "': clone");

  UniqueFd owned_pidfd(pidfd);
  if (ctx.report.step != kStepNone) {
    reap_failed_child(owned_pidfd.get());
    return child_failure(ctx.report, req, ctx, candidates, path);
  }
  return SpawnedChild{pid, std::move(owned_pidfd)};
}

std::string ExitStatus::describe() const {
  if (!signaled) return "exited with status " + std::to_string(code);
  std::string s = "killed by signal " + std::to_string(code);
  if (const char* abbrev = sigabbrev_np(code); abbrev != nullptr) {
    s += " (SIG";
    s += abbrev;
    s += ")";
  } else if (code >= SIGRTMIN && code <= SIGRTMAX) {
    s += " (SIGRTMIN+" + std::to_string(code - SIGRTMIN) + ")";
  }
  if (core_dumped) s += ", core dumped";
  return s;
}

Status send_signal(int pidfd, int sig) {
  // Raw system call: glibc 2.36's <sys/pidfd.h> lacks extern "C" and cannot be used from C++.
  if (syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U) != 0) {
    return Status::from_errno(errno, "pidfd_send_signal(signal " + std::to_string(sig) + ")");
  }
  return Status::ok();
}

Status signal_group(pid_t pgid, int sig) {
  if (pgid <= 1) return invalid_argument("signal_group: refusing process group " + std::to_string(pgid));
  if (kill(-pgid, sig) != 0) {
    return Status::from_errno(errno, "kill(-" + std::to_string(pgid) + ", " + std::to_string(sig) + ")");
  }
  return Status::ok();
}

Result<std::optional<ExitStatus>> try_reap(int pidfd) {
  siginfo_t info;
  std::memset(&info, 0, sizeof info);  // si_pid stays 0 when nothing has exited yet
  int r;
  do {
    r = waitid(kIdPidfd, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Status::from_errno(errno, "waitid(P_PIDFD)");
  if (info.si_pid == 0) return std::optional<ExitStatus>{};
  return std::optional<ExitStatus>(exit_status_from(info));
}

}  // namespace agentry::supervisor
