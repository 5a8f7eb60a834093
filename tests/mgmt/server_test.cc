// The management server over a real socket, driven by the real Client, against an
// in-memory FakeManager. The server runs on an io_context in its own thread; the test
// thread talks to it only through sockets and through run_on_io().
//
// No sleeps: ordering comes from the protocol itself. Requests on one connection are
// handled in order, so once the reply to a later request has arrived, an earlier request
// (a subscription, a held stop) has been dispatched.
#include "agentry/mgmt/server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agentry/base/unique_fd.h"
#include "agentry/mgmt/client.h"
#include "agentry/mgmt/protocol.h"
#include "agentry/wire/mgmt_frame.h"

namespace agentry::mgmt {
namespace {

namespace asio = boost::asio;
using ::testing::HasSubstr;

// ------------------------------------------------------------------ FakeManager

// A ManagerApi over a map of processes. Like the real one, it is used only on the io
// thread (by the server, and by tests through run_on_io()), so it needs no locks.
class FakeManager final : public ManagerApi {
 public:
  explicit FakeManager(asio::io_context& io) : io_(io) {}

  struct LogWatch {
    std::string id;
    int stream = 0;
    LogSink sink;
    bool live = true;
  };
  struct EventWatch {
    std::vector<std::string> ids;
    EventSink sink;
    bool live = true;
  };

  class FakeSubscription final : public Subscription {
   public:
    explicit FakeSubscription(std::function<void()> on_drop) : on_drop_(std::move(on_drop)) {}
    ~FakeSubscription() override { on_drop_(); }

   private:
    std::function<void()> on_drop_;
  };

  void add(const std::string& id, const std::string& state) {
    ListEntry e;
    e.id = id;
    e.name = id + " server";
    e.state = state;
    e.pid = state == "running" ? 1000 + static_cast<int64_t>(processes.size()) : 0;
    e.rss = 4096;
    processes[id] = e;
  }

  // ---- ManagerApi
  std::vector<ListEntry> list() override {
    std::vector<ListEntry> out;
    for (const auto& [id, e] : processes) out.push_back(e);
    return out;
  }
  Result<ListEntry> status(std::string_view id) override {
    auto it = processes.find(std::string(id));
    if (it == processes.end()) return not_found(fmt::format("no process '{}'", id));
    return it->second;
  }
  void start(std::string_view id, Done done) override { command("start", id, "running", std::move(done)); }
  void stop(std::string_view id, Done done) override { command("stop", id, "stopped", std::move(done)); }
  void restart(std::string_view id, Done done) override { command("restart", id, "running", std::move(done)); }
  Status signal(std::string_view id, int signo) override {
    calls.push_back(fmt::format("signal {} {}", id, signo));
    if (!processes.contains(std::string(id))) return not_found(fmt::format("no process '{}'", id));
    if (signo <= 0 || signo > 64) return invalid_argument(fmt::format("{} is not a signal number", signo));
    return Status::ok();
  }
  void reload(Done done) override {
    calls.push_back("reload");
    asio::post(io_, [done = std::move(done), result = reload_result] { done(result); });
  }
  DaemonInfo info() override {
    return {"9.8.7", 4242, 1712345678901234567, "/etc/agentry/agentry.yaml", static_cast<uint32_t>(processes.size())};
  }
  Result<std::string> logs_snapshot(std::string_view id, int stream) override {
    if (!processes.contains(std::string(id))) return not_found(fmt::format("no process '{}'", id));
    return snapshots[{std::string(id), stream}];
  }
  Result<std::unique_ptr<Subscription>> watch_logs(std::string_view id, int stream, LogSink sink) override {
    if (!processes.contains(std::string(id))) return not_found(fmt::format("no process '{}'", id));
    auto watch = std::make_shared<LogWatch>(LogWatch{std::string(id), stream, std::move(sink)});
    log_watches.push_back(watch);
    // Chunks queued by the test go out right after the subscription, as if just written.
    for (const std::string& chunk : chunks_on_subscribe) {
      asio::post(io_, [this, id = std::string(id), stream, chunk] { push_log(id, stream, chunk); });
    }
    return std::unique_ptr<Subscription>(std::make_unique<FakeSubscription>([watch] { watch->live = false; }));
  }
  std::unique_ptr<Subscription> watch_events(std::vector<std::string> ids, EventSink sink) override {
    auto watch = std::make_shared<EventWatch>(EventWatch{std::move(ids), std::move(sink)});
    event_watches.push_back(watch);
    for (const Event& event : events_on_subscribe) asio::post(io_, [this, event] { publish(event); });
    return std::make_unique<FakeSubscription>([watch] { watch->live = false; });
  }

