#include "agentry/udf/host.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "agentry/base/log.h"

extern char** environ;

namespace agentry::udf {
namespace {

using Clock = std::chrono::steady_clock;

// Field numbers of the Request envelope (udf.proto) for what is framed by hand.
constexpr uint32_t kKeepaliveField = 3;
constexpr uint32_t kBeginField = 16;
constexpr uint32_t kPointField = 17;
constexpr uint32_t kEndField = 18;

// Bytes read from the UDF's output per read() call, at least.
constexpr size_t kReadChunk = size_t{64} << 10;
// A stderr "line" longer than this is cut and logged in pieces.
constexpr size_t kMaxStderrLine = 4096;
// Unknown response types logged individually before the log goes quiet.
constexpr uint64_t kUnknownLogLimit = 10;

int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

size_t varint_size(uint64_t v) noexcept {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

char* put_varint(char* p, uint64_t v) noexcept {
  while (v >= 0x80) {
    *p++ = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

const char* slot_name(int slot) {
  static constexpr const char* kNames[] = {"info", "init", "snapshot", "restore"};
  return kNames[slot];
}

std::string types_list(const ::agent::OptionInfo& info) {
  if (info.valuetypes().empty()) return "no values";
  std::string s;
  for (int i = 0; i < info.valuetypes_size(); ++i) {
    if (i != 0) s += ", ";
    s += value_type_name(info.valuetypes(i));
  }
  return s;
}

std::string known_options(const ::agent::InfoResponse& info) {
  if (info.options().empty()) return "the UDF takes no options";
  std::vector<std::string> names;
  for (const auto& kv : info.options()) names.push_back(kv.first);
  std::sort(names.begin(), names.end());
  std::string s = "the UDF's options: ";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i != 0) s += ", ";
    s += names[i];
  }
  return s;
}

::agent::OptionValue::ValueCase case_for(::agent::ValueType type) {
  switch (type) {
    case ::agent::BOOL:
      return ::agent::OptionValue::kBoolValue;
    case ::agent::INT:
      return ::agent::OptionValue::kIntValue;
    case ::agent::DOUBLE:
      return ::agent::OptionValue::kDoubleValue;
    case ::agent::STRING:
      return ::agent::OptionValue::kStringValue;
    case ::agent::DURATION:
      return ::agent::OptionValue::kDurationValue;
    default:
      return ::agent::OptionValue::VALUE_NOT_SET;
  }
}

__extension__ typedef __int128 Int128;  // exact sums of int64 products

// Go-style duration: [-+]? (number unit)+, or "0".
Result<int64_t> parse_duration(std::string_view text) {
  const auto bad = [&] {
    return invalid_argument("expected a DURATION such as 10s, 250ms or 1h30m (units ns, us, ms, s, m, h, d, w), got " +
                            quoted(text));
  };
  std::string_view s = text;
  bool negative = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return int64_t{0};
  if (s.empty()) return bad();
  struct Unit {
    std::string_view name;
    int64_t ns;
  };
  // Longest names first so "ms" is not read as "m".
  static constexpr Unit kUnits[] = {{"ns", 1},
                                    {"us", 1'000},
                                    {"\xC2\xB5s", 1'000},  // micro sign
                                    {"\xCE\xBCs", 1'000},  // Greek mu
                                    {"ms", 1'000'000},
                                    {"s", 1'000'000'000},
                                    {"m", 60'000'000'000},
                                    {"h", 3'600'000'000'000},
                                    {"d", 86'400'000'000'000},
                                    {"w", 604'800'000'000'000}};
  Int128 total = 0;
  const Int128 limit = negative ? (Int128{1} << 63) : ((Int128{1} << 63) - 1);
  while (!s.empty()) {
    size_t i = 0;
    Int128 whole = 0;
    size_t whole_digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      whole = whole * 10 + (s[i] - '0');
      if (whole > limit) return out_of_range("DURATION " + quoted(text) + " does not fit in int64 nanoseconds");
      ++i;
      ++whole_digits;
    }
    Int128 frac = 0;
    Int128 frac_scale = 1;
    size_t frac_digits = 0;
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (frac_scale < Int128{1'000'000'000'000'000'000}) {  // more digits than ns matter are dropped
          frac = frac * 10 + (s[i] - '0');
          frac_scale *= 10;
        }
        ++i;
        ++frac_digits;
      }
    }
    if (whole_digits + frac_digits == 0) return bad();
    s.remove_prefix(i);
    const Unit* unit = nullptr;
    for (const Unit& u : kUnits) {
      if (s.substr(0, u.name.size()) == u.name) {
        // "m" must not swallow the start of "ms".
        if (u.name == "m" && s.size() > 1 && s[1] == 's') continue;
        unit = &u;
        break;
      }
    }
    if (unit == nullptr) return bad();
    s.remove_prefix(unit->name.size());
    total += whole * unit->ns + frac * unit->ns / frac_scale;
    if (total > limit) return out_of_range("DURATION " + quoted(text) + " does not fit in int64 nanoseconds");
  }
  return static_cast<int64_t>(negative ? -total : total);
}

std::string errno_text(int err) { return std::strerror(err); }

}  // namespace

// ---------------------------------------------------------------- options and values

std::string_view value_type_name(::agent::ValueType type) noexcept {
  switch (type) {
    case ::agent::BOOL:
      return "BOOL";
    case ::agent::INT:
      return "INT";
    case ::agent::DOUBLE:
      return "DOUBLE";
    case ::agent::STRING:
      return "STRING";
    case ::agent::DURATION:
      return "DURATION";
    default:
      return "UNKNOWN";
  }
}

std::string_view edge_type_name(::agent::EdgeType type) noexcept {
  switch (type) {
    case ::agent::STREAM:
      return "STREAM";
    case ::agent::BATCH:
      return "BATCH";
    default:
      return "UNKNOWN";
  }
}

Status check_options(const ::agent::InfoResponse& info, const std::vector<::agent::Option>& options) {
  for (const ::agent::Option& option : options) {
    const auto it = info.options().find(option.name());
    if (it == info.options().end()) {
      return invalid_argument("unknown option " + quoted(option.name()) + " (" + known_options(info) + ")");
    }
    const ::agent::OptionInfo& declared = it->second;
    const std::string signature = option.name() + " takes " + types_list(declared);
    if (option.values_size() != declared.valuetypes_size()) {
      return invalid_argument("option " + quoted(option.name()) + ": got " + std::to_string(option.values_size()) +
                              " value(s), expected " + std::to_string(declared.valuetypes_size()) + " (" + signature +
                              ")");
    }
    for (int i = 0; i < option.values_size(); ++i) {
      const ::agent::OptionValue& v = option.values(i);
      const ::agent::ValueType want = declared.valuetypes(i);
      if (v.type() != want) {
        return invalid_argument("option " + quoted(option.name()) + ": value " + std::to_string(i + 1) + " is " +
                                std::string(value_type_name(v.type())) + ", expected " +
                                std::string(value_type_name(want)) + " (" + signature + ")");
      }
      if (v.value_case() != case_for(want)) {
        return invalid_argument("option " + quoted(option.name()) + ": value " + std::to_string(i + 1) +
                                " is declared " + std::string(value_type_name(want)) +
                                " but does not carry a value of that type (" + signature + ")");
      }
    }
  }
  return Status::ok();
}

Result<::agent::OptionValue> parse_option_value(::agent::ValueType type, std::string_view text) {
  ::agent::OptionValue v;
  v.set_type(type);
  switch (type) {
    case ::agent::BOOL: {
      static constexpr std::string_view kTrue[] = {"true", "True", "TRUE", "t", "T", "1"};
      static constexpr std::string_view kFalse[] = {"false", "False", "FALSE", "f", "F", "0"};
      for (auto w : kTrue) {
        if (text == w) {
          v.set_boolvalue(true);
          return v;
        }
      }
      for (auto w : kFalse) {
        if (text == w) {
          v.set_boolvalue(false);
          return v;
        }
      }
      return invalid_argument("expected a BOOL (true or false), got " + quoted(text));
    }
    case ::agent::INT: {
      int64_t n = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc::result_out_of_range) return out_of_range("INT " + quoted(text) + " does not fit in int64");
      if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
        return invalid_argument("expected an INT (a whole number), got " + quoted(text));
      }
      v.set_intvalue(n);
      return v;
    }
    case ::agent::DOUBLE: {
      double d = 0;
      const auto [end, ec] =
          std::from_chars(text.data(), text.data() + text.size(), d, std::chars_format::general);
      if (ec != std::errc() || end != text.data() + text.size() || text.empty() || !std::isfinite(d)) {
        return invalid_argument("expected a DOUBLE (a finite number such as 1.5), got " + quoted(text));
      }
      v.set_doublevalue(d);
      return v;
    }
    case ::agent::STRING:
      v.set_stringvalue(std::string(text));
      return v;
    case ::agent::DURATION: {
      auto ns = parse_duration(text);
      if (!ns) return ns.status();
      v.set_durationvalue(*ns);
      return v;
    }
    default:
      return invalid_argument("the UDF declared an unknown value type " + std::to_string(static_cast<int>(type)));
  }
}

Result<std::vector<::agent::Option>> parse_options(const ::agent::InfoResponse& info,
                                                 const std::vector<std::string>& args) {
  std::vector<::agent::Option> out;
  // Per option name, the index in `out` of the instance still taking values.
  std::map<std::string, size_t, std::less<>> filling;
  for (const std::string& arg : args) {
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const auto it = info.options().find(name);
    if (it == info.options().end()) {
      return invalid_argument("--opt " + arg + ": unknown option " + quoted(name) + " (" + known_options(info) + ")");
    }
    const ::agent::OptionInfo& declared = it->second;
    if (declared.valuetypes().empty()) {
      if (eq != std::string::npos) {
        return invalid_argument("--opt " + arg + ": option " + quoted(name) + " takes no values; write --opt " + name);
      }
      ::agent::Option o;
      o.set_name(name);
      out.push_back(std::move(o));
      continue;
    }
    if (eq == std::string::npos) {
      return invalid_argument("--opt " + arg + ": option " + quoted(name) + " needs a value (" + name + " takes " +
                              types_list(declared) + "): write --opt " + name + "=VALUE");
    }
    auto fit = filling.find(name);
    if (fit == filling.end() || out[fit->second].values_size() == declared.valuetypes_size()) {
      ::agent::Option o;
      o.set_name(name);
      out.push_back(std::move(o));
      fit = filling.insert_or_assign(name, out.size() - 1).first;
    }
    ::agent::Option& o = out[fit->second];
    const ::agent::ValueType type = declared.valuetypes(o.values_size());
    auto value = parse_option_value(type, std::string_view(arg).substr(eq + 1));
    if (!value) {
      return Status(value.status().code(),
                    "--opt " + arg + ": option " + quoted(name) + " value " + std::to_string(o.values_size() + 1) +
                        ": " + value.status().message() + " (" + name + " takes " + types_list(declared) + ")");
    }
    *o.add_values() = std::move(value).value();
  }
  for (const ::agent::Option& o : out) {
    const auto& declared = info.options().at(o.name());
    if (o.values_size() != declared.valuetypes_size()) {
      return invalid_argument("option " + quoted(o.name()) + " takes " + std::to_string(declared.valuetypes_size()) +
                              " values (" + types_list(declared) + ") but got " + std::to_string(o.values_size()) +
                              ": repeat --opt " + o.name() + "=VALUE once per value");
    }
  }
  return out;
}

std::string describe_info(const ::agent::InfoResponse& info) {
  std::string s = "wants: " + std::string(edge_type_name(info.wants())) + "\n";
  s += "provides: " + std::string(edge_type_name(info.provides())) + "\n";
  if (info.options().empty()) {
    s += "options: none\n";
    return s;
  }
  std::vector<std::pair<std::string, std::string>> rows;
  size_t width = 0;
  for (const auto& kv : info.options()) {
    rows.emplace_back(kv.first, types_list(kv.second));
    width = std::max(width, kv.first.size());
  }
  std::sort(rows.begin(), rows.end());
  s += "options:\n";
  for (const auto& [name, types] : rows) {
    s += "  " + name + std::string(width - name.size() + 2, ' ') + types + "\n";
  }
  return s;
}

std::string format_time_ns(int64_t unix_ns) {
  int64_t secs = unix_ns / 1'000'000'000;
  int64_t nanos = unix_ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --secs;
  }
  const time_t t = static_cast<time_t>(secs);
  struct tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  const size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%09lldZ", static_cast<long long>(nanos));
  return std::string(buf, n) + frac;
}

// ---------------------------------------------------------------- construction

HostSession::HostSession(Transport transport, HostOptions options, DataHandler handler, std::string name)
    : transport_(transport),
      options_(std::move(options)),
      handler_(std::move(handler)),
      name_(std::move(name)),
      kill_grace_(options_.kill_grace.count() > 0            ? options_.kill_grace
                  : options_.keepalive_timeout.count() > 0 ? 2 * options_.keepalive_timeout
                                                           : std::chrono::milliseconds(10'000)),
      log_(log::get("udf")),
      decoder_(options_.max_message_size) {}

Result<std::unique_ptr<HostSession>> HostSession::start_process(ProcessConfig config, HostOptions options,
                                                                DataHandler handler) {
  if (config.program.empty()) return invalid_argument("no UDF program given");
  std::string name = options.name.empty() ? config.program : options.name;
  std::unique_ptr<HostSession> s(new HostSession(Transport::kProcess, std::move(options), std::move(handler), name));

  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) return Status::from_errno(errno, "pipe for the UDF's stdin");
  s->input_fd_.reset(in[1]);
  s->child_ends_.emplace_back(in[0]);
  if (pipe2(out, O_CLOEXEC) != 0) return Status::from_errno(errno, "pipe for the UDF's stdout");
  s->output_fd_.reset(out[0]);
  s->child_ends_.emplace_back(out[1]);
  if (pipe2(err, O_CLOEXEC) != 0) return Status::from_errno(errno, "pipe for the UDF's stderr");
  s->stderr_fd_.reset(err[0]);
  s->child_ends_.emplace_back(err[1]);
  // Our ends only: each end of a pipe is its own open file description, so the child's
  // ends stay blocking.
  for (int fd : {in[1], out[0], err[0]}) {
    if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return Status::from_errno(errno, "fcntl(O_NONBLOCK)");
  }
  if (s->options_.pipe_size > 0) {
    // Best effort: an unprivileged process is capped by /proc/sys/fs/pipe-max-size.
    (void)fcntl(in[1], F_SETPIPE_SZ, s->options_.pipe_size);
    (void)fcntl(out[0], F_SETPIPE_SZ, s->options_.pipe_size);
  }
  s->wake_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->wake_fd_) return Status::from_errno(errno, "eventfd");

  supervisor::SpawnRequest req;
  req.executable = config.program;
  req.argv.push_back(config.program);
  req.argv.insert(req.argv.end(), config.args.begin(), config.args.end());
  if (config.inherit_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const std::string_view key = entry.substr(0, entry.find('='));
      const bool overridden = std::any_of(config.env.begin(), config.env.end(), [&](const std::string& o) {
        return std::string_view(o).substr(0, o.find('=')) == key;
      });
      if (!overridden) req.env.emplace_back(entry);
    }
  }
  req.env.insert(req.env.end(), config.env.begin(), config.env.end());
  req.cwd = config.cwd;
  req.stdin_fd = in[0];
  req.stdout_fd = out[1];
  req.stderr_fd = err[1];
  req.parent_death_signal = SIGKILL;
  req.new_session = true;
  s->spawn_request_ = std::move(req);

