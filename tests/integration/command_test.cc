// agentryd's JSON command socket end to end: built-in commands, the CLI, plugins.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "agentry/command/client.h"
#include "agentry/command/monitor.h"
#include "tests/integration/daemon_fixture.h"

namespace agentry::testing {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

const char* kConfig = R"(log_level: debug
command: {timeout: 5s}
processes:
  - id: web
    command: /bin/sh
    args: ["-c", "echo socket=$AGENTRY_COMMAND_SOCKET; exec sleep 1000"]
    start_window: 0s
  - id: idle
    command: /bin/sleep
    args: ["1000"]
    start_window: 0s
)";

class CommandSocket : public ::testing::Test {
 protected:
  CommandSocket() : daemon(dir, kConfig) {}

  std::string command_dir() const { return dir.file("run/cmd"); }

  json send(const json& request) {
    std::string reply = command::send_command(request.dump(), command_dir(), command::Listener::kAgent,
                                              std::chrono::seconds(30));
    return json::parse(reply);
  }

  TempDir dir;
  Daemon daemon;
};

TEST_F(CommandSocket, GetOptionFollowsUpstreamStatuses) {
  json ok = send({{"Command", "agent.config.getoption"}, {"Option", "log_level"}});
  EXPECT_EQ(ok["Status"], 0) << ok.dump();
  EXPECT_EQ(ok["Value"], "debug");
  EXPECT_EQ(ok["Option"], "log_level");

  json nested = send({{"command", "agent.config.getoption"}, {"option", "command.timeout"}});
  EXPECT_EQ(nested["Status"], 0) << nested.dump();
  EXPECT_EQ(nested["Value"], "5s");

  EXPECT_EQ(send({{"Command", "agent.config.getoption"}, {"Option", "nosuch.option"}})["Status"], 1);
  EXPECT_EQ(send({{"Command", "agent.config.getoption"}, {"Option", "state_dir"}})["Status"], 1);
  EXPECT_EQ(send({{"Command", "agent.config.getoption"}, {"Option", "a..b"}})["Status"], 3);
}

TEST_F(CommandSocket, ProcessListStopStartAndStatus) {
  json list = send({{"Command", "process.list"}});
  ASSERT_EQ(list["Status"], 0) << list.dump();
  ASSERT_EQ(list["Processes"].size(), 2u);

  json stopped = send({{"Command", "process.stop"}, {"Id", "idle"}});
  ASSERT_EQ(stopped["Status"], 0) << stopped.dump();
  EXPECT_EQ(stopped["Process"]["State"], "stopped");
  json started = send({{"Command", "process.start"}, {"id", "idle"}});
  ASSERT_EQ(started["Status"], 0) << started.dump();
  EXPECT_EQ(started["Process"]["State"], "running");

  json missing = send({{"Command", "process.restart"}, {"Id", "nope"}});
  EXPECT_EQ(missing["Status"], 105);
  EXPECT_THAT(missing["StatusMessage"].get<std::string>(), HasSubstr("no process 'nope'"));

  json status = send({{"Command", "agent.status"}});
  EXPECT_EQ(status["Status"], 0);
  EXPECT_EQ(status["Processes"], 2);
  EXPECT_EQ(status["Pid"], daemon.pid());

  EXPECT_EQ(send({{"Command", "no.such.command"}})["Status"], 101);
}

TEST_F(CommandSocket, ReloadThroughTheSocket) {
  dir.write("agentry.yaml", "processes:\n  - id: only\n    command: /bin/sleep\n    args: ['1000']\n");
  json r = send({{"Command", "agent.reload"}});
  EXPECT_EQ(r["Status"], 0) << r.dump();
  json list = send({{"Command", "process.list"}});
  ASSERT_EQ(list["Processes"].size(), 1u);
  EXPECT_EQ(list["Processes"][0]["Id"], "only");
}

TEST_F(CommandSocket, ChildrenAreToldWhereTheSocketIs) {
  auto c = daemon.client();
  std::string out;
  ASSERT_TRUE(c.logs("web", 0, true, [&](std::string_view chunk) {
                 out.append(chunk);
                 return out.find('\n') == std::string::npos;
               }).is_ok());
  EXPECT_EQ(out, "socket=" + command_dir() + "/agent\n");
}

TEST_F(CommandSocket, CliSendsCommandsAndReflectsTheStatus) {
  auto ok = run_cli(daemon, {"cmd", "--dir", command_dir(), "process.stop", "Id=idle"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("\"stopped\""));
  auto raw = run_cli(daemon, {"cmd", "--dir", command_dir(), R"({"Command":"agent.config.getoption","Option":"log_level"})"});
  EXPECT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_THAT(raw.out, HasSubstr("debug"));
  auto unknown = run_cli(daemon, {"cmd", "--dir", command_dir(), "no.such"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(unknown.out, HasSubstr("101"));
}

TEST_F(CommandSocket, PluginListenerInTheSameDirectory) {
  // A plugin embeds the library's monitor on the plugin listener next to agentryd's.
  command::MonitorOptions opts;
  opts.dir = command_dir();
  opts.listener = command::Listener::kPlugin;
  command::Monitor plugin(opts);
  ASSERT_TRUE(plugin
                  .register_handler("plugin.ping",
                                    [](std::string_view) -> Result<std::string> {
                                      return std::string(R"({"Status":0,"StatusMessage":"pong"})");
                                    })
                  .is_ok());
  auto r = run_cli(daemon, {"cmd", "--dir", command_dir(), "--listener", "plugin", "plugin.ping"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("pong"));
}

}  // namespace
}  // namespace agentry::testing
