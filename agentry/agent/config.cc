#include "agentry/agent/config.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <csignal>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "agentry/base/unique_fd.h"
#include "agentry/net/url.h"

namespace agentry::agent {
namespace {

using supervisor::Duration;
using supervisor::ProcessSpec;

// Wide enough that no unit multiplication of an accepted number can overflow.
__extension__ typedef unsigned __int128 Uint128;

// ---------------------------------------------------------------------------------------
// Text helpers

// A value as shown in a message: 'text', with control characters escaped and long
// values cut short.
std::string quote(std::string_view s) {
  constexpr size_t kMaxShown = 60;
  std::string out = "'";
  size_t shown = 0;
  for (const char ch : s) {
    if (shown++ == kMaxShown) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  out += "'";
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

std::string to_upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = upper(c);
  return out;
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_digit(c)) return false;
  }
  return true;
}

std::string join(std::span<const std::string_view> items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

// Edit distance counting insertions, deletions, substitutions and swaps of neighbours
// (so "restrat" is one edit from "restart"). Letters compare case-insensitively.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The candidate that `word` is most likely a typo of: at most `max_edits` edits away, and
// fewer edits than `word` has characters (so "ab" does not suggest "id"). Ties go to the
// earlier candidate.
std::optional<std::string_view> closest(std::string_view word, std::span<const std::string_view> candidates,
                                        size_t max_edits = 2) {
  if (word.size() > 64) return std::nullopt;
  std::optional<std::string_view> best;
  size_t best_distance = max_edits + 1;
  for (const auto& candidate : candidates) {
    const size_t d = edit_distance(word, candidate);
    if (d < best_distance && d < word.size()) {
      best = candidate;
      best_distance = d;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------
// Numbers with units

// "<digits>[.<digits>]" read from the front of a string, kept exact: whole + frac / scale.
struct Decimal {
  size_t length = 0;      // characters read; 0 when the text does not start with a number
  Uint128 whole = 0;
  Uint128 frac = 0;
  Uint128 scale = 1;      // 10^(fraction digits kept)
  bool too_big = false;   // the whole part alone is beyond any accepted value
  bool too_fine = false;  // non-zero fraction digits beyond the 18th
};

Decimal read_decimal(std::string_view s) {
  constexpr Uint128 kWholeCap = Uint128{10'000'000'000} * 10'000'000'000;  // 1e20, past uint64
  Decimal d;
  size_t i = 0;
  while (i < s.size() && is_digit(s[i])) {
    if (d.whole >= kWholeCap) {
      d.too_big = true;
    } else {
      d.whole = d.whole * 10 + static_cast<unsigned>(s[i] - '0');
    }
    ++i;
  }
  if (i == 0) return d;
  if (i < s.size() && s[i] == '.') {
    size_t j = i + 1;
    int kept = 0;
    while (j < s.size() && is_digit(s[j])) {
      if (kept < 18) {
        d.frac = d.frac * 10 + static_cast<unsigned>(s[j] - '0');
        d.scale *= 10;
        ++kept;
      } else if (s[j] != '0') {
        d.too_fine = true;
      }
      ++j;
    }
    if (j == i + 1) return Decimal{};  // "5." is not a number
    i = j;
  }
  d.length = i;
  return d;
}

// d * unit, exact, or nullopt when the result has a fractional part.
std::optional<Uint128> scaled(const Decimal& d, uint64_t unit) {
  const Uint128 frac = d.frac * unit;
  if (d.too_fine || frac % d.scale != 0) return std::nullopt;
  return d.whole * unit + frac / d.scale;
}

// The longest duration accepted: the range of std::chrono::nanoseconds, because backoff
// code converts these milliseconds to nanoseconds.
constexpr int64_t kMaxDurationMs = std::numeric_limits<int64_t>::max() / 1'000'000;

struct SignalName {
  std::string_view name;
  int number;
};

constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},     {"QUIT", SIGQUIT},     {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},   {"IOT", SIGIOT},       {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL},   {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE},   {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},   {"CONT", SIGCONT},     {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},   {"TTOU", SIGTTOU},     {"URG", SIGURG},
    {"XCPU", SIGXCPU},     {"XFSZ", SIGXFSZ},   {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},       {"POLL", SIGPOLL},     {"PWR", SIGPWR},
    {"SYS", SIGSYS},
};

// ---------------------------------------------------------------------------------------
// YAML documents

std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Scalar: return quote(n.Scalar());
    case YAML::NodeType::Sequence: return "a sequence";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Undefined: break;
  }
  return "nothing";
}

std::string child_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return fmt::format("{}.{}", parent, key);
}

std::string process_path(std::string_view id) { return fmt::format("processes[{}]", id); }

// A value in the document: the node, where it is, and its field path.
struct Field {
  YAML::Node node;
  YAML::Mark mark;  // of the value; of its key when the value is empty (null)
  std::string path;
};

// One key: value pair of a map.
struct Entry {
  std::string key;
  YAML::Mark key_mark;
  YAML::Node value;
};

// The pairs of one map in document order, with keys known to be unique scalars.
struct MapView {
  std::string path;
  YAML::Mark mark;
  std::vector<Entry> entries;
  std::map<std::string, size_t, std::less<>> index;
  // The first key given twice: (first place, second place) in `entries`.
  std::optional<std::pair<size_t, size_t>> duplicate;

