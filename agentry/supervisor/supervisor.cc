#include "agentry/supervisor/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <stop_token>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "agentry/base/backoff.h"
#include "agentry/base/log.h"
#include "agentry/base/unique_fd.h"
#include "agentry/supervisor/log_file.h"
#include "agentry/supervisor/log_ring.h"
#include "agentry/supervisor/orphan_guard.h"
#include "agentry/supervisor/resource_sampler.h"
#include "agentry/supervisor/spawn.h"

extern char** environ;

namespace agentry::supervisor {

namespace asio = boost::asio;
using SysClock = std::chrono::system_clock;
using SteadyClock = std::chrono::steady_clock;

std::string_view to_string(ProcessState s) {
  switch (s) {
    case ProcessState::kPending: return "pending";
    case ProcessState::kStarting: return "starting";
    case ProcessState::kRunning: return "running";
    case ProcessState::kStopping: return "stopping";
    case ProcessState::kStopped: return "stopped";
    case ProcessState::kCrashed: return "crashed";
    case ProcessState::kRestarting: return "restarting";
    case ProcessState::kFailed: return "failed";
  }
  return "?";
}

namespace {

std::string format_duration(std::chrono::nanoseconds d) {
  const double s = std::chrono::duration<double>(d).count();
  if (s < 1) return fmt::format("{}ms", static_cast<int64_t>(s * 1000));
  if (s < 120) return fmt::format("{:.1f}s", s);
  return fmt::format("{}m{}s", static_cast<int64_t>(s) / 60, static_cast<int64_t>(s) % 60);
}

std::string quote_arg(const std::string& a) {
  if (!a.empty() && a.find_first_of(" \t\n'\"\\$`") == std::string::npos) return a;
  std::string out = "'";
  for (char c : a) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  out += "'";
  return out;
}

std::string command_line(const ProcessSpec& spec) {
  std::string s = quote_arg(spec.command);
  for (const auto& a : spec.args) {
    s += ' ';
    s += quote_arg(a);
  }
  return s;
}

bool is_active(ProcessState s) {
  return s == ProcessState::kStarting || s == ProcessState::kRunning || s == ProcessState::kStopping ||
         s == ProcessState::kRestarting;
}

// Resolves user/group names for a spawn. Only root may switch identity.
Status resolve_identity(const ProcessSpec& spec, SpawnRequest& req) {
  if (spec.user.empty() && spec.group.empty()) return Status::ok();
  const bool root = ::geteuid() == 0;
  std::vector<char> buf(16384);
  if (!spec.user.empty()) {
    struct passwd pw{};
    struct passwd* found = nullptr;
    int rc = ::getpwnam_r(spec.user.c_str(), &pw, buf.data(), buf.size(), &found);
    uid_t uid = 0;
    gid_t gid = 0;
    if (rc == 0 && found != nullptr) {
      uid = found->pw_uid;
      gid = found->pw_gid;
    } else {
      char* end = nullptr;
      unsigned long n = std::strtoul(spec.user.c_str(), &end, 10);
      if (end == spec.user.c_str() || *end != '\0') {
        return not_found(fmt::format("user: no user named '{}'", spec.user));
      }
      uid = static_cast<uid_t>(n);
      gid = static_cast<gid_t>(n);
    }
    if (!root && uid != ::geteuid()) {
      return permission_denied(fmt::format("user: switching to '{}' needs root", spec.user));
    }
    if (root) {
      req.uid = uid;
      req.gid = gid;
      std::vector<gid_t> groups(64);
      int n = static_cast<int>(groups.size());
      if (found != nullptr && ::getgrouplist(found->pw_name, gid, groups.data(), &n) >= 0) {
        groups.resize(static_cast<size_t>(n));
      } else {
        groups.assign(1, gid);
      }
      req.supplementary_groups = std::move(groups);
    }
  }
  if (!spec.group.empty()) {
    struct group gr{};
    struct group* found = nullptr;
    gid_t gid = 0;
    if (::getgrnam_r(spec.group.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
      gid = found->gr_gid;
    } else {
      char* end = nullptr;
      unsigned long n = std::strtoul(spec.group.c_str(), &end, 10);
      if (end == spec.group.c_str() || *end != '\0') {
        return not_found(fmt::format("group: no group named '{}'", spec.group));
      }
      gid = static_cast<gid_t>(n);
    }
    if (!root && gid != ::getegid()) {
      return permission_denied(fmt::format("group: switching to '{}' needs root", spec.group));
    }
    if (root) {
      req.gid = gid;
      if (!req.supplementary_groups) req.supplementary_groups = std::vector<gid_t>{gid};
    }
  }
  return Status::ok();
}

std::vector<std::string> build_env(const ProcessSpec& spec, const std::vector<std::string>& extra) {
  std::map<std::string, std::string> env;
  if (spec.env.inherit) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq == std::string_view::npos) continue;
      env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
  }
  for (const auto& kv : extra) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& name : spec.env.unset) env.erase(name);
  for (const auto& [k, v] : spec.env.set) env[k] = v;
  env["AGENTRY_PROCESS_ID"] = spec.id;
  std::vector<std::string> out;
  out.reserve(env.size());
  for (auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// The last `max_lines` lines of `text`, joined with " | " so they fit in one event line.
std::string last_lines(std::string_view text, size_t max_lines) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  size_t start = text.size();
  for (size_t found = 0; start > 0 && found < max_lines;) {
    const size_t nl = text.rfind('\n', start - 1);
    if (nl == std::string_view::npos) {
      start = 0;
      break;
    }
    if (++found == max_lines) {
      start = nl + 1;
      break;
    }
    start = nl;
  }
  std::string out;
  for (char c : text.substr(start)) {
    if (c == '\n') out += " | ";
    else out += c;
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------
class Process;

class Supervisor::Impl : public std::enable_shared_from_this<Supervisor::Impl> {
 public:
  Impl(asio::io_context& io, SupervisorOptions options);
  ~Impl();

  void init();
  void publish(Event e);
  void on_sigchld();
  void arm_sigchld();
  void note_spawned(pid_t pid, const std::shared_ptr<Process>& p);
  void note_reaped(pid_t pid);
  void apply_samples(const std::unordered_map<pid_t, GroupUsage>& usage);
  void schedule_spawn(const std::shared_ptr<Process>& p);
  void pump_spawn_queue();

  // Time spent spawning per loop turn (at least one spawn): short enough that a `list`
  // arriving during a mass start waits for one slice, not for a fixed batch whose cost
  // grows with the number of descriptors the daemon holds.
  static constexpr auto kSpawnSlice = std::chrono::milliseconds(2);
  std::deque<std::weak_ptr<Process>> spawn_queue;
  bool spawn_pump_posted = false;

  asio::io_context& io;
  SupervisorOptions options;
  std::shared_ptr<spdlog::logger> log;
  std::map<std::string, std::shared_ptr<Process>, std::less<>> processes;
  std::unordered_map<pid_t, std::weak_ptr<Process>> by_pid;

  struct EventSubscriber {
    std::set<std::string> ids;
    EventSink sink;
  };
  std::map<uint64_t, EventSubscriber> event_subscribers;
  uint64_t next_subscriber_id = 1;

  asio::signal_set sigchld;
  UniqueFd devnull;
  bool shutting_down = false;
  std::array<char, 64 * 1024> read_buffer{};
  std::unique_ptr<ResourceSampler> sampler;
};

// One supervised process. Owned by Impl::processes; async handlers hold weak_ptrs.
class Process : public std::enable_shared_from_this<Process> {
 public:
  Process(Supervisor::Impl& sup, ProcessSpec spec, std::string source)
      : sup_(sup),
        spec_(std::move(spec)),
        source_(std::move(source)),
        backoff_(spec_.backoff.policy()),
        timer_(sup.io),
        rings_{LogRing(spec_.logs.ring_bytes), LogRing(spec_.logs.ring_bytes)},
        since_(SysClock::now()) {}

  ~Process() { close_child_handles(); }

  const ProcessSpec& spec() const { return spec_; }
  const std::string& source() const { return source_; }
  void set_source(std::string s) { source_ = std::move(s); }
  ProcessState state() const { return state_; }
  pid_t pid() const { return pid_; }

  Status open_log_file();
  void replace_spec(ProcessSpec spec);

  void start(Done done);
  void spawn_if_queued();  // called by the supervisor's spawn queue
  void stop(Done done);
  void restart(Done done);
  Status send_signal(int signo);
  void unhealthy(std::string reason);
  // The child of spawn `generation` is a zombie (pidfd readable or SIGCHLD). A stale
  // notification for an earlier spawn is ignored: cancelling a wait cannot recall a
  // completion that was already queued.
  void on_child_exit_ready(uint64_t generation);
  void arm_exit_wait();
  uint64_t generation() const { return generation_; }

  ProcessStatus status() const;
  std::string snapshot(int stream) const { return rings_[stream].snapshot(); }
  // Only what the current (or last) run wrote: an older run's errors would mislead.
  std::string stderr_tail(size_t lines) const {
    return last_lines(rings_[1].snapshot_from(stderr_offset_at_spawn_), lines);
  }
  uint64_t add_follower(int stream, LogSink sink) {
    uint64_t id = next_follower_id_++;
    followers_.push_back({id, stream, std::move(sink)});
    return id;
  }
  void remove_follower(uint64_t id) {
    std::erase_if(followers_, [id](const Follower& f) { return f.id == id; });
  }
  void emit_registered() { emit(event_type::kRegistered, "registered: " + command_line(spec_)); }
  void emit_updated() { emit(event_type::kUpdated, "spec changed: " + command_line(spec_)); }
  void set_usage(uint64_t rss, double cpu) {
    rss_ = rss;
    cpu_ = cpu;
  }

 private:
  struct Follower {
    uint64_t id;
    int stream;
    LogSink sink;
  };
  struct OutputPipe {
    OutputPipe(asio::io_context& io, int fd, int s) : sd(io, fd), stream(s) {}
    asio::posix::stream_descriptor sd;
    int stream;
  };

  void spawn_now();
  void became_running(uint64_t generation);
  void handle_exit(const ExitStatus& exit);
  void spawn_failed(const Status& why);
  void after_failure(const std::string& what, bool quick, bool success, const ExitStatus* exit);
  void set_state(ProcessState s);
  void emit(std::string_view type, std::string summary, const ExitStatus* exit = nullptr,
            std::chrono::nanoseconds delay = {});
  void watch_pipe(const std::shared_ptr<OutputPipe>& pipe);
  bool read_available(const std::shared_ptr<OutputPipe>& pipe, int max_reads);
  void on_output(int stream, std::string_view data);
  void on_output_eof(int stream);
  void close_child_handles();
  void finish_waiters(std::vector<Done>& waiters, const Status& s);
  void fail_start_waiters(const std::string& why) { finish_waiters(start_waiters_, unavailable(why)); }

  Supervisor::Impl& sup_;
  ProcessSpec spec_;
  std::string source_;
  Backoff backoff_;
  asio::steady_timer timer_;
  std::array<LogRing, 2> rings_;
  std::unique_ptr<LogFile> file_;
  bool file_error_reported_ = false;
  std::vector<Follower> followers_;
  uint64_t next_follower_id_ = 1;

  ProcessState state_ = ProcessState::kPending;
  SysClock::time_point since_;
  SysClock::time_point started_at_{};
  SteadyClock::time_point started_steady_{};
  std::optional<SysClock::time_point> next_restart_;
  pid_t pid_ = 0;
  uint64_t generation_ = 0;  // bumps on every spawn; stale timers compare against it
  uint64_t stderr_offset_at_spawn_ = 0;
  std::unique_ptr<asio::posix::stream_descriptor> pidfd_;
  std::vector<std::shared_ptr<OutputPipe>> pipes_;
  uint32_t restarts_ = 0;
  uint32_t quick_failures_ = 0;
  bool stop_requested_ = false;
  bool queued_ = false;
  bool automatic_restart_ = false;  // the pending stop+start is ours (health check), not an operator's  // waiting in the supervisor's spawn queue (state starting, no pid)
  bool start_after_stop_ = false;
  std::string last_exit_;
  std::string error_;
  uint64_t dropped_bytes_ = 0;
  uint64_t rss_ = 0;
  double cpu_ = 0;
  std::vector<Done> start_waiters_;
  std::vector<Done> stop_waiters_;
};

// ---------------------------------------------------------------------------------------
// Process

Status Process::open_log_file() {
  file_.reset();
  if (spec_.logs.file.empty()) return Status::ok();
  std::error_code ec;
  auto parent = std::filesystem::path(spec_.logs.file).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) {
    return Status::from_errno(ec.value(), fmt::format("processes[{}].logs.file: cannot create '{}'", spec_.id,
                                                      parent.string()));
  }
  LogFileOptions o;
  o.path = spec_.logs.file;
  o.rotate_size = spec_.logs.rotate.size;
  o.keep = spec_.logs.rotate.keep;
  o.timestamps = spec_.logs.timestamps;
  auto f = LogFile::open(o);
  if (!f) return f.status().with_context(fmt::format("processes[{}].logs.file", spec_.id));
  file_ = std::move(f).value();
  return Status::ok();
}

void Process::replace_spec(ProcessSpec spec) {
  const bool logs_changed = spec.logs != spec_.logs;
  const bool backoff_changed = spec.backoff != spec_.backoff;
  spec_ = std::move(spec);
  if (logs_changed) {
    for (auto& r : rings_) r.resize(spec_.logs.ring_bytes);
    if (Status s = open_log_file(); !s.is_ok()) sup_.log->warn("{}", s.message());
  }
  if (backoff_changed) backoff_ = Backoff(spec_.backoff.policy());
}

void Process::set_state(ProcessState s) {
  state_ = s;
  since_ = SysClock::now();
}

void Process::emit(std::string_view type, std::string summary, const ExitStatus* exit,
                   std::chrono::nanoseconds delay) {
  Event e;
  e.process_id = spec_.id;
  e.type = std::string(type);
  e.time = SysClock::now();
  e.summary = std::move(summary);
  if (exit != nullptr) {
    if (exit->signaled) e.signal = exit->code;
    else e.exit_code = exit->code;
  }
  e.restarts = restarts_;
  e.delay = delay;
  sup_.publish(std::move(e));
}

void Process::finish_waiters(std::vector<Done>& waiters, const Status& s) {
  auto w = std::move(waiters);
  waiters.clear();
  for (auto& d : w) {
    if (d) d(s);
  }
}

void Process::start(Done done) {
  switch (state_) {
    case ProcessState::kStarting:
      start_waiters_.push_back(std::move(done));
      return;
    case ProcessState::kRunning:
      if (done) done(Status::ok());
      return;
    case ProcessState::kStopping:
      start_after_stop_ = true;
      start_waiters_.push_back(std::move(done));
      return;
    case ProcessState::kRestarting:
      timer_.cancel();
      [[fallthrough]];
    case ProcessState::kPending:
    case ProcessState::kStopped:
    case ProcessState::kCrashed:
    case ProcessState::kFailed:
      // A manual start forgives the past: fresh backoff, start limit and restart count.
      quick_failures_ = 0;
      restarts_ = 0;
      backoff_.reset();
      error_.clear();
      stop_requested_ = false;
      start_waiters_.push_back(std::move(done));
      // Spawns go through the supervisor's queue, a batch per loop turn, so a mass start
      // never keeps the socket (and `agentry list`) waiting.
      set_state(ProcessState::kStarting);
      queued_ = true;
      sup_.schedule_spawn(shared_from_this());
      return;
  }
}

void Process::spawn_if_queued() {
  if (!queued_) return;
  queued_ = false;
  spawn_now();
}

void Process::spawn_now() {
  next_restart_.reset();
  SpawnRequest req;
  req.executable = spec_.command;
  req.argv.push_back(spec_.command);
  req.argv.insert(req.argv.end(), spec_.args.begin(), spec_.args.end());
  req.env = build_env(spec_, sup_.options.extra_env);
  req.cwd = spec_.cwd;
  if (Status s = resolve_identity(spec_, req); !s.is_ok()) {
    spawn_failed(s);
    return;
  }
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    spawn_failed(Status::from_errno(errno, "pipe"));
    return;
  }
  if (::pipe2(err_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    int err = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    spawn_failed(Status::from_errno(err, "pipe"));
    return;
  }
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]), err_r(err_pipe[0]), err_w(err_pipe[1]);
  // The child's ends must block: most programs do not expect a non-blocking stdout.
  ::fcntl(out_w.get(), F_SETFL, 0);
  ::fcntl(err_w.get(), F_SETFL, 0);
  req.stdin_fd = spec_.stdin_mode == StdinMode::kNull ? sup_.devnull.get() : -1;
  req.stdout_fd = out_w.get();
  req.stderr_fd = err_w.get();
  req.parent_death_signal = SIGKILL;
  req.new_session = true;

