// agentryd health-checks processes that serve a socket UDF (`udf:` in the spec).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/integration/daemon_fixture.h"

namespace agentry::testing {
namespace {

using ::testing::HasSubstr;

TEST(UdfHealth, HealthyUdfShowsItsInfo) {
  TempDir dir;
  const std::string sock = dir.file("mirror.sock");
  Daemon d(dir, "processes:\n  - id: mirror\n    command: " + std::string(AGENTRY_UDF_MIRROR) + "\n    args: ['" + sock +
                    "']\n    start_window: 0s\n    autostart: false\n    udf: {socket: " + sock + ", keepalive: 5s}\n");
  EventWatcher events(d, {"mirror"});
  auto c = d.client();
  ASSERT_TRUE(c.start("mirror").is_ok());
  auto healthy = events.wait_for("mirror", "udf.healthy");
  ASSERT_TRUE(healthy) << d.stderr_text();
  EXPECT_THAT(healthy->summary, HasSubstr("STREAM"));
  auto st = c.status("mirror");
  ASSERT_TRUE(st.is_ok());
  EXPECT_THAT(st->udf, HasSubstr("healthy; "));
  auto cli = run_cli(d, {"status", "mirror"});
  EXPECT_THAT(cli.out, HasSubstr("udf:"));
}

TEST(UdfHealth, UdfThatStopsAnsweringIsRestarted) {
  TempDir dir;
  const std::string sock = dir.file("mute.sock");
  // Accepts the connection and never reads from it: keepalives go unanswered.
  const std::string script =
      "import socket, sys, time\n"
      "s = socket.socket(socket.AF_UNIX)\n"
      "s.bind(sys.argv[1]); s.listen(4)\n"
      "conns = []\n"
      "while True:\n"
      "    conns.append(s.accept())\n";
  dir.write("mute.py", script);
  Daemon d(dir, "processes:\n  - id: mute\n    command: /usr/bin/python3\n    args: ['" + dir.file("mute.py") + "', '" +
                    sock + "']\n    start_window: 0s\n    autostart: false\n    restart: always\n"
                    "    backoff: {initial: 10ms, jitter: 0}\n    udf: {socket: " + sock + ", keepalive: 300ms}\n");
  EventWatcher events(d, {"mute"});
  auto c = d.client();
  ASSERT_TRUE(c.start("mute").is_ok());
  auto unhealthy = events.wait_for("mute", "process.unhealthy");
  ASSERT_TRUE(unhealthy) << d.stderr_text();
  EXPECT_THAT(unhealthy->summary, HasSubstr("udf health check"));
  // The health check restarts it: a new run starts.
  ASSERT_TRUE(events.wait_for("mute", "process.starting"));
}

}  // namespace
}  // namespace agentry::testing
