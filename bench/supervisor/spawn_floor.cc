// spawn_floor: the floor for "spawn N sleepers": a bare posix_spawn loop, no supervisor.
//
//   spawn_floor N PROGRAM [ARGS...]
//
// Times N posix_spawn() calls of PROGRAM (stdin from /dev/null, stdout/stderr inherited),
// then checks through /proc that all N children show PROGRAM as argv[0] (exec'd), the same
// notion of "running" that procwatch applies to the supervisors. glibc's posix_spawn
// returns only after the child has exec'd (CLONE_VFORK), so the two times are nearly
// equal. Then SIGKILLs and reaps every child. Prints one JSON object.
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
  if (argc < 3) {
    std::fprintf(stderr, "usage: spawn_floor N PROGRAM [ARGS...]\n");
    return 2;
  }
  const int n = std::atoi(argv[1]);
  std::vector<char*> child_argv(argv + 2, argv + argc);
  child_argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);

  std::vector<pid_t> pids;
  pids.reserve(static_cast<size_t>(n));
  const int64_t t0 = now_ns();
  for (int i = 0; i < n; ++i) {
    pid_t pid;
    int rc = posix_spawn(&pid, argv[2], &fa, nullptr, child_argv.data(), environ);
    if (rc != 0) {
      std::fprintf(stderr, "spawn_floor: posix_spawn: %s\n", std::strerror(rc));
      break;
    }
    pids.push_back(pid);
  }
  const int64_t t_loop = now_ns();
  // Same check as procwatch: every child shows PROGRAM as argv[0].
  size_t running = 0;
  for (;;) {
    running = 0;
    for (pid_t p : pids) running += argv0_of(p) == argv[2];
    if (running == pids.size() || now_ns() - t0 > 60'000'000'000LL) break;
  }
  const int64_t t_seen = now_ns();

  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
  const int64_t t_reaped = now_ns();
  posix_spawn_file_actions_destroy(&fa);

  std::printf(
      "{\"ok\": %s, \"n\": %zu, \"loop_ms\": %.3f, \"elapsed_ms\": %.3f, \"kill_reap_ms\": %.3f}\n",
      running == static_cast<size_t>(n) ? "true" : "false", pids.size(), (t_loop - t0) / 1e6,
      (t_seen - t0) / 1e6, (t_reaped - t_seen) / 1e6);
  return running == static_cast<size_t>(n) ? 0 : 1;
}