  auto child = spawn(req);
  if (!child) {
    spawn_failed(child.status());
    return;
  }
  out_w.reset();
  err_w.reset();

  ++generation_;
  stderr_offset_at_spawn_ = rings_[1].total_appended();
  pid_ = child->pid;
  started_at_ = SysClock::now();
  started_steady_ = SteadyClock::now();
  stop_requested_ = false;
  pidfd_ = std::make_unique<asio::posix::stream_descriptor>(sup_.io, child->pidfd.release());
  auto self = shared_from_this();
  sup_.note_spawned(pid_, self);

  pipes_.clear();
  auto p_out = std::make_shared<OutputPipe>(sup_.io, out_r.release(), 0);
  auto p_err = std::make_shared<OutputPipe>(sup_.io, err_r.release(), 1);
  pipes_.push_back(p_out);
  pipes_.push_back(p_err);
  watch_pipe(p_out);
  watch_pipe(p_err);

  arm_exit_wait();

  set_state(ProcessState::kStarting);
  emit(event_type::kStarting, fmt::format("started pid {}: {}", pid_, command_line(spec_)));
  if (spec_.start_window.count() == 0) {
    became_running(generation_);
    return;
  }
  const uint64_t gen = generation_;
  std::weak_ptr<Process> weak = self;
  timer_.expires_after(spec_.start_window);
  timer_.async_wait([weak, gen](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto p = weak.lock()) p->became_running(gen);
  });
}