  std::future<Status> started = s->spawn_result_.get_future();
  HostSession* raw = s.get();
  s->thread_ = std::thread([raw] { raw->run(); });
  Status st = started.get();
  if (!st.is_ok()) {
    s->thread_.join();
    return st.with_context("starting UDF " + name);
  }
  return s;
}

Result<std::unique_ptr<HostSession>> HostSession::connect_socket(const std::string& path, HostOptions options,
                                                                 DataHandler handler) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return invalid_argument("UDF socket path " + quoted(path) + " is empty or longer than " +
                            std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  std::string name = options.name.empty() ? path : options.name;
  std::unique_ptr<HostSession> s(new HostSession(Transport::kSocket, std::move(options), std::move(handler), name));

  Backoff backoff(s->options_.connect_backoff);
  const auto deadline = Clock::now() + s->options_.connect_timeout;
  for (;;) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return Status::from_errno(errno, "socket(AF_UNIX)");
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      s->sock_fd_ = std::move(fd);
      break;
    }
    const int err = errno;
    const bool retry = err == ENOENT || err == ECONNREFUSED || err == EAGAIN || err == EINTR;
    const auto delay = backoff.next();
    if (!retry || Clock::now() + delay > deadline) {
      return Status(Status::from_errno(err, "").code(),
                    "cannot connect to UDF socket " + path + ": " + errno_text(err) +
                        (retry ? " (gave up after " + std::to_string(backoff.attempts()) + " attempts)" : ""));
    }
    std::this_thread::sleep_for(delay);
  }
  if (fcntl(s->sock_fd_.get(), F_SETFL, O_NONBLOCK) != 0) return Status::from_errno(errno, "fcntl(O_NONBLOCK)");
  s->wake_fd_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!s->wake_fd_) return Status::from_errno(errno, "eventfd");
  std::future<Status> started = s->spawn_result_.get_future();
  HostSession* raw = s.get();
  s->thread_ = std::thread([raw] { raw->run(); });
  Status st = started.get();
  if (!st.is_ok()) {
    s->thread_.join();
    return st;
  }
  return s;
}

