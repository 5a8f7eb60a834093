// OrphanGuard: makes sure no descendant of a supervised process outlives agentryd, even
// when agentryd is killed with SIGKILL and gets no chance to clean up.
//
// Every supervised child runs in its own session (spawn() with new_session) and has
// PDEATHSIG=SIGKILL, so when agentryd dies the kernel kills the children. Their own
// children are not covered by that: they would be reparented to init and live on. The
// guard is a small helper process, forked by the daemon, that waits on a pipe:
//
//   daemon --(pipe: track sid / untrack sid / clean shutdown)--> guard
//
// When the pipe reports end-of-file without a clean-shutdown record (the daemon died, or
// the daemon dropped the OrphanGuard object), the guard
//   1. sends SIGKILL to the process group of every tracked session (kill(-sid)), then
//   2. scans /proc and SIGKILLs every live process whose session id is tracked, again and
//      again until a scan finds none (at most 100 scans), and exits. Each kill goes through
//      a /proc/<pid> directory fd, so a pid reused between reading and killing is safe;
//      a session found empty is dropped, so its number coming back later is safe too.
// Processes that moved to another process group are found by the scan, as they keep their
// session. A process that starts a new session of its own (setsid) escapes; only a cgroup
// can hold on to those.
//
// The guard runs in its own session (a signal to the daemon's process group does not reach
// it), ignores SIGINT, SIGTERM, SIGHUP and SIGPIPE, is named "agentry-guard", holds only
// the read end of the pipe, and has no parent-death signal: it must outlive the daemon.
//
// Guard restarts: if the guard dies (pidfd() becomes readable), track() and untrack()
// fail with kUnavailable. Start a new guard, track every session of tracked_sessions()
// on it, then drop the old object. To replace a guard that is still alive, start and
// fill the new one first, then call shutdown_clean() on the old one.
//
// Memory: the guard starts as a copy-on-write image of the daemon and never touches most
// of it, but pages the daemon later modifies stay duplicated for the guard's lifetime.
// Start the guard early, while the daemon is small.
//
// Not thread-safe: use one OrphanGuard from one thread at a time (the supervisor's).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <unordered_set>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"

namespace agentry::supervisor {

class OrphanGuard {
 public:
  static constexpr size_t kMaxTrackedSessions = size_t{1} << 16;

  // Forks the guard and returns once it is set up (in its own session, with its signals,
  // name and file descriptors arranged). Call it from the thread that will keep using the
  // object; the calling thread is not otherwise special for the guard.
  static Result<OrphanGuard> start();

  OrphanGuard(OrphanGuard&& other) noexcept;
  OrphanGuard& operator=(OrphanGuard&& other) noexcept;
  OrphanGuard(const OrphanGuard&) = delete;
  OrphanGuard& operator=(const OrphanGuard&) = delete;

  // Destroying the object WITHOUT shutdown_clean() closes the pipe: the guard kills every
  // tracked session, then exits. This is the same thing that happens when the daemon dies,
  // so an error path that unwinds past the guard does not leave processes behind. The
  // destructor does not wait for the guard; it reaps it only if it has already exited.
  ~OrphanGuard();

  // A new supervised session (the sid of a child started with new_session, i.e. its pid).
  // Refuses sid <= 1 and the daemon's own session. Tracking a tracked sid is a no-op.
  // kOutOfRange beyond kMaxTrackedSessions; kResourceExhausted if the pipe is full (the
  // guard is not reading); kUnavailable if the guard has exited. Never blocks.
  Status track(pid_t sid);
  // The session is gone: its leader was reaped and its process group is empty. kNotFound
  // if sid is not tracked. Never blocks.
  Status untrack(pid_t sid);

  // The daemon is exiting normally after stopping everything itself: tells the guard to
  // exit without killing anything, then waits up to `timeout` for it to exit and reaps it.
  // After this call track()/untrack() fail with kFailedPrecondition.
  Status shutdown_clean(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  pid_t pid() const noexcept { return pid_; }
  // O_CLOEXEC pidfd of the guard; readable (POLLIN) once the guard has exited.
  int pidfd() const noexcept { return pidfd_.get(); }
  std::vector<pid_t> tracked_sessions() const;

 private:
  OrphanGuard(pid_t pid, UniqueFd pidfd, UniqueFd commands) noexcept;
  Status send(uint32_t op, pid_t sid, int wait_ms);
  void close_and_forget() noexcept;

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd commands_;  // write end of the pipe, O_CLOEXEC | O_NONBLOCK
  bool reaped_ = false;
  std::unordered_set<pid_t> tracked_;  // mirror of the guard's set, for limits and restarts
};

}  // namespace agentry::supervisor