void Process::became_running(uint64_t generation) {
  if (generation != generation_ || state_ != ProcessState::kStarting) return;
  set_state(ProcessState::kRunning);
  quick_failures_ = 0;
  backoff_.mark_stable(SteadyClock::now());
  emit(event_type::kStarted, fmt::format("running (pid {})", pid_));
  finish_waiters(start_waiters_, Status::ok());
}

// Reads what the pipe holds now, up to `max_reads` reads. Returns false once the pipe is
// finished (EOF or error) and has been dropped.
bool Process::read_available(const std::shared_ptr<OutputPipe>& pipe, int max_reads) {
  auto& buf = sup_.read_buffer;
  for (int i = 0; i < max_reads; ++i) {
    const ssize_t n = ::read(pipe->sd.native_handle(), buf.data(), buf.size());
    if (n > 0) {
      on_output(pipe->stream, std::string_view(buf.data(), static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    // EOF (every writer closed) or a hard error: this pipe is done.
    on_output_eof(pipe->stream);
    std::erase(pipes_, pipe);
    return false;
  }
  return true;
}

void Process::watch_pipe(const std::shared_ptr<OutputPipe>& pipe) {
  std::weak_ptr<Process> weak = shared_from_this();
  std::weak_ptr<OutputPipe> weak_pipe = pipe;
  pipe->sd.async_wait(asio::posix::stream_descriptor::wait_read,
                      [weak, weak_pipe](const boost::system::error_code& ec) {
                        if (ec) return;
                        auto p = weak.lock();
                        auto pp = weak_pipe.lock();
                        if (!p || !pp) return;
                        // A few reads, then back to the loop so one chatty child cannot
                        // starve the others.
                        if (p->read_available(pp, 8)) p->watch_pipe(pp);
                      });
}

void Process::on_output(int stream, std::string_view data) {
  rings_[stream].append(data);
  if (file_) {
    Status s = file_->write(stream, data, SysClock::now());
    if (!s.is_ok() && !file_error_reported_) {
      file_error_reported_ = true;
      sup_.log->error("{}: log file: {}", spec_.id, s.message());
    } else if (s.is_ok()) {
      file_error_reported_ = false;
    }
  }
  if (followers_.empty()) return;
  // A sink may drop itself or others; walk a snapshot of the ids.
  std::vector<uint64_t> ids;
  for (const auto& f : followers_) {
    if (f.stream == stream) ids.push_back(f.id);
  }
  for (uint64_t id : ids) {
    auto it = std::find_if(followers_.begin(), followers_.end(), [id](const Follower& f) { return f.id == id; });
    if (it == followers_.end()) continue;
    LogSink sink = it->sink;
    if (!sink(data)) {
      remove_follower(id);
      dropped_bytes_ += data.size();
      emit(event_type::kLogOverflow,
           fmt::format("{} follower too slow: dropped ({} bytes not delivered)", stream == 0 ? "stdout" : "stderr",
                       data.size()));
    }
  }
}

void Process::on_output_eof(int stream) {
  if (file_) {
    Status s = file_->flush_partial(stream, SysClock::now());
    if (!s.is_ok()) sup_.log->error("{}: log file: {}", spec_.id, s.message());
  }
}

void Process::close_child_handles() {
  if (pidfd_) {
    boost::system::error_code ignored;
    pidfd_->cancel(ignored);
    pidfd_.reset();
  }
}

void Process::arm_exit_wait() {
  std::weak_ptr<Process> weak = shared_from_this();
  const uint64_t gen = generation_;
  pidfd_->async_wait(asio::posix::stream_descriptor::wait_read, [weak, gen](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto p = weak.lock()) p->on_child_exit_ready(gen);
  });
}

namespace {
// True once the child behind `pidfd` has exited (it stays a zombie: nothing is reaped).
bool child_has_exited(int pidfd) {
  siginfo_t info{};
  constexpr auto kPidfd = static_cast<idtype_t>(3);  // P_PIDFD, Linux 5.4+
  return ::waitid(kPidfd, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}
}  // namespace

void Process::on_child_exit_ready(uint64_t generation) {
  if (generation != generation_ || !pidfd_) return;
  // Readiness alone proves nothing: the reactor can report an event that belonged to an
  // earlier descriptor with the same number. Only an exited child may take its group along.
  if (!child_has_exited(pidfd_->native_handle())) {
    arm_exit_wait();
    return;
  }
  // Whatever is left of its process group goes with it: no orphans. The zombie leader
  // still holds the group id, so this cannot hit an unrelated process.
  signal_group(pid_, SIGKILL).is_ok();
  auto reaped = try_reap(pidfd_->native_handle());
  if (!reaped) {
    sup_.log->error("{}: waitid on pidfd failed: {}", spec_.id, reaped.status().message());
    return;
  }
  if (!reaped->has_value()) {
    arm_exit_wait();  // cannot happen after child_has_exited, but never spin on it
    return;
  }
  ExitStatus exit = **reaped;
  close_child_handles();
  // The exit can be seen before the last output is read. The group is dead, so what is
  // in the pipes is all there will be: take it now, so the decision below (and the error
  // it reports) sees the final stderr lines.
  for (auto pipe : std::vector<std::shared_ptr<OutputPipe>>(pipes_)) read_available(pipe, 64);
  sup_.note_reaped(pid_);
  handle_exit(exit);
}

void Process::handle_exit(const ExitStatus& exit) {
  const pid_t old_pid = pid_;
  pid_ = 0;
  rss_ = 0;
  cpu_ = 0;
  timer_.cancel();
  last_exit_ = exit.describe();
  const auto lived = SteadyClock::now() - started_steady_;

  if (state_ == ProcessState::kStopping || stop_requested_) {
    set_state(ProcessState::kStopped);
    error_.clear();
    emit(event_type::kStopped, fmt::format("stopped (pid {} {})", old_pid, last_exit_), &exit);
    finish_waiters(stop_waiters_, Status::ok());
    if (start_after_stop_ && !sup_.shutting_down) {
      start_after_stop_ = false;
      if (!automatic_restart_) {  // an operator's restart forgives the past
        quick_failures_ = 0;
        restarts_ = 0;
        backoff_.reset();
      }
      automatic_restart_ = false;
      spawn_now();
    } else {
      start_after_stop_ = false;
      fail_start_waiters("stopped before it started");
    }
    return;
  }

  const bool quick = state_ == ProcessState::kStarting;
  bool success = false;
  if (!exit.signaled) {
    success = std::find(spec_.success_exit_codes.begin(), spec_.success_exit_codes.end(), exit.code) !=
              spec_.success_exit_codes.end();
  }
  std::string what = fmt::format("pid {} {} after {}", old_pid, last_exit_, format_duration(lived));
  after_failure(what, quick, success, &exit);
}

void Process::spawn_failed(const Status& why) {
  last_exit_.clear();
  sup_.log->error("{}: cannot start: {}", spec_.id, why.message());
  after_failure("cannot start: " + why.message(), /*quick=*/true, /*success=*/false, nullptr);
}

void Process::after_failure(const std::string& what, bool quick, bool success, const ExitStatus* exit) {
  if (quick) ++quick_failures_;
  const bool want_restart = !sup_.shutting_down && (spec_.restart == RestartPolicy::kAlways ||
                                                   (spec_.restart == RestartPolicy::kOnFailure && !success));
  std::string reason = what;
  if (!success) {
    std::string tail = stderr_tail(3);
    if (!tail.empty()) reason += "; last stderr: " + tail;
  }

  if (quick && quick_failures_ >= spec_.start_limit && want_restart) {
    set_state(ProcessState::kFailed);
    error_ = fmt::format("gave up after {} consecutive failures within the start window ({}): {}", quick_failures_,
                         format_duration(spec_.start_window), reason);
    emit(event_type::kFailed, error_, exit);
    fail_start_waiters(error_);
    return;
  }
  if (want_restart) {
    if (!success) emit(event_type::kCrashed, reason, exit);
    auto delay = backoff_.next(SteadyClock::now());
    ++restarts_;
    set_state(ProcessState::kRestarting);
    error_ = success ? std::string() : reason;
    next_restart_ = SysClock::now() + std::chrono::duration_cast<SysClock::duration>(delay);
    emit(event_type::kRestarting, fmt::format("restart {} in {}", restarts_, format_duration(delay)), exit, delay);
    if (quick) fail_start_waiters(fmt::format("{} during the start window; retrying in {}", reason,
                                              format_duration(delay)));
    std::weak_ptr<Process> weak = shared_from_this();
    timer_.expires_after(delay);
    timer_.async_wait([weak](const boost::system::error_code& ec) {
      if (ec) return;
      auto p = weak.lock();
      if (p && p->state_ == ProcessState::kRestarting) p->spawn_now();
    });
    return;
  }
  if (success) {
    set_state(ProcessState::kStopped);
    error_.clear();
    emit(event_type::kStopped, what, exit);
  } else {
    set_state(ProcessState::kCrashed);
    error_ = reason;
    emit(event_type::kCrashed, reason, exit);
  }
  if (quick) fail_start_waiters(reason + " during the start window");
  else finish_waiters(start_waiters_, Status::ok());
  finish_waiters(stop_waiters_, Status::ok());
}

void Process::stop(Done done) {
  if (queued_) {
    queued_ = false;
    set_state(ProcessState::kStopped);
    emit(event_type::kStopped, "stopped before it was spawned");
    fail_start_waiters("stopped before it started");
    if (done) done(Status::ok());
    return;
  }
  switch (state_) {
    case ProcessState::kPending:
    case ProcessState::kRestarting:
      timer_.cancel();
      next_restart_.reset();
      set_state(ProcessState::kStopped);
      emit(event_type::kStopped, "stopped");
      fail_start_waiters("stopped before it started");
      if (done) done(Status::ok());
      return;
    case ProcessState::kStopped:
    case ProcessState::kCrashed:
    case ProcessState::kFailed:
      if (done) done(Status::ok());
      return;
    case ProcessState::kStopping:
      start_after_stop_ = false;
      stop_waiters_.push_back(std::move(done));
      return;
    case ProcessState::kStarting:
    case ProcessState::kRunning:
      break;
  }
  stop_requested_ = true;
  start_after_stop_ = false;
  stop_waiters_.push_back(std::move(done));
  set_state(ProcessState::kStopping);
  const char* signame = sigabbrev_np(spec_.stop.signal);
  emit(event_type::kStopping, fmt::format("sending SIG{} to process group {}, SIGKILL after {}",
                                          signame != nullptr ? signame : "?", pid_,
                                          format_duration(spec_.stop.timeout)));
  signal_group(pid_, spec_.stop.signal).is_ok();
  std::weak_ptr<Process> weak = shared_from_this();
  const uint64_t gen = generation_;
  timer_.expires_after(spec_.stop.timeout);
  timer_.async_wait([weak, gen](const boost::system::error_code& ec) {
    if (ec) return;
    auto p = weak.lock();
    if (!p || p->generation_ != gen || p->state_ != ProcessState::kStopping || p->pid_ == 0) return;
    p->sup_.log->warn("{}: still running {} after the stop signal; sending SIGKILL to its process group",
                      p->spec_.id, format_duration(p->spec_.stop.timeout));
    signal_group(p->pid_, SIGKILL).is_ok();
  });
}

void Process::restart(Done done) {
  if (queued_) {  // about to start anyway
    start_waiters_.push_back(std::move(done));
    return;
  }
  if (state_ == ProcessState::kStarting || state_ == ProcessState::kRunning || state_ == ProcessState::kStopping) {
    start_waiters_.push_back(std::move(done));
    stop(nullptr);
    start_after_stop_ = true;
    return;
  }
  start(std::move(done));
}

void Process::unhealthy(std::string reason) {
  if (state_ != ProcessState::kRunning && state_ != ProcessState::kStarting) return;
  emit(event_type::kUnhealthy, reason);
  ++restarts_;
  automatic_restart_ = true;
  restart([id = spec_.id, log = sup_.log](Status s) {
    if (!s.is_ok()) log->warn("{}: restart after a failed health check: {}", id, s.message());
  });
}

Status Process::send_signal(int signo) {
  if (pid_ == 0) return failed_precondition(fmt::format("process '{}' is not running", spec_.id));
  return signal_group(pid_, signo);
}

ProcessStatus Process::status() const {
  ProcessStatus s;
  s.id = spec_.id;
  s.name = spec_.name.empty() ? spec_.id : spec_.name;
  s.state = state_;
  s.pid = pid_;
  s.rss_bytes = rss_;
  s.cpu_percent = cpu_;
  s.restarts = restarts_;
  s.since = since_;
  s.started_at = started_at_;
  s.next_restart = next_restart_;
  s.last_exit = last_exit_;
  s.error = error_;
  s.source = source_;
  s.command_line = command_line(spec_);
  s.log_bytes_dropped = dropped_bytes_;
  return s;
}

// ---------------------------------------------------------------------------------------
// Impl

Supervisor::Impl::Impl(asio::io_context& io_ctx, SupervisorOptions opts)
    : io(io_ctx), options(std::move(opts)), log(log::get("supervisor")), sigchld(io_ctx) {}

Supervisor::Impl::~Impl() {
  sampler.reset();
  boost::system::error_code ignored;
  sigchld.cancel(ignored);
}

void Supervisor::Impl::init() {
  devnull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (options.subreaper && ::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    log->warn("cannot become child subreaper: {}", std::strerror(errno));
  }
  sigchld.add(SIGCHLD);
  arm_sigchld();
  if (options.sample_interval.count() > 0) {
    std::weak_ptr<Impl> weak = shared_from_this();
    asio::io_context* ctx = &io;
    sampler = std::make_unique<ResourceSampler>(
        options.sample_interval, [weak, ctx](std::unordered_map<pid_t, GroupUsage> usage) {
          asio::post(*ctx, [weak, usage = std::move(usage)] {
            if (auto self = weak.lock()) self->apply_samples(usage);
          });
        });
  }
}

void Supervisor::Impl::arm_sigchld() {
  std::weak_ptr<Impl> weak = shared_from_this();
  sigchld.async_wait([weak](const boost::system::error_code& ec, int) {
    if (ec) return;
    if (auto self = weak.lock()) {
      self->on_sigchld();
      self->arm_sigchld();
    }
  });
}

// Reaps every zombie child. Our own processes go through their pidfd path (so the group
// is killed before the leader is reaped); anything else is an orphan we adopted as
// subreaper, reaped here so it never lingers as a zombie.
void Supervisor::Impl::on_sigchld() {
  for (int guard = 0; guard < 100000; ++guard) {
    siginfo_t info{};
    if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    const pid_t pid = info.si_pid;
    auto it = by_pid.find(pid);
    if (it != by_pid.end()) {
      if (auto p = it->second.lock()) {
        p->on_child_exit_ready(p->generation());
        if (by_pid.count(pid) == 0) continue;  // handled
      }
      by_pid.erase(pid);
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) <= 0) return;
    log->debug("reaped orphan pid {}", pid);
  }
}

void Supervisor::Impl::note_spawned(pid_t pid, const std::shared_ptr<Process>& p) {
  by_pid[pid] = p;
  if (options.guard != nullptr) {
    if (Status s = options.guard->track(pid); !s.is_ok()) log->warn("orphan guard: {}", s.message());
  }
  if (sampler) sampler->track(pid);
}

void Supervisor::Impl::note_reaped(pid_t pid) {
  by_pid.erase(pid);
  if (options.guard != nullptr) options.guard->untrack(pid).is_ok();
  if (sampler) sampler->untrack(pid);
}

void Supervisor::Impl::apply_samples(const std::unordered_map<pid_t, GroupUsage>& usage) {
  for (auto& [id, p] : processes) {
    auto it = usage.find(p->pid());
    if (it != usage.end() && p->pid() != 0) p->set_usage(it->second.rss_bytes, it->second.cpu_percent);
  }
}

void Supervisor::Impl::schedule_spawn(const std::shared_ptr<Process>& p) {
  spawn_queue.push_back(p);
  if (spawn_pump_posted) return;
  spawn_pump_posted = true;
  std::weak_ptr<Impl> weak = shared_from_this();
  asio::post(io, [weak] {
    if (auto self = weak.lock()) self->pump_spawn_queue();
  });
}

void Supervisor::Impl::pump_spawn_queue() {
  spawn_pump_posted = false;
  if (spawn_queue.empty()) return;
  const auto slice_end = std::chrono::steady_clock::now() + kSpawnSlice;
  do {
    auto p = spawn_queue.front().lock();
    spawn_queue.pop_front();
    if (p) p->spawn_if_queued();
  } while (!spawn_queue.empty() && std::chrono::steady_clock::now() < slice_end);
  if (spawn_queue.empty() || spawn_pump_posted) return;
  spawn_pump_posted = true;
  std::weak_ptr<Impl> weak = shared_from_this();
  asio::post(io, [weak] {
    if (auto self = weak.lock()) self->pump_spawn_queue();
  });
}

void Supervisor::Impl::publish(Event e) {
  if (e.process_id.empty()) log->info("{}: {}", e.type, e.summary);
  else if (e.type == event_type::kCrashed || e.type == event_type::kFailed || e.type == event_type::kLogOverflow)
    log->warn("{} {}: {}", e.process_id, e.type, e.summary);
  else
    log->info("{} {}: {}", e.process_id, e.type, e.summary);
  std::vector<uint64_t> ids;
  ids.reserve(event_subscribers.size());
  for (const auto& [id, sub] : event_subscribers) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = event_subscribers.find(id);
    if (it == event_subscribers.end()) continue;
    const auto& filter = it->second.ids;
    if (!filter.empty() && !e.process_id.empty() && filter.count(e.process_id) == 0) continue;
    EventSink sink = it->second.sink;
    if (!sink(e)) {
      event_subscribers.erase(id);
      log->warn("dropped an event subscriber that could not keep up");
    }
  }
}

// ---------------------------------------------------------------------------------------
// Supervisor

Supervisor::Supervisor(asio::io_context& io, SupervisorOptions options)
    : impl_(std::make_shared<Impl>(io, std::move(options))) {
  impl_->init();
}

Supervisor::~Supervisor() {
  // Children still alive here are killed with their groups: a Supervisor never leaves
  // processes behind, even when its owner forgot to call shutdown().
  for (auto& [id, p] : impl_->processes) {
    if (p->pid() != 0) signal_group(p->pid(), SIGKILL).is_ok();
  }
  impl_->processes.clear();
}

namespace {

// Counts the outstanding operations of one apply() or shutdown() and reports once all
// are done. Every callback from track() owns the batch, so it lives exactly as long as
// something can still finish.
struct Batch : std::enable_shared_from_this<Batch> {
  Done done;
  int pending = 1;  // released by finish_one() once every operation was launched
  std::vector<std::string> errors;

  void finish_one() {
    if (--pending != 0 || !done) return;
    Done d = std::move(done);
    if (errors.empty()) {
      d(Status::ok());
      return;
    }
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "; ") + e;
    d(unavailable(msg));
  }
  Done track(std::string id) {
    ++pending;
    return [self = shared_from_this(), id = std::move(id)](Status s) {
      if (!s.is_ok()) self->errors.push_back(id + ": " + s.message());
      self->finish_one();
    };
  }
};

}  // namespace