  // ---- test hooks (io thread)

  // Delivers a chunk to every live matching watcher; returns how many refused it (and
  // were dropped, as the real manager does).
  size_t push_log(const std::string& id, int stream, std::string_view chunk) {
    size_t refused = 0;
    for (const auto& watch : std::vector(log_watches)) {
      if (!watch->live || watch->id != id || watch->stream != stream) continue;
      if (!watch->sink(chunk)) {
        watch->live = false;
        watch->sink = nullptr;
        ++refused;
      }
    }
    return refused;
  }
  void publish(const Event& event) {
    for (const auto& watch : std::vector(event_watches)) {
      if (!watch->live) continue;
      if (!watch->ids.empty() &&
          std::find(watch->ids.begin(), watch->ids.end(), event.process_id) == watch->ids.end()) {
        continue;
      }
      if (!watch->sink(event)) {
        watch->live = false;
        watch->sink = nullptr;
      }
    }
  }
  size_t live_log_watches() const {
    return static_cast<size_t>(std::count_if(log_watches.begin(), log_watches.end(), [](auto& w) { return w->live; }));
  }
  size_t live_event_watches() const {
    return static_cast<size_t>(
        std::count_if(event_watches.begin(), event_watches.end(), [](auto& w) { return w->live; }));
  }
  // Completes the commands held while hold_commands was set, in order.
  void release_held() {
    auto held_now = std::move(held);
    held.clear();
    for (auto& finish : held_now) finish();
  }

  std::map<std::string, ListEntry> processes;
  std::map<std::pair<std::string, int>, std::string> snapshots;
  std::vector<std::string> chunks_on_subscribe;
  std::vector<Event> events_on_subscribe;
  std::vector<std::shared_ptr<LogWatch>> log_watches;
  std::vector<std::shared_ptr<EventWatch>> event_watches;
  std::vector<std::string> calls;
  Status reload_result;
  bool hold_commands = false;  // start/stop/restart complete only on release_held()
  std::vector<std::function<void()>> held;

 private:
  void command(std::string_view verb, std::string_view id, std::string new_state, Done done) {
    calls.push_back(fmt::format("{} {}", verb, id));
    auto it = processes.find(std::string(id));
    if (it == processes.end()) {
      asio::post(
          io_, [done = std::move(done), id = std::string(id)] { done(not_found(fmt::format("no process '{}'", id))); });
      return;
    }
    auto finish = [this, id = std::string(id), new_state = std::move(new_state), done = std::move(done)] {
      processes[id].state = new_state;
      done(Status::ok());
    };
    if (hold_commands) {
      held.push_back(std::move(finish));
    } else {
      asio::post(io_, std::move(finish));  // completes later, like a real start or stop
    }
  }