HostSession::~HostSession() {
  {
    std::lock_guard lock(mu_);
    if (!ended_) {
      fail_locked(cancelled("UDF session destroyed before it finished"));
      kill_requested_ = true;
      wake_locked();
    }
  }
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------- caller side

Status HostSession::usable_locked() const {
  if (!failure_.is_ok()) return failure_;
  if (ended_) return failed_precondition("the UDF session has ended");
  if (close_requested_) return failed_precondition("the UDF's input is already closed");
  return Status::ok();
}

void HostSession::wake_locked() {
  if (wake_pending_) return;
  wake_pending_ = true;
  ++stats_.wakeups;
  const uint64_t one = 1;
  // Cannot fail short of a bug: the counter would need 2^64 - 1 pending wake-ups.
  (void)!write(wake_fd_.get(), &one, sizeof one);
}

void HostSession::fail_locked(Status reason) {
  if (!failure_.is_ok() || ended_) return;
  failure_ = std::move(reason);
  abort_pending_ = true;
  wake_locked();
  cv_.notify_all();
}

void HostSession::append_envelope_locked(uint32_t field_number, const google::protobuf::MessageLite& inner,
                                         size_t inner_size) {
  const uint32_t tag = (field_number << 3) | 2;  // length-delimited
  const size_t body = varint_size(tag) + varint_size(inner_size) + inner_size;
  char* p = wire::append_delimited_uninitialized(outbound_, body);
  p = put_varint(p, tag);
  p = put_varint(p, inner_size);
  inner.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p));
  ++stats_.requests_sent;
}