void Supervisor::apply(std::vector<ProcessSpec> specs, std::string source, Done done) {
  // Validate the whole set first: a bad config changes nothing.
  std::set<std::string, std::less<>> ids;
  for (const auto& s : specs) {
    if (Status st = s.validate(); !st.is_ok()) {
      if (done) done(st);
      return;
    }
    if (!ids.insert(s.id).second) {
      if (done) done(invalid_argument(fmt::format("processes[{}]: duplicate id", s.id)));
      return;
    }
    auto it = impl_->processes.find(s.id);
    if (it != impl_->processes.end() && it->second->source() != source) {
      if (done) {
        done(already_exists(fmt::format("processes[{}]: already managed by {}, not by {}", s.id,
                                        it->second->source(), source)));
      }
      return;
    }
  }

  auto batch = std::make_shared<Batch>();
  batch->done = std::move(done);

  std::vector<std::string> to_remove;
  for (const auto& [id, p] : impl_->processes) {
    if (p->source() == source && ids.count(id) == 0) to_remove.push_back(id);
  }
  for (const auto& id : to_remove) remove(id, batch->track(id));

  for (auto& s : specs) {
    auto it = impl_->processes.find(s.id);
    if (it == impl_->processes.end()) {
      std::string id = s.id;
      Status st = add(std::move(s), source, batch->track(id));
      if (!st.is_ok()) batch->errors.push_back(st.message());
      continue;
    }
    auto& p = it->second;
    if (p->spec() == s) continue;
    const bool was_active = is_active(p->state());
    std::string id = s.id;
    p->replace_spec(std::move(s));
    p->emit_updated();
    if (was_active) p->restart(batch->track(id));
    else if (p->spec().autostart) p->start(batch->track(id));
  }
  batch->finish_one();
}

