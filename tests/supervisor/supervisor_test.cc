// The Supervisor in-process, with real children, driven by its own io_context.
#include "agentry/supervisor/supervisor.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace agentry::supervisor {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class SupervisorTest : public ::testing::Test {
 protected:
  SupervisorTest() {
    SupervisorOptions o;
    o.sample_interval = 0ms;
    o.subreaper = false;
    sup = std::make_unique<Supervisor>(io, o);
    events_sub = sup->watch_events({}, [this](const Event& e) {
      events.push_back(e);
      return true;
    });
  }
  ~SupervisorTest() override {
    bool done = false;
    sup->shutdown([&](Status) { done = true; });
    run_until([&] { return done; });
    events_sub.reset();
    sup.reset();
  }

  // Runs the loop until `pred` holds; fails the test after a generous deadline.
  bool run_until(const std::function<bool()>& pred, std::chrono::seconds deadline = 60s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) {
        ADD_FAILURE() << "condition not reached before the deadline";
        return false;
      }
      io.run_one_for(100ms);
    }
    return true;
  }

  // Waits for the next event of `type` for `id` after index `from`; returns its index.
  std::optional<size_t> wait_event(const std::string& id, std::string_view type, size_t from = 0) {
    std::optional<size_t> found;
    run_until([&] {
      for (size_t i = from; i < events.size(); ++i) {
        if (events[i].process_id == id && events[i].type == type) {
          found = i;
          return true;
        }
      }
      return false;
    });
    return found;
  }

  Status call(const std::function<void(Done)>& op) {
    std::optional<Status> result;
    op([&](Status s) { result = std::move(s); });
    run_until([&] { return result.has_value(); });
    return result.value_or(internal_error("no result"));
  }

  static ProcessSpec shell(const std::string& id, const std::string& script) {
    ProcessSpec s;
    s.id = id;
    s.command = "/bin/sh";
    s.args = {"-c", script};
    s.start_window = 0ms;
    s.backoff.initial = 10ms;
    s.backoff.max = 1s;
    s.backoff.jitter = 0;
    return s;
  }

  std::string stdout_of(const std::string& id) { return sup->logs_snapshot(id, 0).value_or(""); }

  boost::asio::io_context io;
  std::unique_ptr<Supervisor> sup;
  std::vector<Event> events;
  std::unique_ptr<Subscription> events_sub;
};

TEST_F(SupervisorTest, StartsAndStopsWithEventsInOrder) {
  auto spec = shell("p", "exec sleep 1000");
  spec.start_window = 50ms;
  Status started = call([&](Done d) { ASSERT_TRUE(sup->add(spec, "test", std::move(d)).is_ok()); });
  ASSERT_TRUE(started.is_ok()) << started.message();
  auto st = sup->status("p");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, ProcessState::kRunning);
  EXPECT_GT(st->pid, 0);
  EXPECT_EQ(st->source, "test");
  const pid_t pid = static_cast<pid_t>(st->pid);

  ASSERT_TRUE(call([&](Done d) { sup->stop("p", std::move(d)); }).is_ok());
  EXPECT_EQ(sup->status("p")->state, ProcessState::kStopped);
  EXPECT_EQ(sup->status("p")->pid, 0);
  EXPECT_THAT(sup->status("p")->last_exit, HasSubstr("signal 15"));
  EXPECT_NE(::kill(pid, 0), 0);  // reaped: the pid no longer exists

  std::vector<std::string> types;
  for (const auto& e : events) {
    if (e.process_id == "p") types.push_back(e.type);
  }
  EXPECT_THAT(types, ::testing::ElementsAre("process.registered", "process.starting", "process.started",
                                            "process.stopping", "process.stopped"));
}

TEST_F(SupervisorTest, OnFailureRestartsOnlyFailures) {
  auto ok = shell("ok", "exit 0");
  ok.restart = RestartPolicy::kOnFailure;
  ASSERT_TRUE(sup->add(ok, "test").is_ok());
  ASSERT_TRUE(wait_event("ok", "process.stopped"));
  EXPECT_EQ(sup->status("ok")->state, ProcessState::kStopped);

  auto custom = shell("custom", "exit 7");
  custom.restart = RestartPolicy::kOnFailure;
  custom.success_exit_codes = {0, 7};
  ASSERT_TRUE(sup->add(custom, "test").is_ok());
  ASSERT_TRUE(wait_event("custom", "process.stopped"));

  auto bad = shell("bad", "exit 2");
  bad.restart = RestartPolicy::kOnFailure;
  ASSERT_TRUE(sup->add(bad, "test").is_ok());
  auto first = wait_event("bad", "process.restarting");
  ASSERT_TRUE(first);
  ASSERT_TRUE(wait_event("bad", "process.restarting", *first + 1));
}