Status HostSession::queue_envelope(uint32_t field_number, const google::protobuf::MessageLite& inner) {
  const size_t inner_size = inner.ByteSizeLong();
  std::unique_lock lock(mu_);
  if (outbound_.size() >= options_.max_pending_bytes) {
    wake_locked();
    cv_.wait(lock, [&] { return outbound_.size() < options_.max_pending_bytes || !usable_locked().is_ok(); });
  }
  AGENTRY_RETURN_IF_ERROR(usable_locked());
  const size_t before = outbound_.size();
  append_envelope_locked(field_number, inner, inner_size);
  // Wake the I/O thread when it does not know there is data (so it can time the flush),
  // and when a chunk has just filled up.
  if (!io_armed_ || (before < options_.write_chunk_bytes && outbound_.size() >= options_.write_chunk_bytes)) {
    wake_locked();
  }
  return Status::ok();
}

Result<::agent::Response> HostSession::transact(Slot slot, const ::agent::Request& request) {
  std::unique_lock lock(mu_);
  AGENTRY_RETURN_IF_ERROR(usable_locked());
  Pending& p = pending_[slot];
  if (p.waiting) {
    return failed_precondition(std::string("a ") + slot_name(slot) + " request is already waiting for its answer");
  }
  p.waiting = true;
  p.answered = false;
  const size_t size = request.ByteSizeLong();
  char* dst = wire::append_delimited_uninitialized(outbound_, size);
  request.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(dst));
  ++stats_.requests_sent;
  flush_requested_ = true;
  wake_locked();
  cv_.wait(lock, [&] { return p.answered || !failure_.is_ok() || ended_; });
  p.waiting = false;
  if (p.answered) {
    p.answered = false;
    ::agent::Response r;
    r.Swap(&p.response);
    return r;
  }
  if (!failure_.is_ok()) return failure_;
  return unavailable(std::string("the UDF session ended before the UDF answered the ") + slot_name(slot) + " request");
}

Result<::agent::InfoResponse> HostSession::info() {
  ::agent::Request req;
  req.mutable_info();
  auto r = transact(kInfoSlot, req);
  if (!r) return r.status();
  std::lock_guard lock(mu_);
  info_ = r->info();
  return r->info();
}

Status HostSession::init(const std::vector<::agent::Option>& options, std::string_view task_id,
                         std::string_view node_id) {
  std::optional<::agent::InfoResponse> info;
  {
    std::lock_guard lock(mu_);
    info = info_;
  }
  if (!info) {
    auto i = this->info();
    if (!i) return i.status();
    info = std::move(i).value();
  }
  AGENTRY_RETURN_IF_ERROR(check_options(*info, options));
  ::agent::Request req;
  auto* init = req.mutable_init();
  for (const auto& o : options) *init->add_options() = o;
  init->set_taskid(std::string(task_id));
  init->set_nodeid(std::string(node_id));
  auto r = transact(kInitSlot, req);
  if (!r) return r.status();
  if (!r->init().success()) return invalid_argument("UDF rejected init: " + r->init().error());
  return Status::ok();
}

Result<std::string> HostSession::snapshot() {
  ::agent::Request req;
  req.mutable_snapshot();
  auto r = transact(kSnapshotSlot, req);
  if (!r) return r.status();
  return std::move(*r->mutable_snapshot()->mutable_snapshot());
}

Status HostSession::restore(std::string_view snapshot) {
  ::agent::Request req;
  req.mutable_restore()->set_snapshot(std::string(snapshot));
  auto r = transact(kRestoreSlot, req);
  if (!r) return r.status();
  if (!r->restore().success()) return invalid_argument("UDF rejected restore: " + r->restore().error());
  return Status::ok();
}

Status HostSession::send_point(const ::agent::Point& point) { return queue_envelope(kPointField, point); }
Status HostSession::begin_batch(const ::agent::BeginBatch& begin) { return queue_envelope(kBeginField, begin); }
Status HostSession::end_batch(const ::agent::EndBatch& end) { return queue_envelope(kEndField, end); }

Status HostSession::flush() {
  std::lock_guard lock(mu_);
  AGENTRY_RETURN_IF_ERROR(usable_locked());
  flush_requested_ = true;
  wake_locked();
  return Status::ok();
}

Status HostSession::close_input() {
  std::unique_lock lock(mu_);
  if (!failure_.is_ok()) return failure_;
  if (!close_requested_) {
    if (ended_) return failed_precondition("the UDF session has ended");
    close_requested_ = true;
    flush_requested_ = true;
    wake_locked();
  }
  cv_.wait(lock, [&] { return input_closed_ || !failure_.is_ok() || ended_; });
  return failure_;
}

Result<SessionEnd> HostSession::wait() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return ended_; });
  if (!failure_.is_ok()) return failure_;
  return SessionEnd{exit_};
}

Result<SessionEnd> HostSession::finish() {
  Status st = close_input();
  if (!st.is_ok()) {
    // Still wait, so the caller can rely on the UDF being gone.
    auto end = wait();
    return end.is_ok() ? st : end.status();
  }
  return wait();
}

void HostSession::abort(Status reason) {
  if (reason.is_ok()) reason = cancelled("aborted");
  std::lock_guard lock(mu_);
  fail_locked(std::move(reason));
}

Status HostSession::status() const {
  std::lock_guard lock(mu_);
  return failure_;
}

std::optional<supervisor::ExitStatus> HostSession::exit_status() const {
  std::lock_guard lock(mu_);
  return exit_;
}

std::vector<std::string> HostSession::stderr_tail() const {
  std::lock_guard lock(mu_);
  return {stderr_tail_.begin(), stderr_tail_.end()};
}

HostStats HostSession::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// ---------------------------------------------------------------- I/O thread

void HostSession::run() {
  // A write to a pipe whose reader is gone must come back as EPIPE, not kill us. The
  // signal is blocked for this thread only; sockets use MSG_NOSIGNAL anyway. Children get
  // a clean mask from spawn().
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_only, nullptr);

  if (transport_ == Transport::kProcess) {
    auto child = supervisor::spawn(*spawn_request_);
    child_ends_.clear();
    spawn_request_.reset();
    if (!child) {
      {
        std::lock_guard lock(mu_);
        ended_ = true;
        failure_ = child.status();
      }
      spawn_result_.set_value(child.status());
      return;
    }
    pid_ = child->pid;
    pidfd_ = std::move(child->pidfd);
    log_->debug("udf[{}]: started, pid {}", name_, pid_);
  }
  spawn_result_.set_value(Status::ok());
  loop();
  finish_session();
}