Status Supervisor::add(ProcessSpec spec, std::string source, Done started) {
  AGENTRY_RETURN_IF_ERROR(spec.validate());
  if (impl_->processes.count(spec.id) != 0) {
    return already_exists(fmt::format("processes[{}]: a process with this id exists", spec.id));
  }
  if (impl_->shutting_down) return failed_precondition("the supervisor is shutting down");
  auto p = std::make_shared<Process>(*impl_, std::move(spec), std::move(source));
  AGENTRY_RETURN_IF_ERROR(p->open_log_file());
  impl_->processes.emplace(p->spec().id, p);
  p->emit_registered();
  if (p->spec().autostart) p->start(std::move(started));
  else if (started) started(Status::ok());
  return Status::ok();
}

void Supervisor::remove(std::string_view id, Done done) {
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) {
    if (done) done(not_found(fmt::format("no process '{}'", id)));
    return;
  }
  std::weak_ptr<Impl> weak = impl_;
  std::string key(id);
  it->second->stop([weak, key, done = std::move(done)](Status s) {
    if (auto impl = weak.lock()) {
      auto found = impl->processes.find(key);
      if (found != impl->processes.end()) {
        Event e;
        e.process_id = key;
        e.type = std::string(event_type::kRemoved);
        e.time = SysClock::now();
        e.summary = "removed";
        impl->processes.erase(found);
        impl->publish(std::move(e));
      }
    }
    if (done) done(s);
  });
}

