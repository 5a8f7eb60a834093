// The command monitor and send_command() over real unix sockets in temporary directories.
//
// No sleeps: a test that needs a handler to be running waits for the handler to say so
// (promises), and a handler that must stay busy waits for the test to release it. Timeouts
// are short only where the timeout is the subject, and then the reply's content is
// checked, not how long it took. Waits that guard against a hang are generous (kPatience).
#include "agentry/command/monitor.h"

#include <fcntl.h>
#include <grp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agentry/base/log.h"
#include "agentry/base/unique_fd.h"
#include "agentry/command/client.h"
#include "agentry/command/protocol.h"

namespace agentry::command {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kPatience = std::chrono::seconds(30);

// ------------------------------------------------------------------ helpers

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/agentry-cmd-test-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct stat stat_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) ADD_FAILURE() << "lstat " << path << ": " << std::strerror(errno);
  return st;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

mode_t mode_of(const std::string& path) { return stat_of(path).st_mode & 07777; }

std::optional<gid_t> group_id(const char* name) {
  const struct group* g = ::getgrnam(name);
  if (g == nullptr) return std::nullopt;
  return g->gr_gid;
}

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    return UniqueFd();
  }
  return fd;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << std::strerror(errno);
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads until the server closes.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

json reply_of(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  EXPECT_TRUE(j.is_object()) << "not a JSON object: " << text;
  return j;
}

Handler reply_with(std::string reply) {
  return [reply = std::move(reply)](std::string_view) -> Result<std::string> { return reply; };
}

// Echoes the request back inside a success reply: {"Status":0,"StatusMessage":"ok","Request":{...}}.
Result<std::string> echo(std::string_view request) {
  json out = {{"Status", 0}, {"StatusMessage", "ok"}, {"Request", json::parse(request)}};
  return out.dump();
}

class MonitorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    log::Options options;
    options.level = spdlog::level::warn;
    log::setup(options);
  }

  MonitorOptions options(std::string subdir = "cmd") const {
    MonitorOptions o;
    o.dir = dir_.path() + "/" + subdir;
    return o;
  }

  TempDir dir_;
};

// ------------------------------------------------------------------ lifecycle

TEST_F(MonitorTest, SocketExistsExactlyWhileAHandlerIsRegistered) {
  Monitor monitor(options());
  const std::string path = monitor.socket_path();
  EXPECT_EQ(path, dir_.path() + "/cmd/agent");
  EXPECT_FALSE(monitor.listening());
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(dir_.path() + "/cmd"));  // nothing touched before the first handler

  ASSERT_TRUE(monitor.register_handler("a", reply_with(R"({"Status":0,"StatusMessage":"a"})")).is_ok());
  EXPECT_TRUE(monitor.listening());
  EXPECT_TRUE(S_ISSOCK(stat_of(path).st_mode));
  ASSERT_TRUE(monitor.register_handler("b", reply_with(R"({"Status":0,"StatusMessage":"b"})")).is_ok());
  EXPECT_EQ(monitor.handler_count(), 2u);

  ASSERT_TRUE(monitor.unregister_handler("a").is_ok());
  EXPECT_TRUE(monitor.listening());
  EXPECT_EQ(reply_of(send_command(R"({"Command":"b"})", path)).at("StatusMessage"), "b");
  EXPECT_EQ(reply_of(send_command(R"({"Command":"a"})", path)).at("Status"), kStatusNoHandler);

  ASSERT_TRUE(monitor.unregister_handler("b").is_ok());
  EXPECT_FALSE(monitor.listening());
  EXPECT_FALSE(exists(path));
  const json gone = reply_of(send_command(R"({"Command":"b"})", path));
  EXPECT_EQ(gone.at("Status"), kStatusConnectionError);
  EXPECT_THAT(gone.at("StatusMessage").get<std::string>(), HasSubstr("connecting to " + path));

  // And back again.
  ASSERT_TRUE(monitor.register_handler("b", reply_with(R"({"Status":0,"StatusMessage":"again"})")).is_ok());
  EXPECT_EQ(reply_of(send_command(R"({"Command":"b"})", path)).at("StatusMessage"), "again");
}

TEST_F(MonitorTest, RegisterTwiceFails) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", reply_with("{}")).is_ok());
  const Status again = monitor.register_handler("x", reply_with("{}"));
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(again.message(), HasSubstr("\"x\""));
  EXPECT_EQ(monitor.handler_count(), 1u);
}

