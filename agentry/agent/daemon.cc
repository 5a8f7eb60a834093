#include "agentry/agent/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>

#include "agentry/agent/builtin_commands.h"
#include "agentry/agent/config.h"
#include "agentry/agent/manager_adapter.h"
#include "agentry/agent/sd_notify.h"
#include "agentry/agent/udf_health.h"
#include "agentry/base/log.h"
#include "agentry/base/unique_fd.h"
#include "agentry/base/version.h"
#include "agentry/command/monitor.h"
#include "agentry/mgmt/server.h"
#include "agentry/supervisor/orphan_guard.h"
#include "agentry/supervisor/supervisor.h"

namespace agentry::agent {

namespace asio = boost::asio;

std::string default_runtime_dir() {
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/agentry";
  }
  if (::geteuid() == 0) return "/run/agentry";
  return fmt::format("/tmp/agentry-{}", ::geteuid());
}

namespace {

// Creates `dir` (and parents) and makes sure only we can use it: it holds the control
// socket, so a directory others can write to would let them swap the socket.
Status prepare_runtime_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::from_errno(ec.value(), fmt::format("cannot create runtime dir '{}'", dir));
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) return Status::from_errno(errno, fmt::format("stat '{}'", dir));
  if (!S_ISDIR(st.st_mode)) return invalid_argument(fmt::format("runtime dir '{}' is not a directory", dir));
  if (st.st_uid != ::geteuid()) {
    return permission_denied(fmt::format("runtime dir '{}' is owned by uid {}, not by us (uid {})", dir, st.st_uid,
                                         ::geteuid()));
  }
  if ((st.st_mode & 077) != 0 && ::chmod(dir.c_str(), 0700) != 0) {
    return Status::from_errno(errno, fmt::format("chmod 0700 '{}'", dir));
  }
  return Status::ok();
}

}  // namespace

class Daemon::Impl {
 public:
  Impl(asio::io_context& io_ctx, DaemonOptions opts) : io(io_ctx), options(std::move(opts)), signals(io_ctx) {}
  ~Impl() { close_commands(); }

  Status start();
  void reload(std::function<void(Status)> done);
  void shutdown(std::function<void(Status)> done);
  void watch_guard();
  void restart_guard();
  void arm_signals();
  Status start_commands();
  void close_commands();

  asio::io_context& io;
  DaemonOptions options;
  std::shared_ptr<spdlog::logger> log = log::get("agentryd");
  DaemonConfig config;
  std::string runtime_dir;
  std::string socket_path;
  UniqueFd lock_fd;
  std::optional<supervisor::OrphanGuard> guard;
  std::unique_ptr<asio::posix::stream_descriptor> guard_watch;
  std::unique_ptr<supervisor::Supervisor> sup;
  std::unique_ptr<UdfHealth> udf_health;  // after sup: destroyed before it
  std::unique_ptr<ManagerAdapter> adapter;
  std::unique_ptr<mgmt::Server> server;
  std::string command_dir;
  std::unique_ptr<LoopCaller> loop_caller;
  std::unique_ptr<command::Monitor> commands;
  asio::signal_set signals;
  bool shutting_down = false;
  bool finished = false;
  int exit_code = 0;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
};

