// `agentry udf`: the command-line face of agentry/udf/host.h.
//
// Input and output of `udf run` are InfluxDB line protocol (agentry/udf/line_protocol.h).
//
// Batch mode (--batch). A batch is a run of point lines ended by a blank line (or by the end
// of the input); comment lines do not end a batch. Each batch is sent as
//   BeginBatch{name = measurement of its first point, group and tags = the --group-by
//              group of its first point, size = number of points}
//   the points
//   EndBatch{name, group, tags as above, tmax = the latest point time}.
// In the output, every EndBatch from the UDF is written as a blank line after the batch's
// points, so the output of one batch UDF can be fed to the next.
//
// Every failure ends with one line on stderr, "agentry: udf <cmd>: <what>", and exit
// status 1 (2 for command-line mistakes).
#include "apps/udf_cli.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"
#include "agentry/udf/host.h"
#include "agentry/udf/line_protocol.h"

namespace agentry::apps {
namespace {

using udf::HostOptions;
using udf::HostSession;

// Where the UDF is and how to talk to it; shared by the three commands.
struct Target {
  std::string socket;
  std::vector<std::string> command;  // PROG ARGS... after "--"
  std::vector<std::string> env;
  std::string keepalive = "10s";
  std::string connect_timeout = "10s";
};

struct RunArgs {
  Target target;
  std::vector<std::string> opts;
  bool batch = false;
  std::string group_by;
  std::string precision = "ns";
  std::string input = "-";
  std::string snapshot_out;
  std::string restore;
  std::string task_id = "agentry";
  std::string node_id = "udf1";
};

struct BenchArgs {
  Target target;
  std::vector<std::string> opts;
  uint64_t points = 1'000'000;
};

int fail(std::string_view cmd, std::string_view message) {
  std::fprintf(stderr, "agentry: udf %.*s: %.*s\n", static_cast<int>(cmd.size()), cmd.data(),
               static_cast<int>(message.size()), message.data());
  return 1;
}

void add_target_options(CLI::App* cmd, Target& t) {
  cmd->add_option("--socket", t.socket, "unix socket of a socket UDF (instead of -- PROG ARGS...)");
  cmd->add_option("--env", t.env, "KEY=VALUE added to a process UDF's environment (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--keepalive", t.keepalive,
                  "keepalive timeout T: a keepalive every T/2, abort after T without an answer, kill after "
                  "2T more; 0 disables")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", t.connect_timeout,
                  "socket UDFs: keep retrying the connection (with backoff) for this long")
      ->capture_default_str();
  cmd->add_option("command", t.command, "the process UDF to start: -- PROG ARGS...");
}

Result<HostOptions> host_options(const Target& t) {
  if (t.socket.empty() == t.command.empty()) {
    return invalid_argument("give either --socket PATH or -- PROG ARGS... (exactly one)");
  }
  auto ka = udf::parse_option_value(::agent::DURATION, t.keepalive);
  if (!ka) return Status(ka.status().code(), "--keepalive: " + ka.status().message());
  if (ka->durationvalue() < 0) return invalid_argument("--keepalive must not be negative");
  auto ct = udf::parse_option_value(::agent::DURATION, t.connect_timeout);
  if (!ct) return Status(ct.status().code(), "--connect-timeout: " + ct.status().message());
  HostOptions o;
  o.keepalive_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(ka->durationvalue()));
  o.connect_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::nanoseconds(ct->durationvalue()));
  return o;
}

Result<std::unique_ptr<HostSession>> open_session(const Target& t, HostOptions options,
                                                  HostSession::DataHandler handler) {
  if (!t.socket.empty()) return HostSession::connect_socket(t.socket, std::move(options), std::move(handler));
  udf::ProcessConfig config;
  config.program = t.command.front();
  config.args.assign(t.command.begin() + 1, t.command.end());
  for (const auto& e : t.env) {
    if (e.find('=') == std::string::npos || e.front() == '=') {
      return invalid_argument("--env " + e + ": expected KEY=VALUE");
    }
  }
  config.env = t.env;
  return HostSession::start_process(std::move(config), std::move(options), std::move(handler));
}