  asio::io_context& io_;
};

// ------------------------------------------------------------------ fixture

std::string make_temp_dir() {
  char templ[] = "/tmp/agentry-mgmt-test-XXXXXX";
  const char* dir = ::mkdtemp(templ);
  EXPECT_NE(dir, nullptr);
  return dir != nullptr ? dir : "/tmp";
}

mode_t file_mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode;
}

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir();
    // A subdirectory the server has to create.
    socket_path_ = dir_ + "/run/manager.sock";
    manager_.add("web", "running");
    manager_.add("db", "stopped");
  }

  void TearDown() override {
    stop_server();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  ServerOptions options() {
    ServerOptions o;
    o.socket_path = socket_path_;
    o.manager = &manager_;
    return o;
  }

  void start_server(ServerOptions o) {
    server_ = std::make_unique<Server>(io_, std::move(o));
    const Status started = server_->start();
    ASSERT_TRUE(started.is_ok()) << started.to_string();
    work_.emplace(io_.get_executor());
    io_thread_ = std::thread([this] { io_.run(); });
  }
  void start_server() { start_server(options()); }

  void stop_server() {
    if (!io_thread_.joinable()) return;
    run_on_io([this] { server_->close(); });
    work_.reset();
    io_thread_.join();
    server_.reset();
  }

  // Runs `fn` on the io thread and waits for its result.
  template <typename Fn>
  auto run_on_io(Fn fn) -> decltype(fn()) {
    std::packaged_task<decltype(fn())()> task(std::move(fn));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  // Waits until `pred`, evaluated on the io thread, holds. No sleeping: each check is a
  // round trip through the io thread, which processes socket events in between. The cap
  // turns a bug into a failure instead of a hang.
  template <typename Pred>
  bool eventually(Pred pred) {
    for (int i = 0; i < 1000000; ++i) {
      if (run_on_io(pred)) return true;
      std::this_thread::yield();
    }
    return false;
  }

  Client connect() {
    Result<Client> client = Client::connect(socket_path_);
    EXPECT_TRUE(client.is_ok()) << client.status().to_string();
    return std::move(client).value();
  }

  static void send_raw(Client& client, std::string_view bytes) {
    ASSERT_EQ(::send(client.fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
  }

  static StatusResponse expect_status_response(const Result<Frame>& frame) {
    EXPECT_TRUE(frame.is_ok()) << frame.status().to_string();
    if (!frame.is_ok()) return {};
    EXPECT_EQ(frame->type, to_byte(MsgType::kStatusResponse));
    auto decoded = decode_status_response(frame->payload);
    EXPECT_TRUE(decoded.is_ok()) << decoded.status().to_string();
    return decoded.is_ok() ? *decoded : StatusResponse{};
  }

  // Reads until the server closes the connection; returns how the read failed.
  static Status read_until_closed(Client& client) {
    for (;;) {
      Result<Frame> frame = client.read_frame();
      if (!frame.is_ok()) return frame.status();
    }
  }

  asio::io_context io_;
  FakeManager manager_{io_};
  std::unique_ptr<Server> server_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread io_thread_;
  std::string dir_;
  std::string socket_path_;
};

// ------------------------------------------------------------------ socket file

TEST_F(ServerTest, SocketIs0600InA0700Directory) {
  start_server();
  const mode_t sock = file_mode(socket_path_);
  EXPECT_TRUE(S_ISSOCK(sock));
  EXPECT_EQ(sock & 07777, 0600u);
  const mode_t dir = file_mode(dir_ + "/run");
  EXPECT_TRUE(S_ISDIR(dir));
  EXPECT_EQ(dir & 07777, 0700u);
}

TEST_F(ServerTest, CloseRemovesTheSocketFile) {
  start_server();
  stop_server();
  EXPECT_FALSE(std::filesystem::exists(socket_path_));
}

TEST_F(ServerTest, CloseLeavesAReplacedFileAlone) {
  start_server();
  ASSERT_EQ(::unlink(socket_path_.c_str()), 0);
  { std::ofstream(socket_path_) << "not ours"; }
  stop_server();
  EXPECT_TRUE(std::filesystem::is_regular_file(socket_path_));
}

TEST_F(ServerTest, StaleSocketIsReplaced) {
  // Bind a socket and close it without unlinking: what a crashed daemon leaves behind.
  std::filesystem::create_directories(dir_ + "/run");
  ::chmod((dir_ + "/run").c_str(), 0700);
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path_.c_str());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }
  ASSERT_TRUE(std::filesystem::exists(socket_path_));
  start_server();
  Client client = connect();
  auto list = client.list();
  ASSERT_TRUE(list.is_ok()) << list.status().to_string();
  EXPECT_EQ(list->size(), 2u);
}

TEST_F(ServerTest, LiveSocketIsNotTakenOver) {
  start_server();
  asio::io_context other_io;
  Server second(other_io, options());
  const Status refused = second.start();
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.message(), "another process is listening on " + socket_path_);
  // The first server is untouched, socket file included.
  Client client = connect();
  EXPECT_TRUE(client.list().is_ok());
}

TEST_F(ServerTest, RefusesAnUnsafeDirectory) {
  ASSERT_EQ(::mkdir((dir_ + "/open").c_str(), 0700), 0);
  ASSERT_EQ(::chmod((dir_ + "/open").c_str(), 0770), 0);
  ServerOptions o = options();
  o.socket_path = dir_ + "/open/manager.sock";
  Server server(io_, o);
  const Status refused = server.start();
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.message(), HasSubstr("writable by group or others"));
}

TEST_F(ServerTest, RefusesAPathTooLongForSunPath) {
  ServerOptions o = options();
  o.socket_path = dir_ + "/" + std::string(200, 'x') + ".sock";
  Server server(io_, o);
  const Status refused = server.start();
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.message(), HasSubstr("must be shorter than 108 bytes"));
}