  const Entry* find(std::string_view key) const {
    const auto it = index.find(key);
    return it == index.end() ? nullptr : &entries[it->second];
  }
};

// Another spelling of a key, or a key that belongs one level down.
struct KeyHint {
  std::string_view given;
  std::string_view meant;
};

constexpr std::string_view kTopKeys[] = {"runtime_dir", "state_dir", "log_level", "processes",
                                         "command",     "autoconfig", "opamp"};
constexpr std::string_view kProcessKeys[] = {
    "id",    "name",      "command",  "args",    "env",   "cwd",   "user",
    "group", "stdin",     "autostart", "restart", "success_exit_codes",
    "start_window", "start_limit", "backoff", "stop", "logs", "udf"};
constexpr KeyHint kProcessHints[] = {
    {"signal", "stop.signal"},
    {"timeout", "stop.timeout"},
    {"stop_signal", "stop.signal"},
    {"stop_timeout", "stop.timeout"},
    {"initial", "backoff.initial"},
    {"max", "backoff.max"},
    {"multiplier", "backoff.multiplier"},
    {"jitter", "backoff.jitter"},
    {"reset_after", "backoff.reset_after"},
    {"ring", "logs.ring"},
    {"file", "logs.file"},
    {"rotate", "logs.rotate"},
    {"timestamps", "logs.timestamps"},
    {"socket", "udf.socket"},
    {"keepalive", "udf.keepalive"},
    {"environment", "env"},
    {"workdir", "cwd"},
    {"working_dir", "cwd"},
    {"working_directory", "cwd"},
    {"directory", "cwd"},
    {"argv", "args"},
    {"arguments", "args"},
    {"cmd", "command"},
    {"exec", "command"},
    {"executable", "command"},
    {"restart_policy", "restart"},
    {"autorestart", "restart"},
    {"exit_codes", "success_exit_codes"},
    {"log", "logs"},
    {"logging", "logs"},
};
constexpr std::string_view kBackoffKeys[] = {"initial", "max", "multiplier", "jitter", "reset_after"};
constexpr std::string_view kStopKeys[] = {"signal", "timeout"};
constexpr std::string_view kLogsKeys[] = {"ring", "file", "rotate", "timestamps"};
constexpr std::string_view kRotateKeys[] = {"size", "keep"};
constexpr std::string_view kUdfKeys[] = {"socket", "keepalive"};
constexpr std::string_view kEnvFormKeys[] = {"inherit", "set", "unset"};
constexpr std::string_view kLogLevels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
constexpr KeyHint kLogLevelAliases[] = {{"warning", "warn"}};
constexpr std::string_view kRestartPolicies[] = {"never", "on-failure", "always"};
constexpr KeyHint kRestartAliases[] = {{"on_failure", "on-failure"}};

// When a YAML syntax error sits on a line indented with a tab, say so: yaml-cpp's own
// message does not always ("illegal map value").
std::string tab_hint(std::string_view text, int line) {
  if (line < 0) return {};
  size_t pos = 0;
  for (int i = 0; i < line; ++i) {
    pos = text.find('\n', pos);
    if (pos == std::string_view::npos) return {};
    ++pos;
  }
  for (size_t i = pos; i < text.size() && (text[i] == ' ' || text[i] == '\t'); ++i) {
    if (text[i] == '\t') return " (this line is indented with a tab; YAML indentation must use spaces)";
  }
  return {};
}

std::string location(std::string_view source, const YAML::Mark& mark) {
  if (mark.is_null()) return std::string(source);
  return fmt::format("{}:{}:{}", source, mark.line + 1, mark.column + 1);
}

// Walks the documents of a text without building nodes, to see whether more than one
// has content. It also guards against a yaml-cpp 0.7 bug: on a stray ',' at block level
// its parser reports empty documents forever without moving on (YAML::LoadAll then
// allocates until memory runs out), so a document that starts where the previous one
// started ends the walk with an error.
class DocumentScan : public YAML::EventHandler {
 public:
  YAML::Mark start;                    // of the current document
  std::optional<YAML::Mark> content;   // first node of the current document, unless it is null

