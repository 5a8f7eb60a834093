// Tests of the UDF host (agentry/udf/host.h).
//
// Two kinds of UDF on the other end:
//  - fake UDFs: this very test binary, started again with AGENTRY_FAKE_UDF=<mode> in its
//    environment. Its main() (below) then speaks the raw protocol on stdin/stdout with
//    agentry::wire framing and misbehaves on purpose (hangs, dies, floods, sends errors or
//    unsolicited responses); it never involves the agent library, so host bugs and agent
//    bugs cannot hide each other;
//  - the example UDFs built from examples/udf (paths from AGENTRY_UDF_* definitions).
//
// Synchronization is by protocol events (answers, the end of a session), never by sleeping;
// timeouts exist only as keepalive settings and failure deadlines.
#include "agentry/udf/host.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/util/message_differencer.h>

#include "agentry/udf/line_protocol.h"
#include "agentry/wire/delimited.h"

namespace agentry::udf {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// ================================================================ the fake UDF

namespace fake {

// Blocking framed I/O on two descriptors.
class Io {
 public:
  Io(int in, int out) : in_(in), out_(out) {}

  // false at EOF.
  bool read(::agent::Request& request) {
    for (;;) {
      auto next = decoder_.next();
      if (!next.is_ok()) std::_Exit(90);
      if (next->has_value()) {
        if (!request.ParseFromArray((*next)->data(), static_cast<int>((*next)->size()))) std::_Exit(91);
        return true;
      }
      char buf[65536];
      const ssize_t n = ::read(in_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }
  void queue(const ::agent::Response& response) { wire::append_delimited(out_buf_, response.SerializeAsString()); }
  void queue_raw(std::string_view bytes) { wire::append_delimited(out_buf_, bytes); }
  void flush() {
    size_t off = 0;
    while (off < out_buf_.size()) {
      const ssize_t n = ::write(out_, out_buf_.data() + off, out_buf_.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) std::_Exit(92);
      off += static_cast<size_t>(n);
    }
    out_buf_.clear();
  }
  void send(const ::agent::Response& response) {
    queue(response);
    flush();
  }

 private:
  int in_, out_;
  wire::DelimitedDecoder decoder_;
  std::string out_buf_;
};

::agent::InfoResponse info() {
  ::agent::InfoResponse info;
  info.set_wants(::agent::STREAM);
  info.set_provides(::agent::STREAM);
  auto& o = *info.mutable_options();
  o["size"].add_valuetypes(::agent::INT);
  o["field"].add_valuetypes(::agent::STRING);
  o["ratio"].add_valuetypes(::agent::DOUBLE);
  o["on"].add_valuetypes(::agent::BOOL);
  o["every"].add_valuetypes(::agent::DURATION);
  o["range"].add_valuetypes(::agent::INT);
  o["range"].add_valuetypes(::agent::INT);
  o["flag"];  // takes no values
  return info;
}

// The "sum" UDF: for every point, a point with the running sum of field "v" of its group.
// State: the sums, which snapshot/restore carry as "group\tsum\n" lines.
struct Summer {
  std::map<std::string, double> sums;

  ::agent::Point apply(const ::agent::Point& in) {
    double& sum = sums[in.group()];
    sum += in.fieldsdouble().contains("v") ? in.fieldsdouble().at("v") : 0;
    ::agent::Point out;
    out.set_name(in.name());
    out.set_time(in.time());
    out.set_group(in.group());
    *out.mutable_tags() = in.tags();
    (*out.mutable_fieldsdouble())["sum"] = sum;
    return out;
  }
  std::string snapshot() const {
    std::string s;
    for (const auto& [g, v] : sums) s += g + "\t" + std::to_string(v) + "\n";
    return s;
  }
  bool restore(const std::string& s) {
    sums.clear();
    size_t pos = 0;
    while (pos < s.size()) {
      const size_t tab = s.find('\t', pos);
      const size_t nl = s.find('\n', pos);
      if (tab == std::string::npos || nl == std::string::npos || tab > nl) return false;
      sums[s.substr(pos, tab - pos)] = std::stod(s.substr(tab + 1, nl - tab - 1));
      pos = nl + 1;
    }
    return true;
  }
};

// Serves one connection. Returns the process exit code.
int serve(const std::string& mode, int in, int out) {
  Io io(in, out);
  Summer summer;
  ::agent::Request req;
  ::agent::Response resp;
  int points = 0;
  bool errored = false;
  if (mode == "unsolicited") {
    // Answers nobody asked for, and a response type from the future (field 99).
    resp.mutable_init()->set_success(true);
    io.queue(resp);
    resp.Clear();
    resp.mutable_snapshot()->set_snapshot("?");
    io.queue(resp);
    io.queue_raw(std::string("\x98\x06\x01", 3));  // field 99, varint 1
    io.flush();
  }
  std::fprintf(stderr, "fake udf (%s) started\n", mode.c_str());
  while (io.read(req)) {
    resp.Clear();
    switch (req.message_case()) {
      case ::agent::Request::kInfo:
        *resp.mutable_info() = info();
        if (mode == "malformed") {
          io.queue_raw("\xff\xff\xff");
          io.flush();
        }
        io.send(resp);
        break;
      case ::agent::Request::kInit: {
        bool ok = true;
        for (const auto& o : req.init().options()) {
          if (o.name() == "size" && o.values(0).intvalue() <= 0) ok = false;
        }
        resp.mutable_init()->set_success(ok);
        if (!ok) resp.mutable_init()->set_error("size must be > 0");
        io.send(resp);
        if (mode == "hang") {
          // Stops answering and stops reading; only SIGKILL ends it.
          for (;;) pause();
        }
        break;
      }
      case ::agent::Request::kKeepalive:
        resp.mutable_keepalive()->set_time(req.keepalive().time());
        io.send(resp);
        break;
      case ::agent::Request::kSnapshot:
        resp.mutable_snapshot()->set_snapshot(summer.snapshot());
        io.send(resp);
        break;
      case ::agent::Request::kRestore: {
        const bool ok = summer.restore(req.restore().snapshot());
        resp.mutable_restore()->set_success(ok);
        if (!ok) resp.mutable_restore()->set_error("bad snapshot");
        io.send(resp);
        break;
      }
      case ::agent::Request::kBegin:
        *resp.mutable_begin() = req.begin();
        io.send(resp);
        break;
      case ::agent::Request::kEnd:
        *resp.mutable_end() = req.end();
        io.send(resp);
        break;
      case ::agent::Request::kPoint:
        ++points;
        if (mode == "error" && !errored) {
          errored = true;
          resp.mutable_error()->set_error("boom: cannot handle point " + std::to_string(points));
          io.send(resp);
          break;  // keeps reading until EOF, like an agent that stopped its handler
        }
        if (errored) break;
        if (mode == "die" && points == 3) {
          std::fprintf(stderr, "fatal: out of cheese\nat point %d\n", points);
          std::fflush(stderr);
          std::_Exit(3);
        }
        if (mode == "chatty") {
          // Many points per input, one write() each: fills the pipe quickly when the host
          // does not read.
          for (int i = 0; i < 50; ++i) {
            *resp.mutable_point() = req.point();
            (*resp.mutable_point()->mutable_fieldsint())["copy"] = i;
            io.send(resp);
          }
          break;
        }
        *resp.mutable_point() = summer.apply(req.point());
        io.send(resp);
        break;
      default:
        break;
    }
  }
  return mode == "exit-7-at-eof" ? 7 : 0;
}

int socket_server(const std::string& path) {
  const int lfd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ::unlink(path.c_str());
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 80;
  if (::listen(lfd, 8) != 0) return 81;
  for (;;) {
    const int c = ::accept(lfd, nullptr, nullptr);
    if (c < 0) return 82;
    std::thread([c] {
      serve("sum", c, c);
      ::shutdown(c, SHUT_WR);
      ::close(c);
    }).detach();
  }
}

int main_if_fake() {
  const char* mode = std::getenv("AGENTRY_FAKE_UDF");
  if (mode == nullptr) return -1;
  ::signal(SIGPIPE, SIG_DFL);
  const std::string m = mode;
  if (m == "socket") return socket_server(std::getenv("AGENTRY_FAKE_SOCKET"));
  return serve(m, 0, 1);
}

}  // namespace fake

// ================================================================ helpers

// Collects what the UDF sends back, on the session's I/O thread.
struct Collector {
  std::mutex mu;
  std::vector<::agent::Response> responses;
  std::atomic<uint64_t> count{0};
  bool keep = true;