TEST_F(ServerTest, RefusesPeersWithAnotherUid) {
  if (::geteuid() != 0) {
    ServerOptions o = options();
    o.allowed_uid = ::geteuid() + 1;
    start_server(o);
    Client client = connect();
    auto list = client.list();
    ASSERT_FALSE(list.is_ok());
    EXPECT_EQ(list.status().code(), StatusCode::kUnavailable) << list.status().to_string();
    return;
  }
  // As root, which is always allowed: open the file permissions wide (so that only the
  // SO_PEERCRED check stands in the way) and connect from a child running as nobody.
  ServerOptions o = options();
  o.allowed_uid = 4321;
  start_server(o);
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  ASSERT_EQ(::chmod((dir_ + "/run").c_str(), 0711), 0);
  ASSERT_EQ(::chmod(socket_path_.c_str(), 0666), 0);
  std::string request;
  ASSERT_TRUE(wire::append_mgmt_frame(request, to_byte(MsgType::kListRequest), 1, "").is_ok());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_path_.c_str());

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Only system calls from here on: the parent has other threads.
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(10);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) ::_exit(11);
    (void)!::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    char buf[64];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    ::_exit(n == 0 || (n < 0 && errno == ECONNRESET) ? 0 : 12);  // closed without a reply
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  // Root itself still gets in.
  EXPECT_TRUE(connect().list().is_ok());
}

// ------------------------------------------------------------------ requests

TEST_F(ServerTest, ListAndStatus) {
  start_server();
  Client client = connect();
  auto list = client.list();
  ASSERT_TRUE(list.is_ok()) << list.status().to_string();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "db");
  EXPECT_EQ((*list)[1].id, "web");
  EXPECT_EQ((*list)[1].state, "running");
  EXPECT_EQ((*list)[1].rss, 4096u);

  auto web = client.status("web");
  ASSERT_TRUE(web.is_ok()) << web.status().to_string();
  EXPECT_EQ(web->pid, run_on_io([this] { return manager_.processes.at("web").pid; }));

  auto missing = client.status("nope");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status(), not_found("no process 'nope'"));
}

TEST_F(ServerTest, StartStopRestartReplyAfterCompletion) {
  start_server();
  Client client = connect();
  auto stopped = client.stop("web");
  ASSERT_TRUE(stopped.is_ok()) << stopped.status().to_string();
  EXPECT_EQ(stopped->state, "stopped");
  auto started = client.start("db");
  ASSERT_TRUE(started.is_ok()) << started.status().to_string();
  EXPECT_EQ(started->state, "running");
  auto restarted = client.restart("web");
  ASSERT_TRUE(restarted.is_ok()) << restarted.status().to_string();
  EXPECT_EQ(restarted->state, "running");
  auto failed = client.start("ghost");
  ASSERT_FALSE(failed.is_ok());
  EXPECT_EQ(failed.status(), not_found("no process 'ghost'"));
  EXPECT_EQ(run_on_io([this] { return manager_.calls; }),
            (std::vector<std::string>{"stop web", "start db", "restart web", "start ghost"}));
}

TEST_F(ServerTest, RepliesGoOutInCompletionOrderWithTheirSeq) {
  manager_.hold_commands = true;
  start_server();
  Client client = connect();
  // A stop that will not finish until released...
  auto stop_seq = client.send(MsgType::kStopRequest, encode_to_string(IdRequest{"web"}));
  ASSERT_TRUE(stop_seq.is_ok());
  // ...does not hold up a status behind it.
  auto status = client.call(MsgType::kStatusRequest, encode_to_string(IdRequest{"web"}));
  ASSERT_TRUE(status.is_ok()) << status.status().to_string();
  EXPECT_EQ(expect_status_response(status).entry.state, "running");
  EXPECT_NE(status->seq, *stop_seq);

  run_on_io([this] { manager_.release_held(); });
  auto stop_reply = client.read_frame();
  ASSERT_TRUE(stop_reply.is_ok()) << stop_reply.status().to_string();
  EXPECT_EQ(stop_reply->seq, *stop_seq);
  const StatusResponse stopped = expect_status_response(stop_reply);
  EXPECT_EQ(stopped.err, "");
  EXPECT_EQ(stopped.entry.state, "stopped");
}

TEST_F(ServerTest, ClientReceiveTimeout) {
  manager_.hold_commands = true;  // the stop never finishes while held
  start_server();
  Client client = connect();
  ASSERT_TRUE(client.set_receive_timeout(std::chrono::milliseconds(20)).is_ok());
  auto stopped = client.stop("web");
  ASSERT_FALSE(stopped.is_ok());
  EXPECT_EQ(stopped.status().code(), StatusCode::kDeadlineExceeded) << stopped.status().to_string();
  run_on_io([this] { manager_.release_held(); });
  // The late reply is skipped by the next call, which matches on its own seq.
  ASSERT_TRUE(client.set_receive_timeout(std::chrono::milliseconds(0)).is_ok());
  EXPECT_TRUE(client.list().is_ok());
}