  void OnDocumentStart(const YAML::Mark& mark) override {
    start = mark;
    content.reset();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { note(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override {
    note(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    note(mark);
  }
  void OnMapEnd() override {}

 private:
  void note(const YAML::Mark& mark) {
    if (!content) content = mark;
  }
};

Status syntax_error(std::string_view text, std::string_view source, const YAML::Mark& mark, std::string_view msg) {
  const std::string hint = msg.find("tab") == std::string_view::npos ? tab_hint(text, mark.line) : "";
  return invalid_argument(fmt::format("{}: YAML syntax error: {}{}", location(source, mark), msg, hint));
}

// Loads the first document of `text` into `out` (a null node for an empty text). Fails
// on a syntax error anywhere, or when a later document has content: a second document
// would otherwise be ignored without a word. Empty later documents (a trailing "---")
// are fine.
Status load_document(std::string_view text, std::string_view source, YAML::Node& out) {
  const std::string copy(text);
  try {
    std::istringstream in(copy);
    YAML::Parser parser(in);
    DocumentScan scan;
    int previous_start = -1;
    for (size_t index = 0; parser.HandleNextDocument(scan); ++index) {
      if (scan.start.pos == previous_start) {
        const size_t pos = static_cast<size_t>(scan.start.pos);
        const std::string found = pos < text.size() ? quote(text.substr(pos, 1)) : "the end";
        return syntax_error(text, source, scan.start,
                            fmt::format("unexpected {} (commas separate items only inside [ ] and {{ }})", found));
      }
      previous_start = scan.start.pos;
      if (index > 0 && scan.content) {
        return invalid_argument(fmt::format("{}: expected a single YAML document, got a second one here",
                                            location(source, *scan.content)));
      }
    }
    out = YAML::Load(copy);
  } catch (const YAML::Exception& e) {
    return syntax_error(text, source, e.mark, e.msg);
  }
  return Status::ok();
}

// Turns nodes into values. Each reader either fills its output or returns the message
// for the first problem, located at the offending node.
class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  Status config(const YAML::Node& root, DaemonConfig& cfg);
  // `f.path` names the entry until its id is known ("processes[2]"). `known_id`: the id
  // given from outside (may be empty). `seen_ids`: ids of earlier entries, or null.
  Result<ProcessSpec> process(const Field& f, std::string_view known_id,
                              std::map<std::string, YAML::Mark>* seen_ids);

  Status error(const YAML::Mark& mark, std::string_view path, std::string_view what) const {
    if (path.empty()) return invalid_argument(fmt::format("{}: {}", location(source_, mark), what));
    return invalid_argument(fmt::format("{}: {}: {}", location(source_, mark), path, what));
  }
  Status expected(const Field& f, std::string_view what) const {
    return error(f.mark, f.path, fmt::format("expected {}, got {}", what, describe(f.node)));
  }

 private:
  Field field(const MapView& m, const Entry& e) {
    Field f{e.value, e.value.IsNull() ? e.key_mark : e.value.Mark(), child_path(m.path, e.key)};
    marks_[f.path] = f.mark;
    return f;
  }
  // Lists the pairs of a map (null counts as empty). Keys must be scalars and unique;
  // with `defer_duplicates` the caller runs check_duplicates() itself, once the map's
  // path is final.
  Status open_map(const Field& f, std::string_view what, MapView& out, bool defer_duplicates = false) const;
  Status check_duplicates(const MapView& m) const;
  Status unknown_key(const MapView& m, const Entry& e, std::span<const std::string_view> known,
                     std::span<const KeyHint> hints = {}) const;
  YAML::Mark locate(std::string_view message, const YAML::Mark& fallback) const;

  Status read_string(const Field& f, std::string_view what, std::string& out) const;
  Status read_bool(const Field& f, bool& out) const;
  Status read_uint32(const Field& f, uint32_t min, uint32_t& out) const;
  Status read_number(const Field& f, double& out) const;
  Status read_duration(const Field& f, Duration& out) const;
  Status read_size(const Field& f, uint64_t& out) const;
  Status read_signal(const Field& f, int& out) const;
  Status read_choice(const Field& f, std::span<const std::string_view> choices, std::span<const KeyHint> aliases,
                     std::string_view& out) const;
  Status read_string_list(const Field& f, std::string_view list_what, std::string_view item_what,
                          std::vector<std::string>& out) const;
  Status read_exit_codes(const Field& f, std::vector<int>& out) const;

  Status read_processes(const Field& f, std::vector<ProcessSpec>& out);
  Status read_env(const Field& f, supervisor::EnvSpec& env);
  Status read_variable(const MapView& m, const Entry& e, std::map<std::string, std::string>& out);
  Status read_backoff(const Field& f, supervisor::BackoffSpec& b);
  Status read_stop(const Field& f, supervisor::StopSpec& s);
  Status read_logs(const Field& f, supervisor::LogSpec& l);
  Status read_rotate(const Field& f, supervisor::RotateSpec& r);
  Status read_udf(const Field& f, supervisor::UdfSpec& u);
  Status read_command(const Field& f, CommandConfig& c);
  Status read_tls(const Field& f, TlsSettings& t);
  Status read_remote_url(const Field& f, std::span<const std::string_view> schemes, std::string& out) const;
  Status read_autoconfig(const Field& f, AutoconfigConfig& a);
  Status read_opamp(const Field& f, OpampConfig& o);

  std::string_view source_;
  // Where each value of the current process is, by field path, so that a message from
  // ProcessSpec::validate() points at the value it complains about.
  std::map<std::string, YAML::Mark, std::less<>> marks_;
};

Status Parser::open_map(const Field& f, std::string_view what, MapView& out, bool defer_duplicates) const {
  out = MapView{};
  out.path = f.path;
  out.mark = f.mark;
  if (f.node.IsNull()) return Status::ok();  // "backoff:" with nothing after it: all defaults
  if (!f.node.IsMap()) return expected(f, what);
  for (const auto& pair : f.node) {  // a copy per step: iterators hand out temporaries
    const YAML::Node& key = pair.first;
    const YAML::Mark key_mark = key.Mark().is_null() ? f.mark : key.Mark();
    if (!key.IsScalar()) {
      return error(key_mark, f.path, fmt::format("expected a key name, got {} as a key", describe(key)));
    }
    Entry entry{key.Scalar(), key_mark, pair.second};
    const auto [first, inserted] = out.index.emplace(entry.key, out.entries.size());
    if (!inserted && !out.duplicate) out.duplicate.emplace(first->second, out.entries.size());
    out.entries.push_back(std::move(entry));
  }
  return defer_duplicates ? Status::ok() : check_duplicates(out);
}

Status Parser::check_duplicates(const MapView& m) const {
  if (!m.duplicate) return Status::ok();
  const Entry& first = m.entries[m.duplicate->first];
  const Entry& again = m.entries[m.duplicate->second];
  return error(again.key_mark, child_path(m.path, again.key),
               fmt::format("duplicate key, first given at line {}", first.key_mark.line + 1));
}

Status Parser::unknown_key(const MapView& m, const Entry& e, std::span<const std::string_view> known,
                           std::span<const KeyHint> hints) const {
  const std::string path = child_path(m.path, e.key);
  if (e.key == "<<") {
    return error(e.key_mark, path, "YAML merge keys are not supported, expected the keys written out");
  }
  const std::string key = to_lower(e.key);
  for (const auto& hint : hints) {
    if (key == hint.given) return error(e.key_mark, path, fmt::format("unknown key, did you mean '{}'?", hint.meant));
  }
  std::vector<std::string_view> candidates(known.begin(), known.end());
  for (const auto& hint : hints) candidates.push_back(hint.given);
  if (auto near = closest(e.key, candidates)) {
    std::string_view meant = *near;
    for (const auto& hint : hints) {
      if (hint.given == meant) meant = hint.meant;
    }
    return error(e.key_mark, path, fmt::format("unknown key, did you mean '{}'?", meant));
  }
  return error(e.key_mark, path, fmt::format("unknown key, expected one of {}", join(known)));
}

// validate() names the field first ("processes[web].backoff.max must ...",
// "processes[web].logs.ring: ..."); find the closest enclosing field that was written.
YAML::Mark Parser::locate(std::string_view message, const YAML::Mark& fallback) const {
  std::string_view path = message.substr(0, message.find_first_of(": "));
  while (!path.empty()) {
    if (const auto it = marks_.find(path); it != marks_.end()) return it->second;
    const size_t dot = path.rfind('.');
    if (dot == std::string_view::npos) break;
    path = path.substr(0, dot);
  }
  return fallback;
}

Status Parser::read_string(const Field& f, std::string_view what, std::string& out) const {
  if (!f.node.IsScalar()) return expected(f, what);
  out = f.node.Scalar();
  return Status::ok();
}

Status Parser::read_bool(const Field& f, bool& out) const {
  if (f.node.IsScalar()) {
    const std::string v = to_lower(f.node.Scalar());
    if (v == "true" || v == "yes" || v == "on") {
      out = true;
      return Status::ok();
    }
    if (v == "false" || v == "no" || v == "off") {
      out = false;
      return Status::ok();
    }
  }
  return expected(f, "true or false");
}

Status Parser::read_uint32(const Field& f, uint32_t min, uint32_t& out) const {
  const std::string what = fmt::format("an integer from {} to {}", min, std::numeric_limits<uint32_t>::max());
  if (!f.node.IsScalar()) return expected(f, what);
  const std::string& s = f.node.Scalar();
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < min || v > std::numeric_limits<uint32_t>::max()) {
    return expected(f, what);
  }
  out = static_cast<uint32_t>(v);
  return Status::ok();
}

Status Parser::read_number(const Field& f, double& out) const {
  if (!f.node.IsScalar()) return expected(f, "a number");
  const std::string& s = f.node.Scalar();
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return expected(f, "a number");
  out = v;
  return Status::ok();
}

Status Parser::read_duration(const Field& f, Duration& out) const {
  if (!f.node.IsScalar()) return expected(f, "a duration like 250ms, 10s, 5m");
  Result<Duration> d = parse_duration(f.node.Scalar());
  if (!d.is_ok()) return error(f.mark, f.path, d.status().message());
  out = *d;
  return Status::ok();
}

Status Parser::read_size(const Field& f, uint64_t& out) const {
  if (!f.node.IsScalar()) return expected(f, "a size like 512B, 64KiB, 10MiB, 1GB");
  Result<uint64_t> n = parse_size(f.node.Scalar());
  if (!n.is_ok()) return error(f.mark, f.path, n.status().message());
  out = *n;
  return Status::ok();
}

Status Parser::read_signal(const Field& f, int& out) const {
  if (!f.node.IsScalar()) return expected(f, "a signal name like TERM, INT, HUP, KILL or a number from 1 to 64");
  Result<int> n = parse_signal(f.node.Scalar());
  if (!n.is_ok()) return error(f.mark, f.path, n.status().message());
  out = *n;
  return Status::ok();
}

Status Parser::read_choice(const Field& f, std::span<const std::string_view> choices,
                           std::span<const KeyHint> aliases, std::string_view& out) const {
  const std::string what = fmt::format("one of {}", join(choices));
  if (!f.node.IsScalar()) return expected(f, what);
  const std::string& v = f.node.Scalar();
  for (const auto& choice : choices) {
    if (v == choice) {
      out = choice;
      return Status::ok();
    }
  }
  for (const auto& alias : aliases) {
    if (v == alias.given) {
      out = alias.meant;
      return Status::ok();
    }
  }
  std::string message = fmt::format("expected {}, got {}", what, quote(v));
  if (auto near = closest(v, choices)) message += fmt::format(" (did you mean '{}'?)", *near);
  return error(f.mark, f.path, message);
}

Status Parser::read_string_list(const Field& f, std::string_view list_what, std::string_view item_what,
                                std::vector<std::string>& out) const {
  out.clear();
  if (f.node.IsNull()) return Status::ok();
  if (!f.node.IsSequence()) return expected(f, list_what);
  size_t i = 0;
  for (const auto& item : f.node) {
    const Field itf{item, item.Mark(), fmt::format("{}[{}]", f.path, i++)};
    std::string value;
    AGENTRY_RETURN_IF_ERROR(read_string(itf, item_what, value));
    out.push_back(std::move(value));
  }
  return Status::ok();
}

Status Parser::read_exit_codes(const Field& f, std::vector<int>& out) const {
  out.clear();
  if (f.node.IsNull()) return Status::ok();
  if (!f.node.IsSequence()) return expected(f, "a sequence of exit codes like [0, 2]");
  size_t i = 0;
  for (const auto& item : f.node) {
    const Field itf{item, item.Mark(), fmt::format("{}[{}]", f.path, i++)};
    int code = -1;
    if (item.IsScalar()) {
      const std::string& s = item.Scalar();
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), code);
      if (ec != std::errc() || end != s.data() + s.size()) code = -1;
    }
    if (code < 0 || code > 255) return expected(itf, "an exit code from 0 to 255");
    out.push_back(code);
  }
  return Status::ok();
}

Status Parser::config(const YAML::Node& root, DaemonConfig& cfg) {
  if (!root.IsDefined() || root.IsNull()) return Status::ok();  // empty file: nothing to run
  const Field top{root, root.Mark(), ""};
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(top, "a map of settings such as processes and runtime_dir", m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "runtime_dir") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a directory path", cfg.runtime_dir));
    } else if (e.key == "state_dir") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a directory path", cfg.state_dir));
    } else if (e.key == "log_level") {
      std::string_view level;
      AGENTRY_RETURN_IF_ERROR(read_choice(v, kLogLevels, kLogLevelAliases, level));
      cfg.log_level = level;
    } else if (e.key == "processes") {
      AGENTRY_RETURN_IF_ERROR(read_processes(v, cfg.processes));
    } else if (e.key == "command") {
      AGENTRY_RETURN_IF_ERROR(read_command(v, cfg.command));
    } else if (e.key == "autoconfig") {
      AGENTRY_RETURN_IF_ERROR(read_autoconfig(v, cfg.autoconfig));
    } else if (e.key == "opamp") {
      AGENTRY_RETURN_IF_ERROR(read_opamp(v, cfg.opamp));
    } else if (std::find(std::begin(kProcessKeys), std::end(kProcessKeys), e.key) != std::end(kProcessKeys)) {
      // Most likely a process's key that lost its indentation.
      return error(e.key_mark, e.key, "unknown key at the top level, expected it inside an item of processes");
    } else {
      return unknown_key(m, e, kTopKeys);
    }
  }
  return Status::ok();
}