Status Daemon::Impl::start() {
  auto loaded = load_config_file(options.config_path);
  if (!loaded) return loaded.status();
  config = std::move(loaded).value();

  std::string level = !options.log_level.empty() ? options.log_level : config.log_level;
  auto parsed_level = log::parse_level(level);
  if (!parsed_level) return parsed_level.status().with_context("log_level");
  log::setup({.level = *parsed_level, .journald = std::nullopt});

  runtime_dir = !options.runtime_dir.empty() ? options.runtime_dir
                : !config.runtime_dir.empty() ? config.runtime_dir
                                              : default_runtime_dir();
  AGENTRY_RETURN_IF_ERROR(prepare_runtime_dir(runtime_dir));

  // One daemon per runtime dir: the lock is held for the life of the process and released
  // by the kernel however we die, so a stale lock file never blocks a restart.
  const std::string lock_path = runtime_dir + "/agentryd.lock";
  lock_fd.reset(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock_fd) return Status::from_errno(errno, fmt::format("open '{}'", lock_path));
  if (::flock(lock_fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {};
    ssize_t n = ::pread(lock_fd.get(), buf, sizeof(buf) - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "?";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return already_exists(
        fmt::format("another agentryd (pid {}) is already running with runtime dir '{}'", holder, runtime_dir));
  }
  std::string pid_text = fmt::format("{}\n", ::getpid());
  if (::ftruncate(lock_fd.get(), 0) != 0 ||
      ::pwrite(lock_fd.get(), pid_text.data(), pid_text.size(), 0) != static_cast<ssize_t>(pid_text.size())) {
    log->warn("cannot write pid to {}: {}", lock_path, std::strerror(errno));
  }

  auto g = supervisor::OrphanGuard::start();
  if (g) {
    guard.emplace(std::move(g).value());
  } else {
    log->warn("orphan guard unavailable ({}); grandchildren may outlive a killed agentryd", g.status().message());
  }

  supervisor::SupervisorOptions sopts;
  sopts.guard = guard ? &*guard : nullptr;
  if (config.command.enabled) {
    command_dir = !config.command.dir.empty() ? config.command.dir : runtime_dir + "/cmd";
    // Supervised programs find the daemon's command socket here (and may serve their own
    // on the plugin listener of the same directory).
    sopts.extra_env.push_back("AGENTRY_COMMAND_SOCKET=" + command::pipe_name(command_dir, command::Listener::kAgent));
    sopts.extra_env.push_back("AGENTRY_COMMAND_DIR=" + command_dir);
  }
  sup = std::make_unique<supervisor::Supervisor>(io, sopts);
  udf_health = std::make_unique<UdfHealth>(io, *sup);
  if (guard) watch_guard();

  DaemonInfoSource info_source = [this] {
    mgmt::DaemonInfo info;
    info.version = AGENTRY_VERSION;
    info.pid = ::getpid();
    info.started_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(started.time_since_epoch()).count();
    info.config_path = options.config_path;
    info.processes = static_cast<uint32_t>(sup->size());
    return info;
  };
  adapter = std::make_unique<ManagerAdapter>(
      *sup, [this](std::function<void(Status)> done) { reload(std::move(done)); }, std::move(info_source),
      [this](const std::string& id) { return udf_health->describe(id); });

  socket_path = runtime_dir + "/manager.sock";
  mgmt::ServerOptions mopts;
  mopts.socket_path = socket_path;
  mopts.manager = adapter.get();
  server = std::make_unique<mgmt::Server>(io, mopts);
  AGENTRY_RETURN_IF_ERROR(server->start());
  if (config.command.enabled) AGENTRY_RETURN_IF_ERROR(start_commands());

  signals.add(SIGTERM);
  signals.add(SIGINT);
  signals.add(SIGHUP);
  arm_signals();
  // A client that disappears mid-write must not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);

  log->info("agentryd {} started: config {}, socket {}, {} processes", AGENTRY_VERSION, options.config_path,
            socket_path, config.processes.size());
  sup->apply(config.processes, "file", [this](Status s) {
    if (!s.is_ok()) log->warn("not every process came up: {}", s.message());
  });
  sd_notify(fmt::format("READY=1\nSTATUS=supervising {} processes\nMAINPID={}", config.processes.size(), ::getpid()));
  return Status::ok();
}

Status Daemon::Impl::start_commands() {
  command::MonitorOptions copts;
  copts.dir = command_dir;
  copts.mode = static_cast<mode_t>(config.command.mode);
  copts.group = config.command.group;
  copts.request_timeout = config.command.timeout;
  copts.listener = command::Listener::kAgent;
  loop_caller = std::make_unique<LoopCaller>(io);
  commands = std::make_unique<command::Monitor>(copts);
  BuiltinContext ctx;
  ctx.supervisor = sup.get();
  ctx.config = [this]() -> const DaemonConfig& { return config; };
  ctx.reload = [this](std::function<void(Status)> done) { reload(std::move(done)); };
  ctx.info = [this] { return adapter->info(); };
  Status s = register_builtin_commands(*commands, *loop_caller, std::move(ctx));
  if (!s.is_ok()) return s.with_context("command socket");
  log->info("command socket listening on {}", commands->socket_path());
  return Status::ok();
}

void Daemon::Impl::close_commands() {
  // Release handlers waiting for the loop before the monitor joins its threads.
  if (loop_caller) loop_caller->close();
  commands.reset();
}

void Daemon::Impl::arm_signals() {
  signals.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      log->info("SIGHUP: reloading {}", options.config_path);
      reload([this](Status s) {
        if (!s.is_ok()) log->error("reload: {}", s.message());
      });
    } else if (shutting_down) {
      log->warn("second {}: killing every process group now", sigabbrev_np(signo));
      exit_code = 1;
      finished = true;
      io.stop();  // ~Supervisor SIGKILLs what is left
      return;
    } else {
      log->info("SIG{}: stopping all processes", sigabbrev_np(signo));
      shutdown(nullptr);
    }
    arm_signals();
  });
}