namespace {

// The process named `id`, or null after failing `done` with "no process 'id'".
Process* find_or_fail(Supervisor::Impl& impl, std::string_view id, Done& done) {
  auto it = impl.processes.find(id);
  if (it != impl.processes.end()) return it->second.get();
  if (done) done(not_found(fmt::format("no process '{}'", id)));
  return nullptr;
}

}  // namespace

void Supervisor::start(std::string_view id, Done done) {
  Process* p = find_or_fail(*impl_, id, done);
  if (p == nullptr) return;
  if (impl_->shutting_down) {
    if (done) done(failed_precondition("the supervisor is shutting down"));
    return;
  }
  p->start(std::move(done));
}

void Supervisor::stop(std::string_view id, Done done) {
  if (Process* p = find_or_fail(*impl_, id, done)) p->stop(std::move(done));
}

void Supervisor::restart(std::string_view id, Done done) {
  Process* p = find_or_fail(*impl_, id, done);
  if (p == nullptr) return;
  if (impl_->shutting_down) {
    if (done) done(failed_precondition("the supervisor is shutting down"));
    return;
  }
  p->restart(std::move(done));
}

void Supervisor::mark_unhealthy(std::string_view id, int64_t pid, std::string reason) {
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end() || impl_->shutting_down) return;
  if (pid != 0 && it->second->pid() != pid) return;  // about an earlier run
  it->second->unhealthy(std::move(reason));
}

