// Golden tests of the example UDFs (agentry-udf-moving_avg, -outliers, -mirror), run as
// real processes the way a host runs them: requests on stdin (or a unix socket), responses
// read back and compared with values worked out by hand.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "agentry/udf/io.h"
#include "agentry/proto/udf.pb.h"

extern char** environ;

namespace agentry::udf {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---------------------------------------------------------------- helpers

struct Exchange {
  std::vector<agent::Response> responses;
  Status read_end;  // OK: the output ended cleanly
  int exit_code = -1;
};

pid_t spawn(const std::vector<std::string>& argv, int stdin_fd, int stdout_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (stdin_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdin_fd, STDIN_FILENO);
  if (stdout_fd >= 0) posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(err, 0) << std::strerror(err);
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// Runs a process UDF: writes `requests` to its stdin (from a thread, so a large output can
// never deadlock against a large input), closes stdin, reads stdout to EOF, waits for exit.
Exchange run_process(const char* program, const std::vector<agent::Request>& requests) {
  int in[2];
  int out[2];
  EXPECT_EQ(::pipe2(in, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
  const pid_t pid = spawn({program}, in[0], out[1]);
  ::close(in[0]);
  ::close(out[1]);
  std::string input;
  for (const auto& r : requests) append_message(input, r);
  std::thread feeder([fd = in[1], &input] {
    (void)write_all(fd, input);  // may fail with EPIPE when the UDF stops early
    ::close(fd);
  });
  Exchange result;
  MessageReader reader(out[0]);
  for (;;) {
    agent::Response response;
    auto got = reader.read(response);
    if (!got.is_ok()) {
      result.read_end = got.status();
      break;
    }
    if (!*got) break;
    result.responses.push_back(std::move(response));
  }
  ::close(out[0]);
  feeder.join();
  result.exit_code = wait_exit(pid);
  return result;
}

agent::Request info_request() {
  agent::Request r;
  r.mutable_info();
  return r;
}

agent::OptionValue string_value(const std::string& s) {
  agent::OptionValue v;
  v.set_type(agent::STRING);
  v.set_stringvalue(s);
  return v;
}
agent::OptionValue int_value(int64_t i) {
  agent::OptionValue v;
  v.set_type(agent::INT);
  v.set_intvalue(i);
  return v;
}
agent::OptionValue double_value(double d) {
  agent::OptionValue v;
  v.set_type(agent::DOUBLE);
  v.set_doublevalue(d);
  return v;
}

agent::Request init_request(const std::vector<std::pair<std::string, agent::OptionValue>>& options) {
  agent::Request r;
  r.mutable_init()->set_taskid("task");
  r.mutable_init()->set_nodeid("node");
  for (const auto& [name, value] : options) {
    agent::Option* o = r.mutable_init()->add_options();
    o->set_name(name);
    *o->add_values() = value;
  }
  return r;
}

agent::Point make_point(int64_t time, const std::string& group, double value) {
  agent::Point p;
  p.set_time(time);
  p.set_name("cpu");
  p.set_database("db");
  p.set_retentionpolicy("autogen");
  p.set_group(group);
  p.add_dimensions("host");
  (*p.mutable_tags())["host"] = group;
  (*p.mutable_fieldsdouble())["value"] = value;
  (*p.mutable_fieldsdouble())["other"] = -1;
  (*p.mutable_fieldsint())["count"] = 7;
  (*p.mutable_fieldsstring())["note"] = "n";
  (*p.mutable_fieldsbool())["ok"] = true;
  return p;
}

agent::Request point_request(const agent::Point& p) {
  agent::Request r;
  *r.mutable_point() = p;
  return r;
}

agent::Request snapshot_request() {
  agent::Request r;
  r.mutable_snapshot();
  return r;
}

agent::Request restore_request(const std::string& snapshot) {
  agent::Request r;
  r.mutable_restore()->set_snapshot(snapshot);
  return r;
}

std::vector<agent::Point> points_of(const std::vector<agent::Response>& responses) {
  std::vector<agent::Point> out;
  for (const auto& r : responses) {
    if (r.has_point()) out.push_back(r.point());
  }
  return out;
}

// ---------------------------------------------------------------- moving_avg

const std::vector<std::pair<std::string, agent::OptionValue>> kMovingAvgOptions = {
    {"field", string_value("value")}, {"size", int_value(3)}, {"as", string_value("mean")}};

TEST(UdfExampleMovingAvg, Info) {
  const Exchange ex = run_process(AGENTRY_UDF_MOVING_AVG, {info_request()});
  EXPECT_EQ(ex.exit_code, 0);
  ASSERT_EQ(ex.responses.size(), 1U);
  const agent::InfoResponse& info = ex.responses[0].info();
  EXPECT_EQ(info.wants(), agent::STREAM);
  EXPECT_EQ(info.provides(), agent::STREAM);
  ASSERT_EQ(info.options().size(), 3U);
  EXPECT_THAT(info.options().at("field").valuetypes(), ElementsAre(agent::STRING));
  EXPECT_THAT(info.options().at("size").valuetypes(), ElementsAre(agent::INT));
  EXPECT_THAT(info.options().at("as").valuetypes(), ElementsAre(agent::STRING));
}

TEST(UdfExampleMovingAvg, InitValidation) {
  struct Case {
    std::vector<std::pair<std::string, agent::OptionValue>> options;
    bool success;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{}, false, "field must not be empty; size must be greater than 0"},
      {{{"field", string_value("value")}}, false, "size must be greater than 0"},
      {{{"field", string_value("value")}, {"size", int_value(0)}}, false, "size must be greater than 0"},
      {{{"field", string_value("value")}, {"size", int_value(-4)}}, false, "size must be greater than 0"},
      {{{"size", int_value(2)}}, false, "field must not be empty"},
      {{{"field", string_value("value")}, {"size", int_value(2)}, {"as", string_value("")}}, false,
       "as must not be empty"},
      {{{"field", string_value("")}, {"size", int_value(0)}, {"as", string_value("")}}, false,
       "field must not be empty; size must be greater than 0; as must not be empty"},
      {{{"field", string_value("value")}, {"size", int_value(2)}}, true, ""},  // as defaults to "avg"
  };
  for (const Case& c : cases) {
    // A failed Init is an answer, not an error: Info afterwards is still answered.
    const Exchange ex = run_process(AGENTRY_UDF_MOVING_AVG, {init_request(c.options), info_request()});
    EXPECT_EQ(ex.exit_code, 0);
    ASSERT_EQ(ex.responses.size(), 2U);
    EXPECT_EQ(ex.responses[0].init().success(), c.success) << c.error;
    EXPECT_EQ(ex.responses[0].init().error(), c.error);
    EXPECT_TRUE(ex.responses[1].has_info());
  }
}

TEST(UdfExampleMovingAvg, PerGroupWindowsAndRunningAverage) {
  std::vector<agent::Request> requests = {init_request(kMovingAvgOptions)};
  // group a: 1 2 3 4 5; group b: 10 20; interleaved.
  const std::vector<std::pair<std::string, double>> input = {{"a", 1}, {"b", 10}, {"a", 2}, {"a", 3},
                                                             {"b", 20}, {"a", 4}, {"a", 5}};
  int64_t t = 0;
  for (const auto& [group, value] : input) requests.push_back(point_request(make_point(++t, group, value)));
  const Exchange ex = run_process(AGENTRY_UDF_MOVING_AVG, requests);
  EXPECT_EQ(ex.exit_code, 0);
  ASSERT_TRUE(ex.responses.at(0).init().success());
  const auto points = points_of(ex.responses);
  ASSERT_EQ(points.size(), input.size());
  // Running average until the window (3) is full, then the mean of the last three.
  const std::vector<double> want = {1, 10, 1.5, 2, 15, 3, 4};
  for (size_t i = 0; i < points.size(); ++i) {
    SCOPED_TRACE(i);
    agent::Point expected = make_point(static_cast<int64_t>(i) + 1, input[i].first, 0);
    expected.clear_fieldsdouble();
    expected.clear_fieldsint();
    expected.clear_fieldsstring();
    (*expected.mutable_fieldsdouble())["mean"] = want[i];  // bool fields stay
    EXPECT_TRUE(MessageDifferencer::Equals(points[i], expected)) << points[i].DebugString();
  }
}

TEST(UdfExampleMovingAvg, MissingFieldCountsAsZero) {
  agent::Point p = make_point(1, "a", 0);
  p.mutable_fieldsdouble()->erase("value");
  const Exchange ex = run_process(AGENTRY_UDF_MOVING_AVG,
                                  {init_request(kMovingAvgOptions), point_request(make_point(1, "a", 6)),
                                   point_request(p)});
  const auto points = points_of(ex.responses);
  ASSERT_EQ(points.size(), 2U);
  EXPECT_EQ(points[1].fieldsdouble().at("mean"), 3);
}

TEST(UdfExampleMovingAvg, BatchesAreAnError) {
  agent::Request begin;
  begin.mutable_begin()->set_name("cpu");
  const Exchange ex = run_process(AGENTRY_UDF_MOVING_AVG,
                                  {init_request(kMovingAvgOptions), begin, point_request(make_point(1, "a", 1))});
  EXPECT_EQ(ex.exit_code, 1);
  ASSERT_EQ(ex.responses.size(), 2U);
  EXPECT_EQ(ex.responses[1].error().error(), "moving_avg works on a stream; batches are not supported");
}

TEST(UdfExampleMovingAvg, SnapshotRestoreInFreshProcessContinuesIdentically) {
  // Values chosen so that rounding in the running sum matters.
  std::vector<double> values;
  std::mt19937_64 rng(12345);
  std::uniform_real_distribution<double> dist(-1e6, 1e6);
  for (int i = 0; i < 400; ++i) values.push_back(i % 7 == 0 ? 0.1 * i : dist(rng));
  const std::vector<std::pair<std::string, agent::OptionValue>> options = {{"field", string_value("value")},
                                                                           {"size", int_value(25)}};
  auto points_from = [&](size_t begin, size_t end) {
    std::vector<agent::Request> out;
    for (size_t i = begin; i < end; ++i) {
      out.push_back(point_request(make_point(static_cast<int64_t>(i), i % 3 == 0 ? "x" : "y", values[i])));
    }
    return out;
  };
  // Run 1: all points, with a snapshot taken after the first 200.
  std::vector<agent::Request> first = {init_request(options)};
  for (auto& r : points_from(0, 200)) first.push_back(r);
  first.push_back(snapshot_request());
  for (auto& r : points_from(200, 400)) first.push_back(r);
  const Exchange one = run_process(AGENTRY_UDF_MOVING_AVG, first);
  ASSERT_EQ(one.exit_code, 0);
  std::string snapshot;
  std::vector<agent::Point> after_snapshot;
  bool seen = false;
  for (const auto& r : one.responses) {
    if (r.has_snapshot()) {
      snapshot = r.snapshot().snapshot();
      seen = true;
    } else if (seen && r.has_point()) {
      after_snapshot.push_back(r.point());
    }
  }
  ASSERT_TRUE(seen);
  ASSERT_EQ(after_snapshot.size(), 200U);

  // Run 2: a fresh process restored from the snapshot gets the same remaining points.
  std::vector<agent::Request> second = {init_request(options), restore_request(snapshot)};
  for (auto& r : points_from(200, 400)) second.push_back(r);
  const Exchange two = run_process(AGENTRY_UDF_MOVING_AVG, second);
  ASSERT_EQ(two.exit_code, 0);
  ASSERT_TRUE(two.responses.at(1).restore().success()) << two.responses.at(1).restore().error();
  const auto restored = points_of(two.responses);
  ASSERT_EQ(restored.size(), 200U);
  for (size_t i = 0; i < restored.size(); ++i) {
    // Bit-identical, not merely close.
    EXPECT_TRUE(MessageDifferencer::Equals(restored[i], after_snapshot[i])) << i;
  }

  // Without the restore the output differs (the test would prove nothing otherwise).
  std::vector<agent::Request> cold = {init_request(options)};
  for (auto& r : points_from(200, 400)) cold.push_back(r);
  const auto cold_points = points_of(run_process(AGENTRY_UDF_MOVING_AVG, cold).responses);
  ASSERT_EQ(cold_points.size(), 200U);
  EXPECT_FALSE(MessageDifferencer::Equals(cold_points[0], after_snapshot[0]));
}

TEST(UdfExampleMovingAvg, BadSnapshotIsRefusedWithoutStopping) {
  for (const std::string& bad : {std::string(), std::string("garbage"), std::string("agentry.moving_avg\x09", 19),
                                 std::string("agentry.moving_avg\x01\x05", 20)}) {
    const Exchange ex = run_process(AGENTRY_UDF_MOVING_AVG,
                                    {init_request(kMovingAvgOptions), restore_request(bad), info_request()});
    EXPECT_EQ(ex.exit_code, 0);
    ASSERT_EQ(ex.responses.size(), 3U);
    EXPECT_FALSE(ex.responses[1].restore().success());
    EXPECT_FALSE(ex.responses[1].restore().error().empty());
    EXPECT_TRUE(ex.responses[2].has_info());
  }
}

// ---------------------------------------------------------------- outliers

agent::Request begin_request(const std::string& group, int64_t size) {
  agent::Request r;
  r.mutable_begin()->set_name("cpu");
  r.mutable_begin()->set_group(group);
  (*r.mutable_begin()->mutable_tags())["host"] = group;
  r.mutable_begin()->set_size(size);
  r.mutable_begin()->set_byname(false);
  return r;
}

agent::Request end_request(const std::string& group, int64_t tmax) {
  agent::Request r;
  r.mutable_end()->set_name("cpu");
  r.mutable_end()->set_group(group);
  (*r.mutable_end()->mutable_tags())["host"] = group;
  r.mutable_end()->set_tmax(tmax);
  return r;
}

struct OutBatch {
  agent::BeginBatch begin;
  std::vector<agent::Point> points;
  agent::EndBatch end;
};

std::vector<OutBatch> batches_of(const std::vector<agent::Response>& responses) {
  std::vector<OutBatch> out;
  for (const auto& r : responses) {
    if (r.has_begin()) {
      out.emplace_back();
      out.back().begin = r.begin();
    } else if (r.has_point()) {
      EXPECT_FALSE(out.empty());
      if (!out.empty()) out.back().points.push_back(r.point());
    } else if (r.has_end()) {
      EXPECT_FALSE(out.empty());
      if (!out.empty()) out.back().end = r.end();
    }
  }
  return out;
}

std::vector<double> values_of(const std::vector<agent::Point>& points) {
  std::vector<double> out;
  for (const auto& p : points) out.push_back(p.fieldsdouble().at("value"));
  return out;
}

// One batch per group of the given values (shuffled deterministically), through outliers.
std::vector<OutBatch> run_outliers(const std::vector<std::string>& groups, std::vector<double> values,
                                   double scale = 1.5, std::vector<agent::Point>* sent = nullptr) {
  std::vector<agent::Request> requests = {
      init_request({{"field", string_value("value")}, {"scale", double_value(scale)}})};
  std::mt19937 rng(7);
  int64_t t = 0;
  for (const std::string& group : groups) {
    std::shuffle(values.begin(), values.end(), rng);
    requests.push_back(begin_request(group, static_cast<int64_t>(values.size())));
    for (double v : values) {
      agent::Point p = make_point(++t, group, v);
      if (sent != nullptr) sent->push_back(p);
      requests.push_back(point_request(p));
    }
    requests.push_back(end_request(group, t));
  }
  const Exchange ex = run_process(AGENTRY_UDF_OUTLIERS, requests);
  EXPECT_EQ(ex.exit_code, 0);
  EXPECT_TRUE(ex.read_end.is_ok());
  EXPECT_TRUE(ex.responses.at(0).init().success()) << ex.responses.at(0).init().error();
  return batches_of(ex.responses);
}

// The data set of Kapacitor's outliers test has the same shape: 20 values per group of
// which [5, 6, 85, 90, 100] are outliers.
std::vector<double> standard_values() {
  std::vector<double> v = {5, 6, 85, 90, 100};
  for (int i = 41; i <= 55; ++i) v.push_back(i);
  return v;
}

TEST(UdfExampleOutliers, Info) {
  const Exchange ex = run_process(AGENTRY_UDF_OUTLIERS, {info_request()});
  ASSERT_EQ(ex.responses.size(), 1U);
  EXPECT_EQ(ex.responses[0].info().wants(), agent::BATCH);
  EXPECT_EQ(ex.responses[0].info().provides(), agent::BATCH);
  EXPECT_THAT(ex.responses[0].info().options().at("field").valuetypes(), ElementsAre(agent::STRING));
  EXPECT_THAT(ex.responses[0].info().options().at("scale").valuetypes(), ElementsAre(agent::DOUBLE));
}

TEST(UdfExampleOutliers, InitValidation) {
  struct Case {
    std::vector<std::pair<std::string, agent::OptionValue>> options;
    std::string error;
  };
  const std::vector<Case> cases = {
      {{}, "field must not be empty"},
      {{{"field", string_value("value")}, {"scale", double_value(0.99)}}, "scale must be >= 1"},
      {{{"scale", double_value(-3)}}, "field must not be empty; scale must be >= 1"},
      {{{"field", string_value("value")}}, ""},  // scale defaults to 1.5
      {{{"field", string_value("value")}, {"scale", double_value(1)}}, ""},
  };
  for (const Case& c : cases) {
    const Exchange ex = run_process(AGENTRY_UDF_OUTLIERS, {init_request(c.options), info_request()});
    ASSERT_EQ(ex.responses.size(), 2U);
    EXPECT_EQ(ex.responses[0].init().success(), c.error.empty());
    EXPECT_EQ(ex.responses[0].init().error(), c.error);
    EXPECT_TRUE(ex.responses[1].has_info());
  }
}

TEST(UdfExampleOutliers, EvenBatchStandardDataSet) {
  std::vector<agent::Point> sent;
  const auto batches = run_outliers({"a", "b"}, standard_values(), 1.5, &sent);
  ASSERT_EQ(batches.size(), 2U);
  for (size_t b = 0; b < 2; ++b) {
    const OutBatch& batch = batches[b];
    const std::string group = b == 0 ? "a" : "b";
    // sorted: 5 6 41..48 | 49..55 85 90 100; Q1 = 43.5, Q3 = 53.5, IQR 10: fences 28.5, 68.5.
    EXPECT_THAT(values_of(batch.points), ElementsAre(5, 6, 85, 90, 100));
    EXPECT_EQ(batch.begin.size(), 5);
    EXPECT_EQ(batch.begin.group(), group);
    EXPECT_EQ(batch.begin.name(), "cpu");
    EXPECT_EQ(batch.begin.tags().at("host"), group);
    EXPECT_TRUE(MessageDifferencer::Equals(batch.end, end_request(group, static_cast<int64_t>(20 * (b + 1))).end()));
    // The points are the input points, untouched.
    for (const agent::Point& p : batch.points) {
      const auto same = std::find_if(sent.begin(), sent.end(),
                                     [&](const agent::Point& s) { return MessageDifferencer::Equals(s, p); });
      EXPECT_NE(same, sent.end());
    }
  }
}

TEST(UdfExampleOutliers, OddBatchesExcludeTheMedianFromBothHalves) {
  // n = 21: median 48.5 belongs to neither half. Q1 = 43.5, Q3 = 53.5, fences 28.5 and 68.5.
  std::vector<double> values = standard_values();
  values.push_back(48.5);
  auto batches = run_outliers({"g"}, values);
  ASSERT_EQ(batches.size(), 1U);
  EXPECT_THAT(values_of(batches[0].points), ElementsAre(5, 6, 85, 90, 100));

  // n = 5: halves [1 2] and [4 100]: Q1 1.5, Q3 52, so 100 is no outlier. (Were the median
  // in both halves, Q3 would be 4 and 100 would be one: this pins the method down.)
  batches = run_outliers({"g"}, {1, 2, 3, 4, 100});
  ASSERT_EQ(batches.size(), 1U);
  EXPECT_TRUE(batches[0].points.empty());
  EXPECT_EQ(batches[0].begin.size(), 0);

  // n = 7: halves [1 2 3] and [5 6 50]: Q1 2, Q3 6, fences -4 and 12.
  batches = run_outliers({"g"}, {1, 2, 3, 4, 5, 6, 50});
  ASSERT_EQ(batches.size(), 1U);
  EXPECT_THAT(values_of(batches[0].points), ElementsAre(50));
}

TEST(UdfExampleOutliers, ScaleAndSmallBatches) {
  auto batches = run_outliers({"g"}, standard_values(), 10);  // fences -56.5 and 153.5
  ASSERT_EQ(batches.size(), 1U);
  EXPECT_TRUE(batches[0].points.empty());
  batches = run_outliers({"g"}, standard_values(), 4);  // fences 3.5 and 93.5
  EXPECT_THAT(values_of(batches.at(0).points), ElementsAre(100));
  batches = run_outliers({"g"}, standard_values(), 3.5);  // fences 8.5 and 88.5
  EXPECT_THAT(values_of(batches.at(0).points), ElementsAre(5, 6, 90, 100));
  batches = run_outliers({"g"}, {});
  ASSERT_EQ(batches.size(), 1U);
  EXPECT_EQ(batches[0].begin.size(), 0);
  batches = run_outliers({"g"}, {42});
  ASSERT_EQ(batches.size(), 1U);
  EXPECT_TRUE(batches[0].points.empty());
}

// ---------------------------------------------------------------- mirror

class MirrorProcess {
 public:
  MirrorProcess() {
    std::string pattern = (std::filesystem::temp_directory_path() / "udf-mirror-XXXXXX").string();
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/mirror.sock";
    // Wait for the socket to appear without sleeping: watch the directory first.
    const int watch = ::inotify_init1(IN_CLOEXEC);
    EXPECT_GE(::inotify_add_watch(watch, dir_.c_str(), IN_CREATE | IN_MOVED_TO), 0);
    pid_ = spawn({AGENTRY_UDF_MIRROR, path_}, -1, -1);
    struct stat st {};
    alignas(inotify_event) char buffer[4096];
    while (::lstat(path_.c_str(), &st) != 0) {
      const ssize_t n = ::read(watch, buffer, sizeof buffer);
      if (n <= 0 && errno != EINTR) break;
    }
    ::close(watch);
  }
  ~MirrorProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait_exit(pid_);
    }
    std::filesystem::remove_all(dir_);
  }
  UniqueFd connect() const {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    return fd;
  }
  int terminate() {
    ::kill(pid_, SIGTERM);
    const int code = wait_exit(pid_);
    pid_ = -1;
    return code;
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
  pid_t pid_ = -1;
};

std::vector<agent::Response> converse(int fd, const std::vector<agent::Request>& requests) {
  std::string input;
  for (const auto& r : requests) append_message(input, r);
  std::thread feeder([&] {
    EXPECT_TRUE(write_all(fd, input).is_ok());
    ::shutdown(fd, SHUT_WR);
  });
  std::vector<agent::Response> out;
  MessageReader reader(fd);
  for (;;) {
    agent::Response r;
    auto got = reader.read(r);
    EXPECT_TRUE(got.is_ok()) << got.status().to_string();
    if (!got.is_ok() || !*got) break;
    out.push_back(std::move(r));
  }
  feeder.join();
  return out;
}

TEST(UdfExampleMirror, EchoesPointsAndBatches) {
  MirrorProcess mirror;
  struct stat st {};
  ASSERT_EQ(::lstat(mirror.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);

  std::vector<agent::Request> requests = {info_request(), init_request({})};
  std::vector<agent::Point> points;
  for (int i = 0; i < 1000; ++i) points.push_back(make_point(i, i % 2 == 0 ? "a" : "b", i * 0.5));
  for (const auto& p : points) requests.push_back(point_request(p));
  requests.push_back(begin_request("a", 2));
  requests.push_back(point_request(points[0]));
  requests.push_back(point_request(points[2]));
  requests.push_back(end_request("a", 2));

  UniqueFd fd = mirror.connect();
  const auto responses = converse(fd.get(), requests);
  ASSERT_EQ(responses.size(), requests.size());
  EXPECT_EQ(responses[0].info().wants(), agent::STREAM);
  EXPECT_EQ(responses[0].info().provides(), agent::STREAM);
  EXPECT_TRUE(responses[0].info().options().empty());
  EXPECT_TRUE(responses[1].init().success());
  for (size_t i = 2; i < requests.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& q = requests[i];
    const auto& r = responses[i];
    if (q.has_point()) {
      EXPECT_TRUE(MessageDifferencer::Equals(r.point(), q.point()));
    } else if (q.has_begin()) {
      EXPECT_TRUE(MessageDifferencer::Equals(r.begin(), q.begin()));
    } else {
      EXPECT_TRUE(MessageDifferencer::Equals(r.end(), q.end()));
    }
  }

  // A second connection is a new, independent agent; the server keeps running.
  UniqueFd again = mirror.connect();
  const auto second = converse(again.get(), {info_request()});
  ASSERT_EQ(second.size(), 1U);
  EXPECT_TRUE(second[0].has_info());

  EXPECT_EQ(mirror.terminate(), 0);
  EXPECT_NE(::lstat(mirror.path().c_str(), &st), 0) << "socket not removed on SIGTERM";
}

TEST(UdfExampleMirror, ConcurrentConnections) {
  MirrorProcess mirror;
  std::vector<std::thread> clients;
  for (int c = 0; c < 4; ++c) {
    clients.emplace_back([&mirror, c] {
      UniqueFd fd = mirror.connect();
      std::vector<agent::Request> requests;
      for (int i = 0; i < 5000; ++i) requests.push_back(point_request(make_point(i, std::to_string(c), i)));
      const auto responses = converse(fd.get(), requests);
      ASSERT_EQ(responses.size(), requests.size());
      for (size_t i = 0; i < responses.size(); ++i) {
        EXPECT_EQ(responses[i].point().group(), std::to_string(c));
        EXPECT_EQ(responses[i].point().time(), static_cast<int64_t>(i));
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(mirror.terminate(), 0);
}

TEST(UdfExampleMirror, UsageError) {
  const pid_t pid = spawn({AGENTRY_UDF_MIRROR}, -1, -1);
  EXPECT_EQ(wait_exit(pid), 2);
}

}  // namespace
}  // namespace agentry::udf