  HostSession::DataHandler handler() {
    return [this](const ::agent::Response& r) {
      count.fetch_add(1, std::memory_order_relaxed);
      if (!keep) return;
      std::lock_guard lock(mu);
      responses.push_back(r);
    };
  }
  std::vector<::agent::Response> take() {
    std::lock_guard lock(mu);
    return std::move(responses);
  }
};

ProcessConfig program(const std::string& path, std::vector<std::string> args = {}) {
  ProcessConfig c;
  c.program = path;
  c.args = std::move(args);
  return c;
}

ProcessConfig fake_udf(const std::string& mode) {
  ProcessConfig c;
  c.program = "/proc/self/exe";
  c.env = {"AGENTRY_FAKE_UDF=" + mode};
  return c;
}

HostOptions test_options() {
  HostOptions o;
  o.keepalive_timeout = std::chrono::seconds(30);  // a failure deadline, not a sync tool
  return o;
}

std::unique_ptr<HostSession> start(const ProcessConfig& config, Collector& out, HostOptions options = test_options()) {
  auto s = HostSession::start_process(config, options, out.handler());
  EXPECT_TRUE(s.is_ok()) << s.status().message();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

::agent::Option int_option(const std::string& name, int64_t v) {
  ::agent::Option o;
  o.set_name(name);
  auto* val = o.add_values();
  val->set_type(::agent::INT);
  val->set_intvalue(v);
  return o;
}

::agent::Point point(const std::string& group, double v, int64_t t) {
  ::agent::Point p;
  p.set_name("m");
  p.set_group(group);
  p.set_time(t);
  (*p.mutable_tags())["g"] = group;
  (*p.mutable_fieldsdouble())["v"] = v;
  return p;
}

// "2024-05-01T12:00:00.123456789Z"
bool looks_like_rfc3339_ns(std::string_view s) {
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd.dddddddddZ";
  if (s.size() != kShape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (kShape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != kShape[i]) return false;
  }
  return true;
}

std::vector<std::string> as_lines(const std::vector<::agent::Response>& rs) {
  std::vector<std::string> lines;
  for (const auto& r : rs) {
    if (r.has_point()) {
      auto l = format_line(r.point());
      lines.push_back(l.is_ok() ? *l : l.status().message());
    } else if (r.has_begin()) {
      lines.push_back("begin " + r.begin().name() + " " + r.begin().group());
    } else if (r.has_end()) {
      lines.push_back("end " + r.end().name() + " " + r.end().group());
    }
  }
  return lines;
}

// ================================================================ options (no process)

TEST(HostOptions, CheckOptionsExactTypes) {
  const auto info = fake::info();
  EXPECT_TRUE(check_options(info, {int_option("size", 10)}).is_ok());

  ::agent::Option d;
  d.set_name("size");
  d.add_values()->set_type(::agent::DOUBLE);
  d.mutable_values(0)->set_doublevalue(10);
  Status s = check_options(info, {d});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "option \"size\": value 1 is DOUBLE, expected INT (size takes INT)");

  // An INT where DOUBLE is declared is refused too: no coercion either way.
  ::agent::Option r = int_option("ratio", 2);
  EXPECT_EQ(check_options(info, {r}).message(), "option \"ratio\": value 1 is INT, expected DOUBLE (ratio takes DOUBLE)");

  EXPECT_EQ(check_options(info, {int_option("sise", 1)}).message(),
            "unknown option \"sise\" (the UDF's options: every, field, flag, on, range, ratio, size)");
  EXPECT_EQ(check_options(info, {int_option("range", 1)}).message(),
            "option \"range\": got 1 value(s), expected 2 (range takes INT, INT)");

  ::agent::Option lying;  // says INT, carries a string
  lying.set_name("size");
  lying.add_values()->set_type(::agent::INT);
  lying.mutable_values(0)->set_stringvalue("10");
  EXPECT_THAT(check_options(info, {lying}).message(), HasSubstr("does not carry a value of that type"));

  ::agent::InfoResponse none;
  EXPECT_EQ(check_options(none, {int_option("x", 1)}).message(), "unknown option \"x\" (the UDF takes no options)");
}

TEST(HostOptions, ParseValues) {
  EXPECT_EQ(parse_option_value(::agent::INT, "10")->intvalue(), 10);
  EXPECT_EQ(parse_option_value(::agent::INT, "-3")->intvalue(), -3);
  EXPECT_THAT(parse_option_value(::agent::INT, "1.5").status().message(), HasSubstr("expected an INT"));
  EXPECT_THAT(parse_option_value(::agent::INT, "99999999999999999999").status().message(),
              HasSubstr("does not fit in int64"));
  EXPECT_DOUBLE_EQ(parse_option_value(::agent::DOUBLE, "1.5")->doublevalue(), 1.5);
  EXPECT_DOUBLE_EQ(parse_option_value(::agent::DOUBLE, "10")->doublevalue(), 10.0);
  EXPECT_EQ(parse_option_value(::agent::DOUBLE, "10")->type(), ::agent::DOUBLE);
  EXPECT_THAT(parse_option_value(::agent::DOUBLE, "inf").status().message(), HasSubstr("expected a DOUBLE"));
  EXPECT_TRUE(parse_option_value(::agent::BOOL, "true")->boolvalue());
  EXPECT_FALSE(parse_option_value(::agent::BOOL, "false")->boolvalue());
  EXPECT_THAT(parse_option_value(::agent::BOOL, "yes").status().message(), HasSubstr("expected a BOOL"));
  EXPECT_EQ(parse_option_value(::agent::STRING, "a=b c")->stringvalue(), "a=b c");

  const auto dur = [](const char* text) { return parse_option_value(::agent::DURATION, text); };
  EXPECT_EQ(dur("10s")->durationvalue(), 10'000'000'000);
  EXPECT_EQ(dur("250ms")->durationvalue(), 250'000'000);
  EXPECT_EQ(dur("1h30m")->durationvalue(), 5'400'000'000'000);
  EXPECT_EQ(dur("1.5s")->durationvalue(), 1'500'000'000);
  EXPECT_EQ(dur("-5m")->durationvalue(), -300'000'000'000);
  EXPECT_EQ(dur("3us")->durationvalue(), 3'000);
  EXPECT_EQ(dur("3\xC2\xB5s")->durationvalue(), 3'000);
  EXPECT_EQ(dur("7ns")->durationvalue(), 7);
  EXPECT_EQ(dur("2d")->durationvalue(), 172'800'000'000'000);
  EXPECT_EQ(dur("1w")->durationvalue(), 604'800'000'000'000);
  EXPECT_EQ(dur("0")->durationvalue(), 0);
  EXPECT_EQ(dur("0")->type(), ::agent::DURATION);
  for (const char* bad : {"10", "s", "1x", "", "1.s5", "ms"}) {
    EXPECT_THAT(dur(bad).status().message(), HasSubstr("expected a DURATION")) << bad;
  }
  EXPECT_THAT(dur("3000000h").status().message(), HasSubstr("does not fit"));
}

TEST(HostOptions, ParseCommandLineOptions) {
  const auto info = fake::info();
  auto opts = parse_options(info, {"size=10", "field=value", "range=1", "range=5", "flag", "field=other",
                                   "every=250ms", "on=true", "ratio=1.5"});
  ASSERT_TRUE(opts.is_ok()) << opts.status().message();
  ASSERT_EQ(opts->size(), 8u);
  EXPECT_EQ((*opts)[0].name(), "size");
  EXPECT_EQ((*opts)[0].values(0).intvalue(), 10);
  EXPECT_EQ((*opts)[1].values(0).stringvalue(), "value");
  EXPECT_EQ((*opts)[2].name(), "range");
  ASSERT_EQ((*opts)[2].values_size(), 2);
  EXPECT_EQ((*opts)[2].values(1).intvalue(), 5);
  EXPECT_EQ((*opts)[3].name(), "flag");
  EXPECT_EQ((*opts)[3].values_size(), 0);
  EXPECT_EQ((*opts)[4].values(0).stringvalue(), "other");  // a second instance of "field"
  EXPECT_EQ((*opts)[5].values(0).durationvalue(), 250'000'000);
  EXPECT_TRUE(check_options(info, *opts).is_ok());

  EXPECT_EQ(parse_options(info, {"size=1.5"}).status().message(),
            "--opt size=1.5: option \"size\" value 1: expected an INT (a whole number), got \"1.5\" (size takes INT)");
  EXPECT_THAT(parse_options(info, {"nope=1"}).status().message(),
              HasSubstr("unknown option \"nope\" (the UDF's options: every, field, flag, on, range, ratio, size)"));
  EXPECT_THAT(parse_options(info, {"range=1"}).status().message(),
              HasSubstr("option \"range\" takes 2 values (INT, INT) but got 1"));
  EXPECT_THAT(parse_options(info, {"flag=1"}).status().message(), HasSubstr("takes no values"));
  EXPECT_THAT(parse_options(info, {"size"}).status().message(), HasSubstr("needs a value"));
}

TEST(HostOptions, DescribeInfoAndTime) {
  EXPECT_EQ(describe_info(fake::info()),
            "wants: STREAM\nprovides: STREAM\noptions:\n  every  DURATION\n  field  STRING\n  flag   no values\n"
            "  on     BOOL\n  range  INT, INT\n  ratio  DOUBLE\n  size   INT\n");
  EXPECT_EQ(format_time_ns(0), "1970-01-01T00:00:00.000000000Z");
  EXPECT_EQ(format_time_ns(1700000000123456789), "2023-11-14T22:13:20.123456789Z");
  EXPECT_EQ(format_time_ns(-1), "1969-12-31T23:59:59.999999999Z");
}

// ================================================================ response decoding

TEST(HostDecode, FastPathMatchesProtobuf) {
  // Responses in a sequence, decoded into one reused message (as the session does) and,
  // for reference, each into a fresh message by protobuf. Covers the in-place update (same
  // keys), changed key sets, defaults, duplicates, non-ASCII text, unknown fields and
  // non-point responses in between.
  std::vector<std::string> wire;
  const auto add = [&](const ::agent::Response& r) { wire.push_back(r.SerializeAsString()); };
  ::agent::Response r;
  auto* p = r.mutable_point();
  p->set_name("cpu");
  p->set_time(-5);
  p->set_database("db");
  p->set_retentionpolicy("rp");
  p->set_group("host=a");
  p->add_dimensions("host");
  p->set_byname(true);
  (*p->mutable_tags())["host"] = "a";
  (*p->mutable_tags())["dc"] = "eu";
  (*p->mutable_fieldsdouble())["v"] = 1.5;
  (*p->mutable_fieldsint())["n"] = -7;
  (*p->mutable_fieldsstring())["s"] = "x";
  (*p->mutable_fieldsbool())["b"] = true;
  add(r);
  (*p->mutable_tags())["host"] = "b";  // same keys, new values: in place
  (*p->mutable_fieldsdouble())["v"] = -0.0;
  (*p->mutable_fieldsbool())["b"] = false;
  p->set_time(1'700'000'000'000'000'000);
  add(r);
  p->mutable_tags()->erase("dc");  // fewer keys
  (*p->mutable_fieldsint())["m"] = 1;  // more keys
  p->clear_dimensions();
  add(r);
  (*p->mutable_tags())["z"] = "Ã©";  // non-ASCII: protobuf's parser
  add(r);
  p->mutable_tags()->erase("z");
  (*p->mutable_tags())["host"] = "c";
  add(r);
  ::agent::Response other;
  other.mutable_keepalive()->set_time(9);
  add(other);
  add(r);
  ::agent::Point empty;
  ::agent::Response empty_r;
  *empty_r.mutable_point() = empty;
  add(empty_r);
  add(r);
  // A duplicate map key on the wire (last wins) and an unknown field inside the point.
  {
    ::agent::Point extra;
    (*extra.mutable_tags())["host"] = "d";
    const std::string tail = extra.SerializeAsString();
    std::string point_bytes = r.point().SerializeAsString() + tail + std::string("\xa0\x06\x01", 3);  // field 100
    std::string framed("\x8a\x01", 2);  // Response field 17, length-delimited
    wire::append_delimited(framed, point_bytes);
    wire.push_back(framed);
  }
  add(r);

  ::agent::Response reused;
  for (size_t i = 0; i < wire.size(); ++i) {
    ::agent::Response expected;
    ASSERT_TRUE(expected.ParseFromString(wire[i])) << i;
    ASSERT_TRUE(detail::parse_response(wire[i], reused)) << i;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(expected, reused))
        << i << "\nexpected: " << expected.ShortDebugString() << "\ngot: " << reused.ShortDebugString();
  }
  EXPECT_FALSE(detail::parse_response(std::string("\x8a\x01\x05" "ab", 5), reused));  // truncated
}

// ================================================================ sessions with fake UDFs

TEST(HostSession, InfoInitStreamAndCleanExit) {
  Collector out;
  auto s = start(fake_udf("sum"), out);
  ASSERT_TRUE(s);
  auto info = s->info();
  ASSERT_TRUE(info.is_ok()) << info.status().message();
  EXPECT_EQ(info->wants(), ::agent::STREAM);
  EXPECT_EQ(info->options().size(), 7u);
  ASSERT_TRUE(s->init({int_option("size", 3)}, "task", "node").is_ok());
  for (int i = 1; i <= 4; ++i) {
    ASSERT_TRUE(s->send_point(point("a", i, i)).is_ok());
    ASSERT_TRUE(s->send_point(point("b", 10 * i, i)).is_ok());
  }
  auto end = s->finish();
  ASSERT_TRUE(end.is_ok()) << end.status().message();
  ASSERT_TRUE(end->exit.has_value());
  EXPECT_EQ(end->exit->describe(), "exited with status 0");
  EXPECT_THAT(as_lines(out.take()),
              ::testing::ElementsAre("m,g=a sum=1 1", "m,g=b sum=10 1", "m,g=a sum=3 2", "m,g=b sum=30 2",
                                     "m,g=a sum=6 3", "m,g=b sum=60 3", "m,g=a sum=10 4", "m,g=b sum=100 4"));
  EXPECT_THAT(s->stderr_tail(), ::testing::ElementsAre("fake udf (sum) started"));
  const HostStats st = s->stats();
  EXPECT_EQ(st.data_responses, 8u);
  EXPECT_EQ(st.dropped_responses, 0u);
  // After the end, calls fail cleanly.
  EXPECT_EQ(s->send_point(point("a", 1, 1)).code(), StatusCode::kFailedPrecondition);
}

TEST(HostSession, InitTypeMismatchIsRefusedBeforeSending) {
  Collector out;
  auto s = start(fake_udf("sum"), out);
  ASSERT_TRUE(s);
  ::agent::Option size;
  size.set_name("size");
  size.add_values()->set_type(::agent::DOUBLE);
  size.mutable_values(0)->set_doublevalue(10);
  Status st = s->init({size}, "t", "n");
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "option \"size\": value 1 is DOUBLE, expected INT (size takes INT)");
  EXPECT_EQ(s->init({int_option("bogus", 1)}, "t", "n").message(),
            "unknown option \"bogus\" (the UDF's options: every, field, flag, on, range, ratio, size)");
  // The session is still fine; the UDF's own refusal comes back as an error too.
  st = s->init({int_option("size", 0)}, "t", "n");
  EXPECT_EQ(st.message(), "UDF rejected init: size must be > 0");
  EXPECT_TRUE(s->init({int_option("size", 2)}, "t", "n").is_ok());
  EXPECT_TRUE(s->finish().is_ok());
}

TEST(HostSession, BatchesComeBack) {
  Collector out;
  auto s = start(fake_udf("sum"), out);
  ASSERT_TRUE(s);
  ::agent::BeginBatch b;
  b.set_name("m");
  b.set_group("g=a");
  b.set_size(2);
  ::agent::EndBatch e;
  e.set_name("m");
  e.set_group("g=a");
  e.set_tmax(2);
  ASSERT_TRUE(s->begin_batch(b).is_ok());
  ASSERT_TRUE(s->send_point(point("a", 1, 1)).is_ok());
  ASSERT_TRUE(s->send_point(point("a", 2, 2)).is_ok());
  ASSERT_TRUE(s->end_batch(e).is_ok());
  ASSERT_TRUE(s->finish().is_ok());
  EXPECT_THAT(as_lines(out.take()),
              ::testing::ElementsAre("begin m g=a", "m,g=a sum=1 1", "m,g=a sum=3 2", "end m g=a"));
}

TEST(HostSession, SnapshotThenRestoreIntoFreshProcessGivesIdenticalOutput) {
  std::string state;
  std::vector<std::string> first_tail;
  {
    Collector out;
    auto s = start(fake_udf("sum"), out);
    ASSERT_TRUE(s);
    for (int i = 1; i <= 5; ++i) ASSERT_TRUE(s->send_point(point(i % 2 ? "a" : "b", i, i)).is_ok());
    auto snap = s->snapshot();  // taken after the points before it (one ordered stream)
    ASSERT_TRUE(snap.is_ok()) << snap.status().message();
    state = *snap;
    out.take();
    for (int i = 6; i <= 10; ++i) ASSERT_TRUE(s->send_point(point(i % 2 ? "a" : "b", i, i)).is_ok());
    ASSERT_TRUE(s->finish().is_ok());
    first_tail = as_lines(out.take());
  }
  EXPECT_FALSE(state.empty());
  Collector out;
  auto s = start(fake_udf("sum"), out);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->restore(state).is_ok());
  for (int i = 6; i <= 10; ++i) ASSERT_TRUE(s->send_point(point(i % 2 ? "a" : "b", i, i)).is_ok());
  ASSERT_TRUE(s->finish().is_ok());
  EXPECT_EQ(as_lines(out.take()), first_tail);
  ASSERT_EQ(first_tail.size(), 5u);
  EXPECT_EQ(first_tail[4], "m,g=b sum=30 10");  // 2 + 4 + 6 + 8 + 10

  // A state the UDF cannot use is its error, not the session's.
  Collector out2;
  auto s2 = start(fake_udf("sum"), out2);
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->restore("garbage").message(), "UDF rejected restore: bad snapshot");
  EXPECT_TRUE(s2->finish().is_ok());
}

TEST(HostSession, ErrorResponseAbortsWithTheUdfText) {
  Collector out;
  auto s = start(fake_udf("error"), out);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->init({}, "t", "n").is_ok());
  for (int i = 0; i < 100; ++i) {
    if (!s->send_point(point("a", i, i)).is_ok()) break;
  }
  auto end = s->wait();  // the abort closes the UDF's input, so it exits by itself
  ASSERT_FALSE(end.is_ok());
  EXPECT_EQ(end.status().code(), StatusCode::kInternal);
  EXPECT_EQ(end.status().message(), "UDF error: boom: cannot handle point 1");
  EXPECT_EQ(s->status(), end.status());
  ASSERT_TRUE(s->exit_status().has_value());
  EXPECT_EQ(s->exit_status()->describe(), "exited with status 0");
  EXPECT_EQ(s->send_point(point("a", 1, 1)), end.status());
  EXPECT_EQ(s->snapshot().status(), end.status());
}

TEST(HostSession, UdfDyingMidStreamIsReportedWithExitStatusAndStderr) {
  Collector out;
  auto s = start(fake_udf("die"), out);
  ASSERT_TRUE(s);
  for (int i = 0; i < 1000; ++i) {
    if (!s->send_point(point("a", i, i)).is_ok()) break;
  }
  (void)s->flush();
  auto end = s->wait();
  ASSERT_FALSE(end.is_ok());
  EXPECT_EQ(end.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(end.status().message(),
            "UDF process /proc/self/exe ended mid-stream: exited with status 3; last stderr: fake udf (die) started | "
            "fatal: out of cheese | at point 3");
  EXPECT_EQ(out.count.load(), 2u);  // the points it answered before dying
}

TEST(HostSession, DyingDuringARequestFailsTheRequest) {
  Collector out;
  auto s = start(fake_udf("die"), out);
  ASSERT_TRUE(s);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(s->send_point(point("a", i, i)).is_ok());
  auto snap = s->snapshot();  // the third point kills it before it can answer
  ASSERT_FALSE(snap.is_ok());
  EXPECT_THAT(snap.status().message(), HasSubstr("ended mid-stream: exited with status 3"));
}

TEST(HostSession, NonZeroExitAfterInputEndIsAnError) {
  Collector out;
  auto s = start(fake_udf("exit-7-at-eof"), out);
  ASSERT_TRUE(s);
  auto end = s->finish();
  ASSERT_FALSE(end.is_ok());
  EXPECT_THAT(end.status().message(), HasSubstr("exited with status 7 after the end of its input"));
}

TEST(HostSession, KeepaliveTimeoutAbortsThenKills) {
  Collector out;
  HostOptions o = test_options();
  o.keepalive_timeout = std::chrono::milliseconds(200);
  auto s = start(fake_udf("hang"), out, o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->init({}, "t", "n").is_ok());
  // It no longer reads: this fills the pipe and then waits in the host's buffer.
  for (int i = 0; i < 1000; ++i) {
    if (!s->send_point(point("a", i, i)).is_ok()) break;
  }
  auto end = s->wait();
  ASSERT_FALSE(end.is_ok());
  EXPECT_EQ(end.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(end.status().message(), StartsWith("keepalive timed out, last keepalive received was: "));
  const std::string prefix = "keepalive timed out, last keepalive received was: ";
  EXPECT_TRUE(looks_like_rfc3339_ns(end.status().message().substr(prefix.size()))) << end.status().message();
  // Closing its input did not end it (it does not read): it was killed.
  ASSERT_TRUE(s->exit_status().has_value());
  EXPECT_EQ(s->exit_status()->describe(), "killed by signal 9 (SIGKILL)");
}

TEST(HostSession, KeepalivesKeepAnIdleButHealthySessionAlive) {
  Collector out;
  HostOptions o = test_options();
  o.keepalive_timeout = std::chrono::milliseconds(100);
  auto s = start(fake_udf("sum"), out, o);
  ASSERT_TRUE(s);
  // Wait for several keepalive periods by watching the counters (each keepalive is a
  // request and its answer a response); a broken watchdog would abort the session.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (s->stats().responses < 5 && std::chrono::steady_clock::now() < deadline && s->status().is_ok()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(s->status().is_ok()) << s->status().message();
  EXPECT_GE(s->stats().responses, 5u);
  EXPECT_TRUE(s->finish().is_ok());
}

TEST(HostSession, ChattyUdfNeverDeadlocks) {
  // Each input point yields 50 output points, written one write() at a time; the caller
  // keeps pushing without reading anything itself. Without the I/O thread draining the
  // UDF's stdout, both pipes would fill and both sides would block forever.
  Collector out;
  out.keep = false;
  auto s = start(fake_udf("chatty"), out);
  ASSERT_TRUE(s);
  constexpr int kInputs = 10000;
  for (int i = 0; i < kInputs; ++i) ASSERT_TRUE(s->send_point(point("a", i, i)).is_ok());
  auto end = s->finish();
  ASSERT_TRUE(end.is_ok()) << end.status().message();
  EXPECT_EQ(out.count.load(), uint64_t{kInputs} * 50);
}

TEST(HostSession, UnsolicitedAndUnknownResponsesAreDroppedNotFatal) {
  Collector out;
  auto s = start(fake_udf("unsolicited"), out);
  ASSERT_TRUE(s);
  auto info = s->info();  // answered after the junk it sent first
  ASSERT_TRUE(info.is_ok()) << info.status().message();
  ASSERT_TRUE(s->send_point(point("a", 1, 1)).is_ok());
  ASSERT_TRUE(s->finish().is_ok());
  EXPECT_EQ(s->stats().dropped_responses, 3u);
  EXPECT_EQ(out.count.load(), 1u);
}

TEST(HostSession, MalformedResponseAborts) {
  Collector out;
  auto s = start(fake_udf("malformed"), out);
  ASSERT_TRUE(s);
  auto info = s->info();
  ASSERT_FALSE(info.is_ok());
  EXPECT_THAT(info.status().message(), HasSubstr("malformed response"));
  EXPECT_FALSE(s->wait().is_ok());
}

TEST(HostSession, SpawnFailureIsReported) {
  Collector out;
  auto s = HostSession::start_process(program("/no/such/udf"), test_options(), out.handler());
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr("/no/such/udf"));
}

TEST(HostSession, EnvironmentOverridesWin) {
  // The fake's mode comes from the environment: an override of a variable we also have must
  // reach the child.
  ::setenv("AGENTRY_FAKE_UDF", "die", 1);
  Collector out;
  auto s = start(fake_udf("sum"), out);
  ::unsetenv("AGENTRY_FAKE_UDF");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->finish().is_ok());
  EXPECT_THAT(s->stderr_tail(), ::testing::ElementsAre("fake udf (sum) started"));
}

TEST(HostSession, DestroyingAnUnfinishedSessionKillsTheUdf) {
  Collector out;
  HostOptions o = test_options();
  o.keepalive_timeout = std::chrono::seconds(60);
  auto s = start(fake_udf("hang"), out, o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->init({}, "t", "n").is_ok());
  const pid_t pid = s->pid();
  s.reset();  // must not wait 2 minutes
  EXPECT_NE(::kill(pid, 0), 0);  // reaped (or the number is free)
}

TEST(HostSession, CallerAbort) {
  Collector out;
  auto s = start(fake_udf("sum"), out);
  ASSERT_TRUE(s);
  s->abort(cancelled("operator said stop"));
  auto end = s->wait();
  ASSERT_FALSE(end.is_ok());
  EXPECT_EQ(end.status().message(), "operator said stop");
  EXPECT_EQ(s->exit_status()->describe(), "exited with status 0");  // its input was closed
}

// ================================================================ socket UDFs

std::string temp_socket_path(const std::string& tag) {
  return "/tmp/agentry-host-test-" + std::to_string(::getpid()) + "-" + tag + ".sock";
}

TEST(HostSocket, ConnectsWithBackoffAndHalfClosesToEnd) {
  const std::string path = temp_socket_path("fake");
  ::unlink(path.c_str());
  // Start the listener; connect at once: the first attempts find no socket yet.
  Collector server_out;
  ProcessConfig server = fake_udf("socket");
  server.env.push_back("AGENTRY_FAKE_SOCKET=" + path);
  HostOptions server_options = test_options();
  server_options.keepalive_timeout = std::chrono::milliseconds(0);  // it does not speak on stdio
  auto srv = start(server, server_out, server_options);
  ASSERT_TRUE(srv);

  Collector out;
  auto s = HostSession::connect_socket(path, test_options(), out.handler());
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  auto& session = **s;
  ASSERT_TRUE(session.info().is_ok());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(session.send_point(point("a", i, i)).is_ok());
  auto end = session.finish();  // the server ends the connection after our half-close
  ASSERT_TRUE(end.is_ok()) << end.status().message();
  EXPECT_FALSE(end->exit.has_value());
  EXPECT_THAT(as_lines(out.take()), ::testing::ElementsAre("m,g=a sum=1 1", "m,g=a sum=3 2", "m,g=a sum=6 3"));
  srv.reset();  // kills the server
  ::unlink(path.c_str());
}

TEST(HostSocket, ConnectGivesUp) {
  HostOptions o = test_options();
  o.connect_timeout = std::chrono::milliseconds(100);
  Collector out;
  auto s = HostSession::connect_socket("/tmp/agentry-host-test-no-such.sock", o, out.handler());
  ASSERT_FALSE(s.is_ok());
  EXPECT_THAT(s.status().message(),
              HasSubstr("cannot connect to UDF socket /tmp/agentry-host-test-no-such.sock: No such file or directory"));
}

// ================================================================ the example UDFs

#ifdef AGENTRY_UDF_MOVING_AVG
::agent::Option string_option(const std::string& name, const std::string& v) {
  ::agent::Option o;
  o.set_name(name);
  auto* val = o.add_values();
  val->set_type(::agent::STRING);
  val->set_stringvalue(v);
  return o;
}

std::vector<std::string> run_moving_avg(const std::vector<::agent::Point>& points, std::string* snapshot_out,
                                        const std::string* restore_from, size_t snapshot_after) {
  Collector out;
  auto s = start(program(AGENTRY_UDF_MOVING_AVG), out);
  if (!s) return {};
  EXPECT_TRUE(s->init({string_option("field", "value"), int_option("size", 10), string_option("as", "avg")}, "t", "n")
                  .is_ok());
  if (restore_from != nullptr) {
    EXPECT_TRUE(s->restore(*restore_from).is_ok());
  }
  for (size_t i = 0; i < points.size(); ++i) {
    if (snapshot_out != nullptr && i == snapshot_after) {
      auto snap = s->snapshot();
      EXPECT_TRUE(snap.is_ok()) << snap.status().message();
      if (snap.is_ok()) *snapshot_out = *snap;
      out.take();
    }
    EXPECT_TRUE(s->send_point(points[i]).is_ok());
  }
  auto end = s->finish();
  EXPECT_TRUE(end.is_ok()) << end.status().message();
  return as_lines(out.take());
}

std::vector<::agent::Point> avg_input() {
  std::vector<::agent::Point> points;
  for (int i = 0; i < 20; ++i) {
    for (const char* g : {"a", "b"}) {
      ::agent::Point p;
      p.set_name("m");
      p.set_time(i);
      p.set_group(std::string("host=") + g);
      p.add_dimensions("host");
      (*p.mutable_tags())["host"] = g;
      (*p.mutable_fieldsdouble())["value"] = (g[0] == 'a' ? 0.0 : 1.0) + (i % 10) * 0.2;
      points.push_back(std::move(p));
    }
  }
  return points;
}

TEST(HostExamples, MovingAvgInfoInitAndGoldenAverages) {
  Collector out;
  auto s = start(program(AGENTRY_UDF_MOVING_AVG), out);
  ASSERT_TRUE(s);
  auto info = s->info();
  ASSERT_TRUE(info.is_ok()) << info.status().message();
  EXPECT_EQ(describe_info(*info), "wants: STREAM\nprovides: STREAM\noptions:\n  as     STRING\n  field  STRING\n  size   INT\n");
  // Wrong type for size: refused by the host, with the UDF's declared types.
  ::agent::Option bad = string_option("size", "10");
  EXPECT_EQ(s->init({bad}, "t", "n").message(), "option \"size\": value 1 is STRING, expected INT (size takes INT)");
  EXPECT_TRUE(s->finish().is_ok());

  // Values 0, 0.2, ..., 1.8 repeating (group a) and 1 more (group b): after the window of 10
  // fills, the mean is 0.9 for a and 1.9 for b, as in Kapacitor's end-to-end test.
  const auto lines = run_moving_avg(avg_input(), nullptr, nullptr, 0);
  ASSERT_EQ(lines.size(), 40u);
  EXPECT_EQ(lines[0], "m,host=a avg=0 0");
  EXPECT_EQ(lines[1], "m,host=b avg=1 0");
  EXPECT_EQ(lines[2], "m,host=a avg=0.1 1");
  const auto avg_of = [](const std::string& line) {
    ::agent::Point p;
    EXPECT_TRUE(parse_line(line, 1, {}, p).is_ok()) << line;
    return p.fieldsdouble().at("avg");
  };
  EXPECT_NEAR(avg_of(lines[38]), 0.9, 1e-9);
  EXPECT_NEAR(avg_of(lines[39]), 1.9, 1e-9);
}

TEST(HostExamples, MovingAvgSnapshotRestoreIntoFreshProcess) {
  const auto points = avg_input();
  std::string state;
  const auto full = run_moving_avg(points, &state, nullptr, 15);
  ASSERT_FALSE(state.empty());
  const std::vector<::agent::Point> rest(points.begin() + 15, points.end());
  const auto resumed = run_moving_avg(rest, nullptr, &state, 0);
  EXPECT_EQ(resumed, full);  // `full` holds only the output after the snapshot
  EXPECT_EQ(resumed.size(), points.size() - 15);
}
#endif

#ifdef AGENTRY_UDF_MIRROR
TEST(HostExamples, MirrorOverSocket) {
  const std::string path = temp_socket_path("mirror");
  ::unlink(path.c_str());
  Collector server_out;
  HostOptions server_options = test_options();
  server_options.keepalive_timeout = std::chrono::milliseconds(0);  // it does not speak on stdio
  auto srv = start(program(AGENTRY_UDF_MIRROR, {path}), server_out, server_options);
  ASSERT_TRUE(srv);
  Collector out;
  auto s = HostSession::connect_socket(path, test_options(), out.handler());
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  auto info = (*s)->info();
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(describe_info(*info), "wants: STREAM\nprovides: STREAM\noptions: none\n");
  ASSERT_TRUE((*s)->init({}, "t", "n").is_ok());
  std::vector<std::string> sent;
  for (int i = 0; i < 1000; ++i) {
    auto p = point(i % 3 ? "x" : "y", i * 0.5, i);
    sent.push_back(*format_line(p));
    ASSERT_TRUE((*s)->send_point(p).is_ok());
  }
  auto end = (*s)->finish();
  ASSERT_TRUE(end.is_ok()) << end.status().message();
  EXPECT_EQ(as_lines(out.take()), sent);
  // SIGTERM: the mirror stops cleanly and removes its socket.
  // (For its host session that is an end "mid-stream": only the exit status matters here.)
  ASSERT_EQ(::kill(srv->pid(), SIGTERM), 0);
  (void)srv->wait();
  ASSERT_TRUE(srv->exit_status().has_value());
  EXPECT_EQ(srv->exit_status()->describe(), "exited with status 0");
  EXPECT_FALSE(std::filesystem::exists(path));
}
#endif

}  // namespace
}  // namespace agentry::udf

// A fake UDF when AGENTRY_FAKE_UDF is set (see the file comment), the tests otherwise.
int main(int argc, char** argv) {
  if (const int code = agentry::udf::fake::main_if_fake(); code >= 0) return code;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