void Supervisor::publish_event(Event e) {
  if (e.time == std::chrono::system_clock::time_point{}) e.time = SysClock::now();
  impl_->publish(std::move(e));
}

Status Supervisor::signal(std::string_view id, int signo) {
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) return not_found(fmt::format("no process '{}'", id));
  return it->second->send_signal(signo);
}

void Supervisor::shutdown(Done done) {
  impl_->shutting_down = true;
  Event e;
  e.type = std::string(event_type::kShutdownStarted);
  e.time = SysClock::now();
  e.summary = fmt::format("stopping {} processes", impl_->processes.size());
  impl_->publish(e);
  auto batch = std::make_shared<Batch>();
  std::weak_ptr<Impl> weak = impl_;
  batch->done = [weak, done = std::move(done)](Status s) {
    if (auto impl = weak.lock()) {
      Event fin;
      fin.type = std::string(event_type::kShutdownComplete);
      fin.time = SysClock::now();
      fin.summary = "all processes stopped";
      impl->publish(std::move(fin));
    }
    if (done) done(std::move(s));
  };
  for (auto& [id, p] : impl_->processes) {
    p->stop(batch->track(id));
  }
  batch->finish_one();
}

std::vector<ProcessStatus> Supervisor::list() const {
  std::vector<ProcessStatus> out;
  out.reserve(impl_->processes.size());
  for (const auto& [id, p] : impl_->processes) out.push_back(p->status());
  return out;
}

