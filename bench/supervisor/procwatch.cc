// procwatch: the /proc observer behind bench/supervisor/compare.py.
//
// Every number the comparison reports about processes (spawned, restarted, gone) is taken
// by this one program, in the same way for agentryd, supervisord and PM2, so that no
// supervisor is timed through its own reporting. Build: g++ -O2 -std=c++20 procwatch.cc
//
// A process "runs" once /proc/PID/cmdline shows the benchmark's program as argv[0]: the
// fork has happened and so has the exec (before the exec a forked child still shows its
// parent's command line). A process is "gone" once it has terminated (zombie or reaped),
// which is what a pidfd reports.
//
// Subcommands (all print one JSON object on stdout; times are in the units their keys name):
//   launch-wait --exe PATH --count N --timeout S [--log FILE] [--cli] [--poll-us US]
//               [--during-at K --during "ARGV..."] -- CMD ARGS...
//       Forks CMD in a new session (stdout/stderr to FILE), then polls /proc every US
//       microseconds (default 2000) until N processes run PATH. Without --cli, CMD is the daemon and is left running (the
//       caller owns it); with --cli, CMD is a launcher that is waited for after the count
//       is reached (not timed). With --during, the space-separated command is run once K
//       processes run, and its wall time is reported along with how many processes ran
//       when it was sent and when it returned.
//   wait-gone --signal SIG|none [--run "ARGV..."] --pid P [--pid P2 ...] --exe PATH --timeout S
//       Sends SIG to the first --pid (or runs the space-separated stop command, e.g.
//       `pm2 kill`), then waits until every --pid and every process that ran PATH when the
//       command started has terminated.
//   restart --pid P --kills K --gap-ms G --timeout S
//       K times: SIGKILL P, then poll /proc for a new process with P's exact command line;
//       that one is P for the next round.
//   wait-file --path F --bytes N --timeout S [--idle-ms MS]
//       Polls the size of F until it holds N bytes; prints the CLOCK_REALTIME time of that.
//       Gives up (ok: false, with the time of the last growth) once F has stopped growing
//       for MS ms (default 10000) short of N bytes.
//   timecmd --repeat K -- CMD ARGS...
//       Runs CMD K times one after the other, stdout to /dev/null; wall time of each run.
//   count --exe PATH
//       Number of processes running PATH now.
//   reap --token T -- CMD ARGS...
//       Becomes a child subreaper, runs CMD, reaps every orphan reparented to it, and when
//       CMD exits, SIGKILLs every process whose environment still holds
//       AGENTRY_BENCH_TOKEN=T (a last safety net; compare.py cleans up on its own first).
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