TEST_F(MonitorTest, UnregisterMissingFails) {
  Monitor monitor(options());
  EXPECT_EQ(monitor.unregister_handler("nope").code(), StatusCode::kNotFound);
  ASSERT_TRUE(monitor.register_handler("x", reply_with("{}")).is_ok());
  EXPECT_EQ(monitor.unregister_handler("nope").code(), StatusCode::kNotFound);
  EXPECT_TRUE(monitor.listening());
}

TEST_F(MonitorTest, RejectsEmptyNamesAndHandlers) {
  Monitor monitor(options());
  EXPECT_EQ(monitor.register_handler("", reply_with("{}")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(monitor.register_handler("x", Handler()).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(monitor.listening());
}

TEST_F(MonitorTest, ListenersHaveTheirOwnSockets) {
  MonitorOptions agent_options = options();
  MonitorOptions plugin_options = options();
  plugin_options.listener = Listener::kPlugin;
  Monitor agent(agent_options);
  Monitor plugin(plugin_options);
  ASSERT_TRUE(agent.register_handler("who", reply_with(R"({"Status":0,"StatusMessage":"agent"})")).is_ok());
  ASSERT_TRUE(plugin.register_handler("who", reply_with(R"({"Status":0,"StatusMessage":"plugin"})")).is_ok());
  const std::string dir = dir_.path() + "/cmd";
  EXPECT_EQ(reply_of(send_command(R"({"Command":"who"})", dir, Listener::kAgent)).at("StatusMessage"), "agent");
  EXPECT_EQ(reply_of(send_command(R"({"Command":"who"})", dir, Listener::kPlugin)).at("StatusMessage"), "plugin");
  EXPECT_EQ(plugin.socket_path(), dir + "/plugin");
}

// ------------------------------------------------------------------ directory and socket permissions

struct PermissionCase {
  mode_t mode;
  const char* group;  // "" for none; a name or a number
};

class PermissionTest : public MonitorTest, public ::testing::WithParamInterface<PermissionCase> {};

TEST_P(PermissionTest, DirectoryAndSocketGetTheConfiguredModeAndGroup) {
  const PermissionCase c = GetParam();
  std::optional<gid_t> gid;
  if (*c.group != '\0') {
    gid = (c.group[0] >= '0' && c.group[0] <= '9') ? std::optional<gid_t>(static_cast<gid_t>(std::stoul(c.group)))
                                                   : group_id(c.group);
    if (!gid) GTEST_SKIP() << "no group " << c.group << " on this machine";
  }
  MonitorOptions o = options();
  o.mode = c.mode;
  o.group = c.group;
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());

  const struct stat dir = stat_of(o.dir);
  EXPECT_TRUE(S_ISDIR(dir.st_mode));
  EXPECT_EQ(dir.st_mode & 07777, c.mode);
  const struct stat sock = stat_of(monitor.socket_path());
  EXPECT_TRUE(S_ISSOCK(sock.st_mode));
  EXPECT_EQ(sock.st_mode & 07777, (c.mode & 0666) | 0600);
  EXPECT_EQ(dir.st_gid, gid.value_or(::getegid()));
  EXPECT_EQ(sock.st_gid, gid.value_or(::getegid()));
  EXPECT_EQ(reply_of(send_command(R"({"Command":"x"})", monitor.socket_path())).at("Status"), 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, PermissionTest,
                         ::testing::Values(PermissionCase{0777, ""}, PermissionCase{0770, ""},
                                           PermissionCase{0700, ""}, PermissionCase{0777, "nogroup"},
                                           PermissionCase{0770, "nogroup"}, PermissionCase{0700, "nogroup"},
                                           PermissionCase{0770, "1"}, PermissionCase{0750, "daemon"}));

TEST_F(MonitorTest, ModesHoldWhateverTheUmask) {
  const std::optional<gid_t> gid = group_id("nogroup");
  if (!gid) GTEST_SKIP() << "no group nogroup on this machine";
  for (const mode_t mask : {mode_t{0}, mode_t{0077}, mode_t{0022}}) {
    SCOPED_TRACE(mask);
    TempDir dir;
    MonitorOptions o;
    o.dir = dir.path() + "/cmd";
    o.group = "nogroup";
    const mode_t old_mask = ::umask(mask);
    {
      Monitor monitor(o);
      const Status registered = monitor.register_handler("x", echo);
      ::umask(old_mask);
      ASSERT_TRUE(registered.is_ok()) << registered.to_string();
      EXPECT_EQ(mode_of(o.dir), 0770u);
      EXPECT_EQ(mode_of(monitor.socket_path()), 0660u);
    }
  }
}

TEST_F(MonitorTest, CreatesNestedDirectories) {
  MonitorOptions o = options("a/b/c");
  o.mode = 0750;
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(mode_of(dir_.path() + "/a/b/c"), 0750u);
  EXPECT_TRUE(S_ISDIR(stat_of(dir_.path() + "/a/b").st_mode));
  EXPECT_TRUE(S_ISDIR(stat_of(dir_.path() + "/a").st_mode));
  EXPECT_EQ(monitor.socket_path(), dir_.path() + "/a/b/c/agent");
  EXPECT_EQ(reply_of(send_command(R"({"Command":"x"})", monitor.socket_path())).at("Status"), 0);
}

TEST_F(MonitorTest, NarrowsALooserExistingDirectory) {
  const std::string dir = dir_.path() + "/cmd";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(mode_of(dir), 0770u);
}

TEST_F(MonitorTest, NarrowsButNeverWidensAnExistingDirectory) {
  const std::string dir = dir_.path() + "/cmd";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);  // o+rx is too loose, g+w is not there to take
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(mode_of(dir), 0750u);
}

TEST_F(MonitorTest, KeepsATighterExistingDirectory) {
  const std::string dir = dir_.path() + "/cmd";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0700), 0);
  Monitor monitor(options());  // 0770
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(mode_of(dir), 0700u);
}