void Daemon::Impl::watch_guard() {
  guard_watch = std::make_unique<asio::posix::stream_descriptor>(io, ::dup(guard->pidfd()));
  guard_watch->async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
    if (ec || shutting_down) return;
    log->error("orphan guard (pid {}) died; starting a new one", guard->pid());
    restart_guard();
  });
}

void Daemon::Impl::restart_guard() {
  auto g = supervisor::OrphanGuard::start();
  if (!g) {
    log->error("cannot restart the orphan guard: {}", g.status().message());
    return;
  }
  // The old guard is gone; its replacement must learn every live session again.
  guard->shutdown_clean().is_ok();
  *guard = std::move(g).value();
  for (const auto& p : sup->list()) {
    if (p.pid != 0) guard->track(static_cast<pid_t>(p.pid)).is_ok();
  }
  watch_guard();
}

void Daemon::Impl::reload(std::function<void(Status)> done) {
  sd_notify("RELOADING=1");
  auto loaded = load_config_file(options.config_path);
  if (!loaded) {
    sd_notify("READY=1");
    Status s = loaded.status().with_context("reload refused, the running set is unchanged");
    log->error("{}", s.message());
    if (done) done(s);
    return;
  }
  if (loaded->command != config.command) {
    log->warn("reload: changes to the command section take effect at the next start of agentryd");
  }
  config = std::move(loaded).value();
  if (auto level = log::parse_level(options.log_level.empty() ? config.log_level : options.log_level)) {
    log::setup({.level = *level, .journald = std::nullopt});
  }
  sup->apply(config.processes, "file", [this, done = std::move(done)](Status s) {
    sd_notify("READY=1");
    if (s.is_ok()) log->info("reload complete: {} processes", sup->size());
    if (done) done(std::move(s));
  });
}

void Daemon::Impl::shutdown(std::function<void(Status)> done) {
  if (shutting_down) {
    if (done) done(failed_precondition("already shutting down"));
    return;
  }
  shutting_down = true;
  sd_notify("STOPPING=1");
  sup->shutdown([this, done = std::move(done)](Status s) {
    log->info("all processes stopped; exiting");
    close_commands();
    udf_health.reset();
    if (server) server->close();
    boost::system::error_code ignored;
    signals.cancel(ignored);
    if (guard_watch) guard_watch->cancel(ignored);
    if (guard) guard->shutdown_clean().is_ok();
    finished = true;
    if (done) done(s);
    io.stop();
  });
}

Daemon::Daemon(asio::io_context& io, DaemonOptions options) : impl_(std::make_unique<Impl>(io, std::move(options))) {}
Daemon::~Daemon() = default;
Status Daemon::start() { return impl_->start(); }
void Daemon::reload(std::function<void(Status)> done) { impl_->reload(std::move(done)); }
void Daemon::shutdown(std::function<void(Status)> done) { impl_->shutdown(std::move(done)); }
bool Daemon::finished() const { return impl_->finished; }
int Daemon::exit_code() const { return impl_->exit_code; }
const std::string& Daemon::socket_path() const { return impl_->socket_path; }
const std::string& Daemon::runtime_dir() const { return impl_->runtime_dir; }

}  // namespace agentry::agent