Status Parser::read_command(const Field& f, CommandConfig& c) {
  static constexpr std::string_view kKeys[] = {"enabled", "dir", "mode", "group", "timeout"};
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, "a map with keys enabled, dir, mode, group, timeout", m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "enabled") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, c.enabled));
    } else if (e.key == "dir") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a directory path", c.dir));
    } else if (e.key == "mode") {
      // Octal, as chmod takes it; quoted ("0770") so YAML does not read it as a number.
      std::string text;
      AGENTRY_RETURN_IF_ERROR(read_string(v, "an octal mode like \"0770\"", text));
      unsigned mode = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mode, 8);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size() || mode > 0777) {
        return expected(v, "an octal mode like \"0770\"");
      }
      c.mode = mode;
    } else if (e.key == "group") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a group name or number", c.group));
    } else if (e.key == "timeout") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, c.timeout));
      if (c.timeout.count() <= 0) return expected(v, "a positive duration");
    } else {
      return unknown_key(m, e, kKeys);
    }
  }
  return Status::ok();
}

Status Parser::read_tls(const Field& f, TlsSettings& t) {
  static constexpr std::string_view kKeys[] = {"ca", "ca_file", "cert", "cert_file", "key", "key_file",
                                               "insecure_skip_verify"};
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, "a map with keys ca, cert, key, insecure_skip_verify", m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "ca" || e.key == "ca_file") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a PEM file path", t.ca_file));
    } else if (e.key == "cert" || e.key == "cert_file") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a PEM file path", t.cert_file));
    } else if (e.key == "key" || e.key == "key_file") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a PEM file path", t.key_file));
    } else if (e.key == "insecure_skip_verify") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, t.insecure_skip_verify));
    } else {
      return unknown_key(m, e, kKeys);
    }
  }
  if (t.cert_file.empty() != t.key_file.empty()) {
    return error(f.mark, f.path, "a client certificate needs both cert and key");
  }
  return Status::ok();
}

Status Parser::read_remote_url(const Field& f, std::span<const std::string_view> schemes, std::string& out) const {
  std::string wanted;
  for (auto s : schemes) wanted += (wanted.empty() ? "" : ", ") + std::string(s) + "://";
  AGENTRY_RETURN_IF_ERROR(read_string(f, "a URL starting with " + wanted, out));
  auto url = net::Url::parse(out);
  if (!url) return error(f.mark, f.path, url.status().message());
  if (std::find(schemes.begin(), schemes.end(), url->scheme) == schemes.end()) {
    return expected(f, "a URL starting with " + wanted);
  }
  return Status::ok();
}