TEST_F(MonitorTest, SetsTheGroupOfAnExistingDirectory) {
  const std::optional<gid_t> gid = group_id("nogroup");
  if (!gid) GTEST_SKIP() << "no group nogroup on this machine";
  const std::string dir = dir_.path() + "/cmd";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  MonitorOptions o = options();
  o.group = std::to_string(*gid);
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(stat_of(dir).st_gid, *gid);
}

TEST_F(MonitorTest, UnknownGroupFailsTheFirstRegistration) {
  MonitorOptions o = options();
  o.group = "agentry-no-such-group";
  Monitor monitor(o);
  const Status status = monitor.register_handler("x", echo);
  EXPECT_EQ(status.code(), StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("agentry-no-such-group"));
  EXPECT_EQ(monitor.handler_count(), 0u);
  EXPECT_FALSE(monitor.listening());
}

TEST_F(MonitorTest, RefusesASymlinkOrAFileAsTheDirectory) {
  const std::string real = dir_.path() + "/real";
  ASSERT_EQ(::mkdir(real.c_str(), 0700), 0);
  ASSERT_EQ(::symlink(real.c_str(), (dir_.path() + "/link").c_str()), 0);
  {
    Monitor monitor(options("link"));
    const Status status = monitor.register_handler("x", echo);
    EXPECT_EQ(status.code(), StatusCode::kPermissionDenied);
    EXPECT_THAT(status.message(), HasSubstr("symbolic link"));
  }
  {
    UniqueFd file(::open((dir_.path() + "/file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(file.valid());
    Monitor monitor(options("file"));
    EXPECT_EQ(monitor.register_handler("x", echo).code(), StatusCode::kFailedPrecondition);
  }
}

TEST_F(MonitorTest, ReplacesAStaleSocket) {
  const std::string dir = dir_.path() + "/cmd";
  ASSERT_EQ(::mkdir(dir.c_str(), 0770), 0);
  {
    // A socket file whose process is gone: bound, then closed without unlinking.
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = dir + "/agent";
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(reply_of(send_command(R"({"Command":"x"})", monitor.socket_path())).at("Status"), 0);
}

TEST_F(MonitorTest, RefusesToTakeOverALiveSocket) {
  Monitor first(options());
  ASSERT_TRUE(first.register_handler("x", reply_with(R"({"Status":0,"StatusMessage":"first"})")).is_ok());
  Monitor second(options());
  const Status status = second.register_handler("x", echo);
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("another process is listening on " + first.socket_path()));
  EXPECT_EQ(second.handler_count(), 0u);
  EXPECT_EQ(reply_of(send_command(R"({"Command":"x"})", first.socket_path())).at("StatusMessage"), "first");
}

TEST_F(MonitorTest, RefusesAnOverlongSocketPath) {
  Monitor monitor(options(std::string(120, 'd')));
  const Status status = monitor.register_handler("x", echo);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("must be shorter than"));
}

// ------------------------------------------------------------------ requests and replies

TEST_F(MonitorTest, HandlerGetsTheRequestVerbatim) {
  Monitor monitor(options());
  std::promise<std::string> seen;
  ASSERT_TRUE(monitor
                  .register_handler("x",
                                    [&](std::string_view request) -> Result<std::string> {
                                      seen.set_value(std::string(request));
                                      return std::string(R"({"Status":0,"StatusMessage":"ok","Extra":[1,2]})");
                                    })
                  .is_ok());
  const std::string request = R"({ "command" : "x", "Data": {"a": "}{\"\\"}, "List": ["]", "{"] })";
  const json reply = reply_of(send_command(request, monitor.socket_path()));
  EXPECT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Extra"), json::array({1, 2}));  // extra reply fields pass through
  EXPECT_EQ(seen.get_future().get(), request);
}