TEST_F(SupervisorTest, NeverPolicyLeavesACrashedProcessCrashed) {
  auto spec = shell("once", "echo broken >&2; exit 4");
  spec.restart = RestartPolicy::kNever;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  ASSERT_TRUE(wait_event("once", "process.crashed"));
  auto st = sup->status("once");
  EXPECT_EQ(st->state, ProcessState::kCrashed);
  EXPECT_THAT(st->error, HasSubstr("exited with status 4"));
}

TEST_F(SupervisorTest, AlwaysRestartsEvenSuccessfulExits) {
  auto spec = shell("loop", "echo tick");
  spec.restart = RestartPolicy::kAlways;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  auto r1 = wait_event("loop", "process.restarting");
  ASSERT_TRUE(r1);
  ASSERT_TRUE(wait_event("loop", "process.restarting", *r1 + 1));
  // No crash events for clean exits.
  for (const auto& e : events) EXPECT_NE(e.type, "process.crashed");
}

TEST_F(SupervisorTest, BackoffDelaysGrow) {
  auto spec = shell("grow", "exit 1");
  spec.restart = RestartPolicy::kAlways;
  spec.backoff.initial = 5ms;
  spec.backoff.multiplier = 3;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  size_t from = 0;
  std::vector<std::chrono::nanoseconds> delays;
  for (int i = 0; i < 3; ++i) {
    auto idx = wait_event("grow", "process.restarting", from);
    ASSERT_TRUE(idx);
    delays.push_back(events[*idx].delay);
    from = *idx + 1;
  }
  EXPECT_EQ(delays[0], 5ms);
  EXPECT_EQ(delays[1], 15ms);
  EXPECT_EQ(delays[2], 45ms);
}

TEST_F(SupervisorTest, StartLimitMovesToFailedWithTheReason) {
  auto spec = shell("quick", "echo missing config file >&2; exit 1");
  spec.restart = RestartPolicy::kAlways;
  spec.start_window = 10s;
  spec.start_limit = 3;
  Status first = call([&](Done d) { ASSERT_TRUE(sup->add(spec, "test", std::move(d)).is_ok()); });
  EXPECT_FALSE(first.is_ok());
  EXPECT_THAT(first.message(), HasSubstr("during the start window"));
  auto failed = wait_event("quick", "process.failed");
  ASSERT_TRUE(failed);
  auto st = sup->status("quick");
  EXPECT_EQ(st->state, ProcessState::kFailed);
  EXPECT_THAT(st->error, HasSubstr("3 consecutive failures"));
  EXPECT_THAT(st->error, HasSubstr("missing config file"));
  // Nothing restarts a failed process by itself; a manual start tries again.
  Status again = call([&](Done d) { sup->start("quick", std::move(d)); });
  EXPECT_FALSE(again.is_ok());
  ASSERT_TRUE(wait_event("quick", "process.starting", *failed + 1));
}

TEST_F(SupervisorTest, ExecFailureIsReportedNotHidden) {
  ProcessSpec spec;
  spec.id = "ghost";
  spec.command = "/no/such/binary";
  spec.start_limit = 2;
  spec.backoff.initial = 1ms;
  spec.backoff.jitter = 0;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  ASSERT_TRUE(wait_event("ghost", "process.failed"));
  EXPECT_THAT(sup->status("ghost")->error, HasSubstr("exec '/no/such/binary': No such file or directory"));
}

TEST_F(SupervisorTest, StopTimeoutKillsTheGroup) {
  auto spec = shell("stubborn", "trap '' TERM; echo ready; sleep 1000 & wait; wait");
  spec.stop.timeout = 100ms;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  run_until([&] { return stdout_of("stubborn").find("ready") != std::string::npos; });
  ASSERT_TRUE(call([&](Done d) { sup->stop("stubborn", std::move(d)); }).is_ok());
  EXPECT_THAT(sup->status("stubborn")->last_exit, HasSubstr("signal 9"));
}