Result<std::string> read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::from_errno(errno, "open " + path);
  std::string data;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::from_errno(errno, "read " + path);
    if (n == 0) return data;
    data.append(buf, static_cast<size_t>(n));
  }
}

Status write_file(const std::string& path, std::string_view data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Status::from_errno(errno, "open " + path);
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::from_errno(errno, "write " + path);
    off += static_cast<size_t>(n);
  }
  return Status::ok();
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = std::min(s.find(',', pos), s.size());
    if (comma > pos) out.push_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

// ---------------------------------------------------------------- info

int cmd_info(const Target& t) {
  auto options = host_options(t);
  if (!options) return fail("info", options.status().message());
  auto session = open_session(t, *options, {});
  if (!session) return fail("info", session.status().message());
  auto info = (*session)->info();
  if (!info) return fail("info", info.status().message());
  std::fputs(udf::describe_info(*info).c_str(), stdout);
  std::fflush(stdout);
  auto end = (*session)->finish();
  if (!end) return fail("info", end.status().message());
  return 0;
}

// ---------------------------------------------------------------- run

// Writes what comes back from the UDF as line protocol; runs on the session's I/O thread.
class OutputWriter {
 public:
  OutputWriter(udf::Precision precision, bool batch) : precision_(precision), batch_(batch) {}

  void operator()(const ::agent::Response& r) {
    if (r.has_point()) {
      line_.clear();
      Status st = udf::append_line(line_, r.point(), precision_);
      if (!st.is_ok()) {
        std::lock_guard lock(mu_);
        if (skipped_++ == 0) first_skip_ = st.message();
        return;
      }
      write(line_);
    } else if (r.has_end() && batch_) {
      write("\n");
    }
  }

  // Why output failed, if it did (the session is aborted with it too).
  Status status() const {
    std::lock_guard lock(mu_);
    return status_;
  }
  uint64_t skipped() const {
    std::lock_guard lock(mu_);
    return skipped_;
  }
  std::string first_skip() const {
    std::lock_guard lock(mu_);
    return first_skip_;
  }
  void set_session(HostSession* s) { session_ = s; }

 private:
  void write(std::string_view s) {
    if (failed_) return;
    if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) {
      const int err = errno;
      failed_ = true;
      Status st = Status::from_errno(err, "writing the output");
      {
        std::lock_guard lock(mu_);
        status_ = st;
      }
      if (session_ != nullptr) session_->abort(st);
    }
  }

  const udf::Precision precision_;
  const bool batch_;
  std::string line_;
  bool failed_ = false;
  HostSession* session_ = nullptr;
  mutable std::mutex mu_;
  Status status_;
  uint64_t skipped_ = 0;
  std::string first_skip_;
};

// Feeds parsed input to the session: points as they come (stream) or buffered per batch.
class Feeder {
 public:
  Feeder(HostSession& session, bool batch, std::vector<std::string> group_by)
      : session_(session), batch_(batch), group_by_(std::move(group_by)) {}

  Status point(::agent::Point&& p) {
    if (!batch_) return session_.send_point(p);
    pending_.push_back(std::move(p));
    return Status::ok();
  }

  // A blank line, or the end of the input.
  Status boundary() {
    if (!batch_ || pending_.empty()) return Status::ok();
    const ::agent::Point& first = pending_.front();
    ::agent::BeginBatch begin;
    begin.set_name(first.name());
    begin.set_group(first.group());
    for (const auto& k : group_by_) {
      const auto it = first.tags().find(k);
      if (it != first.tags().end()) (*begin.mutable_tags())[k] = it->second;
    }
    begin.set_size(static_cast<int64_t>(pending_.size()));
    AGENTRY_RETURN_IF_ERROR(session_.begin_batch(begin));
    int64_t tmax = first.time();
    for (const auto& p : pending_) {
      tmax = std::max(tmax, p.time());
      AGENTRY_RETURN_IF_ERROR(session_.send_point(p));
    }
    ::agent::EndBatch end;
    end.set_name(begin.name());
    end.set_group(begin.group());
    *end.mutable_tags() = begin.tags();
    end.set_tmax(tmax);
    pending_.clear();
    return session_.end_batch(end);
  }