TEST_F(MonitorTest, CommandKeyIsCaseInsensitive) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  for (const char* request : {R"({"Command":"x"})", R"({"command":"x"})", R"({"COMMAND":"x"})"}) {
    EXPECT_EQ(reply_of(send_command(request, monitor.socket_path())).at("Status"), 0) << request;
  }
  // The command name itself is matched exactly.
  EXPECT_EQ(reply_of(send_command(R"({"Command":"X"})", monitor.socket_path())).at("Status"), kStatusNoHandler);
}

TEST_F(MonitorTest, BracesAndEscapesInsideStrings) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  const std::string tricky = "}{]\\\"[{\"}";  // every framing character, escaped where needed
  const json request = {{"Command", "x"}, {"Data", tricky}, {"More", {{"k", "}}}}"}}}};
  const json reply = reply_of(send_command(request.dump(), monitor.socket_path()));
  ASSERT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Request"), request);
}

TEST_F(MonitorTest, UnknownAndMissingCommandsGet101) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  for (const char* request : {R"({"Command":"y"})", R"({})", R"({"Other":"x"})", R"({"Command":null})"}) {
    const json reply = reply_of(send_command(request, monitor.socket_path()));
    EXPECT_EQ(reply.at("Status"), kStatusNoHandler) << request;
    EXPECT_EQ(reply.at("StatusMessage"), standard_message(kStatusNoHandler)) << request;
  }
}

TEST_F(MonitorTest, InvalidRequestsGet102) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  for (const char* request : {R"({"Command":"x",})", R"({"Command":5})", R"([1])", "not json", R"({"Command" "x"})"}) {
    const json reply = reply_of(send_command(request, monitor.socket_path()));
    EXPECT_EQ(reply.at("Status"), kStatusBadRequest) << request;
    EXPECT_EQ(reply.at("StatusMessage"), standard_message(kStatusBadRequest)) << request;
  }
}

TEST_F(MonitorTest, TruncatedRequestGets102AtEndOfInput) {
  MonitorOptions o = options();
  o.request_timeout = std::chrono::minutes(10);  // the answer must come from the EOF, not a timeout
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  // send_command() ends its side after writing, so the server sees the request end early.
  const json reply = reply_of(send_command(R"({"Command":"x","Data":[1,2)", monitor.socket_path()));
  EXPECT_EQ(reply.at("Status"), kStatusBadRequest);
}

TEST_F(MonitorTest, TrailingBytesAreIgnored) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  const json reply = reply_of(send_command(R"({"Command":"x"} {"Command":"y"} trailing)", monitor.socket_path()));
  EXPECT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Request"), json({{"Command", "x"}}));
}

TEST_F(MonitorTest, HandlerErrorGets105WithItsText) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor
                  .register_handler("fail",
                                    [](std::string_view) -> Result<std::string> {
                                      return internal_error("disk \"full\" on /var");
                                    })
                  .is_ok());
  ASSERT_TRUE(monitor
                  .register_handler("throw",
                                    [](std::string_view) -> Result<std::string> {
                                      throw std::runtime_error("boom");
                                    })
                  .is_ok());
  const json failed = reply_of(send_command(R"({"Command":"fail"})", monitor.socket_path()));
  EXPECT_EQ(failed.at("Status"), kStatusHandlerError);
  EXPECT_EQ(failed.at("StatusMessage"), "disk \"full\" on /var");
  const json thrown = reply_of(send_command(R"({"Command":"throw"})", monitor.socket_path()));
  EXPECT_EQ(thrown.at("Status"), kStatusHandlerError);
  EXPECT_EQ(thrown.at("StatusMessage"), "boom");
}

TEST_F(MonitorTest, NonJsonReplyGets106) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("bad", reply_with("Status: 0")).is_ok());
  ASSERT_TRUE(monitor.register_handler("array", reply_with("[1]")).is_ok());
  for (const char* command : {"bad", "array"}) {
    const json reply = reply_of(send_command(json{{"Command", command}}.dump(), monitor.socket_path()));
    EXPECT_EQ(reply.at("Status"), kStatusInternalError) << command;
  }
}

