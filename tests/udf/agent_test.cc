// Tests of the agent side of the UDF protocol: framing helpers, FramedWriter, Agent (with a
// scripted Handler over socketpairs and pipes) and Server.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "agentry/udf/agent.h"
#include "agentry/udf/io.h"
#include "agentry/udf/server.h"
#include "agentry/wire/delimited.h"

namespace agentry::udf {
namespace {

using google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

// ---------------------------------------------------------------- helpers

struct FdPair {
  UniqueFd a;
  UniqueFd b;
};

FdPair make_socketpair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// a = read end, b = write end
FdPair make_pipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

agent::Request info_request() {
  agent::Request r;
  r.mutable_info();
  return r;
}

agent::Request keepalive_request(int64_t time) {
  agent::Request r;
  r.mutable_keepalive()->set_time(time);
  return r;
}

agent::Request point_request(double value, const std::string& group = "g") {
  agent::Request r;
  agent::Point* p = r.mutable_point();
  p->set_time(1000);
  p->set_name("cpu");
  p->set_group(group);
  (*p->mutable_tags())["host"] = "h1";
  (*p->mutable_fieldsdouble())["value"] = value;
  return r;
}

std::string frame_all(const std::vector<agent::Request>& requests) {
  std::string out;
  for (const auto& r : requests) append_message(out, r);
  return out;
}

// Reads responses until EOF or error.
std::vector<agent::Response> read_all(int fd, Status* end = nullptr) {
  MessageReader reader(fd);
  std::vector<agent::Response> out;
  for (;;) {
    agent::Response r;
    auto got = reader.read(r);
    if (!got.is_ok()) {
      if (end != nullptr) *end = got.status();
      return out;
    }
    if (!*got) return out;
    out.push_back(std::move(r));
  }
}

// One-shot latch (std::latch would do, but this one can also be waited on twice).
class Gate {
 public:
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// A Handler whose behaviour each test scripts; records the calls it gets.
class ScriptedHandler : public Handler {
 public:
  explicit ScriptedHandler(Agent& agent) : agent_(agent) {}

  std::function<Status(const agent::Point&)> on_point;
  std::function<agent::InitResponse(const agent::InitRequest&)> on_init;
  std::vector<std::string> calls;
  int stops = 0;
  std::thread::id thread;

  agent::InfoResponse Info() override {
    note("info");
    agent::InfoResponse info;
    info.set_wants(agent::STREAM);
    info.set_provides(agent::BATCH);
    (*info.mutable_options())["field"].add_valuetypes(agent::STRING);
    return info;
  }
  agent::InitResponse Init(const agent::InitRequest& request) override {
    note("init");
    if (on_init) return on_init(request);
    agent::InitResponse response;
    response.set_success(true);
    return response;
  }
  agent::SnapshotResponse Snapshot() override {
    note("snapshot");
    agent::SnapshotResponse response;
    response.set_snapshot(std::string("\x00\x01state", 7));
    return response;
  }
  agent::RestoreResponse Restore(const agent::RestoreRequest& request) override {
    note("restore:" + request.snapshot());
    agent::RestoreResponse response;
    response.set_success(true);
    return response;
  }
  Status BeginBatch(const agent::BeginBatch& begin) override {
    note("begin:" + begin.group());
    return agent_.send_begin(begin);
  }
  Status Point(const agent::Point& point) override {
    note("point");
    if (on_point) return on_point(point);
    return agent_.send_point(point);
  }
  Status EndBatch(const agent::EndBatch& end) override {
    note("end:" + end.group());
    return agent_.send_end(end);
  }
  void Stop() override {
    note("stop");
    ++stops;
  }