void HostSession::fail(Status reason) {
  std::lock_guard lock(mu_);
  fail_locked(std::move(reason));
}

void HostSession::take_outbound() {
  std::lock_guard lock(mu_);
  if (input_closed_ || input_broken_ || aborted_io_) {
    // Nothing will be written any more: do not let callers block on a full buffer.
    if (!outbound_.empty()) {
      outbound_.clear();
      cv_.notify_all();
    }
    io_armed_ = false;
    return;
  }
  const auto now = Clock::now();
  if (!outbound_.empty() && !io_armed_) {
    // Callers stop waking us for every request once we know there is data.
    io_armed_ = true;
    flush_at_ = now + options_.flush_delay;
  }
  if (write_offset_ < writing_.size()) return;  // still busy with the previous chunk
  if (!outbound_.empty()) {
    if (flush_requested_ || close_requested_ || outbound_.size() >= options_.write_chunk_bytes || now >= flush_at_) {
      writing_.clear();
      writing_.swap(outbound_);
      write_offset_ = 0;
      flush_requested_ = false;
      io_armed_ = false;
      cv_.notify_all();  // room for blocked senders
    }
  } else {
    flush_requested_ = false;
    io_armed_ = false;
    if (close_requested_) {
      // Everything has been written: end the UDF's input.
      input_closed_ = true;
      cv_.notify_all();
    }
  }
}

void HostSession::write_input() {
  const int fd = transport_ == Transport::kProcess ? input_fd_.get() : sock_fd_.get();
  uint64_t calls = 0, bytes = 0;
  while (write_offset_ < writing_.size()) {
    const char* p = writing_.data() + write_offset_;
    const size_t len = writing_.size() - write_offset_;
    const ssize_t n =
        transport_ == Transport::kProcess ? ::write(fd, p, len) : ::send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    ++calls;
    if (n > 0) {
      write_offset_ += static_cast<size_t>(n);
      bytes += static_cast<size_t>(n);
      if (static_cast<size_t>(n) < len) break;  // full: wait for POLLOUT rather than hit EAGAIN
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    // EPIPE / ECONNRESET: the UDF no longer reads its input.
    const int err = n < 0 ? errno : EPIPE;
    log_->debug("udf[{}]: writing to the UDF failed: {}", name_, errno_text(err));
    input_broken_ = true;
    writing_.clear();
    write_offset_ = 0;
    note_end("stopped reading its input");
    break;
  }
  if (write_offset_ >= writing_.size()) {
    writing_.clear();
    write_offset_ = 0;
  }
  std::lock_guard lock(mu_);
  stats_.write_calls += calls;
  stats_.bytes_written += bytes;
}

void HostSession::read_output() {
  const int fd = transport_ == Transport::kProcess ? output_fd_.get() : sock_fd_.get();
  uint64_t calls = 0, bytes = 0, responses = 0, data = 0;
  for (int round = 0; round < 4 && !output_eof_; ++round) {
    const std::span<char> buf = decoder_.prepare(kReadChunk);
    const ssize_t n = transport_ == Transport::kProcess ? ::read(fd, buf.data(), buf.size())
                                                        : ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    ++calls;
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      log_->debug("udf[{}]: reading the UDF's output failed: {}", name_, errno_text(errno));
    }
    if (n <= 0) {
      decoder_.commit(0);
      output_eof_ = true;
      if (Status st = decoder_.finish(); !st.is_ok()) {
        log_->debug("udf[{}]: output ended inside a message: {}", name_, st.message());
        truncated_ = Status(st.code(), "the UDF's output ended inside a message: " + st.message());
      }
      note_end("closed its output");
      break;
    }
    decoder_.commit(static_cast<size_t>(n));
    bytes += static_cast<size_t>(n);
    last_response_ = Clock::now();
    last_response_wall_ns_ = wall_now_ns();
    for (;;) {
      auto next = decoder_.next();
      if (!next.is_ok()) {
        fail(Status(next.status().code(), "bad frame from the UDF: " + next.status().message()));
        abort_io();
        output_eof_ = true;  // nothing after a framing error can be trusted
        break;
      }
      if (!next->has_value()) break;
      const std::string_view msg = **next;
      if (!detail::parse_response(msg, response_)) {
        fail(invalid_argument("the UDF sent a malformed response (" + std::to_string(msg.size()) +
                              " bytes that do not parse as agent.Response)"));
        abort_io();
        break;
      }
      ++responses;
      const auto c = response_.message_case();
      if (c == ::agent::Response::kPoint || c == ::agent::Response::kBegin || c == ::agent::Response::kEnd) ++data;
      handle_response();
    }
    if (static_cast<size_t>(n) < buf.size()) break;  // drained for now
  }
  std::lock_guard lock(mu_);
  stats_.read_calls += calls;
  stats_.bytes_read += bytes;
  stats_.responses += responses;
  stats_.data_responses += data;
}

void HostSession::handle_response() {
  // After an abort the output is only drained: nothing is delivered or answered.
  if (aborted_io_) return;
  int slot = -1;
  switch (response_.message_case()) {
    case ::agent::Response::kPoint:
    case ::agent::Response::kBegin:
    case ::agent::Response::kEnd:
      if (handler_) handler_(response_);
      return;
    case ::agent::Response::kKeepalive:
      return;  // its arrival already counted as a sign of life
    case ::agent::Response::kError: {
      const std::string& text = response_.error().error();
      log_->error("udf[{}]: the UDF reported an error: {}", name_, text);
      fail(internal_error("UDF error: " + text));
      abort_io();
      return;
    }
    case ::agent::Response::kInfo:
      slot = kInfoSlot;
      break;
    case ::agent::Response::kInit:
      slot = kInitSlot;
      break;
    case ::agent::Response::kSnapshot:
      slot = kSnapshotSlot;
      break;
    case ::agent::Response::kRestore:
      slot = kRestoreSlot;
      break;
    case ::agent::Response::MESSAGE_NOT_SET:
    default: {
      ++unknown_logged_;
      if (unknown_logged_ <= kUnknownLogLimit) {
        log_->warn("udf[{}]: dropped a response of a type this host does not know ({} bytes){}", name_,
                   response_.ByteSizeLong(), unknown_logged_ == kUnknownLogLimit ? "; not logging more of these" : "");
      }
      std::lock_guard lock(mu_);
      ++stats_.dropped_responses;
      return;
    }
  }
  std::lock_guard lock(mu_);
  Pending& p = pending_[slot];
  if (p.waiting && !p.answered) {
    p.response.Swap(&response_);
    p.answered = true;
    cv_.notify_all();
    return;
  }
  ++stats_.dropped_responses;
  log_->warn("udf[{}]: dropped an unsolicited {} response", name_, slot_name(slot));
}