TEST_F(MonitorTest, RequestWrittenOneByteAtATime) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  const std::string request = R"({"Command":"x","Data":"a}b","N":[{"k":"\""}]})";
  UniqueFd fd = connect_to(monitor.socket_path());
  ASSERT_TRUE(fd.valid());
  for (const char c : request) write_all(fd.get(), std::string_view(&c, 1));
  const json reply = reply_of(read_all(fd.get()));  // no shutdown: the server must find the end itself
  EXPECT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Request"), json::parse(request));
}

TEST_F(MonitorTest, RequestCompletedAfterAPause) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  const std::string request = R"({"Command":"x","Part":"two halves"})";
  UniqueFd fd = connect_to(monitor.socket_path());
  ASSERT_TRUE(fd.valid());
  write_all(fd.get(), request.substr(0, 10));
  // Not a synchronisation: the pause only makes it likely that the server has stopped
  // waiting on the accepting thread and finishes the read asynchronously. The test passes
  // on either path.
  std::this_thread::sleep_for(50ms);
  write_all(fd.get(), request.substr(10));
  const json reply = reply_of(read_all(fd.get()));
  EXPECT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Request"), json::parse(request));
}

TEST_F(MonitorTest, LargeRequestUnderTheCap) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor
                  .register_handler("size",
                                    [](std::string_view request) -> Result<std::string> {
                                      return json{{"Status", 0}, {"StatusMessage", "ok"}, {"Bytes", request.size()}}
                                          .dump();
                                    })
                  .is_ok());
  const std::string request = json{{"Command", "size"}, {"Pad", std::string(1000 * 1000, 'p')}}.dump();
  ASSERT_LT(request.size(), std::size_t{1} << 20);
  const json reply = reply_of(send_command(request, monitor.socket_path()));
  EXPECT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Bytes"), request.size());
}

TEST_F(MonitorTest, TwoMebibyteRequestGets102) {
  Monitor monitor(options());
  std::atomic<int> calls{0};
  ASSERT_TRUE(monitor
                  .register_handler("x",
                                    [&](std::string_view) -> Result<std::string> {
                                      ++calls;
                                      return std::string("{}");
                                    })
                  .is_ok());
  const std::string request = json{{"Command", "x"}, {"Pad", std::string(2 << 20, 'p')}}.dump();
  const json reply = reply_of(send_command(request, monitor.socket_path()));
  EXPECT_EQ(reply.at("Status"), kStatusBadRequest);
  EXPECT_EQ(reply.at("StatusMessage"), "request exceeds 1048576 bytes");
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(MonitorTest, ConfiguredSizeCap) {
  MonitorOptions o = options();
  o.max_request_bytes = 100;
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  EXPECT_EQ(reply_of(send_command(R"({"Command":"x"})", monitor.socket_path())).at("Status"), 0);
  const json reply =
      reply_of(send_command(json{{"Command", "x"}, {"Pad", std::string(200, 'p')}}.dump(), monitor.socket_path()));
  EXPECT_EQ(reply.at("StatusMessage"), "request exceeds 100 bytes");
}

TEST_F(MonitorTest, LargeReplyIsDeliveredWhole) {
  Monitor monitor(options());
  const std::string big = json{{"Status", 0}, {"StatusMessage", "ok"}, {"Blob", std::string(4 << 20, 'b')}}.dump();
  ASSERT_TRUE(monitor.register_handler("big", reply_with(big)).is_ok());
  EXPECT_EQ(send_command(R"({"Command":"big"})", monitor.socket_path()), big);
}

// ------------------------------------------------------------------ timeouts

TEST_F(MonitorTest, SilentClientGets104) {
  MonitorOptions o = options();
  o.request_timeout = 200ms;
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  UniqueFd fd = connect_to(monitor.socket_path());
  ASSERT_TRUE(fd.valid());
  const json reply = reply_of(read_all(fd.get()));
  EXPECT_EQ(reply.at("Status"), kStatusTimeout);
  EXPECT_EQ(reply.at("StatusMessage"), "Connection timeout before reading valid request");
}

TEST_F(MonitorTest, IncompleteRequestGets104) {
  MonitorOptions o = options();
  o.request_timeout = 200ms;
  Monitor monitor(o);
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  UniqueFd fd = connect_to(monitor.socket_path());
  ASSERT_TRUE(fd.valid());
  write_all(fd.get(), R"({"Command":"x","Data":"unfinished)");
  const json reply = reply_of(read_all(fd.get()));
  EXPECT_EQ(reply.at("Status"), kStatusTimeout);
}

// ------------------------------------------------------------------ concurrency

TEST_F(MonitorTest, FiftyConcurrentClients) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  constexpr int kClients = 50;
  std::vector<std::future<std::string>> replies;
  for (int i = 0; i < kClients; ++i) {
    replies.push_back(std::async(std::launch::async, [&, i] {
      return send_command(json{{"Command", "x"}, {"Id", i}}.dump(), monitor.socket_path());
    }));
  }
  for (int i = 0; i < kClients; ++i) {
    const json reply = reply_of(replies[static_cast<std::size_t>(i)].get());
    ASSERT_EQ(reply.at("Status"), 0) << reply.dump();
    EXPECT_EQ(reply.at("Request").at("Id"), i);
  }
}