TEST_F(ServerTest, PipelinedRequestsAreAnsweredInOrder) {
  start_server();
  Client client = connect();
  std::string burst;
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    ASSERT_TRUE(wire::append_mgmt_frame(burst, to_byte(MsgType::kStatusRequest), seq * 10,
                                        encode_to_string(IdRequest{seq == 2 ? "db" : "web"}))
                    .is_ok());
  }
  send_raw(client, burst);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    auto reply = client.read_frame();
    ASSERT_TRUE(reply.is_ok());
    EXPECT_EQ(reply->seq, seq * 10);
    EXPECT_EQ(expect_status_response(reply).entry.id, seq == 2 ? "db" : "web");
  }
}

TEST_F(ServerTest, PipelinedRequestsBeyondTheQueueBudgetAllGetAnswers) {
  // A client that sends many requests before reading any reply: request handling pauses
  // while the replies queued exceed the budget and resumes as they are written.
  ServerOptions o = options();
  o.max_queued_bytes = 1024;
  start_server(o);
  Client client = connect();
  constexpr uint64_t kRequests = 300;
  std::string burst;
  for (uint64_t seq = 1; seq <= kRequests; ++seq) {
    ASSERT_TRUE(wire::append_mgmt_frame(burst, to_byte(MsgType::kListRequest), seq, "").is_ok());
  }
  send_raw(client, burst);
  for (uint64_t seq = 1; seq <= kRequests; ++seq) {
    auto reply = client.read_frame();
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    ASSERT_EQ(reply->seq, seq);
    auto list = decode_list_response(reply->payload);
    ASSERT_TRUE(list.is_ok());
    ASSERT_EQ(list->entries.size(), 2u);
  }
}

TEST_F(ServerTest, ReloadSignalInfo) {
  start_server();
  Client client = connect();
  EXPECT_TRUE(client.reload().is_ok());
  run_on_io([this] { manager_.reload_result = invalid_argument("config.yaml: line 3: bad key"); });
  EXPECT_EQ(client.reload(), invalid_argument("config.yaml: line 3: bad key"));

  auto signalled = client.signal("web", 1);
  ASSERT_TRUE(signalled.is_ok()) << signalled.status().to_string();
  EXPECT_EQ(signalled->id, "web");
  auto bad = client.signal("web", 99);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status(), invalid_argument("99 is not a signal number"));

  auto info = client.info();
  ASSERT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(info->version, "9.8.7");
  EXPECT_EQ(info->pid, 4242);
  EXPECT_EQ(info->started_ns, 1712345678901234567);
  EXPECT_EQ(info->config_path, "/etc/agentry/agentry.yaml");
  EXPECT_EQ(info->processes, 2u);
}

TEST_F(ServerTest, UnknownTypeIsAnsweredAndTheConnectionStays) {
  start_server();
  Client client = connect();
  auto reply = client.call(static_cast<MsgType>(0xAF), "");
  EXPECT_EQ(expect_status_response(reply).err, "unknown request type 0xaf");
  // Response types are not requests either.
  reply = client.call(MsgType::kListResponse, encode_to_string(ListResponse{}));
  EXPECT_EQ(expect_status_response(reply).err, "unknown request type 0xa1");
  EXPECT_TRUE(client.list().is_ok());
}

// ------------------------------------------------------------------ logs and events

TEST_F(ServerTest, LogsSnapshotThenTheConnectionIsStillUsable) {
  manager_.snapshots[{"web", 1}] = "line one\nline two\n";
  start_server();
  Client client = connect();
  auto seq = client.send(MsgType::kLogsRequest, encode_to_string(LogsRequest{"web", 1, false}));
  ASSERT_TRUE(seq.is_ok());
  auto frame = client.read_frame();
  ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
  EXPECT_EQ(frame->type, to_byte(MsgType::kLogsStream));
  EXPECT_EQ(frame->seq, *seq);
  auto chunk = decode_logs_stream(frame->payload);
  ASSERT_TRUE(chunk.is_ok());
  EXPECT_EQ(*chunk, (LogsStream{"web", 1, "line one\nline two\n", true}));

  // The typed helper sees the same.
  std::string collected;
  EXPECT_TRUE(client
                  .logs("web", 1, false,
                        [&](std::string_view d) {
                          collected.append(d);
                          return true;
                        })
                  .is_ok());
  EXPECT_EQ(collected, "line one\nline two\n");
  EXPECT_TRUE(client.list().is_ok());

  EXPECT_EQ(client.logs("ghost", 0, false, [](std::string_view) { return true; }), not_found("no process 'ghost'"));
}