Status Parser::read_autoconfig(const Field& f, AutoconfigConfig& a) {
  static constexpr std::string_view kKeys[] = {"enabled", "url", "key", "key_file", "ca", "tls", "read_timeout",
                                               "initial_retry_delay"};
  static constexpr std::string_view kSchemes[] = {"http", "https"};
  a = AutoconfigConfig{};
  if (f.node.IsNull()) return Status::ok();
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, "a map with keys url, key (or key_file), ca, read_timeout", m));
  a.enabled = true;
  std::string ca;
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "enabled") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, a.enabled));
    } else if (e.key == "url") {
      AGENTRY_RETURN_IF_ERROR(read_remote_url(v, kSchemes, a.url));
    } else if (e.key == "key") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "the stream key", a.key));
    } else if (e.key == "key_file") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a file path", a.key_file));
    } else if (e.key == "ca") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a PEM file path", ca));
    } else if (e.key == "tls") {
      AGENTRY_RETURN_IF_ERROR(read_tls(v, a.tls));
    } else if (e.key == "read_timeout") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, a.read_timeout));
      if (a.read_timeout.count() <= 0) return expected(v, "a positive duration");
    } else if (e.key == "initial_retry_delay") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, a.initial_retry_delay));
      if (a.initial_retry_delay.count() <= 0) return expected(v, "a positive duration");
    } else {
      return unknown_key(m, e, kKeys);
    }
  }
  if (!ca.empty()) a.tls.ca_file = ca;
  if (!a.enabled) return Status::ok();
  if (a.url.empty()) return error(f.mark, f.path, "missing required key 'url'");
  if (a.key.empty() == a.key_file.empty()) return error(f.mark, f.path, "expected exactly one of 'key' and 'key_file'");
  return Status::ok();
}

Status Parser::read_opamp(const Field& f, OpampConfig& o) {
  static constexpr std::string_view kKeys[] = {"enabled", "endpoint", "headers", "tls", "heartbeat", "instance_uid",
                                               "compression", "signature_public_key", "download_report_interval",
                                               "capabilities"};
  static constexpr std::string_view kCapabilities[] = {
      "accepts_remote_config",   "reports_effective_config",    "reports_health",
      "accepts_packages",        "accepts_restart_command",     "accepts_connection_settings",
      "reports_available_components", "accepts_commands"};
  static constexpr std::string_view kSchemes[] = {"ws", "wss", "http", "https"};
  o = OpampConfig{};
  if (f.node.IsNull()) return Status::ok();
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, "a map with keys endpoint, headers, tls, heartbeat, capabilities", m));
  o.enabled = true;
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "enabled") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, o.enabled));
    } else if (e.key == "endpoint") {
      AGENTRY_RETURN_IF_ERROR(read_remote_url(v, kSchemes, o.endpoint));
    } else if (e.key == "headers") {
      MapView hm;
      AGENTRY_RETURN_IF_ERROR(open_map(v, "a map of header names to values", hm));
      for (const Entry& he : hm.entries) {
        const Field hv = field(hm, he);
        std::string value;
        AGENTRY_RETURN_IF_ERROR(read_string(hv, "a header value", value));
        o.headers[he.key] = value;
      }
    } else if (e.key == "tls") {
      AGENTRY_RETURN_IF_ERROR(read_tls(v, o.tls));
    } else if (e.key == "heartbeat") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, o.heartbeat));
    } else if (e.key == "instance_uid") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a UUID like 0192f3a4-...", o.instance_uid));
    } else if (e.key == "compression") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, o.compression));
    } else if (e.key == "signature_public_key") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "an Ed25519 public key PEM file path", o.signature_public_key_file));
    } else if (e.key == "download_report_interval") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, o.download_report_interval));
      if (o.download_report_interval < std::chrono::seconds(1)) return expected(v, "a duration of at least 1s");
    } else if (e.key == "capabilities") {
      MapView cm;
      AGENTRY_RETURN_IF_ERROR(open_map(v, "a map of capability names to true or false", cm));
      for (const Entry& ce : cm.entries) {
        const Field cv = field(cm, ce);
        bool* flag = ce.key == "accepts_remote_config"          ? &o.accepts_remote_config
                     : ce.key == "reports_effective_config"     ? &o.reports_effective_config
                     : ce.key == "reports_health"               ? &o.reports_health
                     : ce.key == "accepts_packages"             ? &o.accepts_packages
                     : ce.key == "accepts_restart_command"      ? &o.accepts_restart_command
                     : ce.key == "accepts_connection_settings"  ? &o.accepts_connection_settings
                     : ce.key == "reports_available_components" ? &o.reports_available_components
                     : ce.key == "accepts_commands"             ? &o.accepts_commands
                                                                : nullptr;
        if (flag == nullptr) return unknown_key(cm, ce, kCapabilities);
        AGENTRY_RETURN_IF_ERROR(read_bool(cv, *flag));
      }
    } else {
      return unknown_key(m, e, kKeys);
    }
  }
  if (o.enabled && o.endpoint.empty()) return error(f.mark, f.path, "missing required key 'endpoint'");
  return Status::ok();
}

Status Parser::read_processes(const Field& f, std::vector<ProcessSpec>& out) {
  out.clear();
  if (f.node.IsNull()) return Status::ok();
  if (!f.node.IsSequence()) return expected(f, "a sequence of processes, each starting with '- id: ...'");
  std::map<std::string, YAML::Mark> seen_ids;
  size_t i = 0;
  for (const auto& item : f.node) {
    const Field itf{item, item.Mark(), fmt::format("{}[{}]", f.path, i++)};
    Result<ProcessSpec> spec = process(itf, {}, &seen_ids);
    if (!spec.is_ok()) return std::move(spec).take_status();
    out.push_back(std::move(spec).value());
  }
  return Status::ok();
}