void HostSession::read_stderr() {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(stderr_fd_.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      if (!stderr_partial_.empty()) stderr_line(stderr_partial_);
      stderr_partial_.clear();
      stderr_fd_.reset();
      return;
    }
    std::string_view chunk(buf, static_cast<size_t>(n));
    while (!chunk.empty()) {
      const size_t nl = chunk.find('\n');
      if (nl == std::string_view::npos) {
        stderr_partial_.append(chunk);
        if (stderr_partial_.size() >= kMaxStderrLine) {
          stderr_line(stderr_partial_);
          stderr_partial_.clear();
        }
        break;
      }
      stderr_partial_.append(chunk.substr(0, nl));
      stderr_line(stderr_partial_);
      stderr_partial_.clear();
      chunk.remove_prefix(nl + 1);
    }
  }
}

void HostSession::stderr_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  log_->info("udf[{}] stderr: {}", name_, line);
  if (options_.stderr_tail_lines == 0) return;
  std::lock_guard lock(mu_);
  stderr_tail_.emplace_back(line);
  while (stderr_tail_.size() > options_.stderr_tail_lines) stderr_tail_.pop_front();
}

void HostSession::note_end(const char* what) {
  if (end_seen_) return;
  end_seen_ = true;
  bool expected = false;
  {
    std::lock_guard lock(mu_);
    expected = close_requested_ && input_closed_;
  }
  unexpected_end_ = !expected && !aborted_io_;
  if (unexpected_end_) {
    log_->debug("udf[{}]: the UDF {} before its input ended", name_, what);
    input_broken_ = true;
    writing_.clear();
    write_offset_ = 0;
    if (transport_ == Transport::kSocket) {
      fail(unavailable(std::string("UDF ") + name_ + " closed the connection mid-stream"));
      abort_io();
    }
  }
  // Whatever happens next (a process that closed its output but lingers, a child holding
  // the output open), it is over within the grace period.
  if (!kill_at_) kill_at_ = Clock::now() + kill_grace_;
}

void HostSession::close_input_fd() {
  if (input_fd_closed_) return;
  input_fd_closed_ = true;
  if (transport_ == Transport::kProcess) {
    input_fd_.reset();
  } else if (sock_fd_) {
    ::shutdown(sock_fd_.get(), SHUT_WR);
  }
}

void HostSession::abort_io() {
  if (aborted_io_) return;
  aborted_io_ = true;
  writing_.clear();
  write_offset_ = 0;
  close_input_fd();
  {
    std::lock_guard lock(mu_);
    abort_pending_ = false;
    outbound_.clear();
    input_closed_ = true;
    cv_.notify_all();
  }
  if (!kill_at_) kill_at_ = Clock::now() + kill_grace_;
}

void HostSession::kill_now() {
  if (killed_) return;
  killed_ = true;
  if (transport_ == Transport::kProcess) {
    if (!exit_status().has_value()) {
      if (destroying_) {
        log_->debug("udf[{}]: killing pid {} (session destroyed)", name_, pid_);
      } else {
        log_->warn("udf[{}]: killing pid {} (did not finish within {} ms)", name_, pid_, kill_grace_.count());
      }
      // The group first, while the unreaped leader still pins its number.
      (void)supervisor::signal_group(pid_, SIGKILL);
      (void)supervisor::send_signal(pidfd_.get(), SIGKILL);
    }
  } else if (sock_fd_) {
    if (!destroying_) {
      log_->warn("udf[{}]: closing the connection (the UDF did not finish within {} ms)", name_, kill_grace_.count());
    }
    ::shutdown(sock_fd_.get(), SHUT_RDWR);
  }
}

void HostSession::reap() {
  auto r = supervisor::try_reap(pidfd_.get());
  if (!r.is_ok()) {
    log_->error("udf[{}]: reaping pid {} failed: {}", name_, pid_, r.status().message());
    std::lock_guard lock(mu_);
    exit_ = supervisor::ExitStatus{.signaled = true, .code = SIGKILL, .core_dumped = false};
    return;
  }
  if (!r->has_value()) return;
  {
    std::lock_guard lock(mu_);
    exit_ = **r;
  }
  log_->debug("udf[{}]: pid {} {}", name_, pid_, (*r)->describe());
  note_end("exited");
  // Normally the output's EOF is already queued behind whatever the process wrote; a
  // process it started may still hold the pipe, though, and is given the grace period.
  if (!output_eof_) eof_deadline_ = Clock::now() + kill_grace_;
}

void HostSession::on_timers(Clock::time_point now) {
  const auto t = options_.keepalive_timeout;
  if (t.count() > 0 && !aborted_io_ && !end_seen_) {
    if (now - last_response_ >= t) {
      const std::string msg =
          "keepalive timed out, last keepalive received was: " + format_time_ns(last_response_wall_ns_);
      log_->error("udf[{}]: {}", name_, msg);
      fail(deadline_exceeded(msg));
      abort_io();
    } else if (now >= next_keepalive_) {
      next_keepalive_ = now + t / 2;
      std::lock_guard lock(mu_);
      if (!input_closed_ && !close_requested_ && failure_.is_ok()) {
        ::agent::KeepaliveRequest k;
        k.set_time(wall_now_ns());
        append_envelope_locked(kKeepaliveField, k, k.ByteSizeLong());
        flush_requested_ = true;
      }
    }
  }
  if (kill_at_ && now >= *kill_at_) kill_now();
  if (eof_deadline_ && now >= *eof_deadline_ && !output_eof_) {
    read_output();  // whatever is there now
    if (!output_eof_) {
      log_->warn("udf[{}]: the process exited but its output is still open (held by a child?); not waiting longer",
                 name_);
      output_eof_ = true;
    }
  }
}

