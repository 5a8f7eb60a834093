// spawn_floor: the floor for "spawn N sleepers" - a bare posix_spawn loop, no supervisor.
//
//   spawn_floor [--hold] N PROGRAM [ARGS...]
//
// Spawns PROGRAM N times in a serial posix_spawn() loop (stdin from /dev/null, stdout and
// stderr inherited). glibc's posix_spawn returns once the child has exec'd (it uses
// CLONE_VFORK), so the end of the loop is when all N run.
//
// Without --hold: times the loop, confirms through /proc that every child shows PROGRAM as
// argv[0], SIGKILLs and reaps them, and prints one JSON object.
// With --hold: after the loop, waits for SIGTERM or SIGINT, then SIGKILLs and reaps the
// children and prints the JSON. compare.py uses this form so that the floor is timed by
// `procwatch launch-wait` exactly like the supervisors (same /proc polling competing for
// the CPUs, same start-up of a fresh process).
// Build: g++ -O2 -std=c++20 spawn_floor.cc
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

std::string argv0_of(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return {};
  buf[n] = 0;
  return buf;  // up to the first NUL
}

}  // namespace

int main(int argc, char** argv) {
  bool hold = false;
  int first = 1;
  if (argc > 1 && std::strcmp(argv[1], "--hold") == 0) {
    hold = true;
    first = 2;
  }
  if (argc - first < 2) {
    std::fprintf(stderr, "usage: spawn_floor [--hold] N PROGRAM [ARGS...]\n");
    return 2;
  }
  const int n = std::atoi(argv[first]);
  const char* program = argv[first + 1];
  std::vector<char*> child_argv(argv + first + 1, argv + argc);
  child_argv.push_back(nullptr);

  // Block the stop signals before spawning: they are collected with sigwait below, and
  // posix_spawn gives the children the default mask back (POSIX_SPAWN_SETSIGMASK).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

  std::vector<pid_t> pids;
  pids.reserve(static_cast<size_t>(n));
  const int64_t t0 = now_ns();
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    int rc = posix_spawn(&pid, program, &fa, &attr, child_argv.data(), environ);
    if (rc != 0) {
      std::fprintf(stderr, "spawn_floor: posix_spawn: %s\n", std::strerror(rc));
      break;
    }
    pids.push_back(pid);
  }
  const int64_t t_loop = now_ns();
  // The same check procwatch applies: every child shows PROGRAM as argv[0].
  size_t running = 0;
  for (;;) {
    running = 0;
    for (pid_t p : pids) running += argv0_of(p) == program;
    if (running == pids.size() || now_ns() - t0 > 60'000'000'000LL) break;
  }
  const int64_t t_seen = now_ns();

  if (hold) {
    int sig = 0;
    sigwait(&stop_signals, &sig);
  }
  const int64_t t_kill = now_ns();
  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
  const int64_t t_reaped = now_ns();
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);

  const bool ok = running == static_cast<size_t>(n);
  std::printf(
      "{\"ok\": %s, \"n\": %zu, \"loop_ms\": %.3f, \"elapsed_ms\": %.3f, \"kill_reap_ms\": %.3f}\n",
      ok ? "true" : "false", pids.size(), (t_loop - t0) / 1e6, (t_seen - t0) / 1e6, (t_reaped - t_kill) / 1e6);
  return ok ? 0 : 1;
}