Result<ProcessSpec> Parser::process(const Field& f, std::string_view known_id,
                                    std::map<std::string, YAML::Mark>* seen_ids) {
  marks_.clear();
  if (!f.node.IsMap()) return expected(f, "a map with at least id and command");
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, "a map with at least id and command", m, /*defer_duplicates=*/true));

  // The id comes first, whatever its place in the map: later messages name it.
  std::string id;
  YAML::Mark id_mark = f.mark;
  if (const Entry* e = m.find("id")) {
    const Field idf = field(m, *e);
    AGENTRY_RETURN_IF_ERROR(read_string(idf, "a process id", id));
    if (!supervisor::is_valid_process_id(id)) {
      return error(idf.mark, idf.path,
                   fmt::format("expected an id of 1 to 128 letters, digits, '_' or '-', got {}", quote(id)));
    }
    if (!known_id.empty() && id != known_id) {
      return error(idf.mark, idf.path,
                   fmt::format("expected '{}', the id this entry was sent for, got {}", known_id, quote(id)));
    }
    id_mark = idf.mark;
  } else if (!known_id.empty()) {
    id = known_id;
  } else {
    return error(f.mark, f.path, "missing required key 'id'");
  }
  if (seen_ids != nullptr) {
    const auto [it, inserted] = seen_ids->emplace(id, id_mark);
    if (!inserted) {
      return error(id_mark, child_path(f.path, "id"),
                   fmt::format("duplicate process id '{}', first used at line {}", id, it->second.line + 1));
    }
  }

  ProcessSpec spec;
  spec.id = id;
  m.path = process_path(id);
  AGENTRY_RETURN_IF_ERROR(check_duplicates(m));
  marks_.clear();
  marks_[m.path] = f.mark;
  bool has_command = false;
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    const std::string& k = e.key;
    Status s;
    if (k == "id") {
      continue;  // read above
    } else if (k == "name") {
      s = read_string(v, "a display name", spec.name);
    } else if (k == "command") {
      s = read_string(v, "a program name or path", spec.command);
      has_command = true;
    } else if (k == "args") {
      s = read_string_list(v, "a sequence of arguments like [\"-m\", \"http.server\"]",
                           "an argument (a string or a number)", spec.args);
    } else if (k == "env") {
      s = read_env(v, spec.env);
    } else if (k == "cwd") {
      s = read_string(v, "a directory path", spec.cwd);
    } else if (k == "user") {
      s = read_string(v, "a user name or number", spec.user);
    } else if (k == "group") {
      s = read_string(v, "a group name or number", spec.group);
    } else if (k == "stdin") {
      // "stdin: null" (also "stdin:") is /dev/null; "stdin: none" closes fd 0.
      if (v.node.IsNull() || (v.node.IsScalar() && v.node.Scalar() == "null")) {
        spec.stdin_mode = supervisor::StdinMode::kNull;
      } else if (v.node.IsScalar() && v.node.Scalar() == "none") {
        spec.stdin_mode = supervisor::StdinMode::kClosed;
      } else {
        s = expected(v, "null (read from /dev/null) or none (closed)");
      }
    } else if (k == "autostart") {
      s = read_bool(v, spec.autostart);
    } else if (k == "restart") {
      std::string_view policy;
      s = read_choice(v, kRestartPolicies, kRestartAliases, policy);
      if (policy == "never") spec.restart = supervisor::RestartPolicy::kNever;
      if (policy == "on-failure") spec.restart = supervisor::RestartPolicy::kOnFailure;
      if (policy == "always") spec.restart = supervisor::RestartPolicy::kAlways;
    } else if (k == "success_exit_codes") {
      s = read_exit_codes(v, spec.success_exit_codes);
    } else if (k == "start_window") {
      s = read_duration(v, spec.start_window);
    } else if (k == "start_limit") {
      s = read_uint32(v, 1, spec.start_limit);
    } else if (k == "backoff") {
      s = read_backoff(v, spec.backoff);
    } else if (k == "stop") {
      s = read_stop(v, spec.stop);
    } else if (k == "logs") {
      s = read_logs(v, spec.logs);
    } else if (k == "udf") {
      s = read_udf(v, spec.udf.emplace());
    } else {
      s = unknown_key(m, e, kProcessKeys, kProcessHints);
    }
    AGENTRY_RETURN_IF_ERROR(s);
  }
  if (!has_command) return error(f.mark, m.path, "missing required key 'command'");

  if (Status s = spec.validate(); !s.is_ok()) {
    return invalid_argument(fmt::format("{}: {}", location(source_, locate(s.message(), f.mark)), s.message()));
  }
  return spec;
}

// env has two forms, told apart by three reserved keys:
//
//   env: {PYTHONUNBUFFERED: "1", LANG: C.UTF-8}                       variables to set
//   env: {inherit: false, set: {LANG: C.UTF-8}, unset: [HTTP_PROXY]}  structured
//
// A map with any of the keys inherit, set or unset is the structured form, and may then
// hold no other key; otherwise every key is a variable name. A variable literally named
// inherit, set or unset goes under `set`. Mixing the forms is an error, not a guess:
// `inherit: false` next to variables must not quietly become a variable.
Status Parser::read_env(const Field& f, supervisor::EnvSpec& env) {
  MapView m;
  AGENTRY_RETURN_IF_ERROR(
      open_map(f, "a map of variables like {NAME: value}, or {inherit: ..., set: {...}, unset: [...]}", m));
  const Entry* form_key = nullptr;
  for (const Entry& e : m.entries) {
    for (const auto& k : kEnvFormKeys) {
      if (e.key == k && form_key == nullptr) form_key = &e;
    }
  }
  if (form_key == nullptr) {
    for (const Entry& e : m.entries) AGENTRY_RETURN_IF_ERROR(read_variable(m, e, env.set));
    return Status::ok();
  }
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "inherit") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, env.inherit));
    } else if (e.key == "set") {
      MapView set;
      AGENTRY_RETURN_IF_ERROR(open_map(v, "a map of variables like {NAME: value}", set));
      for (const Entry& var : set.entries) AGENTRY_RETURN_IF_ERROR(read_variable(set, var, env.set));
    } else if (e.key == "unset") {
      AGENTRY_RETURN_IF_ERROR(read_string_list(v, "a sequence of variable names", "a variable name", env.unset));
      size_t i = 0;
      for (const auto& item : v.node) {
        const std::string& name = env.unset[i];
        if (name.empty() || name.find('=') != std::string::npos) {
          return error(item.Mark(), fmt::format("{}[{}]", v.path, i),
                       fmt::format("expected a variable name without '=', got {}", quote(name)));
        }
        ++i;
      }
    } else {
      return error(e.key_mark, v.path,
                   fmt::format("expected only inherit, set and unset next to '{}', got a variable; "
                               "move it under {}.set",
                               form_key->key, m.path));
    }
  }
  return Status::ok();
}

Status Parser::read_variable(const MapView& m, const Entry& e, std::map<std::string, std::string>& out) {
  const Field v = field(m, e);
  if (e.key.empty() || e.key.find('=') != std::string::npos) {
    return error(e.key_mark, v.path, fmt::format("expected a variable name without '=', got {}", quote(e.key)));
  }
  return read_string(v, "a value (a string or a number; \"\" for an empty one)", out[e.key]);
}

