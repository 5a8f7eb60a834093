// RemoteProcessSet against a real Supervisor with real children.
#include "agentry/agent/remote_processes.h"

#include <chrono>
#include <functional>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace agentry::agent {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using supervisor::ProcessState;

class RemoteProcessSetTest : public ::testing::Test {
 protected:
  RemoteProcessSetTest() {
    supervisor::SupervisorOptions o;
    o.sample_interval = 0ms;
    o.subreaper = false;
    sup = std::make_unique<supervisor::Supervisor>(io, o);
    events_sub = sup->watch_events({}, [this](const supervisor::Event& e) {
      events.push_back(e);
      return true;
    });
    remote = std::make_unique<RemoteProcessSet>(*sup, "stream");
  }
  ~RemoteProcessSetTest() override {
    bool done = false;
    sup->shutdown([&](Status) { done = true; });
    run_until([&] { return done; });
    events_sub.reset();
    sup.reset();
  }

  void run_until(const std::function<bool()>& pred) {
    const auto end = std::chrono::steady_clock::now() + 60s;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) {
        ADD_FAILURE() << "condition not reached before the deadline";
        return;
      }
      io.run_one_for(100ms);
    }
  }

  Status apply() {
    std::optional<Status> result;
    remote->apply([&](Status s) { result = std::move(s); });
    run_until([&] { return result.has_value(); });
    return result.value_or(internal_error("no result"));
  }

  static nlohmann::json sleeper(int version) {
    return {{"version", version}, {"command", "/bin/sleep"}, {"args", {"1000"}}, {"start_window", "0"}};
  }

  std::vector<std::string> rejections(const std::string& id) const {
    std::vector<std::string> out;
    for (const auto& e : events) {
      if (e.process_id == id && e.type == kConfigRejectedEvent) out.push_back(e.summary);
    }
    return out;
  }

  boost::asio::io_context io;
  std::unique_ptr<supervisor::Supervisor> sup;
  std::vector<supervisor::Event> events;
  std::unique_ptr<supervisor::Subscription> events_sub;
  std::unique_ptr<RemoteProcessSet> remote;
};

TEST_F(RemoteProcessSetTest, ValidEntitiesRunAndAnInvalidOneIsSkippedWithTheReason) {
  EXPECT_TRUE(remote->upsert("a", sleeper(1)).is_ok());
  EXPECT_TRUE(remote->upsert("b", sleeper(1)).is_ok());
  nlohmann::json bad = sleeper(1);
  bad["restart"] = "sometimes";
  Status rejected = remote->upsert("c", bad);
  EXPECT_THAT(rejected.message(), HasSubstr("processes[c].restart"));
  EXPECT_THAT(rejected.message(), HasSubstr("sometimes"));
  ASSERT_EQ(rejections("c").size(), 1u);
  EXPECT_THAT(rejections("c")[0], HasSubstr("processes[c].restart"));

  ASSERT_TRUE(apply().is_ok());
  EXPECT_EQ(sup->status("a")->state, ProcessState::kRunning);
  EXPECT_EQ(sup->status("a")->source, "stream");
  EXPECT_EQ(sup->status("b")->state, ProcessState::kRunning);
  EXPECT_FALSE(sup->status("c").is_ok());
}

TEST_F(RemoteProcessSetTest, ARejectedUpdateLeavesTheLastGoodSpecRunning) {
  ASSERT_TRUE(remote->upsert("a", sleeper(1)).is_ok());
  ASSERT_TRUE(apply().is_ok());
  const int64_t pid = sup->status("a")->pid;
  nlohmann::json bad = sleeper(2);
  bad["command"] = nlohmann::json::object();
  EXPECT_FALSE(remote->upsert("a", bad).is_ok());
  ASSERT_TRUE(apply().is_ok());
  EXPECT_EQ(sup->status("a")->pid, pid);
  EXPECT_EQ(sup->status("a")->state, ProcessState::kRunning);
}

TEST_F(RemoteProcessSetTest, RemoveAndRetainOnlyStopTheProcesses) {
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(remote->upsert(id, sleeper(1)).is_ok());
  ASSERT_TRUE(apply().is_ok());
  remote->remove("a");
  ASSERT_TRUE(apply().is_ok());
  EXPECT_FALSE(sup->status("a").is_ok());
  remote->retain_only({"c"});
  ASSERT_TRUE(apply().is_ok());
  EXPECT_FALSE(sup->status("b").is_ok());
  EXPECT_EQ(sup->status("c")->state, ProcessState::kRunning);
  EXPECT_EQ(remote->size(), 1u);
}

TEST_F(RemoteProcessSetTest, AnIdTheFileManagesIsNotTakenOver) {
  supervisor::ProcessSpec file_spec;
  file_spec.id = "web";
  file_spec.command = "/bin/sleep";
  file_spec.args = {"1000"};
  std::optional<Status> started;
  sup->apply({file_spec}, "file", [&](Status s) { started = s; });
  run_until([&] { return started.has_value(); });
  const int64_t pid = sup->status("web")->pid;

  ASSERT_TRUE(remote->upsert("web", sleeper(1)).is_ok());
  ASSERT_TRUE(remote->upsert("other", sleeper(1)).is_ok());
  ASSERT_TRUE(apply().is_ok());
  EXPECT_EQ(sup->status("web")->source, "file");
  EXPECT_EQ(sup->status("web")->pid, pid);
  ASSERT_EQ(rejections("web").size(), 1u);
  EXPECT_THAT(rejections("web")[0], HasSubstr("already managed by file"));
  EXPECT_EQ(sup->status("other")->state, ProcessState::kRunning);
}

TEST_F(RemoteProcessSetTest, BadIdsAndShapesAreRejected) {
  EXPECT_FALSE(remote->upsert("../etc", sleeper(1)).is_ok());
  EXPECT_THAT(remote->upsert("x", nlohmann::json::array()).message(), HasSubstr("expected a JSON object"));
  nlohmann::json other_id = sleeper(1);
  other_id["id"] = "y";
  EXPECT_THAT(remote->upsert("x", other_id).message(), HasSubstr("expected 'x'"));
  EXPECT_EQ(remote->size(), 0u);
}

}  // namespace
}  // namespace agentry::agent