 private:
  HostSession& session_;
  const bool batch_;
  const std::vector<std::string> group_by_;
  std::vector<::agent::Point> pending_;
};

int cmd_run(const RunArgs& a) {
  auto options = host_options(a.target);
  if (!options) return fail("run", options.status().message());
  auto precision = udf::parse_precision(a.precision);
  if (!precision) return fail("run", "--precision: " + precision.status().message());
  udf::LineParseOptions parse_options;
  parse_options.precision = *precision;
  parse_options.group_by = udf::normalize_group_by(split_commas(a.group_by));

  UniqueFd input_file;
  int in_fd = 0;
  const std::string input_name = (a.input.empty() || a.input == "-") ? "<stdin>" : a.input;
  if (input_name != "<stdin>") {
    input_file.reset(::open(a.input.c_str(), O_RDONLY | O_CLOEXEC));
    if (!input_file) return fail("run", Status::from_errno(errno, "open " + a.input).message());
    in_fd = input_file.get();
  }
  std::optional<std::string> restore_state;
  if (!a.restore.empty()) {
    auto r = read_file(a.restore);
    if (!r) return fail("run", "--restore: " + r.status().message());
    restore_state = std::move(r).value();
  }

  if (::isatty(1) == 1) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
  } else {
    std::setvbuf(stdout, nullptr, _IOFBF, size_t{1} << 16);
  }
  auto writer = std::make_shared<OutputWriter>(*precision, a.batch);
  auto opened = open_session(a.target, *options, [writer](const ::agent::Response& r) { (*writer)(r); });
  if (!opened) return fail("run", opened.status().message());
  HostSession& session = **opened;
  writer->set_session(&session);
  // From here on, an error aborts the session; destroying it (on return) kills the UDF.
  const auto abort_with = [&](const Status& st) {
    session.abort(st);
    std::fflush(stdout);
    return fail("run", st.message());
  };

  auto info = session.info();
  if (!info) return abort_with(info.status());
  if (a.batch && info->wants() != ::agent::BATCH) {
    return abort_with(invalid_argument("the UDF wants a stream, not batches: drop --batch"));
  }
  if (!a.batch && info->wants() == ::agent::BATCH) {
    return abort_with(invalid_argument("the UDF wants batches: use --batch (a blank line ends a batch)"));
  }
  auto init_options = udf::parse_options(*info, a.opts);
  if (!init_options) return abort_with(init_options.status());
  if (Status st = session.init(*init_options, a.task_id, a.node_id); !st.is_ok()) return abort_with(st);
  if (restore_state) {
    if (Status st = session.restore(*restore_state); !st.is_ok()) return abort_with(st);
  }

  Feeder feeder(session, a.batch, parse_options.group_by);
  std::string pending;
  size_t line_number = 0;
  ::agent::Point point;
  const auto handle_line = [&](std::string_view line) -> Status {
    ++line_number;
    auto kind = udf::parse_line(line, line_number, parse_options, point);
    if (!kind) return Status(kind.status().code(), input_name + ": " + kind.status().message());
    switch (*kind) {
      case udf::LineKind::kPoint:
        return feeder.point(std::move(point));
      case udf::LineKind::kBlank:
        return feeder.boundary();
      case udf::LineKind::kComment:
        return Status::ok();
    }
    return Status::ok();
  };
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(in_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return abort_with(Status::from_errno(errno, "reading " + input_name));
    if (n == 0) break;
    std::string_view chunk(buf, static_cast<size_t>(n));
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      if (nl == std::string_view::npos) {
        pending.append(chunk);
        break;
      }
      Status st;
      if (pending.empty()) {
        st = handle_line(chunk.substr(0, nl));
      } else {
        pending.append(chunk.substr(0, nl));
        st = handle_line(pending);
        pending.clear();
      }
      if (!st.is_ok()) return abort_with(st);
      chunk.remove_prefix(nl + 1);
    }
  }
  if (!pending.empty()) {
    if (Status st = handle_line(pending); !st.is_ok()) return abort_with(st);
  }
  if (Status st = feeder.boundary(); !st.is_ok()) return abort_with(st);

  if (!a.snapshot_out.empty()) {
    auto snap = session.snapshot();
    if (!snap) return abort_with(snap.status());
    if (Status st = write_file(a.snapshot_out, *snap); !st.is_ok()) {
      return abort_with(st.with_context("--snapshot-out"));
    }
  }
  auto end = session.finish();
  std::fflush(stdout);
  if (!writer->status().is_ok()) return fail("run", writer->status().message());
  if (const uint64_t skipped = writer->skipped(); skipped > 0) {
    std::fprintf(stderr, "agentry: udf run: warning: %llu output point(s) not written (first: %s)\n",
                 static_cast<unsigned long long>(skipped), writer->first_skip().c_str());
  }
  if (!end) return fail("run", end.status().message());
  return 0;
}