Result<ProcessStatus> Supervisor::status(std::string_view id) const {
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) return not_found(fmt::format("no process '{}'", id));
  return it->second->status();
}

Result<ProcessSpec> Supervisor::spec(std::string_view id) const {
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) return not_found(fmt::format("no process '{}'", id));
  return it->second->spec();
}

size_t Supervisor::size() const { return impl_->processes.size(); }

Result<std::string> Supervisor::logs_snapshot(std::string_view id, int stream) const {
  if (stream != 0 && stream != 1) return invalid_argument(fmt::format("stream {} is not 0 (stdout) or 1 (stderr)", stream));
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) return not_found(fmt::format("no process '{}'", id));
  return it->second->snapshot(stream);
}

namespace {

class LogSubscription final : public Subscription {
 public:
  LogSubscription(std::weak_ptr<Process> p, uint64_t id) : p_(std::move(p)), id_(id) {}
  ~LogSubscription() override {
    if (auto p = p_.lock()) p->remove_follower(id_);
  }

 private:
  std::weak_ptr<Process> p_;
  uint64_t id_;
};

class EventSubscription final : public Subscription {
 public:
  EventSubscription(std::weak_ptr<Supervisor::Impl> impl, uint64_t id) : impl_(std::move(impl)), id_(id) {}
  ~EventSubscription() override {
    if (auto impl = impl_.lock()) impl->event_subscribers.erase(id_);
  }

 private:
  std::weak_ptr<Supervisor::Impl> impl_;
  uint64_t id_;
};

}  // namespace

Result<std::unique_ptr<Subscription>> Supervisor::watch_logs(std::string_view id, int stream, LogSink sink) {
  if (stream != 0 && stream != 1) return invalid_argument(fmt::format("stream {} is not 0 (stdout) or 1 (stderr)", stream));
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) return not_found(fmt::format("no process '{}'", id));
  uint64_t fid = it->second->add_follower(stream, std::move(sink));
  return std::unique_ptr<Subscription>(std::make_unique<LogSubscription>(it->second, fid));
}

std::unique_ptr<Subscription> Supervisor::watch_events(std::set<std::string> ids, EventSink sink) {
  uint64_t sid = impl_->next_subscriber_id++;
  impl_->event_subscribers.emplace(sid, Impl::EventSubscriber{std::move(ids), std::move(sink)});
  return std::make_unique<EventSubscription>(impl_, sid);
}

std::string Supervisor::stderr_tail(std::string_view id, size_t max_lines) const {
  auto it = impl_->processes.find(id);
  if (it == impl_->processes.end()) return {};
  return it->second->stderr_tail(max_lines);
}

}  // namespace agentry::supervisor