TEST_F(ServerTest, LogsFollowSendsSnapshotThenChunksInOrder) {
  manager_.snapshots[{"web", 0}] = "old\n";
  start_server();
  Client client = connect();
  auto seq = client.send(MsgType::kLogsRequest, encode_to_string(LogsRequest{"web", 0, true}));
  ASSERT_TRUE(seq.is_ok());
  auto snapshot = client.read_frame();
  ASSERT_TRUE(snapshot.is_ok());
  EXPECT_EQ(snapshot->seq, *seq);
  EXPECT_EQ(*decode_logs_stream(snapshot->payload), (LogsStream{"web", 0, "old\n", false}));

  // The snapshot is sent after the subscription exists, so these all arrive.
  const std::vector<std::string> pushed = {"a\n", "b\n", std::string(100000, 'c')};
  run_on_io([&] {
    for (const auto& chunk : pushed) EXPECT_EQ(manager_.push_log("web", 0, chunk), 0u);
    EXPECT_EQ(manager_.push_log("web", 1, "stderr is another stream\n"), 0u);
  });
  for (const auto& expected : pushed) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
    EXPECT_EQ(frame->seq, 0u);
    EXPECT_EQ(*decode_logs_stream(frame->payload), (LogsStream{"web", 0, expected, false}));
  }

  // Shutting down ends the stream with an eof frame, then the connection.
  stop_server();
  auto last = client.read_frame();
  ASSERT_TRUE(last.is_ok()) << last.status().to_string();
  EXPECT_EQ(*decode_logs_stream(last->payload), (LogsStream{"web", 0, "", true}));
  EXPECT_EQ(client.read_frame().status().code(), StatusCode::kUnavailable);
}

TEST_F(ServerTest, LogsFollowThroughTheClientHelper) {
  manager_.snapshots[{"db", 1}] = "snap|";
  manager_.chunks_on_subscribe = {"one|", "two|", "three|"};
  start_server();
  Client client = connect();
  std::string collected;
  int calls = 0;
  const Status done = client.logs("db", 1, true, [&](std::string_view d) {
    collected.append(d);
    return ++calls < 4;
  });
  EXPECT_TRUE(done.is_ok()) << done.to_string();
  EXPECT_EQ(collected, "snap|one|two|three|");
}

TEST_F(ServerTest, LogsStreamTwoIsAnErrorAndTheConnectionStays) {
  start_server();
  Client client = connect();
  auto reply = client.call(MsgType::kLogsRequest, encode_to_string(LogsRequest{"web", 2, true}));
  const StatusResponse refused = expect_status_response(reply);
  EXPECT_EQ(refused.err, "LogsRequest.s: stream 2 is not 0 (stdout) or 1 (stderr)");
  EXPECT_EQ(refused.code, "OUT_OF_RANGE");
  EXPECT_TRUE(client.list().is_ok());
  EXPECT_EQ(run_on_io([this] { return manager_.log_watches.size(); }), 0u);
}

TEST_F(ServerTest, EventsArePushedToSubscribers) {
  start_server();
  Client client = connect();
  ASSERT_TRUE(client.send(MsgType::kEventsSubscribe, encode_to_string(EventsSubscribe{{"web"}})).is_ok());
  ASSERT_TRUE(client.list().is_ok());  // in-order handling: the subscription exists now
  EXPECT_EQ(run_on_io([this] { return manager_.event_watches.at(0)->ids; }), std::vector<std::string>{"web"});

  const std::vector<Event> events = {
      {"web", "process.stopping", 100, "stopping web", -1, 0, 0, 0},
      {"db", "process.started", 150, "not for this subscriber", -1, 0, 0, 0},
      {"web", "process.crashed", 200, "web exited with status 3", 3, 0, 1, 0},
      {"web", "process.restarting", 300, "restart in 2s", -1, 0, 1, 2000000000},
  };
  run_on_io([&] {
    for (const Event& e : events) manager_.publish(e);
  });
  for (size_t i : {0u, 2u, 3u}) {
    auto frame = client.read_frame();
    ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
    EXPECT_EQ(frame->type, to_byte(MsgType::kEventsStream));
    EXPECT_EQ(frame->seq, 0u);
    auto event = decode_event(frame->payload);
    ASSERT_TRUE(event.is_ok());
    EXPECT_EQ(*event, events[i]);
  }

  // Leaving unsubscribes, once the server has seen the EOF.
  client.close();
  EXPECT_TRUE(eventually([this] { return manager_.live_event_watches() == 0; }));
  EXPECT_TRUE(eventually([this] { return server_->client_count() == 0; }));
}