// A handler that reports when it starts and then waits to be released.
struct Gate {
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();

  Handler handler() {
    return [this](std::string_view) -> Result<std::string> {
      entered.set_value();
      released.wait();
      return std::string(R"({"Status":0,"StatusMessage":"released"})");
    };
  }
};

TEST_F(MonitorTest, BlockingHandlerDelaysNeitherRegistrationNorOtherClients) {
  Monitor monitor(options());
  Gate gate;
  ASSERT_TRUE(monitor.register_handler("block", gate.handler()).is_ok());
  ASSERT_TRUE(monitor.register_handler("quick", reply_with(R"({"Status":0,"StatusMessage":"quick"})")).is_ok());
  auto blocked = std::async(std::launch::async,
                            [&] { return send_command(R"({"Command":"block"})", monitor.socket_path()); });
  gate.entered.get_future().wait();

  // While "block" runs: registration, unregistration and other clients all proceed.
  auto registered = std::async(std::launch::async, [&] {
    return monitor.register_handler("late", reply_with(R"({"Status":0,"StatusMessage":"late"})"));
  });
  ASSERT_EQ(registered.wait_for(kPatience), std::future_status::ready) << "registration waited for a handler";
  EXPECT_TRUE(registered.get().is_ok());
  auto others = std::async(std::launch::async, [&] {
    std::vector<std::string> out;
    out.push_back(send_command(R"({"Command":"quick"})", monitor.socket_path()));
    out.push_back(send_command(R"({"Command":"late"})", monitor.socket_path()));
    EXPECT_TRUE(monitor.unregister_handler("late").is_ok());
    return out;
  });
  ASSERT_EQ(others.wait_for(kPatience), std::future_status::ready) << "a client waited for a handler";
  const std::vector<std::string> out = others.get();
  EXPECT_EQ(reply_of(out[0]).at("StatusMessage"), "quick");
  EXPECT_EQ(reply_of(out[1]).at("StatusMessage"), "late");

  gate.release.set_value();
  EXPECT_EQ(reply_of(blocked.get()).at("StatusMessage"), "released");
}

TEST_F(MonitorTest, HandlersRunConcurrently) {
  Monitor monitor(options());
  // Each handler waits until both have started, so this completes only if they overlap.
  std::atomic<int> started{0};
  std::promise<void> both;
  std::shared_future<void> both_started = both.get_future().share();
  ASSERT_TRUE(monitor
                  .register_handler("pair",
                                    [&](std::string_view) -> Result<std::string> {
                                      if (++started == 2) both.set_value();
                                      both_started.wait();
                                      return std::string(R"({"Status":0,"StatusMessage":"pair"})");
                                    })
                  .is_ok());
  auto a = std::async(std::launch::async, [&] { return send_command(R"({"Command":"pair"})", monitor.socket_path()); });
  auto b = std::async(std::launch::async, [&] { return send_command(R"({"Command":"pair"})", monitor.socket_path()); });
  EXPECT_EQ(reply_of(a.get()).at("StatusMessage"), "pair");
  EXPECT_EQ(reply_of(b.get()).at("StatusMessage"), "pair");
}