// ---------------------------------------------------------------- bench

double cpu_seconds(int who) {
  rusage ru{};
  ::getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A fixed, realistic point: a measurement, 3 tags, 2 double fields, 1 int, 1 string.
::agent::Point bench_point() {
  ::agent::Point p;
  p.set_name("cpu");
  (*p.mutable_tags())["host"] = "server-0042";
  (*p.mutable_tags())["region"] = "eu-west-1";
  (*p.mutable_tags())["service"] = "checkout";
  (*p.mutable_fieldsdouble())["usage_user"] = 12.5;
  (*p.mutable_fieldsdouble())["usage_system"] = 3.25;
  (*p.mutable_fieldsint())["processes"] = 231;
  (*p.mutable_fieldsstring())["state"] = "running";
  p.set_time(1'700'000'000'000'000'000);
  return p;
}

int cmd_bench(const BenchArgs& a) {
  auto options = host_options(a.target);
  if (!options) return fail("bench", options.status().message());
  if (a.points == 0) return fail("bench", "--points must be at least 1");
  auto received = std::make_shared<std::atomic<uint64_t>>(0);
  auto opened = open_session(a.target, *options, [received](const ::agent::Response& r) {
    if (r.has_point()) received->fetch_add(1, std::memory_order_relaxed);
  });
  if (!opened) return fail("bench", opened.status().message());
  HostSession& session = **opened;
  auto info = session.info();
  if (!info) return fail("bench", info.status().message());
  auto init_options = udf::parse_options(*info, a.opts);
  if (!init_options) return fail("bench", init_options.status().message());
  if (Status st = session.init(*init_options, "bench", "bench"); !st.is_ok()) return fail("bench", st.message());

  ::agent::Point p = bench_point();
  const int64_t t0 = p.time();
  const udf::HostStats before = session.stats();
  const double cpu_before = cpu_seconds(RUSAGE_SELF);
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < a.points; ++i) {
    p.set_time(t0 + static_cast<int64_t>(i));
    if (Status st = session.send_point(p); !st.is_ok()) return fail("bench", st.message());
  }
  auto end = session.finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double host_cpu = cpu_seconds(RUSAGE_SELF) - cpu_before;
  if (!end) return fail("bench", end.status().message());
  const udf::HostStats after = session.stats();
  const uint64_t got = received->load();
  const double n = static_cast<double>(a.points);
  std::printf("points: %llu sent, %llu received in %.3f s\n", static_cast<unsigned long long>(a.points),
              static_cast<unsigned long long>(got), secs);
  std::printf("points/s round trip: %.0f\n", static_cast<double>(got) / secs);
  std::printf("host write calls per point: %.5f (%llu calls, %.1f MB)\n",
              static_cast<double>(after.write_calls - before.write_calls) / n,
              static_cast<unsigned long long>(after.write_calls - before.write_calls),
              static_cast<double>(after.bytes_written - before.bytes_written) / 1e6);
  std::printf("host read calls per point: %.5f (%llu calls)\n",
              static_cast<double>(after.read_calls - before.read_calls) / n,
              static_cast<unsigned long long>(after.read_calls - before.read_calls));
  std::printf("host CPU per point: %.0f ns\n", host_cpu * 1e9 / n);
  if (a.target.socket.empty()) {
    // The UDF process has been reaped by now, so its whole life is in RUSAGE_CHILDREN
    // (including its start-up, which is small next to a million points).
    std::printf("UDF CPU per point: %.0f ns\n", cpu_seconds(RUSAGE_CHILDREN) * 1e9 / n);
  }
  if (got != a.points) return fail("bench", fmt::format("expected {} points back, got {}", a.points, got));
  return 0;
}

}  // namespace