int64_t now_ns(clockid_t clk = CLOCK_MONOTONIC) {
  timespec ts{};
  clock_gettime(clk, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void sleep_us(long us) {
  timespec ts{us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, nullptr);
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "procwatch: %s\n", msg.c_str());
  std::exit(2);
}

// Reads a small /proc file whole; empty when it is gone.
std::string read_file(const char* path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

std::string cmdline_of(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  return read_file(path);
}

std::string argv0_of(pid_t pid) {
  std::string c = cmdline_of(pid);
  auto nul = c.find('\0');
  if (nul != std::string::npos) c.resize(nul);
  return c;
}

// Live (not zombie) according to /proc/PID/stat.
bool alive(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  std::string s = read_file(path);
  if (s.empty()) return false;
  auto rp = s.rfind(')');
  if (rp == std::string::npos || rp + 2 >= s.size()) return false;
  char st = s[rp + 2];
  return st != 'Z' && st != 'X';
}

// The pids /proc lists now (thread-group leaders only).
void list_pids(std::vector<pid_t>& out) {
  out.clear();
  DIR* d = opendir("/proc");
  if (!d) die("cannot open /proc");
  while (dirent* e = readdir(d)) {
    const char* n = e->d_name;
    if (*n < '0' || *n > '9') continue;
    out.push_back(static_cast<pid_t>(std::atoi(n)));
  }
  closedir(d);
}

// Counts processes whose argv[0] is `exe`, reading each pid's command line only while it
// could still change: a pid that matched stays matched (a sleeper does not exec again), a
// pid that existed before the watcher started is taken as it was, and a new pid that does
// not match yet (forked, not yet exec'd) is read again on the next scan.
class ExeCounter {
 public:
  explicit ExeCounter(std::string exe) : exe_(std::move(exe)) {
    std::vector<pid_t> pids;
    list_pids(pids);
    for (pid_t p : pids) {
      if (argv0_of(p) == exe_) state_[p] = kMatch;
      else state_[p] = kOld;
    }
  }
  int scan() {
    list_pids(pids_);
    int n = 0;
    for (pid_t p : pids_) {
      auto [it, inserted] = state_.try_emplace(p, kPending);
      if (it->second == kPending) {
        if (argv0_of(p) == exe_) it->second = kMatch;
      }
      if (it->second == kMatch) ++n;
    }
    return n;
  }
  std::vector<pid_t> matched_live() {
    std::vector<pid_t> out;
    list_pids(pids_);
    for (pid_t p : pids_) {
      auto it = state_.find(p);
      if (it != state_.end() && it->second == kMatch && alive(p)) out.push_back(p);
    }
    return out;
  }

 private:
  enum State { kOld, kPending, kMatch };
  std::string exe_;
  std::unordered_map<pid_t, State> state_;
  std::vector<pid_t> pids_;
};

std::vector<std::string> split_ws(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

pid_t spawn(const std::vector<std::string>& argv, const char* out_path, bool new_session) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) die("fork failed");
  if (pid == 0) {
    if (new_session) setsid();
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0) dup2(in, 0);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  return pid;
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

struct Args {
  std::unordered_map<std::string, std::vector<std::string>> opt;
  std::vector<std::string> rest;  // after "--"
  std::string get(const std::string& k, const std::string& def = "") const {
    auto it = opt.find(k);
    return it == opt.end() || it->second.empty() ? def : it->second.back();
  }
  bool has(const std::string& k) const { return opt.count(k) != 0; }
};

Args parse(int argc, char** argv, const std::unordered_set<std::string>& flags) {
  Args a;
  for (int i = 0; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--") {
      for (++i; i < argc; ++i) a.rest.emplace_back(argv[i]);
      break;
    }
    if (s.rfind("--", 0) != 0) die("unexpected argument " + s);
    if (flags.count(s)) {
      a.opt[s].push_back("1");
      continue;
    }
    if (i + 1 >= argc) die("missing value for " + s);
    a.opt[s].push_back(argv[++i]);
  }
  return a;
}

int cmd_launch_wait(const Args& a) {
  const std::string exe = a.get("--exe");
  const int count = std::atoi(a.get("--count", "0").c_str());
  const double timeout = std::atof(a.get("--timeout", "600").c_str());
  const std::string log = a.get("--log", "/dev/null");
  const bool cli = a.has("--cli");
  const int during_at = std::atoi(a.get("--during-at", "0").c_str());
  const auto during = split_ws(a.get("--during"));
  const long poll_us = std::atol(a.get("--poll-us", "2000").c_str());
  if (exe.empty() || count <= 0 || a.rest.empty()) die("launch-wait needs --exe, --count and a command");

  ExeCounter counter(exe);
  const int64_t t0 = now_ns();
  const pid_t child = spawn(a.rest, log.c_str(), true);
  bool child_exited = false;
  int child_status = 0;
  pid_t during_pid = -1;
  int64_t during_sent = 0, during_done = 0;
  int during_count_sent = 0, during_count_done = -1, during_status = -1;
  int n = 0;
  int64_t t_all = 0, t_first = 0;
  const int64_t deadline = t0 + static_cast<int64_t>(timeout * 1e9);
  for (;;) {
    n = counter.scan();
    const int64_t t = now_ns();
    if (!child_exited) {
      int st;
      if (waitpid(child, &st, WNOHANG) == child) {
        child_exited = true;
        child_status = st;
      }
    }
    if (!during.empty() && during_pid < 0 && n >= during_at) {
      during_count_sent = n;
      during_sent = now_ns();
      during_pid = spawn(during, "/dev/null", false);
    }
    if (during_pid > 0 && during_done == 0) {
      int st;
      if (waitpid(during_pid, &st, WNOHANG) == during_pid) {
        during_done = now_ns();
        during_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        during_count_done = counter.scan();
      }
    }
    if (n >= 1 && t_first == 0) t_first = t;
    if (n >= count && t_all == 0) t_all = t;
    if (t_all != 0 && (during.empty() || during_done != 0)) break;
    if (t > deadline) break;
    if (child_exited && !cli) break;  // the daemon died
    sleep_us(poll_us);
  }
  if (cli && !child_exited) {
    // The launcher (e.g. `pm2 start`) may still be printing; wait, untimed.
    const int64_t cli_deadline = now_ns() + static_cast<int64_t>(timeout * 1e9);
    while (now_ns() < cli_deadline) {
      int st;
      if (waitpid(child, &st, WNOHANG) == child) {
        child_exited = true;
        child_status = st;
        break;
      }
      sleep_us(5000);
    }
  }
  std::printf(
      "{\"ok\": %s, \"elapsed_ms\": %.3f, \"first_ms\": %.3f, \"count\": %d, \"launcher_pid\": %d, "
      "\"launcher_exited\": %s, \"launcher_status\": %d",
      t_all ? "true" : "false", t_all ? (t_all - t0) / 1e6 : -1.0, t_first ? (t_first - t0) / 1e6 : -1.0, n, child,
      child_exited ? "true" : "false",
      child_exited ? (WIFEXITED(child_status) ? WEXITSTATUS(child_status) : 128 + WTERMSIG(child_status)) : -1);
  if (!during.empty()) {
    std::printf(
        ", \"during_ms\": %.3f, \"during_status\": %d, \"during_count_sent\": %d, "
        "\"during_count_done\": %d, \"during_sent_ms\": %.3f, \"during_done_ms\": %.3f",
        during_done ? (during_done - during_sent) / 1e6 : -1.0, during_status, during_count_sent,
        during_count_done, during_sent ? (during_sent - t0) / 1e6 : -1.0,
        during_done ? (during_done - t0) / 1e6 : -1.0);
  }
  std::printf("}\n");
  return t_all ? 0 : 1;
}

int cmd_wait_gone(const Args& a) {
  const std::string sig = a.get("--signal", "TERM");
  const std::string exe = a.get("--exe");
  const double timeout = std::atof(a.get("--timeout", "120").c_str());
  std::vector<pid_t> daemons;
  if (a.opt.count("--pid"))
    for (auto& p : a.opt.at("--pid")) daemons.push_back(std::atoi(p.c_str()));
  if (daemons.empty()) die("wait-gone needs --pid");
  int signo = 0;
  if (sig == "TERM") signo = SIGTERM;
  else if (sig == "INT") signo = SIGINT;
  else if (sig == "KILL") signo = SIGKILL;
  else if (sig != "none") die("unknown signal " + sig);

  std::vector<pid_t> watch = daemons;
  size_t children = 0;
  if (!exe.empty()) {
    ExeCounter c(exe);
    auto m = c.matched_live();
    children = m.size();
    watch.insert(watch.end(), m.begin(), m.end());
  }
  std::vector<pollfd> fds;
  for (pid_t p : watch) {
    int fd = pidfd_open(p);
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    // ESRCH: already gone.
  }
  const auto run = split_ws(a.get("--run"));
  const int64_t t0 = now_ns();
  pid_t run_pid = -1;
  if (!run.empty()) run_pid = spawn(run, a.get("--run-log", "/dev/null").c_str(), false);
  if (signo != 0 && kill(daemons[0], signo) != 0) die("kill failed: " + std::string(strerror(errno)));
  const int64_t deadline = t0 + static_cast<int64_t>(timeout * 1e9);
  size_t left = fds.size();
  int64_t t_daemon = 0;
  const size_t n_daemon_fds = std::min(fds.size(), daemons.size());
  while (left > 0) {
    const int64_t now = now_ns();
    if (now > deadline) break;
    int r = poll(fds.data(), fds.size(), static_cast<int>(std::min<int64_t>((deadline - now) / 1000000 + 1, 1000)));
    if (r < 0 && errno != EINTR) die("poll failed");
    const int64_t t = now_ns();
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --left;
        if (i < n_daemon_fds) {
          bool all = true;
          for (size_t j = 0; j < n_daemon_fds; ++j) all = all && fds[j].fd < 0;
          if (all && t_daemon == 0) t_daemon = t;
        }
      }
    }
  }
  const int64_t t1 = now_ns();
  if (run_pid > 0) waitpid(run_pid, nullptr, 0);  // the stop command itself, not timed
  std::printf(
      "{\"ok\": %s, \"elapsed_ms\": %.3f, \"daemon_gone_ms\": %.3f, \"children\": %zu, \"left\": %zu}\n",
      left == 0 ? "true" : "false", left == 0 ? (t1 - t0) / 1e6 : -1.0,
      t_daemon ? (t_daemon - t0) / 1e6 : -1.0, children, left);
  return left == 0 ? 0 : 1;
}