TEST_F(SupervisorTest, LeftoverGroupMembersDieWithTheMainProcess) {
  // The main process exits while a background child would linger: the group goes too.
  auto spec = shell("leaver", "sleep 1000 & echo $!; exit 0");
  spec.restart = RestartPolicy::kNever;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  ASSERT_TRUE(wait_event("leaver", "process.stopped"));
  run_until([&] { return stdout_of("leaver").find('\n') != std::string::npos; });
  const pid_t bg = static_cast<pid_t>(std::stol(stdout_of("leaver")));
  // It was SIGKILLed with the group; as an orphan it is reaped by init or the subreaper.
  run_until([&] {
    std::error_code ec;
    auto stat = std::filesystem::path("/proc/" + std::to_string(bg) + "/stat");
    if (!std::filesystem::exists(stat, ec)) return true;
    std::ifstream in(stat);
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    return close != std::string::npos && s.size() > close + 2 && s[close + 2] == 'Z';
  });
}

TEST_F(SupervisorTest, CapturesStdoutAndStderrSeparately) {
  auto spec = shell("io", "echo out1; echo err1 >&2; echo out2; exec sleep 1000");
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  run_until([&] {
    return stdout_of("io") == "out1\nout2\n" && sup->logs_snapshot("io", 1).value_or("") == "err1\n";
  });
  EXPECT_EQ(sup->stderr_tail("io"), "err1");
}

TEST_F(SupervisorTest, LogFollowersGetNewChunksAndSlowOnesAreDropped) {
  auto spec = shell("chatty", "read x; echo first; read y; echo second; exec sleep 1000");
  spec.stdin_mode = StdinMode::kNull;  // reads hit EOF at once: prints both lines
  spec.autostart = false;
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  std::string got;
  auto keep = sup->watch_logs("chatty", 0, [&](std::string_view c) {
    got.append(c);
    return true;
  });
  ASSERT_TRUE(keep);
  auto dropper = sup->watch_logs("chatty", 0, [](std::string_view) { return false; });
  ASSERT_TRUE(dropper);
  ASSERT_TRUE(call([&](Done d) { sup->start("chatty", std::move(d)); }).is_ok());
  run_until([&] { return got == "first\nsecond\n"; });
  auto overflow = wait_event("chatty", "log.overflow");
  ASSERT_TRUE(overflow);
  EXPECT_GT(sup->status("chatty")->log_bytes_dropped, 0u);
}

TEST_F(SupervisorTest, EnvironmentIsComposedAsSpecified) {
  ::setenv("AGENTRY_TEST_INHERITED", "yes", 1);
  ::setenv("AGENTRY_TEST_REMOVED", "yes", 1);
  auto spec = shell("env", "env | sort; exec sleep 1000");
  spec.env.set = {{"FOO", "bar"}, {"AGENTRY_TEST_INHERITED", "overridden"}};
  spec.env.unset = {"AGENTRY_TEST_REMOVED"};
  ASSERT_TRUE(sup->add(spec, "test").is_ok());
  run_until([&] { return stdout_of("env").find("FOO=bar") != std::string::npos; });
  std::string out = stdout_of("env");
  EXPECT_THAT(out, HasSubstr("AGENTRY_TEST_INHERITED=overridden"));
  EXPECT_THAT(out, HasSubstr("AGENTRY_PROCESS_ID=env"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("AGENTRY_TEST_REMOVED")));

  auto bare = shell("bare", "env; exec sleep 1000");
  bare.env.inherit = false;
  ASSERT_TRUE(sup->add(bare, "test").is_ok());
  run_until([&] { return stdout_of("bare").find("AGENTRY_PROCESS_ID=bare") != std::string::npos; });
  EXPECT_THAT(stdout_of("bare"), ::testing::Not(HasSubstr("AGENTRY_TEST_INHERITED")));
}