TEST_F(MonitorTest, BusyHandlerThreadsDoNotStarveTimeouts) {
  MonitorOptions o = options();
  o.max_handler_threads = 1;
  o.request_timeout = 200ms;
  Monitor monitor(o);
  Gate gate;
  ASSERT_TRUE(monitor.register_handler("block", gate.handler()).is_ok());
  ASSERT_TRUE(monitor.register_handler("quick", reply_with(R"({"Status":0,"StatusMessage":"quick"})")).is_ok());
  auto blocked = std::async(std::launch::async,
                            [&] { return send_command(R"({"Command":"block"})", monitor.socket_path()); });
  gate.entered.get_future().wait();

  // The only handler thread is taken: a complete request waits for it...
  auto queued = std::async(std::launch::async,
                           [&] { return send_command(R"({"Command":"quick"})", monitor.socket_path()); });
  // ...but reading and timing out other connections goes on.
  UniqueFd silent = connect_to(monitor.socket_path());
  ASSERT_TRUE(silent.valid());
  EXPECT_EQ(reply_of(read_all(silent.get())).at("Status"), kStatusTimeout);

  gate.release.set_value();
  EXPECT_EQ(reply_of(blocked.get()).at("StatusMessage"), "released");
  EXPECT_EQ(reply_of(queued.get()).at("StatusMessage"), "quick");
}

TEST_F(MonitorTest, SlowRequestWaitsForTheBusyHandlerThread) {
  MonitorOptions o = options();
  o.max_handler_threads = 1;
  Monitor monitor(o);
  Gate gate;
  ASSERT_TRUE(monitor.register_handler("block", gate.handler()).is_ok());
  ASSERT_TRUE(monitor.register_handler("x", echo).is_ok());
  auto blocked = std::async(std::launch::async,
                            [&] { return send_command(R"({"Command":"block"})", monitor.socket_path()); });
  gate.entered.get_future().wait();
  // The one thread left accepting may not wait on a client, so a request trickling in is
  // read asynchronously; complete, it waits for the handler slot "block" holds.
  const std::string request = R"({"Command":"x","Trickle":true})";
  UniqueFd fd = connect_to(monitor.socket_path());
  ASSERT_TRUE(fd.valid());
  for (const char c : request) write_all(fd.get(), std::string_view(&c, 1));
  gate.release.set_value();
  const json reply = reply_of(read_all(fd.get()));
  EXPECT_EQ(reply.at("Status"), 0);
  EXPECT_EQ(reply.at("Request"), json::parse(request));
  EXPECT_EQ(reply_of(blocked.get()).at("StatusMessage"), "released");
}

TEST_F(MonitorTest, HandlerMayRegisterAndUnregister) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor
                  .register_handler("add",
                                    [&](std::string_view) -> Result<std::string> {
                                      AGENTRY_RETURN_IF_ERROR(monitor.register_handler("added", echo));
                                      return std::string(R"({"Status":0,"StatusMessage":"added"})");
                                    })
                  .is_ok());
  ASSERT_TRUE(monitor
                  .register_handler("once",
                                    [&](std::string_view) -> Result<std::string> {
                                      AGENTRY_RETURN_IF_ERROR(monitor.unregister_handler("once"));
                                      return std::string(R"({"Status":0,"StatusMessage":"gone"})");
                                    })
                  .is_ok());
  EXPECT_EQ(reply_of(send_command(R"({"Command":"add"})", monitor.socket_path())).at("StatusMessage"), "added");
  EXPECT_EQ(reply_of(send_command(R"({"Command":"added"})", monitor.socket_path())).at("Status"), 0);
  EXPECT_EQ(reply_of(send_command(R"({"Command":"once"})", monitor.socket_path())).at("StatusMessage"), "gone");
  EXPECT_EQ(reply_of(send_command(R"({"Command":"once"})", monitor.socket_path())).at("Status"), kStatusNoHandler);
}

TEST_F(MonitorTest, LastHandlerRemovingItselfStillReplies) {
  Monitor monitor(options());
  ASSERT_TRUE(monitor
                  .register_handler("bye",
                                    [&](std::string_view) -> Result<std::string> {
                                      AGENTRY_RETURN_IF_ERROR(monitor.unregister_handler("bye"));
                                      return std::string(R"({"Status":0,"StatusMessage":"bye"})");
                                    })
                  .is_ok());
  EXPECT_EQ(reply_of(send_command(R"({"Command":"bye"})", monitor.socket_path())).at("StatusMessage"), "bye");
  EXPECT_FALSE(monitor.listening());
  EXPECT_FALSE(exists(monitor.socket_path()));
}

TEST_F(MonitorTest, DestructorWaitsForARunningHandler) {
  auto monitor = std::make_unique<Monitor>(options());
  Gate gate;
  ASSERT_TRUE(monitor->register_handler("block", gate.handler()).is_ok());
  const std::string path = monitor->socket_path();
  auto blocked = std::async(std::launch::async, [&] { return send_command(R"({"Command":"block"})", path); });
  gate.entered.get_future().wait();
  auto destroyed = std::async(std::launch::async, [&] { monitor.reset(); });
  gate.release.set_value();
  destroyed.get();
  EXPECT_FALSE(exists(path));
  EXPECT_EQ(reply_of(blocked.get()).at("StatusMessage"), "released");
}

