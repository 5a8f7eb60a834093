#include "tests/integration/daemon_fixture.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

extern char** environ;

namespace agentry::testing {

namespace {

int pidfd_open_compat(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool poll_readable(int fd, std::chrono::milliseconds deadline) {
  pollfd p{fd, POLLIN, 0};
  const auto end = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

}  // namespace

TempDir::TempDir() {
  char tmpl[] = "/tmp/agentry-it-XXXXXX";
  char* p = ::mkdtemp(tmpl);
  if (p == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = p;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void TempDir::write(const std::string& name, const std::string& content) const {
  std::ofstream out(file(name), std::ios::binary | std::ios::trunc);
  out << content;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string daemon_binary() { return AGENTRY_TEST_DAEMON; }
std::string cli_binary() { return AGENTRY_TEST_CLI; }

Daemon::Daemon(const TempDir& dir, const std::string& config_yaml) : dir_(dir) {
  config_ = dir.file("agentry.yaml");
  dir.write("agentry.yaml", config_yaml);
  const std::string run_dir = dir.file("run");
  socket_ = run_dir + "/manager.sock";
  stderr_path_ = dir.file("agentryd.stderr");

  // The readiness socket, as systemd would provide it.
  const std::string notify_path = dir.file("notify.sock");
  UniqueFd notify(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, notify_path.c_str(), sizeof(addr.sun_path) - 1);
  if (::bind(notify.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "bind notify socket: " << std::strerror(errno);
    return;
  }

  std::vector<std::string> args = {daemon_binary(), "-c", config_, "--runtime-dir", run_dir, "--log-level", "debug"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && std::strncmp(*e, "AGENTRY_SOCKET=", 15) != 0) {
      env_store.emplace_back(*e);
    }
  }
  env_store.push_back("NOTIFY_SOCKET=" + notify_path);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  int rc = ::posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ADD_FAILURE() << "spawn agentryd: " << std::strerror(rc);
    pid_ = -1;
    return;
  }
  pidfd_.reset(pidfd_open_compat(pid_));

  // Wait for READY=1, or for the daemon to die trying.
  const auto end = std::chrono::steady_clock::now() + kDeadline;
  for (;;) {
    pollfd fds[2] = {{notify.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ADD_FAILURE() << "agentryd did not become ready; stderr:\n" << stderr_text();
      return;
    }
    int n = ::poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents != 0) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      ADD_FAILURE() << "agentryd exited during start-up; stderr:\n" << stderr_text();
      return;
    }
    if (fds[0].revents != 0) {
      char buf[512];
      ssize_t got = ::recv(notify.get(), buf, sizeof(buf), 0);
      if (got > 0 && std::string_view(buf, static_cast<size_t>(got)).find("READY=1") != std::string_view::npos) {
        return;
      }
    }
  }
}

Daemon::~Daemon() {
  if (pid_ > 0) stop_with(SIGTERM);
}

int Daemon::stop_with(int sig) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  if (!poll_readable(pidfd_.get(), kDeadline)) {
    ADD_FAILURE() << "agentryd did not exit after signal " << sig << "; killing it";
    ::kill(pid_, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

std::string Daemon::stderr_text() const { return read_file(stderr_path_); }

mgmt::Client Daemon::client() const {
  auto c = mgmt::Client::connect(socket_);
  if (!c) throw std::runtime_error("connect to agentryd: " + c.status().message());
  c->set_receive_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(kDeadline)).is_ok();
  return std::move(c).value();
}

EventWatcher::EventWatcher(const Daemon& d, std::vector<std::string> ids) : client_(d.client()) {
  mgmt::EventsSubscribe sub{std::move(ids)};
  auto sent = client_.send(mgmt::MsgType::kEventsSubscribe, mgmt::encode_to_string(sub));
  if (!sent) throw std::runtime_error("subscribe: " + sent.status().message());
  // The subscription has no reply of its own. Requests on one connection are handled in
  // order, so once a List sent after it is answered, the subscription is in place; events
  // that arrive before that answer are kept.
  auto list_seq = client_.send(mgmt::MsgType::kListRequest, "");
  if (!list_seq) throw std::runtime_error("list: " + list_seq.status().message());
  for (;;) {
    auto frame = client_.read_frame();
    if (!frame) throw std::runtime_error("subscribe: " + frame.status().message());
    if (frame->type == mgmt::to_byte(mgmt::MsgType::kEventsStream)) {
      auto e = mgmt::decode_event(frame->payload);
      if (e) pending_.push_back(*e);
    } else if (frame->seq == *list_seq) {
      return;
    }
  }
}

std::optional<mgmt::Event> EventWatcher::wait_for(const std::function<bool(const mgmt::Event&)>& pred,
                                                  std::chrono::seconds deadline) {
  while (!pending_.empty()) {
    mgmt::Event e = pending_.front();
    pending_.erase(pending_.begin());
    seen_.push_back(e);
    if (pred(e)) return e;
  }
  client_.set_receive_timeout(std::chrono::duration_cast<std::chrono::milliseconds>(deadline)).is_ok();
  for (;;) {
    auto frame = client_.read_frame();
    if (!frame) return std::nullopt;
    if (frame->type != mgmt::to_byte(mgmt::MsgType::kEventsStream)) continue;
    auto e = mgmt::decode_event(frame->payload);
    if (!e) return std::nullopt;
    seen_.push_back(*e);
    if (pred(*e)) return *e;
  }
}

std::optional<mgmt::Event> EventWatcher::wait_for(const std::string& process, const std::string& type,
                                                  std::chrono::seconds deadline) {
  return wait_for([&](const mgmt::Event& e) { return e.process_id == process && e.type == type; }, deadline);
}

bool EventWatcher::wait_running(mgmt::Client& c, const std::string& id) {
  auto st = c.status(id);
  if (st && st->state == "running") return true;
  return wait_for(id, "process.started").has_value();
}

bool wait_pid_gone(pid_t pid, std::chrono::seconds deadline) {
  UniqueFd fd(pidfd_open_compat(pid));
  if (!fd) return errno == ESRCH;
  return poll_readable(fd.get(), deadline);
}

std::vector<pid_t> processes_in_session(pid_t sid) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* de = ::readdir(d)) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    std::string stat = read_file(std::string("/proc/") + de->d_name + "/stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat.substr(close + 2));
    std::string state;
    long ppid = 0, pgrp = 0, session = 0;
    in >> state >> ppid >> pgrp >> session;
    if (session == sid && state != "Z") out.push_back(static_cast<pid_t>(std::atoi(de->d_name)));
  }
  ::closedir(d);
  return out;
}

CliResult run_cli(const Daemon& d, const std::vector<std::string>& args) {
  std::vector<std::string> full = {cli_binary(), "--socket", d.socket_path()};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  CliResult r;
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    return r;
  }
  // Read both pipes to EOF without risking a full-pipe deadlock.
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_count = 2;
  char buf[65536];
  while (open_count > 0) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace agentry::testing