int cmd_restart(const Args& a) {
  pid_t pid = std::atoi(a.get("--pid", "0").c_str());
  const int kills = std::atoi(a.get("--kills", "10").c_str());
  const int gap_ms = std::atoi(a.get("--gap-ms", "200").c_str());
  const double timeout = std::atof(a.get("--timeout", "10").c_str());
  const std::string target = cmdline_of(pid);
  if (target.empty()) die("no such process");
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  std::vector<double> lat;
  std::vector<pid_t> pids;
  std::unordered_set<pid_t> before;
  std::unordered_set<pid_t> nonmatch_final;
  for (int k = 0; k < kills; ++k) {
    list_pids(pids);
    before.clear();
    before.insert(pids.begin(), pids.end());
    const int64_t t0 = now_ns();
    if (kill(pid, SIGKILL) != 0) die("kill failed");
    const int64_t deadline = t0 + static_cast<int64_t>(timeout * 1e9);
    pid_t found = 0;
    while (!found && now_ns() < deadline) {
      list_pids(pids);
      for (pid_t p : pids) {
        if (before.count(p)) continue;
        if (cmdline_of(p) == target) {
          found = p;
          break;
        }
      }
      if (!found) sleep_us(50);
    }
    const int64_t t1 = now_ns();
    if (!found) {
      std::printf("{\"ok\": false, \"latencies_ms\": [], \"error\": \"no new process after kill %d\"}\n", k);
      return 1;
    }
    lat.push_back((t1 - t0) / 1e6);
    pid = found;
    sleep_us(static_cast<long>(gap_ms) * 1000);
  }
  std::printf("{\"ok\": true, \"pid\": %d, \"latencies_ms\": [", pid);
  for (size_t i = 0; i < lat.size(); ++i) std::printf("%s%.4f", i ? ", " : "", lat[i]);
  std::printf("]}\n");
  return 0;
}