TEST_F(SupervisorTest, ApplyRestartsOnlyWhatChangedAndScopesBySource) {
  auto a = shell("a", "exec sleep 1000");
  auto b = shell("b", "exec sleep 1000");
  auto c = shell("c", "exec sleep 1000");
  ASSERT_TRUE(call([&](Done d) { sup->apply({a, b, c}, "file", std::move(d)); }).is_ok());
  const auto pid_a = sup->status("a")->pid;
  const auto pid_b = sup->status("b")->pid;
  auto other = shell("other", "exec sleep 1000");
  ASSERT_TRUE(call([&](Done d) { sup->apply({other}, "stream", std::move(d)); }).is_ok());

  b.args = {"-c", "exec sleep 2000"};
  auto d2 = shell("d", "exec sleep 1000");
  ASSERT_TRUE(call([&](Done d) { sup->apply({a, b, d2}, "file", std::move(d)); }).is_ok());
  EXPECT_EQ(sup->status("a")->pid, pid_a);
  EXPECT_NE(sup->status("b")->pid, pid_b);
  EXPECT_EQ(sup->status("b")->state, ProcessState::kRunning);
  EXPECT_FALSE(sup->status("c"));
  EXPECT_EQ(sup->status("d")->state, ProcessState::kRunning);
  EXPECT_EQ(sup->status("other")->state, ProcessState::kRunning);  // another source's

  // A source may not take over another's process, and a bad set changes nothing.
  Status steal = call([&](Done d) { sup->apply({shell("other", "true")}, "file", std::move(d)); });
  EXPECT_EQ(steal.code(), StatusCode::kAlreadyExists);
  auto invalid = shell("bad id!", "true");
  Status bad = call([&](Done d) { sup->apply({a, invalid}, "file", std::move(d)); });
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sup->size(), 4u);
}

TEST_F(SupervisorTest, ApplyReportsWhichProcessFailedToStart) {
  auto good = shell("good", "exec sleep 1000");
  auto broken = shell("broken", "echo 'port 80 in use' >&2; exit 1");
  broken.start_window = 10s;
  broken.restart = RestartPolicy::kNever;
  Status s = call([&](Done d) { sup->apply({good, broken}, "file", std::move(d)); });
  ASSERT_FALSE(s.is_ok());
  EXPECT_THAT(s.message(), HasSubstr("broken:"));
  EXPECT_THAT(s.message(), HasSubstr("exited with status 1"));
  EXPECT_THAT(s.message(), HasSubstr("port 80 in use"));
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("good:")));
}

TEST_F(SupervisorTest, RestartGivesANewPid) {
  auto spec = shell("r", "exec sleep 1000");
  ASSERT_TRUE(call([&](Done d) { ASSERT_TRUE(sup->add(spec, "test", std::move(d)).is_ok()); }).is_ok());
  const auto before = sup->status("r")->pid;
  ASSERT_TRUE(call([&](Done d) { sup->restart("r", std::move(d)); }).is_ok());
  EXPECT_EQ(sup->status("r")->state, ProcessState::kRunning);
  EXPECT_NE(sup->status("r")->pid, before);
}

TEST_F(SupervisorTest, UnknownIdsAreClearErrors) {
  EXPECT_EQ(call([&](Done d) { sup->start("nope", std::move(d)); }).message(), "no process 'nope'");
  EXPECT_EQ(sup->signal("nope", SIGHUP).code(), StatusCode::kNotFound);
  EXPECT_FALSE(sup->logs_snapshot("nope", 0));
  EXPECT_FALSE(sup->logs_snapshot("nope", 2));
}

TEST_F(SupervisorTest, ShutdownStopsEverythingAndPreventsRestarts) {
  auto a = shell("a", "exec sleep 1000");
  a.restart = RestartPolicy::kAlways;
  auto b = shell("b", "exec sleep 1000");
  ASSERT_TRUE(call([&](Done d) { sup->apply({a, b}, "file", std::move(d)); }).is_ok());
  ASSERT_TRUE(call([&](Done d) { sup->shutdown(std::move(d)); }).is_ok());
  EXPECT_EQ(sup->status("a")->state, ProcessState::kStopped);
  EXPECT_EQ(sup->status("b")->state, ProcessState::kStopped);
  EXPECT_FALSE(call([&](Done d) { sup->start("a", std::move(d)); }).is_ok());
}

}  // namespace
}  // namespace agentry::supervisor