TEST_F(ServerTest, EventsThroughTheClientHelperWithAllProcesses) {
  manager_.events_on_subscribe = {{"web", "process.started", 1, "web up", -1, 0, 0, 0},
                                  {"", "system.shutdown_requested", 2, "bye", -1, 0, 0, 0}};
  start_server();
  Client client = connect();
  std::vector<Event> got;
  const Status done = client.events({}, [&](const Event& e) {
    got.push_back(e);
    return got.size() < 2;
  });
  EXPECT_TRUE(done.is_ok()) << done.to_string();
  EXPECT_EQ(got, manager_.events_on_subscribe);
  EXPECT_TRUE(run_on_io([this] { return manager_.event_watches.at(0)->ids.empty(); }));
}

// ------------------------------------------------------------------ broken input

TEST_F(ServerTest, BadMagicIsAnsweredThenThatConnectionCloses) {
  start_server();
  Client bystander = connect();
  ASSERT_TRUE(bystander.list().is_ok());
  Client client = connect();
  std::string frame;
  ASSERT_TRUE(wire::append_mgmt_frame(frame, to_byte(MsgType::kListRequest), 7, "").is_ok());
  frame[0] = 0x12;
  send_raw(client, frame);
  const StatusResponse reply = expect_status_response(client.read_frame());
  EXPECT_THAT(reply.err, HasSubstr("bad frame: bad magic 0x12d9"));
  EXPECT_EQ(read_until_closed(client).code(), StatusCode::kUnavailable);
  // Everyone else carries on.
  EXPECT_TRUE(bystander.list().is_ok());
  EXPECT_TRUE(connect().list().is_ok());
}

TEST_F(ServerTest, BadVersionIsAnsweredThenClosed) {
  start_server();
  Client client = connect();
  std::string frame;
  ASSERT_TRUE(wire::append_mgmt_frame(frame, to_byte(MsgType::kListRequest), 7, "").is_ok());
  frame[2] = 0x02;
  send_raw(client, frame);
  EXPECT_THAT(expect_status_response(client.read_frame()).err, HasSubstr("unsupported protocol version 2"));
  EXPECT_EQ(read_until_closed(client).code(), StatusCode::kUnavailable);
}

TEST_F(ServerTest, OversizedFrameIsRefusedFromItsHeader) {
  start_server();
  Client client = connect();
  // Only the header of a 17 MiB frame: the reply must come without the payload.
  const auto header = wire::encode_mgmt_header({to_byte(MsgType::kStatusRequest), 0, 99, 17u << 20});
  send_raw(client, std::string_view(reinterpret_cast<const char*>(header.data()), header.size()));
  auto frame = client.read_frame();
  ASSERT_TRUE(frame.is_ok()) << frame.status().to_string();
  EXPECT_EQ(frame->seq, 99u);
  const StatusResponse reply = expect_status_response(frame);
  EXPECT_THAT(reply.err, HasSubstr("payload length 17825792 exceeds"));
  EXPECT_EQ(read_until_closed(client).code(), StatusCode::kUnavailable);
}

TEST_F(ServerTest, TruncatedFrameThenEof) {
  start_server();
  Client client = connect();
  std::string frame;
  ASSERT_TRUE(
      wire::append_mgmt_frame(frame, to_byte(MsgType::kStatusRequest), 5, encode_to_string(IdRequest{"web"})).is_ok());
  frame.resize(frame.size() - 3);
  send_raw(client, frame);
  ASSERT_EQ(::shutdown(client.fd(), SHUT_WR), 0);  // EOF inside the payload
  EXPECT_THAT(expect_status_response(client.read_frame()).err, HasSubstr("bad frame: truncated payload: 5 of 8 bytes"));
  EXPECT_EQ(read_until_closed(client).code(), StatusCode::kUnavailable);
}

TEST_F(ServerTest, GarbagePayloadIsAnsweredThenClosed) {
  start_server();
  Client client = connect();
  auto reply = client.call(MsgType::kStatusRequest, "\xc1\xc1\xc1");
  EXPECT_EQ(expect_status_response(reply).err, "StatusRequest: not valid MessagePack (bad byte at offset 0)");
  EXPECT_EQ(read_until_closed(client).code(), StatusCode::kUnavailable);

  Client second = connect();
  reply = second.call(MsgType::kStopRequest, "\x81\xa2id\x05");
  EXPECT_EQ(expect_status_response(reply).err, "StopRequest.id: expected a string, got unsigned integer");
  EXPECT_EQ(read_until_closed(second).code(), StatusCode::kUnavailable);
  EXPECT_EQ(run_on_io([this] { return manager_.calls.size(); }), 0u);
}