int cmd_wait_file(const Args& a) {
  const std::string path = a.get("--path");
  const long long bytes = std::atoll(a.get("--bytes", "0").c_str());
  const double timeout = std::atof(a.get("--timeout", "120").c_str());
  const int64_t idle_ns = std::atoll(a.get("--idle-ms", "10000").c_str()) * 1000000LL;
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  const int64_t deadline = now_ns() + static_cast<int64_t>(timeout * 1e9);
  struct stat st{};
  long long size = -1;
  int64_t last_growth = 0, last_growth_rt = 0;
  while (now_ns() < deadline) {
    if (stat(path.c_str(), &st) == 0) {
      if (st.st_size != size) {
        size = st.st_size;
        last_growth = now_ns();
        last_growth_rt = now_ns(CLOCK_REALTIME);
      }
      if (size >= bytes) {
        std::printf("{\"ok\": true, \"done_realtime_ns\": %lld, \"size\": %lld}\n",
                    static_cast<long long>(last_growth_rt), size);
        return 0;
      }
      // Some bytes arrived, then nothing for a long while: the rest is not coming.
      if (size > 0 && now_ns() - last_growth > idle_ns) break;
    }
    sleep_us(200);
  }
  std::printf("{\"ok\": false, \"done_realtime_ns\": %lld, \"size\": %lld}\n",
              static_cast<long long>(last_growth_rt), size);
  return 1;
}