void add_udf_commands(CLI::App& app, std::function<int()>& action) {
  auto* udf_cmd = app.add_subcommand("udf", "run, inspect and benchmark Kapacitor UDFs without Kapacitor");
  udf_cmd->require_subcommand(1);

  auto info_target = std::make_shared<Target>();
  auto* info = udf_cmd->add_subcommand("info", "print what a UDF wants, provides and which options it takes");
  add_target_options(info, *info_target);
  info->callback([&action, info_target] { action = [info_target] { return cmd_info(*info_target); }; });

  auto run_args = std::make_shared<RunArgs>();
  auto* run = udf_cmd->add_subcommand("run", "feed line protocol through a UDF and print its output as line protocol");
  run->footer(
      "Stream mode by default. With --batch, a blank line (or the end of the input) ends a batch: "
      "BeginBatch gets the first point's measurement as name and its --group-by group and tags, "
      "size = the number of points, and EndBatch tmax = the latest point time. Every batch the UDF "
      "sends back is followed by a blank line in the output.\n"
      "Example: agentry udf run --opt field=value --opt size=10 --group-by host -- agentry-udf-moving_avg < in.lp");
  add_target_options(run, run_args->target);
  run->add_option("--opt", run_args->opts,
                  "UDF option name=value, typed as the UDF declares (INT 10, DOUBLE 1.5, BOOL true, STRING x, "
                  "DURATION 10s); repeat for multi-value or repeated options")
      ->allow_extra_args(false);
  run->add_flag("--batch", run_args->batch, "batch mode: a blank line ends a batch");
  run->add_option("--group-by", run_args->group_by,
                  "comma-separated tag keys: sets each point's dimensions and group id (\"k1=v1,k2=v2\", keys "
                  "sorted)");
  run->add_option("--precision", run_args->precision, "timestamp unit of input and output: ns, us, ms or s")
      ->capture_default_str();
  run->add_option("-i,--input", run_args->input, "line protocol input file; - is stdin")->capture_default_str();
  run->add_option("--snapshot-out", run_args->snapshot_out,
                  "after the input ends, ask the UDF for a snapshot and write its bytes to this file");
  run->add_option("--restore", run_args->restore, "restore the UDF from a snapshot file before sending data");
  run->add_option("--task-id", run_args->task_id, "task id sent in Init")->capture_default_str();
  run->add_option("--node-id", run_args->node_id, "node id sent in Init")->capture_default_str();
  run->callback([&action, run_args] { action = [run_args] { return cmd_run(*run_args); }; });

  auto bench_args = std::make_shared<BenchArgs>();
  auto* bench = udf_cmd->add_subcommand(
      "bench", "points/s round trip through a UDF with a fixed point (cpu, 3 tags, 2 floats, 1 int, 1 string)");
  add_target_options(bench, bench_args->target);
  bench->add_option("--points", bench_args->points, "points to send")->capture_default_str();
  bench->add_option("--opt", bench_args->opts, "UDF option name=value (as for run)")->allow_extra_args(false);
  bench->callback([&action, bench_args] { action = [bench_args] { return cmd_bench(*bench_args); }; });
}

}  // namespace agentry::apps