void HostSession::loop() {
  const auto start = Clock::now();
  last_response_ = start;
  last_response_wall_ns_ = wall_now_ns();
  next_keepalive_ = start + options_.keepalive_timeout / 2;
  const bool process = transport_ == Transport::kProcess;
  const int out_fd = process ? output_fd_.get() : sock_fd_.get();

  for (;;) {
    bool abort_now = false;
    bool kill = false;
    {
      std::lock_guard lock(mu_);
      abort_now = abort_pending_;
      kill = kill_requested_;
    }
    if (abort_now) abort_io();
    if (kill && !killed_ && !destroying_) {
      destroying_ = true;
      kill_at_ = Clock::now();
    }

    // Move queued requests into the chunk being written, and write what we can now (an
    // optimistic write saves a poll round trip when the pipe has room).
    take_outbound();
    if (write_offset_ < writing_.size()) {
      write_input();
      take_outbound();  // may close the input if that was the last chunk
    }
    if (!input_fd_closed_) {
      bool close_fd = false;
      {
        std::lock_guard lock(mu_);
        close_fd = input_closed_;
      }
      if (close_fd) close_input_fd();
    }

    const bool exited = process && exit_status().has_value();
    if (output_eof_ && (!process || exited)) break;

    // Build the poll set.
    pollfd fds[5];
    nfds_t nfds = 0;
    int out_idx = -1, err_idx = -1, pid_idx = -1, in_idx = -1;
    fds[nfds] = {wake_fd_.get(), POLLIN, 0};
    const int wake_idx = static_cast<int>(nfds++);
    if (!output_eof_) {
      out_idx = static_cast<int>(nfds);
      fds[nfds++] = {out_fd, POLLIN, 0};
    }
    if (process && stderr_fd_) {
      err_idx = static_cast<int>(nfds);
      fds[nfds++] = {stderr_fd_.get(), POLLIN, 0};
    }
    if (process && !exited) {
      pid_idx = static_cast<int>(nfds);
      fds[nfds++] = {pidfd_.get(), POLLIN, 0};
    }
    if (write_offset_ < writing_.size()) {
      const int in_fd = process ? input_fd_.get() : sock_fd_.get();
      if (in_fd >= 0) {
        in_idx = static_cast<int>(nfds);
        fds[nfds++] = {in_fd, POLLOUT, 0};
      }
    }

    // Next timer.
    const auto now = Clock::now();
    std::optional<Clock::time_point> due;
    const auto consider = [&](Clock::time_point t) {
      if (!due || t < *due) due = t;
    };
    if (options_.keepalive_timeout.count() > 0 && !aborted_io_ && !end_seen_) {
      consider(last_response_ + options_.keepalive_timeout);
      consider(next_keepalive_);
    }
    if (kill_at_ && !killed_) consider(*kill_at_);
    if (eof_deadline_ && !output_eof_) consider(*eof_deadline_);
    {
      std::lock_guard lock(mu_);
      if (io_armed_ && !outbound_.empty() && write_offset_ >= writing_.size()) consider(flush_at_);
    }
    timespec ts{};
    timespec* timeout = nullptr;
    if (due) {
      const auto wait = std::max(Clock::duration::zero(), *due - now);
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count() + 1;
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      timeout = &ts;
    }
    const int ready = ppoll(fds, nfds, timeout, nullptr);
    if (ready < 0 && errno != EINTR) {
      fail(internal_error("poll: " + errno_text(errno)));
      abort_io();
      kill_now();
    }

    if (ready > 0) {
      if (fds[wake_idx].revents != 0) {
        uint64_t count = 0;
        (void)!::read(wake_fd_.get(), &count, sizeof count);
        std::lock_guard lock(mu_);
        wake_pending_ = false;
      }
      if (out_idx >= 0 && fds[out_idx].revents != 0) read_output();
      if (err_idx >= 0 && fds[err_idx].revents != 0) read_stderr();
      if (in_idx >= 0 && fds[in_idx].revents != 0 && write_offset_ < writing_.size()) write_input();
      if (pid_idx >= 0 && fds[pid_idx].revents != 0) reap();
    }
    on_timers(Clock::now());
  }
}

std::string HostSession::stderr_suffix() const {
  std::lock_guard lock(mu_);
  if (stderr_tail_.empty()) return "";
  std::string s = "; last stderr: ";
  for (size_t i = 0; i < stderr_tail_.size(); ++i) {
    if (i != 0) s += " | ";
    s += stderr_tail_[i];
  }
  return s;
}

void HostSession::finish_session() {
  // Whatever the process wrote to stderr right before exiting.
  if (stderr_fd_) read_stderr();
  if (!stderr_partial_.empty()) {
    stderr_line(stderr_partial_);
    stderr_partial_.clear();
  }
  const std::string tail = stderr_suffix();
  std::lock_guard lock(mu_);
  if (failure_.is_ok()) {
    if (transport_ == Transport::kProcess && exit_) {
      if (unexpected_end_) {
        failure_ = unavailable("UDF process " + name_ + " ended mid-stream: " + exit_->describe() + tail);
      } else if (exit_->signaled || exit_->code != 0) {
        failure_ = unavailable("UDF process " + name_ + " " + exit_->describe() + " after the end of its input" + tail);
      }
    } else if (unexpected_end_) {
      failure_ = unavailable("UDF " + name_ + " closed the connection mid-stream");
    }
  }
  if (failure_.is_ok() && !truncated_.is_ok()) failure_ = truncated_;
  ended_ = true;
  input_closed_ = true;
  outbound_.clear();
  cv_.notify_all();
}

}  // namespace agentry::udf

// ---------------------------------------------------------------- fast response decoding

namespace agentry::udf::detail {
namespace {

// Minimal reader of the protobuf wire format, for the fields a Point uses.
class WireReader {
 public:
  explicit WireReader(std::string_view bytes) : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}
  bool done() const noexcept { return p_ == end_; }

  bool varint(uint64_t& v) noexcept {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) return false;
      const auto b = static_cast<uint8_t>(*p_++);
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }
  bool bytes(std::string_view& out) noexcept {
    uint64_t n = 0;
    if (!varint(n) || n > static_cast<uint64_t>(end_ - p_)) return false;
    out = std::string_view(p_, static_cast<size_t>(n));
    p_ += n;
    return true;
  }
  bool fixed64(uint64_t& v) noexcept {
    if (end_ - p_ < 8) return false;
    v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p_[i]);
    p_ += 8;
    return true;
  }

 private:
  const char* p_;
  const char* end_;
};

bool is_ascii(std::string_view s) noexcept {
  unsigned char any = 0;
  for (const char c : s) any |= static_cast<unsigned char>(c);
  return (any & 0x80) == 0;
}

enum class ValueWire : uint8_t { kBytes, kFixed64, kVarint };