int cmd_timecmd(const Args& a) {
  const int repeat = std::atoi(a.get("--repeat", "5").c_str());
  if (a.rest.empty()) die("timecmd needs a command");
  std::printf("{\"ms\": [");
  int worst = 0;
  for (int i = 0; i < repeat; ++i) {
    const int64_t t0 = now_ns();
    pid_t p = spawn(a.rest, "/dev/null", false);
    int st = 0;
    waitpid(p, &st, 0);
    const int64_t t1 = now_ns();
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    worst = std::max(worst, code);
    std::printf("%s%.3f", i ? ", " : "", (t1 - t0) / 1e6);
  }
  std::printf("], \"max_status\": %d}\n", worst);
  return 0;
}

int cmd_count(const Args& a) {
  ExeCounter c(a.get("--exe"));
  std::printf("{\"count\": %zu}\n", c.matched_live().size());
  return 0;
}

// Kills every process (other than this one and its ancestors) started with the token.
int sweep(const std::string& token) {
  const std::string needle = "AGENTRY_BENCH_TOKEN=" + token;
  std::unordered_set<pid_t> skip;
  for (pid_t p = getpid(); p > 1;) {
    skip.insert(p);
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", p);
    std::string s = read_file(path);
    auto rp = s.rfind(')');
    if (rp == std::string::npos) break;
    p = std::atoi(s.c_str() + rp + 4);  // ") S PPID"
  }
  int killed = 0;
  std::vector<pid_t> pids;
  for (int round = 0; round < 20; ++round) {
    list_pids(pids);
    int this_round = 0;
    for (pid_t p : pids) {
      if (skip.count(p) || !alive(p)) continue;
      char path[64];
      std::snprintf(path, sizeof path, "/proc/%d/environ", p);
      std::string env = read_file(path);
      size_t pos = 0;
      bool hit = false;
      while (pos < env.size()) {
        size_t end = env.find('\0', pos);
        if (end == std::string::npos) end = env.size();
        if (env.compare(pos, end - pos, needle) == 0) {
          hit = true;
          break;
        }
        pos = end + 1;
      }
      if (hit && kill(p, SIGKILL) == 0) {
        ++this_round;
        std::string cmd = cmdline_of(p);
        std::replace(cmd.begin(), cmd.end(), '\0', ' ');
        std::fprintf(stderr, "procwatch sweep: killed %d: %s\n", p, cmd.c_str());
      }
    }
    killed += this_round;
    if (this_round == 0) break;
    sleep_us(50000);
  }
  return killed;
}

int cmd_reap(const Args& a) {
  const std::string token = a.get("--token");
  if (token.empty() || a.rest.empty()) die("reap needs --token and a command");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) die("PR_SET_CHILD_SUBREAPER failed");
  // Ctrl-C reaches the whole foreground group; the command handles it, we outlive it.
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  std::vector<char*> cargv;
  for (auto& s : a.rest) cargv.push_back(const_cast<char*>(s.c_str()));
  cargv.push_back(nullptr);
  pid_t main_pid = fork();
  if (main_pid < 0) die("fork failed");
  if (main_pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    execvp(cargv[0], cargv.data());
    _exit(127);
  }
  int main_status = 0;
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p == main_pid) {
      main_status = st;
      break;
    }
  }
  const int killed = sweep(token);
  if (killed > 0) std::fprintf(stderr, "procwatch reap: killed %d leftover benchmark processes\n", killed);
  const int64_t deadline = now_ns() + 3'000'000'000LL;
  while (now_ns() < deadline) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p < 0) break;  // no children left
    if (p == 0) sleep_us(10000);
  }
  return WIFEXITED(main_status) ? WEXITSTATUS(main_status) : 128 + WTERMSIG(main_status);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) die("usage: procwatch SUBCOMMAND ... (see the comment at the top of procwatch.cc)");
  const std::string sub = argv[1];
  const Args a = parse(argc - 2, argv + 2, {"--cli"});
  if (sub == "launch-wait") return cmd_launch_wait(a);
  if (sub == "wait-gone") return cmd_wait_gone(a);
  if (sub == "restart") return cmd_restart(a);
  if (sub == "wait-file") return cmd_wait_file(a);
  if (sub == "timecmd") return cmd_timecmd(a);
  if (sub == "count") return cmd_count(a);
  if (sub == "reap") return cmd_reap(a);
  if (sub == "sweep") {
    std::printf("{\"killed\": %d}\n", sweep(a.get("--token")));
    return 0;
  }
  die("unknown subcommand " + sub);
}
