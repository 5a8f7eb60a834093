// Starting, signalling and reaping supervised processes.
//
// spawn() is the only place where agentryd creates a process that will run a program.
// It uses clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD), the same technique as glibc's
// posix_spawn: the child borrows the daemon's address space until it calls execve, so
// the cost does not grow with the daemon's size, and the parent learns about every
// failure before exec (bad cwd, bad user, missing program) as a Status instead of
// as a mysterious exit code 127.
//
// Every child is referred to by a pidfd. Use the pidfd (poll it for POLLIN, reap it with
// try_reap, signal it with send_signal) instead of the numeric pid wherever possible:
// a pidfd cannot be confused with an unrelated process that reused the pid number.
//
// Rules for the process that calls spawn():
//  * Do not reap children with waitpid(-1) / wait() / a SIGCHLD handler that reaps
//    everything: reap each child through its own pidfd. spawn() itself reaps a child
//    that failed before exec, and an unrelated reaper racing it would take the zombie.
//  * The parent-death signal (SpawnRequest::parent_death_signal) fires when the *thread*
//    that called spawn() exits, not when the process does (a Linux rule). Call spawn()
//    only from a thread that lives as long as the daemon, such as its event-loop thread.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"

namespace agentry::supervisor {

// PATH used for a bare executable name when SpawnRequest::env has no PATH entry.
inline constexpr std::string_view kDefaultSearchPath = "/usr/local/bin:/usr/bin:/bin";

struct SpawnRequest {
  // The program. A name containing '/' is used as given (a relative one is relative to
  // `cwd` when that is set, since the child changes directory before exec). A bare name is
  // searched in PATH like execvp does: the PATH entry of `env` if there is one, otherwise
  // kDefaultSearchPath; an empty PATH element means the (new) working directory. Unlike
  // execvp, a file that is not a valid executable (ENOEXEC) is never handed to a shell.
  std::string executable;
  std::vector<std::string> argv;  // the full argv, argv[0] included; must not be empty
  std::vector<std::string> env;   // "KEY=VALUE" entries: exactly the child's environment
  std::string cwd;                // empty: keep the daemon's working directory

  // Credentials, applied in the order groups, gid, uid (setres[ug]id: real, effective
  // and saved ids all change, so the child cannot switch back). When uid or gid is set
  // and supplementary_groups is not, the supplementary groups are cleared rather than
  // inherited from the daemon (inheriting root's groups would be a privilege leak).
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  std::optional<std::vector<gid_t>> supplementary_groups;

  // Descriptors that become the child's fds 0, 1 and 2; -1 leaves that fd closed in the
  // child. Any fd number is fine, including 0..2 themselves (the child's copies never
  // have FD_CLOEXEC). Every other descriptor is closed in the child before exec.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;

  // Sent to the child when the thread that called spawn() exits (see the file comment).
  // 0: none. Set after the credentials change, because the kernel clears it on setuid.
  int parent_death_signal = SIGKILL;
  // setsid(): the child leads a new session and process group (pgid == sid == pid), so
  // signal_group(pid, ...) reaches everything it starts unless they leave the group.
  bool new_session = true;
};

struct SpawnedChild {
  pid_t pid = -1;
  UniqueFd pidfd;  // O_CLOEXEC; pollable (POLLIN once the child has exited)
};

// Starts the program described by `request`. Returns once the child has called execve
// successfully, or with an error naming the step that failed in the child, e.g.
//   "exec '/no/such': No such file or directory"   (code kNotFound)
//   "chdir '/srv/app': Permission denied"           (code kPermissionDenied)
//   "setuid 1234: Operation not permitted"
// A child that failed has already been reaped when the error is returned.
// Thread-safe: any number of threads may call spawn() at the same time.
Result<SpawnedChild> spawn(const SpawnRequest& request);

// The PATH value spawn() searches for `env`: the first "PATH=" entry, else the default.
std::string_view search_path(const std::vector<std::string>& env);

// The paths spawn() passes to execve, in order: `executable` alone when it contains a
// '/', otherwise <dir>/<executable> for each element of `path_env`.
std::vector<std::string> exec_candidates(std::string_view executable, std::string_view path_env);

// Looks `name` up the way spawn() would, but now and in the daemon's context (its cwd and
// credentials): the first candidate that is a regular file the daemon may execute.
// Meant for validating configuration and for messages; spawn() does not depend on it,
// because only the child's own execve gives the answer that counts.
Result<std::string> resolve_executable(std::string_view name, std::string_view path_env);

struct ExitStatus {
  bool signaled = false;     // killed by a signal rather than exiting
  int code = 0;              // the exit status (0..255) or the signal number
  bool core_dumped = false;  // only when signaled

  // "exited with status 3", "killed by signal 9 (SIGKILL)",
  // "killed by signal 11 (SIGSEGV), core dumped".
  std::string describe() const;
  bool operator==(const ExitStatus&) const = default;
};

// Sends `sig` to the process behind `pidfd` (pidfd_send_signal: immune to pid reuse).
// ESRCH (kNotFound) once the process has been reaped.
Status send_signal(int pidfd, int sig);

// Sends `sig` to every process in process group `pgid` (kill(-pgid, sig)).
// pgid must be > 1: kill(0) / kill(-1) would hit the daemon's own group / every process.
// A process group id stays bound to its group while any member exists, and while the
// leader is an unreaped zombie; signal a supervised group *before* reaping its leader,
// otherwise the number may already name somebody else's group.
Status signal_group(pid_t pgid, int sig);

// Non-blocking reap: std::nullopt while the child is still running, its ExitStatus once
// it has exited (the zombie is then gone). ECHILD (kInternal) if it was already reaped
// or is not a child of this process.
Result<std::optional<ExitStatus>> try_reap(int pidfd);

}  // namespace agentry::supervisor