// One map entry {1: key, 2: value}. Anything unusual (other fields, other wire types,
// non-ASCII text) returns false, and the caller leaves the message to protobuf.
bool map_entry(std::string_view body, ValueWire kind, std::string_view& key, std::string_view& text,
               uint64_t& number) {
  WireReader r(body);
  key = {};
  text = {};
  number = 0;
  while (!r.done()) {
    uint64_t tag = 0;
    if (!r.varint(tag)) return false;
    const uint64_t field = tag >> 3;
    const uint64_t type = tag & 7;
    if (field == 1 && type == 2) {
      if (!r.bytes(key)) return false;
    } else if (field == 2 && kind == ValueWire::kBytes && type == 2) {
      if (!r.bytes(text)) return false;
    } else if (field == 2 && kind == ValueWire::kFixed64 && type == 1) {
      if (!r.fixed64(number)) return false;
    } else if (field == 2 && kind == ValueWire::kVarint && type == 0) {
      if (!r.varint(number)) return false;
    } else {
      return false;
    }
  }
  return is_ascii(key) && is_ascii(text);
}

struct PointScratch {
  std::vector<std::pair<std::string_view, std::string_view>> tags, strings;
  std::vector<std::pair<std::string_view, uint64_t>> doubles, ints, bools;
  std::vector<std::string_view> dimensions;
  void clear() {
    tags.clear();
    strings.clear();
    doubles.clear();
    ints.clear();
    bools.clear();
    dimensions.clear();
  }
};

// Writes `entries` into `map`: in place when the keys are exactly the map's keys (no
// allocation at all), otherwise by rebuilding it. Later duplicates win, as in protobuf.
template <typename Map, typename Entries, typename Convert>
void apply_map(Map& map, const Entries& entries, Convert convert) {
  constexpr size_t kMaxInPlace = 16;
  bool in_place = map.size() == entries.size() && entries.size() <= kMaxInPlace;
  for (size_t i = 0; in_place && i < entries.size(); ++i) {
    for (size_t j = i + 1; j < entries.size(); ++j) {
      if (entries[i].first == entries[j].first) {
        in_place = false;
        break;
      }
    }
  }
  if (in_place) {
    thread_local std::string key;
    for (const auto& [k, v] : entries) {
      key.assign(k.data(), k.size());
      const auto it = map.find(key);
      if (it == map.end()) {
        in_place = false;
        break;
      }
      it->second = convert(v);
    }
  }
  if (!in_place) {
    map.clear();
    for (const auto& [k, v] : entries) map[std::string(k)] = convert(v);
  }
}

bool decode_point(std::string_view body, ::agent::Point& point) {
  thread_local PointScratch sc;
  sc.clear();
  uint64_t time = 0;
  uint64_t by_name = 0;
  std::string_view name, database, retention, group;
  WireReader r(body);
  while (!r.done()) {
    uint64_t tag = 0;
    if (!r.varint(tag)) return false;
    const uint64_t field = tag >> 3;
    const uint64_t type = tag & 7;
    std::string_view sv, key, text;
    uint64_t number = 0;
    switch (field) {
      case 1:
        if (type != 0 || !r.varint(time)) return false;
        break;
      case 2:
      case 3:
      case 4:
      case 5:
      case 6:
        if (type != 2 || !r.bytes(sv) || !is_ascii(sv)) return false;
        if (field == 2) name = sv;
        if (field == 3) database = sv;
        if (field == 4) retention = sv;
        if (field == 5) group = sv;
        if (field == 6) sc.dimensions.push_back(sv);
        break;
      case 7:
      case 10:
        if (type != 2 || !r.bytes(sv) || !map_entry(sv, ValueWire::kBytes, key, text, number)) return false;
        (field == 7 ? sc.tags : sc.strings).emplace_back(key, text);
        break;
      case 8:
        if (type != 2 || !r.bytes(sv) || !map_entry(sv, ValueWire::kFixed64, key, text, number)) return false;
        sc.doubles.emplace_back(key, number);
        break;
      case 9:
      case 12:
        if (type != 2 || !r.bytes(sv) || !map_entry(sv, ValueWire::kVarint, key, text, number)) return false;
        (field == 9 ? sc.ints : sc.bools).emplace_back(key, number);
        break;
      case 11:
        if (type != 0 || !r.varint(by_name)) return false;
        break;
      default:
        return false;  // unknown to this decoder: protobuf keeps it as an unknown field
    }
  }
  // The whole point decoded: now (and only now) change the message.
  point.set_time(static_cast<int64_t>(time));
  point.mutable_name()->assign(name.data(), name.size());
  point.mutable_database()->assign(database.data(), database.size());
  point.mutable_retentionpolicy()->assign(retention.data(), retention.size());
  point.mutable_group()->assign(group.data(), group.size());
  point.set_byname(by_name != 0);
  auto* dims = point.mutable_dimensions();
  if (dims->size() != static_cast<int>(sc.dimensions.size())) {
    dims->Clear();
    for (const auto d : sc.dimensions) dims->Add()->assign(d.data(), d.size());
  } else {
    for (int i = 0; i < dims->size(); ++i) dims->Mutable(i)->assign(sc.dimensions[static_cast<size_t>(i)]);
  }
  apply_map(*point.mutable_tags(), sc.tags, [](std::string_view v) { return std::string(v); });
  apply_map(*point.mutable_fieldsstring(), sc.strings, [](std::string_view v) { return std::string(v); });
  apply_map(*point.mutable_fieldsdouble(), sc.doubles, [](uint64_t bits) {
    double d = 0;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  });
  apply_map(*point.mutable_fieldsint(), sc.ints, [](uint64_t v) { return static_cast<int64_t>(v); });
  apply_map(*point.mutable_fieldsbool(), sc.bools, [](uint64_t v) { return v != 0; });
  return true;
}

}  // namespace

bool parse_response(std::string_view bytes, ::agent::Response& response) {
  constexpr uint64_t kPointTag = (uint64_t{17} << 3) | 2;
  WireReader r(bytes);
  uint64_t tag = 0;
  std::string_view body;
  if (r.varint(tag) && tag == kPointTag && r.bytes(body) && r.done()) {
    // Start from a clean message unless it already is a point with nothing unknown in it
    // (the decoder below sets every known field).
    const auto has_unknown = [](const google::protobuf::Message& m) {
      return !m.GetReflection()->GetUnknownFields(m).empty();
    };
    if (response.message_case() != ::agent::Response::kPoint || has_unknown(response) ||
        has_unknown(response.point())) {
      response.Clear();
    }
    if (decode_point(body, *response.mutable_point())) return true;
  }
  return response.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()));
}

}  // namespace agentry::udf::detail