TEST_F(ServerTest, HalfClosedClientStillGetsItsReplies) {
  manager_.hold_commands = true;
  start_server();
  Client client = connect();
  auto seq = client.send(MsgType::kStopRequest, encode_to_string(IdRequest{"web"}));
  ASSERT_TRUE(seq.is_ok());
  ASSERT_EQ(::shutdown(client.fd(), SHUT_WR), 0);
  ASSERT_TRUE(eventually([this] { return manager_.held.size() == 1; }));
  run_on_io([this] { manager_.release_held(); });
  auto reply = client.read_frame();
  ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
  EXPECT_EQ(reply->seq, *seq);
  EXPECT_EQ(expect_status_response(reply).entry.state, "stopped");
  EXPECT_EQ(read_until_closed(client).code(), StatusCode::kUnavailable);
}

// ------------------------------------------------------------------ load and limits

TEST_F(ServerTest, ManyConcurrentClients) {
  start_server();
  constexpr int kClients = 100;
  constexpr int kCalls = 20;
  std::atomic<int> good{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&] {
      Result<Client> client = Client::connect(socket_path_);
      if (!client.is_ok()) {
        bad += kCalls;
        return;
      }
      for (int c = 0; c < kCalls; ++c) {
        auto list = client->list();
        (list.is_ok() && list->size() == 2 ? good : bad)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), kClients * kCalls);
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(ServerTest, ClientsBeyondTheLimitAreClosed) {
  ServerOptions o = options();
  o.max_clients = 2;
  start_server(o);
  Client a = connect();
  Client b = connect();
  ASSERT_TRUE(a.list().is_ok());
  ASSERT_TRUE(b.list().is_ok());
  EXPECT_EQ(server_->client_count(), 2u);
  Client c = connect();
  auto refused = c.list();
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().to_string();
  EXPECT_TRUE(a.list().is_ok());
}

TEST_F(ServerTest, StalledFollowerIsDroppedAndOthersCarryOn) {
  ServerOptions o = options();
  o.max_queued_bytes = 256 << 10;
  start_server(o);
  Client stalled = connect();
  ASSERT_TRUE(stalled.send(MsgType::kLogsRequest, encode_to_string(LogsRequest{"web", 0, true})).is_ok());
  ASSERT_TRUE(stalled.read_frame().is_ok());  // the snapshot: subscribed now
  Client other = connect();

  // The stalled client never reads again. Push until the server's sink refuses: the socket
  // buffers and then the 256 KiB queue fill up, whatever the machine's speed.
  const std::string chunk(64 << 10, 'x');
  constexpr int kCap = 100000;
  const int pushes = run_on_io([&] {
    for (int i = 0; i < kCap; ++i) {
      if (manager_.push_log("web", 0, chunk) > 0) return i + 1;
    }
    return -1;
  });
  ASSERT_GT(pushes, 0) << "the sink never refused";
  EXPECT_EQ(run_on_io([this] { return manager_.live_log_watches(); }), 0u);

  // Others are unaffected.
  auto list = other.list();
  ASSERT_TRUE(list.is_ok()) << list.status().to_string();

  // The stalled connection was closed: draining it ends in EOF, clean or mid-frame.
  const Status end = read_until_closed(stalled);
  EXPECT_TRUE(end.code() == StatusCode::kUnavailable || end.code() == StatusCode::kDataLoss) << end.to_string();
  ASSERT_TRUE(other.list().is_ok());
  EXPECT_EQ(server_->client_count(), 1u);
}

// ------------------------------------------------------------------ default path

TEST(DefaultSocketPath, FollowsTheEnvironment) {
  const char* saved_socket = std::getenv("AGENTRY_SOCKET");
  const char* saved_runtime = std::getenv("XDG_RUNTIME_DIR");
  const std::optional<std::string> socket_env = saved_socket ? std::optional<std::string>(saved_socket) : std::nullopt;
  const std::optional<std::string> runtime_env =
      saved_runtime ? std::optional<std::string>(saved_runtime) : std::nullopt;

  ::setenv("AGENTRY_SOCKET", "/somewhere/else.sock", 1);
  EXPECT_EQ(default_socket_path(), "/somewhere/else.sock");
  ::unsetenv("AGENTRY_SOCKET");
  ::setenv("XDG_RUNTIME_DIR", "/run/user/1234", 1);
  EXPECT_EQ(default_socket_path(), "/run/user/1234/agentry/manager.sock");
  ::unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(default_socket_path(), ::geteuid() == 0 ? std::string("/run/agentry/manager.sock")
                                                    : fmt::format("/tmp/agentry-{}/manager.sock", ::geteuid()));

  if (socket_env) ::setenv("AGENTRY_SOCKET", socket_env->c_str(), 1);
  if (runtime_env) ::setenv("XDG_RUNTIME_DIR", runtime_env->c_str(), 1);
}

}  // namespace
}  // namespace agentry::mgmt