// ------------------------------------------------------------------ send_command failures

TEST_F(MonitorTest, SendCommandReportsWhatFailed) {
  const json missing = reply_of(send_command(R"({"Command":"x"})", dir_.path() + "/nothing"));
  EXPECT_EQ(missing.at("Status"), kStatusConnectionError);
  EXPECT_THAT(missing.at("StatusMessage").get<std::string>(), StartsWith("Connection error: connecting to "));
  EXPECT_THAT(missing.at("StatusMessage").get<std::string>(), HasSubstr("No such file or directory"));

  const json bad_path = reply_of(send_command(R"({"Command":"x"})", std::string(200, 'p')));
  EXPECT_EQ(bad_path.at("Status"), kStatusConnectionError);
}

TEST_F(MonitorTest, SendCommandTimesOutOnASilentServer) {
  // A listener that never accepts: connect() succeeds through the backlog, no reply comes.
  const std::string path = dir_.path() + "/silent";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  const json reply = reply_of(send_command(R"({"Command":"x"})", path, 200ms));
  EXPECT_EQ(reply.at("Status"), kStatusConnectionError);
  EXPECT_THAT(reply.at("StatusMessage").get<std::string>(), HasSubstr("no complete reply"));
}

// A one-connection server that reads the request to its end, writes `reply`, and then
// either closes or, with `keep_open`, waits for the client to close first.
class ScriptedServer {
 public:
  ScriptedServer(std::string path, std::string reply, bool keep_open) : path_(std::move(path)) {
    listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    if (::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_.get(), 4) != 0) {
      ADD_FAILURE() << "cannot listen on " << path_;
      return;
    }
    thread_ = std::thread([this, reply = std::move(reply), keep_open] {
      UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      read_all(conn.get());  // send_command() half-closes after its request
      write_all(conn.get(), reply);
      if (keep_open) read_all(conn.get());  // returns when the client closes
    });
  }
  ~ScriptedServer() {
    if (thread_.joinable()) thread_.join();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd listener_;
  std::thread thread_;
};

TEST_F(MonitorTest, SendCommandReportsAServerClosingWithoutReply) {
  ScriptedServer server(dir_.path() + "/rude", "", /*keep_open=*/false);
  const json reply = reply_of(send_command(R"({"Command":"x"})", server.path()));
  EXPECT_EQ(reply.at("Status"), kStatusConnectionError);
  EXPECT_THAT(reply.at("StatusMessage").get<std::string>(), HasSubstr("closed the connection without replying"));
}

TEST_F(MonitorTest, SendCommandDoesNotNeedTheServerToClose) {
  ScriptedServer server(dir_.path() + "/open", R"(  {"Status":0,"StatusMessage":"}"} trailing)", /*keep_open=*/true);
  EXPECT_EQ(send_command(R"({"Command":"x"})", server.path()), R"({"Status":0,"StatusMessage":"}"})");
}

TEST_F(MonitorTest, SendCommandRejectsBadReplies) {
  {
    ScriptedServer server(dir_.path() + "/garbage", "Status: 0\n", /*keep_open=*/false);
    const json reply = reply_of(send_command(R"({"Command":"x"})", server.path()));
    EXPECT_EQ(reply.at("Status"), kStatusConnectionError);
    EXPECT_THAT(reply.at("StatusMessage").get<std::string>(), HasSubstr("is not a JSON object"));
  }
  {
    ScriptedServer server(dir_.path() + "/cut", R"({"Status":0,"StatusMess)", /*keep_open=*/false);
    const json reply = reply_of(send_command(R"({"Command":"x"})", server.path()));
    EXPECT_EQ(reply.at("Status"), kStatusConnectionError);
    EXPECT_THAT(reply.at("StatusMessage").get<std::string>(), HasSubstr("ended before its JSON object did"));
  }
  {
    ScriptedServer server(dir_.path() + "/invalid", R"({"Status":0,})", /*keep_open=*/false);
    const json reply = reply_of(send_command(R"({"Command":"x"})", server.path()));
    EXPECT_EQ(reply.at("Status"), kStatusConnectionError);
    EXPECT_THAT(reply.at("StatusMessage").get<std::string>(), HasSubstr("is not a JSON object"));
  }
}

}  // namespace
}  // namespace agentry::command