Status Parser::read_backoff(const Field& f, supervisor::BackoffSpec& b) {
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, fmt::format("a map with keys {}", join(kBackoffKeys)), m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "initial") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, b.initial));
    } else if (e.key == "max") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, b.max));
    } else if (e.key == "multiplier") {
      AGENTRY_RETURN_IF_ERROR(read_number(v, b.multiplier));
    } else if (e.key == "jitter") {
      AGENTRY_RETURN_IF_ERROR(read_number(v, b.jitter));
    } else if (e.key == "reset_after") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, b.reset_after));
    } else {
      return unknown_key(m, e, kBackoffKeys);
    }
  }
  return Status::ok();
}

Status Parser::read_stop(const Field& f, supervisor::StopSpec& s) {
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, fmt::format("a map with keys {}", join(kStopKeys)), m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "signal") {
      AGENTRY_RETURN_IF_ERROR(read_signal(v, s.signal));
    } else if (e.key == "timeout") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, s.timeout));
    } else {
      return unknown_key(m, e, kStopKeys);
    }
  }
  return Status::ok();
}

Status Parser::read_logs(const Field& f, supervisor::LogSpec& l) {
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, fmt::format("a map with keys {}", join(kLogsKeys)), m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "ring") {
      AGENTRY_RETURN_IF_ERROR(read_size(v, l.ring_bytes));
    } else if (e.key == "file") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a file path", l.file));
    } else if (e.key == "rotate") {
      AGENTRY_RETURN_IF_ERROR(read_rotate(v, l.rotate));
    } else if (e.key == "timestamps") {
      AGENTRY_RETURN_IF_ERROR(read_bool(v, l.timestamps));
    } else {
      return unknown_key(m, e, kLogsKeys);
    }
  }
  return Status::ok();
}

Status Parser::read_rotate(const Field& f, supervisor::RotateSpec& r) {
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, fmt::format("a map with keys {}", join(kRotateKeys)), m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "size") {
      AGENTRY_RETURN_IF_ERROR(read_size(v, r.size));
    } else if (e.key == "keep") {
      AGENTRY_RETURN_IF_ERROR(read_uint32(v, 1, r.keep));
    } else {
      return unknown_key(m, e, kRotateKeys);
    }
  }
  return Status::ok();
}

Status Parser::read_udf(const Field& f, supervisor::UdfSpec& u) {
  MapView m;
  AGENTRY_RETURN_IF_ERROR(open_map(f, fmt::format("a map with keys {}", join(kUdfKeys)), m));
  for (const Entry& e : m.entries) {
    const Field v = field(m, e);
    if (e.key == "socket") {
      AGENTRY_RETURN_IF_ERROR(read_string(v, "a socket path", u.socket));
    } else if (e.key == "keepalive") {
      AGENTRY_RETURN_IF_ERROR(read_duration(v, u.keepalive));
    } else {
      return unknown_key(m, e, kUdfKeys);
    }
  }
  return Status::ok();
}

// yaml-cpp only throws from node access on misuse; turn a surprise into a located error
// rather than letting it escape the loader.
template <typename Fn>
auto guarded(std::string_view source, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const YAML::Exception& e) {
    return internal_error(fmt::format("{}: unexpected YAML error: {}", location(source, e.mark), e.msg));
  }
}

}  // namespace

Result<Duration> parse_duration(std::string_view text) {
  const auto expected = [&](std::string_view hint = {}) {
    return invalid_argument(fmt::format("expected a duration like 250ms, 10s, 5m, got {}{}", quote(text), hint));
  };
  if (text.empty()) return expected();
  if (text.front() == '-') return invalid_argument(fmt::format("expected a duration that is not negative, got {}", quote(text)));
  if (text == "0") return Duration::zero();
  Uint128 total = 0;
  size_t i = 0;
  while (i < text.size()) {
    const Decimal d = read_decimal(text.substr(i));
    if (d.length == 0) return expected();
    i += d.length;
    size_t end = i;
    while (end < text.size() && is_alpha(text[end])) ++end;
    const std::string_view unit = text.substr(i, end - i);
    i = end;
    uint64_t ms_per_unit = 0;
    if (unit == "ms") {
      ms_per_unit = 1;
    } else if (unit == "s") {
      ms_per_unit = 1000;
    } else if (unit == "m") {
      ms_per_unit = 60 * 1000;
    } else if (unit == "h") {
      ms_per_unit = 60 * 60 * 1000;
    } else {
      return expected(unit.empty() ? " (a number needs a unit: ms, s, m or h)" : "");
    }
    const std::optional<Uint128> ms = scaled(d, ms_per_unit);
    if (!d.too_big && !ms) {
      return invalid_argument(fmt::format("expected a whole number of milliseconds, got {}", quote(text)));
    }
    if (d.too_big || *ms > static_cast<Uint128>(kMaxDurationMs) ||
        (total += *ms) > static_cast<Uint128>(kMaxDurationMs)) {
      return invalid_argument(fmt::format("expected a duration of at most 2562047h, got {}", quote(text)));
    }
  }
  return Duration(static_cast<int64_t>(total));
}

Result<uint64_t> parse_size(std::string_view text) {
  const auto expected = [&](std::string_view hint = {}) {
    return invalid_argument(fmt::format("expected a size like 512B, 64KiB, 10MiB, 1GB, got {}{}", quote(text), hint));
  };
  if (text.empty()) return expected();
  if (text.front() == '-') return invalid_argument(fmt::format("expected a size that is not negative, got {}", quote(text)));
  const Decimal d = read_decimal(text);
  if (d.length == 0) return expected();
  std::string_view unit = text.substr(d.length);
  if (unit.size() > 1 && unit.front() == ' ') unit.remove_prefix(1);
  const std::string u = to_lower(unit);
  uint64_t bytes_per_unit = 0;
  constexpr uint64_t kKi = 1024;
  if (u.empty() || u == "b") {
    bytes_per_unit = 1;
  } else if (u == "kb") {
    bytes_per_unit = 1000;
  } else if (u == "mb") {
    bytes_per_unit = 1000 * 1000;
  } else if (u == "gb") {
    bytes_per_unit = 1000 * 1000 * 1000;
  } else if (u == "tb") {
    bytes_per_unit = uint64_t{1000} * 1000 * 1000 * 1000;
  } else if (u == "kib") {
    bytes_per_unit = kKi;
  } else if (u == "mib") {
    bytes_per_unit = kKi * kKi;
  } else if (u == "gib") {
    bytes_per_unit = kKi * kKi * kKi;
  } else if (u == "tib") {
    bytes_per_unit = kKi * kKi * kKi * kKi;
  } else if (u == "k" || u == "m" || u == "g" || u == "t") {
    const std::string_view number = text.substr(0, d.length);
    const char letter = upper(u[0]);
    return expected(fmt::format(" (write {0}{1}iB for units of 1024 or {0}{1}B for units of 1000)", number, letter));
  } else {
    return expected();
  }
  const std::optional<Uint128> bytes = scaled(d, bytes_per_unit);
  if (!d.too_big && !bytes) {
    return invalid_argument(fmt::format("expected a whole number of bytes, got {}", quote(text)));
  }
  if (d.too_big || *bytes > std::numeric_limits<uint64_t>::max()) {
    return invalid_argument(fmt::format("expected a size below 16EiB, got {}", quote(text)));
  }
  return static_cast<uint64_t>(*bytes);
}