 private:
  void note(std::string what) {
    if (thread == std::thread::id()) thread = std::this_thread::get_id();
    EXPECT_EQ(thread, std::this_thread::get_id()) << "handler called from two threads";
    calls.push_back(std::move(what));
  }
  Agent& agent_;
};

// An agent over a socketpair, run on its own thread; the test talks through `peer`.
struct SocketAgent {
  explicit SocketAgent(AgentOptions options = {}) {
    FdPair pair = make_socketpair();
    peer = std::move(pair.a);
    agent = std::make_unique<Agent>(std::move(pair.b), options);
    handler = std::make_unique<ScriptedHandler>(*agent);
  }
  void start() {
    runner = std::thread([this] { result = agent->run(*handler); });
  }
  Status join() {
    if (runner.joinable()) runner.join();
    return result;
  }
  void send(const std::vector<agent::Request>& requests) const {
    ASSERT_TRUE(write_all(peer.get(), frame_all(requests)).is_ok());
  }
  void close_input() const { ::shutdown(peer.get(), SHUT_WR); }
  ~SocketAgent() {
    if (runner.joinable()) {
      agent->abort();
      runner.join();
    }
  }

  UniqueFd peer;
  std::unique_ptr<Agent> agent;
  std::unique_ptr<ScriptedHandler> handler;
  std::thread runner;
  Status result;
};

// ---------------------------------------------------------------- framing

TEST(UdfIo, DecoderSplitAtEveryByte) {
  std::vector<agent::Request> requests = {info_request(), keepalive_request(-5), point_request(1.5)};
  agent::Request big = point_request(2.5);
  (*big.mutable_point()->mutable_tags())["long"] = std::string(300, 'x');  // two-byte length prefix
  requests.push_back(big);
  requests.push_back(agent::Request());  // empty message: length 0
  const std::string stream = frame_all(requests);
  for (size_t split = 0; split <= stream.size(); ++split) {
    wire::DelimitedDecoder decoder(1024);
    std::vector<agent::Request> got;
    for (std::string_view part : {std::string_view(stream).substr(0, split), std::string_view(stream).substr(split)}) {
      decoder.feed(part);
      for (;;) {
        auto next = decoder.next();
        ASSERT_TRUE(next.is_ok()) << next.status().to_string();
        if (!next->has_value()) break;
        agent::Request r;
        ASSERT_TRUE(r.ParseFromArray((*next)->data(), static_cast<int>((*next)->size())));
        got.push_back(r);
      }
    }
    ASSERT_TRUE(decoder.finish().is_ok()) << "split " << split;
    ASSERT_EQ(got.size(), requests.size()) << "split " << split;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(MessageDifferencer::Equals(got[i], requests[i]));
  }
}

TEST(UdfIo, AgentReadsRequestsSplitAtEveryByte) {
  const std::vector<agent::Request> requests = {info_request(), point_request(1), keepalive_request(9),
                                                point_request(2, "other")};
  const std::string stream = frame_all(requests);
  for (size_t split = 0; split <= stream.size(); ++split) {
    SocketAgent s;
    s.start();
    ASSERT_TRUE(write_all(s.peer.get(), std::string_view(stream).substr(0, split)).is_ok());
    ASSERT_TRUE(write_all(s.peer.get(), std::string_view(stream).substr(split)).is_ok());
    s.close_input();
    const auto responses = read_all(s.peer.get());
    ASSERT_TRUE(s.join().is_ok());
    ASSERT_EQ(responses.size(), 4U) << "split " << split;
    int points = 0;
    int keepalives = 0;
    for (const auto& r : responses) {
      points += r.has_point() ? 1 : 0;
      keepalives += r.has_keepalive() && r.keepalive().time() == 9 ? 1 : 0;
    }
    EXPECT_EQ(points, 2);
    EXPECT_EQ(keepalives, 1);
    EXPECT_EQ(s.handler->calls, (std::vector<std::string>{"info", "point", "point", "stop"}));
  }
}

TEST(UdfIo, WriteMessageAndMessageReaderRoundTrip) {
  FdPair p = make_pipe();
  agent::Response a;
  a.mutable_keepalive()->set_time(77);
  agent::Response b;
  b.mutable_error()->set_error(std::string(1000, 'e'));
  ASSERT_TRUE(write_message(p.b.get(), a).is_ok());
  ASSERT_TRUE(write_message(p.b.get(), b).is_ok());
  p.b.reset();
  MessageReader reader(p.a.get());
  agent::Response got;
  ASSERT_TRUE(*reader.read(got));
  EXPECT_EQ(got.keepalive().time(), 77);
  ASSERT_TRUE(*reader.read(got));
  EXPECT_EQ(got.error().error().size(), 1000U);
  auto end = reader.read(got);
  ASSERT_TRUE(end.is_ok());
  EXPECT_FALSE(*end);  // clean EOF
}

TEST(UdfIo, MessageReaderReportsTruncationAndGarbage) {
  {
    FdPair p = make_pipe();
    ASSERT_TRUE(write_all(p.b.get(), std::string("\x05\x0a\x00", 3)).is_ok());
    p.b.reset();
    MessageReader reader(p.a.get());
    agent::Request r;
    auto got = reader.read(r);
    ASSERT_FALSE(got.is_ok());
    EXPECT_EQ(got.status().code(), StatusCode::kDataLoss);
    EXPECT_THAT(got.status().message(), HasSubstr("unexpected EOF"));
  }
  {
    FdPair p = make_pipe();
    ASSERT_TRUE(write_all(p.b.get(), std::string("\x02\xff\xff", 3)).is_ok());
    p.b.reset();
    MessageReader reader(p.a.get());
    agent::Request r;
    auto got = reader.read(r);
    ASSERT_FALSE(got.is_ok());
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(UdfIo, WriteToClosedPipeIsAnErrorNotASignal) {
  FdPair p = make_pipe();
  p.a.reset();
  agent::Response r;
  r.mutable_keepalive()->set_time(1);
  const Status status = write_message(p.b.get(), r);
  EXPECT_FALSE(status.is_ok());
  EXPECT_THAT(status.message(), HasSubstr("Broken pipe"));
}

TEST(UdfIo, EmbeddedWriteEqualsResponseWrapper) {
  FdPair p = make_socketpair();
  FramedWriter writer(p.b.get());
  writer.start();
  const agent::Point point = point_request(3.25).point();
  agent::BeginBatch begin;
  begin.set_name("b");
  begin.set_size(3);
  (*begin.mutable_tags())["k"] = "v";
  agent::EndBatch end;
  end.set_tmax(99);
  ASSERT_TRUE(writer.write_embedded(agent::Response::kPointFieldNumber, point).is_ok());
  ASSERT_TRUE(writer.write_embedded(agent::Response::kBeginFieldNumber, begin).is_ok());
  ASSERT_TRUE(writer.write_embedded(agent::Response::kEndFieldNumber, end).is_ok());
  ASSERT_TRUE(writer.close().is_ok());
  p.b.reset();
  const auto got = read_all(p.a.get());
  ASSERT_EQ(got.size(), 3U);
  agent::Response want;
  *want.mutable_point() = point;
  EXPECT_TRUE(MessageDifferencer::Equals(got[0], want));
  *want.mutable_begin() = begin;
  EXPECT_TRUE(MessageDifferencer::Equals(got[1], want));
  *want.mutable_end() = end;
  EXPECT_TRUE(MessageDifferencer::Equals(got[2], want));
}

TEST(UdfIo, WriterBatchesManyMessagesIntoFewWrites) {
  FdPair p = make_socketpair();
  FramedWriter writer(p.b.get());
  writer.start();
  std::thread drain([&] { (void)read_all(p.a.get()); });
  const agent::Point point = point_request(1).point();
  constexpr int kCount = 100000;
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(writer.write_embedded(agent::Response::kPointFieldNumber, point).is_ok());
  ASSERT_TRUE(writer.close().is_ok());
  ::shutdown(p.b.get(), SHUT_WR);
  drain.join();
  const FramedWriterStats stats = writer.stats();
  EXPECT_EQ(stats.messages, static_cast<uint64_t>(kCount));
  EXPECT_GT(stats.write_calls, 0U);
  // ~50-byte messages in 64 KiB chunks: ~1300 per chunk, and several chunks per call.
  EXPECT_LT(static_cast<double>(stats.write_calls) / kCount, 0.01) << stats.write_calls << " writes";
}

// ---------------------------------------------------------------- Agent

TEST(UdfAgent, ScriptedConversation) {
  SocketAgent s;
  s.start();
  agent::Request init;
  auto* option = init.mutable_init()->add_options();
  option->set_name("field");
  option->add_values()->set_stringvalue("value");
  agent::Request begin;
  begin.mutable_begin()->set_group("G");
  begin.mutable_begin()->set_size(1);
  agent::Request end;
  end.mutable_end()->set_group("G");
  end.mutable_end()->set_tmax(5);
  agent::Request snapshot;
  snapshot.mutable_snapshot();
  agent::Request restore;
  restore.mutable_restore()->set_snapshot("abc");
  s.send({info_request(), init, begin, point_request(4), end, snapshot, restore});
  s.close_input();
  const auto responses = read_all(s.peer.get());
  ASSERT_TRUE(s.join().is_ok());

  ASSERT_EQ(responses.size(), 7U);
  EXPECT_EQ(responses[0].info().provides(), agent::BATCH);
  EXPECT_EQ(responses[0].info().options().at("field").valuetypes(0), agent::STRING);
  EXPECT_TRUE(responses[1].init().success());
  EXPECT_EQ(responses[2].begin().group(), "G");
  EXPECT_EQ(responses[3].point().fieldsdouble().at("value"), 4);
  EXPECT_EQ(responses[4].end().tmax(), 5);
  EXPECT_EQ(responses[5].snapshot().snapshot(), std::string("\x00\x01state", 7));
  EXPECT_TRUE(responses[6].restore().success());
  EXPECT_EQ(s.handler->calls,
            (std::vector<std::string>{"info", "init", "begin:G", "point", "end:G", "snapshot", "restore:abc", "stop"}));
  EXPECT_EQ(s.handler->stops, 1);
}

TEST(UdfAgent, OverPipesWithSeparateDescriptors) {
  FdPair in = make_pipe();
  FdPair out = make_pipe();
  Agent agent(std::move(in.a), std::move(out.b));
  ScriptedHandler handler(agent);
  Status result;
  std::thread runner([&] { result = agent.run(handler); });
  ASSERT_TRUE(write_all(in.b.get(), frame_all({info_request(), point_request(7), keepalive_request(3)})).is_ok());
  in.b.reset();
  const auto responses = read_all(out.a.get());
  runner.join();
  ASSERT_TRUE(result.is_ok()) << result.to_string();
  ASSERT_EQ(responses.size(), 3U);
  EXPECT_EQ(handler.stops, 1);
}

TEST(UdfAgent, HandlerErrorSendsErrorResponseAndStops) {
  SocketAgent s;
  s.handler->on_point = [](const agent::Point& p) -> Status {
    if (p.fieldsdouble().at("value") == 2) return invalid_argument("value 2 is not allowed");
    return Status::ok();
  };
  s.start();
  s.send({point_request(1), point_request(2), point_request(3), info_request()});
  // The input stays open: the error alone must end the agent and close its output.
  const auto responses = read_all(s.peer.get());
  const Status result = s.join();
  EXPECT_EQ(result.code(), StatusCode::kInvalidArgument);
  ASSERT_EQ(responses.size(), 1U);
  EXPECT_EQ(responses[0].error().error(), "value 2 is not allowed");
  EXPECT_EQ(s.handler->calls, (std::vector<std::string>{"point", "point", "stop"}));
}

TEST(UdfAgent, ExceptionFromHandlerIsAnError) {
  SocketAgent s;
  s.handler->on_point = [](const agent::Point&) -> Status { throw std::runtime_error("boom"); };
  s.start();
  s.send({point_request(1)});
  const auto responses = read_all(s.peer.get());
  EXPECT_FALSE(s.join().is_ok());
  ASSERT_EQ(responses.size(), 1U);
  EXPECT_EQ(responses[0].error().error(), "boom");
  EXPECT_EQ(s.handler->stops, 1);
}

TEST(UdfAgent, FailedInitDoesNotStop) {
  SocketAgent s;
  s.handler->on_init = [](const agent::InitRequest&) {
    agent::InitResponse r;
    r.set_success(false);
    r.set_error("field must not be empty");
    return r;
  };
  agent::Request init;
  init.mutable_init();
  s.start();
  s.send({init, info_request()});
  s.close_input();
  const auto responses = read_all(s.peer.get());
  ASSERT_TRUE(s.join().is_ok());
  ASSERT_EQ(responses.size(), 2U);
  EXPECT_FALSE(responses[0].init().success());
  EXPECT_EQ(responses[0].init().error(), "field must not be empty");
  EXPECT_TRUE(responses[1].has_info());
}

TEST(UdfAgent, KeepaliveAnsweredWhileHandlerBlocks) {
  SocketAgent s;
  Gate entered;
  Gate release;
  s.handler->on_point = [&](const agent::Point&) {
    entered.open();
    release.wait();
    return Status::ok();
  };
  s.start();
  s.send({point_request(1)});
  entered.wait();
  s.send({keepalive_request(123456789)});
  MessageReader reader(s.peer.get());
  agent::Response r;
  ASSERT_TRUE(*reader.read(r));  // would hang if keepalives waited for the handler
  EXPECT_EQ(r.keepalive().time(), 123456789);
  release.open();
  s.close_input();
  ASSERT_TRUE(s.join().is_ok());
}

TEST(UdfAgent, KeepaliveOvertakesQueuedOutput) {
  SocketAgent s;
  Gate queued;
  constexpr int kFlood = 100000;  // ~5 MB: far more than the socket buffers hold
  s.handler->on_point = [&](const agent::Point& p) {
    for (int i = 0; i < kFlood; ++i) {
      if (Status st = s.agent->send_point(p); !st.is_ok()) return st;
    }
    queued.open();
    return Status::ok();
  };
  s.start();
  s.send({point_request(1)});
  queued.wait();  // the output is now backed up: we have not read anything yet
  s.send({keepalive_request(42)});
  s.close_input();
  const auto responses = read_all(s.peer.get());
  ASSERT_TRUE(s.join().is_ok());
  ASSERT_EQ(responses.size(), static_cast<size_t>(kFlood) + 1);
  size_t at = responses.size();
  for (size_t i = 0; i < responses.size(); ++i) {
    if (responses[i].has_keepalive()) at = i;
  }
  ASSERT_LT(at, responses.size());
  EXPECT_EQ(responses[at].keepalive().time(), 42);
  EXPECT_LT(at, static_cast<size_t>(kFlood) / 2) << "the keepalive reply waited behind the queued points";
}

TEST(UdfAgent, WriteErrorEndsRunWithoutHanging) {
  FdPair in = make_pipe();
  FdPair out = make_pipe();
  out.a.reset();  // nobody will ever read the output
  Agent agent(std::move(in.a), std::move(out.b));
  ScriptedHandler handler(agent);
  Status result;
  std::thread runner([&] { result = agent.run(handler); });
  // Points echo; the first write gets EPIPE. Keep the input open: run() must end anyway.
  std::vector<agent::Request> points(100, point_request(1));
  (void)write_all(in.b.get(), frame_all(points));
  runner.join();
  EXPECT_EQ(result.code(), StatusCode::kUnavailable) << result.to_string();
  EXPECT_THAT(result.message(), HasSubstr("Broken pipe"));
  EXPECT_EQ(handler.stops, 1);
  // Later sends fail instead of blocking.
  EXPECT_FALSE(agent.send_point(point_request(1).point()).is_ok());
}

TEST(UdfAgent, WriteErrorOnSocketEndsRun) {
  SocketAgent s;
  s.start();
  ::shutdown(s.peer.get(), SHUT_RD);
  std::vector<agent::Request> points(1000, point_request(1));
  s.send(points);
  const Status result = s.join();
  EXPECT_FALSE(result.is_ok());
  EXPECT_EQ(s.handler->stops, 1);
}

TEST(UdfAgent, ManyPointsFewWrites) {
  FdPair in = make_pipe();
  FdPair out = make_pipe();
  Agent agent(std::move(in.a), std::move(out.b));
  ScriptedHandler handler(agent);
  Status result;
  std::thread runner([&] { result = agent.run(handler); });
  constexpr int kPoints = 200000;
  std::thread feeder([&] {
    std::vector<agent::Request> points(kPoints, point_request(1));
    EXPECT_TRUE(write_all(in.b.get(), frame_all(points)).is_ok());
    in.b.reset();
  });
  const auto responses = read_all(out.a.get());
  feeder.join();
  runner.join();
  ASSERT_TRUE(result.is_ok());
  ASSERT_EQ(responses.size(), static_cast<size_t>(kPoints));
  const FramedWriterStats stats = agent.writer_stats();
  const double per_point = static_cast<double>(stats.write_calls) / kPoints;
  RecordProperty("write_calls", std::to_string(stats.write_calls));
  EXPECT_LT(per_point, 0.05) << stats.write_calls << " writes for " << kPoints << " points";
}

TEST(UdfAgent, MessageOverTheLimit) {
  AgentOptions options;
  options.max_message_size = 100;
  SocketAgent s(options);
  agent::Request big = point_request(2);
  (*big.mutable_point()->mutable_tags())["pad"] = std::string(200, 'p');
  s.start();
  s.send({point_request(1), big, point_request(3)});
  const auto responses = read_all(s.peer.get());
  const Status result = s.join();
  EXPECT_EQ(result.code(), StatusCode::kOutOfRange) << result.to_string();
  ASSERT_EQ(responses.size(), 2U);
  EXPECT_TRUE(responses[0].has_point());  // the request before the bad one was handled
  EXPECT_THAT(responses[1].error().error(), HasSubstr("exceeds the maximum of 100 bytes"));
  EXPECT_EQ(s.handler->calls, (std::vector<std::string>{"point", "stop"}));
}

TEST(UdfAgent, GarbageAndTruncatedInput) {
  {
    SocketAgent s;
    s.start();
    ASSERT_TRUE(write_all(s.peer.get(), std::string("\x03\xff\xff\xff", 4)).is_ok());
    const auto responses = read_all(s.peer.get());
    EXPECT_EQ(s.join().code(), StatusCode::kInvalidArgument);
    ASSERT_EQ(responses.size(), 1U);
    EXPECT_THAT(responses[0].error().error(), HasSubstr("does not parse as a Request"));
  }
  {
    SocketAgent s;
    s.start();
    std::string stream = frame_all({point_request(1)});
    const std::string partial = frame_all({point_request(2)});
    stream += partial.substr(0, partial.size() - 3);
    ASSERT_TRUE(write_all(s.peer.get(), stream).is_ok());
    s.close_input();
    const auto responses = read_all(s.peer.get());
    EXPECT_EQ(s.join().code(), StatusCode::kDataLoss);
    ASSERT_EQ(responses.size(), 2U);
    EXPECT_TRUE(responses[0].has_point());
    EXPECT_THAT(responses[1].error().error(), HasSubstr("unexpected EOF"));
  }
  {
    SocketAgent s;
    s.start();
    s.send({agent::Request()});  // no message set
    const auto responses = read_all(s.peer.get());
    EXPECT_EQ(s.join().code(), StatusCode::kInvalidArgument);
    ASSERT_EQ(responses.size(), 1U);
    EXPECT_TRUE(responses[0].has_error());
  }
}

TEST(UdfAgent, StopFromHandler) {
  SocketAgent s;
  s.handler->on_point = [&](const agent::Point&) {
    s.agent->stop();
    return Status::ok();
  };
  s.start();
  s.send({point_request(1), point_request(2), info_request()});
  const auto responses = read_all(s.peer.get());  // output closed although input is open
  EXPECT_TRUE(s.join().is_ok());
  EXPECT_TRUE(responses.empty());
  EXPECT_EQ(s.handler->calls, (std::vector<std::string>{"point", "stop"}));
}

TEST(UdfAgent, StopWithReasonSendsError) {
  SocketAgent s;
  s.start();
  s.send({info_request()});
  MessageReader reader(s.peer.get());
  agent::Response r;
  ASSERT_TRUE(*reader.read(r));
  s.agent->stop(failed_precondition("shutting down"));
  ASSERT_TRUE(*reader.read(r));
  EXPECT_EQ(r.error().error(), "shutting down");
  EXPECT_EQ(s.join().code(), StatusCode::kFailedPrecondition);
}

TEST(UdfAgent, AbortInterruptsBlockedOutput) {
  SocketAgent s;
  Gate flooding;
  s.handler->on_point = [&](const agent::Point& p) {
    flooding.open();
    // Never read by the test: fills the socket, then the writer's queue, then blocks here.
    for (;;) {
      if (Status st = s.agent->send_point(p); !st.is_ok()) return st;
    }
  };
  s.start();
  s.send({point_request(1)});
  flooding.wait();
  s.agent->abort();
  EXPECT_EQ(s.join().code(), StatusCode::kCancelled);
  EXPECT_EQ(s.handler->stops, 1);
}

TEST(UdfAgent, SendFromAnotherThreadWhileIdleIsFlushed) {
  SocketAgent s;
  s.start();
  s.send({info_request()});
  MessageReader reader(s.peer.get());
  agent::Response r;
  ASSERT_TRUE(*reader.read(r));
  ASSERT_TRUE(r.has_info());
  // The handler thread is idle now; a point sent from elsewhere must not sit in a buffer.
  std::thread other([&] { EXPECT_TRUE(s.agent->send_point(point_request(8).point()).is_ok()); });
  other.join();
  ASSERT_TRUE(*reader.read(r));
  EXPECT_EQ(r.point().fieldsdouble().at("value"), 8);
  s.close_input();
  EXPECT_TRUE(s.join().is_ok());
}

TEST(UdfAgent, RunTwiceIsRefused) {
  SocketAgent s;
  s.close_input();
  s.start();
  ASSERT_TRUE(s.join().is_ok());
  EXPECT_EQ(s.agent->run(*s.handler).code(), StatusCode::kFailedPrecondition);
}

// ---------------------------------------------------------------- Server

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "udf-agent-test-XXXXXX").string();
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  return fd;
}

AgentAccepter::HandlerFactory scripted_factory() {
  return [](Agent& agent) { return std::make_unique<ScriptedHandler>(agent); };
}

TEST(UdfServer, StopWithNoConnections) {
  TempDir dir;
  AgentAccepter accepter(scripted_factory());
  const mode_t old_umask = ::umask(0);  // the mode must not depend on the umask
  auto server = Server::listen(dir.file("s.sock"), accepter);
  ::umask(old_umask);
  ASSERT_TRUE(server.is_ok()) << server.status().to_string();
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("s.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600U);
  Status served;
  std::thread serving([&] { served = (*server)->serve(); });
  (*server)->stop();
  serving.join();
  EXPECT_TRUE(served.is_ok());
  EXPECT_NE(::lstat(dir.file("s.sock").c_str(), &st), 0) << "socket file left behind";
  (*server)->stop();  // idempotent
}

TEST(UdfServer, StopWithActiveConnections) {
  TempDir dir;
  AgentAccepter accepter(scripted_factory());
  auto server = Server::listen(dir.file("s.sock"), accepter);
  ASSERT_TRUE(server.is_ok());
  std::thread serving([&] { EXPECT_TRUE((*server)->serve().is_ok()); });
  UniqueFd a = connect_to(dir.file("s.sock"));
  UniqueFd b = connect_to(dir.file("s.sock"));
  ASSERT_TRUE(write_all(a.get(), frame_all({info_request()})).is_ok());
  ASSERT_TRUE(write_all(b.get(), frame_all({point_request(5)})).is_ok());
  MessageReader ra(a.get());
  MessageReader rb(b.get());
  agent::Response r;
  ASSERT_TRUE(*ra.read(r));
  EXPECT_TRUE(r.has_info());
  ASSERT_TRUE(*rb.read(r));
  EXPECT_EQ(r.point().fieldsdouble().at("value"), 5);
  EXPECT_EQ(accepter.active_connections(), 2U);
  // Both connections are idle and open; stop() must end them.
  (*server)->stop();
  serving.join();
  EXPECT_EQ(accepter.active_connections(), 0U);
  auto end = ra.read(r);
  EXPECT_TRUE(!end.is_ok() || !*end);
  end = rb.read(r);
  EXPECT_TRUE(!end.is_ok() || !*end);
}

TEST(UdfServer, ConnectionEndsOnItsOwn) {
  TempDir dir;
  AgentAccepter accepter(scripted_factory());
  auto server = Server::listen(dir.file("s.sock"), accepter);
  ASSERT_TRUE(server.is_ok());
  std::thread serving([&] { EXPECT_TRUE((*server)->serve().is_ok()); });
  UniqueFd a = connect_to(dir.file("s.sock"));
  ASSERT_TRUE(write_all(a.get(), frame_all({point_request(1), point_request(2)})).is_ok());
  ::shutdown(a.get(), SHUT_WR);
  const auto responses = read_all(a.get());
  EXPECT_EQ(responses.size(), 2U);
  (*server)->stop();
  serving.join();
}

TEST(UdfServer, ListenerShutDownUnderIt) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;  // autobind to an abstract address
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(sa_family_t)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  const int raw = listener.get();
  AgentAccepter accepter(scripted_factory());
  Server server(std::move(listener), accepter);
  Status served;
  std::thread serving([&] { served = server.serve(); });
  ::shutdown(raw, SHUT_RDWR);  // the accept loop must notice and end, not spin or hang
  serving.join();
  EXPECT_FALSE(served.is_ok());
  server.stop();  // and stopping afterwards is harmless
}

TEST(UdfServer, ListenerReplacedBeforeServe) {
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int raw = listener.get();
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::dup2(devnull.get(), raw), raw);  // the socket is gone; the number is /dev/null now
  AgentAccepter accepter(scripted_factory());
  Server server(std::move(listener), accepter);
  const Status served = server.serve();  // accept() fails with ENOTSOCK: an error, not a spin
  EXPECT_FALSE(served.is_ok());
  EXPECT_THAT(served.message(), HasSubstr("accepting"));
  server.stop();
  server.stop();
}

TEST(UdfServer, StaleSocketReplacedLiveOneRefused) {
  TempDir dir;
  const std::string path = dir.file("s.sock");
  {
    // A socket file nobody listens on any more.
    UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(stale.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  }
  AgentAccepter accepter(scripted_factory());
  auto first = Server::listen(path, accepter);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  auto second = Server::listen(path, accepter);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
  first->reset();  // never served: the destructor removes the file
  struct stat st {};
  EXPECT_NE(::lstat(path.c_str(), &st), 0);

  ASSERT_TRUE(std::filesystem::create_directory(path));  // not a socket
  auto third = Server::listen(path, accepter);
  ASSERT_FALSE(third.is_ok());
  EXPECT_THAT(third.status().message(), HasSubstr("not a socket"));
}

TEST(UdfServer, StopOnSignals) {
  TempDir dir;
  AgentAccepter accepter(scripted_factory());
  auto server = Server::listen(dir.file("s.sock"), accepter);
  ASSERT_TRUE(server.is_ok());
  ASSERT_TRUE((*server)->stop_on_signals({SIGUSR2}).is_ok());
  Status served;
  std::thread serving([&] { served = (*server)->serve(); });
  ASSERT_EQ(::kill(::getpid(), SIGUSR2), 0);
  serving.join();
  EXPECT_TRUE(served.is_ok());
}

}  // namespace
}  // namespace agentry::udf