Result<int> parse_signal(std::string_view text) {
  const std::string expected = fmt::format(
      "expected a signal name like TERM, INT, HUP, KILL or a number from 1 to 64, got {}", quote(text));
  if (all_digits(text)) {
    int n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n < 1 || n > 64) {
      return invalid_argument(fmt::format("expected a signal number from 1 to 64, got {}", quote(text)));
    }
    return n;
  }
  std::string name = to_upper(text);
  if (name.size() > 3 && name.starts_with("SIG")) name.erase(0, 3);
  for (const auto& s : kSignals) {
    if (name == s.name) return s.number;
  }
  // Real-time signals: RTMIN, RTMIN+n, RTMAX, RTMAX-n (glibc decides their numbers).
  const bool rtmin = name.starts_with("RTMIN");
  if (rtmin || name.starts_with("RTMAX")) {
    const std::string_view rest = std::string_view(name).substr(5);
    int offset = 0;
    bool ok = rest.empty();
    if (!rest.empty() && rest.front() == (rtmin ? '+' : '-') && all_digits(rest.substr(1))) {
      const auto [end, ec] = std::from_chars(rest.data() + 1, rest.data() + rest.size(), offset);
      ok = ec == std::errc() && end == rest.data() + rest.size();
    }
    const int number = rtmin ? SIGRTMIN + offset : SIGRTMAX - offset;
    if (ok && number >= SIGRTMIN && number <= SIGRTMAX) return number;
    return invalid_argument(fmt::format("expected a real-time signal from RTMIN to RTMIN+{}, got {}",
                                        SIGRTMAX - SIGRTMIN, quote(text)));
  }
  std::vector<std::string_view> names;
  for (const auto& s : kSignals) names.push_back(s.name);
  // Signal names are short: two edits would turn BOGUS into BUS.
  if (auto near = closest(name, names, 1)) return invalid_argument(fmt::format("{} (did you mean '{}'?)", expected, *near));
  return invalid_argument(expected);
}

Result<DaemonConfig> parse_config(std::string_view yaml_text, std::string_view source_name) {
  return guarded(source_name, [&]() -> Result<DaemonConfig> {
    YAML::Node root;
    AGENTRY_RETURN_IF_ERROR(load_document(yaml_text, source_name, root));
    DaemonConfig cfg;
    cfg.source = source_name;
    cfg.text = yaml_text;
    Parser parser(source_name);
    AGENTRY_RETURN_IF_ERROR(parser.config(root, cfg));
    return cfg;
  });
}

Result<supervisor::ProcessSpec> parse_process_spec(std::string_view text, std::string_view source_name,
                                                   std::string_view id) {
  return guarded(source_name, [&]() -> Result<ProcessSpec> {
    YAML::Node root;
    AGENTRY_RETURN_IF_ERROR(load_document(text, source_name, root));
    const YAML::Mark mark = root.IsDefined() && !root.Mark().is_null() ? root.Mark() : YAML::Mark();
    Parser parser(source_name);
    return parser.process(Field{root, mark, id.empty() ? std::string("process") : process_path(id)}, id, nullptr);
  });
}

namespace {

// A YAML node as JSON text: maps and sequences keep their shape, scalars are strings.
std::string node_to_json(const YAML::Node& n) {
  std::string out;
  auto quote_json = [](const std::string& s) {
    std::string q = "\"";
    for (char c : s) {
      switch (c) {
        case '"': q += "\\\""; break;
        case '\\': q += "\\\\"; break;
        case '\n': q += "\\n"; break;
        case '\t': q += "\\t"; break;
        case '\r': q += "\\r"; break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) q += fmt::format("\\u{:04x}", static_cast<int>(c));
          else q += c;
      }
    }
    return q + "\"";
  };
  if (n.IsMap()) {
    out += "{";
    bool first = true;
    for (const auto& kv : n) {
      if (!first) out += ",";
      first = false;
      out += quote_json(kv.first.Scalar()) + ":" + node_to_json(kv.second);
    }
    return out + "}";
  }
  if (n.IsSequence()) {
    out += "[";
    for (size_t i = 0; i < n.size(); ++i) out += (i ? "," : "") + node_to_json(n[i]);
    return out + "]";
  }
  if (n.IsScalar()) return quote_json(n.Scalar());
  return "null";
}

}  // namespace

Result<std::string> get_option(const DaemonConfig& config, std::string_view dotted_path) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t dot = dotted_path.find('.', start);
    parts.emplace_back(dotted_path.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (parts.back().empty()) {
      return invalid_argument(fmt::format("malformed option '{}': expected names separated by dots", dotted_path));
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return guarded(config.source, [&]() -> Result<std::string> {
    YAML::Node node;
    AGENTRY_RETURN_IF_ERROR(load_document(config.text, config.source, node));
    for (const auto& part : parts) {
      // Index through a const node (the non-const operator[] would create the key) and
      // rebind with reset(): Node::operator= writes through to the node it refers to.
      const YAML::Node& current = node;
      bool found = false;
      if (current.IsMap()) {
        const YAML::Node child = current[part];
        if (child.IsDefined()) {
          node.reset(child);
          found = true;
        }
      } else if (current.IsSequence()) {
        size_t index = 0;
        const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
        if (ec == std::errc() && end == part.data() + part.size() && index < current.size()) {
          const YAML::Node child = current[index];
          node.reset(child);
          found = true;
        }
      }
      if (!found) return not_found(fmt::format("no option '{}' in {}", dotted_path, config.source));
    }
    if (node.IsNull() || (node.IsScalar() && node.Scalar().empty())) {
      return failed_precondition(fmt::format("option '{}' is empty", dotted_path));
    }
    if (node.IsScalar()) return node.Scalar();
    return node_to_json(node);
  });
}

Result<DaemonConfig> load_config_file(const std::string& path) {
  constexpr size_t kMaxConfigBytes = size_t{16} << 20;
  const std::string what = fmt::format("cannot read config file '{}'", path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::from_errno(errno, what);
  std::string text;
  char buf[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::from_errno(errno, what);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) return invalid_argument(what + ": larger than 16MiB");
  }
  return parse_config(text, path);
}

}  // namespace agentry::agent
