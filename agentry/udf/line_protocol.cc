#include "agentry/udf/line_protocol.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <system_error>

namespace agentry::udf {
namespace {

// The characters a backslash escapes in each kind of element (a backslash escapes itself
// everywhere, see the header).
constexpr std::string_view kMeasurementSpecials = ", ";
constexpr std::string_view kKeySpecials = ",= ";
constexpr std::string_view kStringSpecials = "\"";

bool is_special(char c, std::string_view specials) noexcept {
  return c == '\\' || specials.find(c) != std::string_view::npos;
}

std::string quoted(std::string_view s) {
  constexpr size_t kMaxShown = 40;
  std::string out = "\"";
  out.append(s.substr(0, kMaxShown));
  if (s.size() > kMaxShown) out += "...";
  out += '"';
  return out;
}

// Walks one line, remembering where it is so errors can name the column.
class LineParser {
 public:
  LineParser(std::string_view line, size_t line_number) : s_(line), line_number_(line_number) {}

  Result<LineKind> parse(const LineParseOptions& options, ::agent::Point& point);

 private:
  Status error_at(size_t pos, std::string_view what) const {
    return invalid_argument("line " + std::to_string(line_number_) + ", column " + std::to_string(pos + 1) + ": " +
                            std::string(what));
  }
  bool at_end() const noexcept { return i_ >= s_.size(); }
  char peek() const noexcept { return s_[i_]; }

  // Reads an unquoted element up to the first unescaped character of `stops`, unescaping
  // into `out`. Stops before that character (or at the end of the line).
  void read_element(std::string_view specials, std::string_view stops, std::string& out);
  Status parse_field_value(const std::string& key, size_t key_pos, ::agent::Point& point);
  Status parse_string_value(std::string& out);
  void skip_spaces() {
    while (!at_end() && peek() == ' ') ++i_;
  }

  std::string_view s_;
  size_t line_number_;
  size_t i_ = 0;
};

void LineParser::read_element(std::string_view specials, std::string_view stops, std::string& out) {
  out.clear();
  size_t run_start = i_;
  while (!at_end()) {
    const char c = peek();
    if (c == '\\' && i_ + 1 < s_.size() && is_special(s_[i_ + 1], specials)) {
      out.append(s_.substr(run_start, i_ - run_start));
      out.push_back(s_[i_ + 1]);
      i_ += 2;
      run_start = i_;
      continue;
    }
    if (stops.find(c) != std::string_view::npos) break;
    ++i_;
  }
  out.append(s_.substr(run_start, i_ - run_start));
}

Status LineParser::parse_string_value(std::string& out) {
  const size_t open = i_;
  ++i_;  // the opening quote
  out.clear();
  size_t run_start = i_;
  while (!at_end()) {
    const char c = peek();
    if (c == '\\' && i_ + 1 < s_.size() && is_special(s_[i_ + 1], kStringSpecials)) {
      out.append(s_.substr(run_start, i_ - run_start));
      out.push_back(s_[i_ + 1]);
      i_ += 2;
      run_start = i_;
      continue;
    }
    if (c == '"') {
      out.append(s_.substr(run_start, i_ - run_start));
      ++i_;
      return Status::ok();
    }
    ++i_;
  }
  return error_at(open, "unterminated string value (missing closing '\"')");
}

bool is_bool_word(std::string_view v, bool& value) {
  static constexpr std::string_view kTrue[] = {"t", "T", "true", "True", "TRUE"};
  static constexpr std::string_view kFalse[] = {"f", "F", "false", "False", "FALSE"};
  for (auto w : kTrue) {
    if (v == w) {
      value = true;
      return true;
    }
  }
  for (auto w : kFalse) {
    if (v == w) {
      value = false;
      return true;
    }
  }
  return false;
}

// [-]digits[.digits][(e|E)[+-]digits], or [-].digits[...]: the float syntax (no inf/nan,
// no hex, no leading '+').
bool is_float_syntax(std::string_view v) {
  size_t i = 0;
  if (i < v.size() && v[i] == '-') ++i;
  size_t digits = 0;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++digits;
  if (i < v.size() && v[i] == '.') {
    ++i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == v.size();
}

bool is_integer_syntax(std::string_view v, bool allow_minus) {
  size_t i = 0;
  if (allow_minus && i < v.size() && v[i] == '-') ++i;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9') return false;
  }
  return true;
}

template <typename T>
bool to_number(std::string_view v, T& out) {
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && end == v.data() + v.size();
}

Status LineParser::parse_field_value(const std::string& key, size_t key_pos, ::agent::Point& point) {
  const size_t start = i_;
  const auto duplicate = [&]() -> bool {
    return point.fieldsdouble().contains(key) || point.fieldsint().contains(key) ||
           point.fieldsstring().contains(key) || point.fieldsbool().contains(key);
  };
  if (duplicate()) return error_at(key_pos, "duplicate field key " + quoted(key));
  if (!at_end() && peek() == '"') {
    std::string text;
    AGENTRY_RETURN_IF_ERROR(parse_string_value(text));
    (*point.mutable_fieldsstring())[key] = std::move(text);
    return Status::ok();
  }
  while (!at_end() && peek() != ',' && peek() != ' ') ++i_;
  const std::string_view v = s_.substr(start, i_ - start);
  if (v.empty()) return error_at(start, "missing value for field " + quoted(key));
  bool b = false;
  if (is_bool_word(v, b)) {
    (*point.mutable_fieldsbool())[key] = b;
    return Status::ok();
  }
  const char last = v.back();
  if (last == 'i') {
    const std::string_view digits = v.substr(0, v.size() - 1);
    int64_t n = 0;
    if (!is_integer_syntax(digits, true)) return error_at(start, "invalid integer " + quoted(v));
    if (!to_number(digits, n)) return error_at(start, "integer out of range " + quoted(v));
    (*point.mutable_fieldsint())[key] = n;
    return Status::ok();
  }
  if (last == 'u') {
    const std::string_view digits = v.substr(0, v.size() - 1);
    uint64_t n = 0;
    if (!is_integer_syntax(digits, false)) return error_at(start, "invalid unsigned integer " + quoted(v));
    if (!to_number(digits, n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return error_at(start, "unsigned integer " + quoted(v) + " does not fit in a UDF int field (int64)");
    }
    (*point.mutable_fieldsint())[key] = static_cast<int64_t>(n);
    return Status::ok();
  }
  if (!is_float_syntax(v)) return error_at(start, "invalid field value " + quoted(v));
  double d = 0;
  if (!to_number(v, d) || !std::isfinite(d)) return error_at(start, "float out of range " + quoted(v));
  (*point.mutable_fieldsdouble())[key] = d;
  return Status::ok();
}

Result<LineKind> LineParser::parse(const LineParseOptions& options, ::agent::Point& point) {
  if (!s_.empty() && s_.back() == '\r') s_.remove_suffix(1);
  while (!at_end() && (peek() == ' ' || peek() == '\t')) ++i_;
  if (at_end()) return LineKind::kBlank;
  if (peek() == '#') return LineKind::kComment;

  point.Clear();
  std::string text;

  // Measurement.
  const size_t name_pos = i_;
  read_element(kMeasurementSpecials, ", ", text);
  if (text.empty()) return error_at(name_pos, "missing measurement");
  point.set_name(std::move(text));

  // Tags.
  auto* tags = point.mutable_tags();
  while (!at_end() && peek() == ',') {
    ++i_;
    const size_t key_pos = i_;
    std::string key;
    read_element(kKeySpecials, ",= ", key);
    if (at_end() || peek() != '=') {
      if (key.empty()) return error_at(key_pos, "missing tag key after ','");
      return error_at(i_, "expected '=' after tag key " + quoted(key));
    }
    if (key.empty()) return error_at(key_pos, "empty tag key");
    ++i_;
    const size_t value_pos = i_;
    read_element(kKeySpecials, ",= ", text);
    if (!at_end() && peek() == '=') return error_at(i_, "unescaped '=' in the value of tag " + quoted(key));
    if (text.empty()) return error_at(value_pos, "empty value for tag " + quoted(key));
    if (!tags->try_emplace(key, std::move(text)).second) {
      return error_at(key_pos, "duplicate tag key " + quoted(key));
    }
  }
  if (at_end()) return error_at(i_, "missing fields (expected a space and field=value after the measurement and tags)");
  skip_spaces();
  if (at_end()) return error_at(i_, "missing fields");

  // Fields.
  for (;;) {
    const size_t key_pos = i_;
    std::string key;
    read_element(kKeySpecials, ",= ", key);
    if (at_end() || peek() != '=') {
      if (key.empty()) return error_at(key_pos, "missing field key");
      return error_at(i_, "expected '=' after field key " + quoted(key));
    }
    if (key.empty()) return error_at(key_pos, "empty field key");
    ++i_;
    AGENTRY_RETURN_IF_ERROR(parse_field_value(key, key_pos, point));
    if (at_end() || peek() == ' ') break;
    if (peek() != ',') return error_at(i_, "expected ',' or ' ' after the value of field " + quoted(key));
    ++i_;
  }

  // Timestamp.
  skip_spaces();
  if (at_end()) {
    if (options.default_time_ns) {
      point.set_time(*options.default_time_ns);
    } else {
      point.set_time(std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count());
    }
  } else {
    const size_t ts_pos = i_;
    while (!at_end() && peek() != ' ') ++i_;
    const std::string_view ts = s_.substr(ts_pos, i_ - ts_pos);
    int64_t t = 0;
    if (!is_integer_syntax(ts, true)) return error_at(ts_pos, "invalid timestamp " + quoted(ts));
    if (!to_number(ts, t)) return error_at(ts_pos, "timestamp out of range " + quoted(ts));
    const int64_t mult = precision_multiplier(options.precision);
    int64_t ns = 0;
    if (__builtin_mul_overflow(t, mult, &ns)) {
      return error_at(ts_pos, "timestamp " + quoted(ts) + " overflows int64 nanoseconds at precision " +
                                  std::string(precision_name(options.precision)));
    }
    point.set_time(ns);
    skip_spaces();
    if (!at_end()) return error_at(i_, "unexpected text after the timestamp");
  }

  if (!options.group_by.empty()) apply_group_by(point, options.group_by);
  return LineKind::kPoint;
}

// ---------------------------------------------------------------- writing

// Appends `v` escaped for an element whose special characters are `specials`; a backslash
// is doubled only where it would otherwise read as an escape.
void append_escaped(std::string& out, std::string_view v, std::string_view specials) {
  size_t run_start = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (c == '\\') {
      if (i + 1 == v.size() || is_special(v[i + 1], specials)) {
        out.append(v.substr(run_start, i + 1 - run_start));
        out.push_back('\\');
        run_start = i + 1;
      }
    } else if (specials.find(c) != std::string_view::npos) {
      out.append(v.substr(run_start, i - run_start));
      out.push_back('\\');
      out.push_back(c);
      run_start = i + 1;
    }
  }
  out.append(v.substr(run_start));
}

Status check_text(std::string_view what, std::string_view v) {
  if (v.empty()) return invalid_argument(std::string(what) + " is empty");
  if (v.find('\n') != std::string_view::npos) {
    return invalid_argument(std::string(what) + " " + quoted(v) +
                            " contains a newline, which line protocol cannot carry");
  }
  return Status::ok();
}

// Floor division, so that coarse timestamps of negative times still round-trip.
int64_t floor_div(int64_t a, int64_t b) noexcept {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

enum class FieldType : uint8_t { kDouble, kInt, kString, kBool };

struct FieldRef {
  const std::string* key;
  FieldType type;
  const void* value;
};

}  // namespace

Result<Precision> parse_precision(std::string_view name) {
  if (name == "ns") return Precision::kNanoseconds;
  if (name == "us" || name == "u") return Precision::kMicroseconds;
  if (name == "ms") return Precision::kMilliseconds;
  if (name == "s") return Precision::kSeconds;
  return invalid_argument("unknown precision " + quoted(name) + " (expected ns, us, ms or s)");
}

std::string_view precision_name(Precision precision) noexcept {
  switch (precision) {
    case Precision::kNanoseconds:
      return "ns";
    case Precision::kMicroseconds:
      return "us";
    case Precision::kMilliseconds:
      return "ms";
    case Precision::kSeconds:
      return "s";
  }
  return "ns";
}

int64_t precision_multiplier(Precision precision) noexcept {
  switch (precision) {
    case Precision::kNanoseconds:
      return 1;
    case Precision::kMicroseconds:
      return 1'000;
    case Precision::kMilliseconds:
      return 1'000'000;
    case Precision::kSeconds:
      return 1'000'000'000;
  }
  return 1;
}

std::vector<std::string> normalize_group_by(std::vector<std::string> keys) {
  std::erase_if(keys, [](const std::string& k) { return k.empty(); });
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::string group_id(const google::protobuf::Map<std::string, std::string>& tags,
                     std::span<const std::string> sorted_keys) {
  std::string id;
  for (size_t i = 0; i < sorted_keys.size(); ++i) {
    if (i != 0) id.push_back(',');
    id.append(sorted_keys[i]);
    id.push_back('=');
    const auto it = tags.find(sorted_keys[i]);
    if (it != tags.end()) id.append(it->second);
  }
  return id;
}

void apply_group_by(::agent::Point& point, std::span<const std::string> sorted_keys) {
  point.set_group(group_id(point.tags(), sorted_keys));
  point.clear_dimensions();
  for (const auto& k : sorted_keys) point.add_dimensions(k);
}

Result<LineKind> parse_line(std::string_view line, size_t line_number, const LineParseOptions& options,
                            ::agent::Point& point) {
  return LineParser(line, line_number).parse(options, point);
}

Status append_line(std::string& out, const ::agent::Point& point, Precision precision) {
  AGENTRY_RETURN_IF_ERROR(check_text("measurement", point.name()));
  if (point.name().front() == '#' || point.name().front() == '\t') {
    return invalid_argument("measurement " + quoted(point.name()) +
                            " starts with '#' or a tab, which would not read back as a point");
  }

  std::vector<const google::protobuf::MapPair<std::string, std::string>*> tags;
  tags.reserve(point.tags_size());
  for (const auto& kv : point.tags()) {
    AGENTRY_RETURN_IF_ERROR(check_text("tag key", kv.first));
    AGENTRY_RETURN_IF_ERROR(check_text("value of tag " + quoted(kv.first), kv.second));
    tags.push_back(&kv);
  }
  std::sort(tags.begin(), tags.end(), [](auto* a, auto* b) { return a->first < b->first; });

  std::vector<FieldRef> fields;
  fields.reserve(point.fieldsdouble_size() + point.fieldsint_size() + point.fieldsstring_size() +
                 point.fieldsbool_size());
  for (const auto& kv : point.fieldsdouble()) {
    if (!std::isfinite(kv.second)) {
      return invalid_argument("field " + quoted(kv.first) + " is " + (std::isnan(kv.second) ? "NaN" : "infinite") +
                              ", which line protocol cannot carry");
    }
    fields.push_back({&kv.first, FieldType::kDouble, &kv.second});
  }
  for (const auto& kv : point.fieldsint()) fields.push_back({&kv.first, FieldType::kInt, &kv.second});
  for (const auto& kv : point.fieldsstring()) {
    if (kv.second.find('\n') != std::string::npos) {
      return invalid_argument("string field " + quoted(kv.first) +
                              " contains a newline, which line protocol cannot carry");
    }
    fields.push_back({&kv.first, FieldType::kString, &kv.second});
  }
  for (const auto& kv : point.fieldsbool()) fields.push_back({&kv.first, FieldType::kBool, &kv.second});
  if (fields.empty()) return invalid_argument("point " + quoted(point.name()) + " has no fields");
  for (const auto& f : fields) AGENTRY_RETURN_IF_ERROR(check_text("field key", *f.key));
  // Keys are unique within one map; across maps the same key may appear twice (the wire
  // allows it), and then the order by type keeps the output deterministic.
  std::sort(fields.begin(), fields.end(), [](const FieldRef& a, const FieldRef& b) {
    if (*a.key != *b.key) return *a.key < *b.key;
    return a.type < b.type;
  });

  append_escaped(out, point.name(), kMeasurementSpecials);
  for (const auto* kv : tags) {
    out.push_back(',');
    append_escaped(out, kv->first, kKeySpecials);
    out.push_back('=');
    append_escaped(out, kv->second, kKeySpecials);
  }
  char num[64];
  for (size_t i = 0; i < fields.size(); ++i) {
    const FieldRef& f = fields[i];
    out.push_back(i == 0 ? ' ' : ',');
    append_escaped(out, *f.key, kKeySpecials);
    out.push_back('=');
    switch (f.type) {
      case FieldType::kDouble: {
        const auto r = std::to_chars(num, num + sizeof num, *static_cast<const double*>(f.value));
        out.append(num, r.ptr);
        break;
      }
      case FieldType::kInt: {
        const auto r = std::to_chars(num, num + sizeof num, *static_cast<const int64_t*>(f.value));
        out.append(num, r.ptr);
        out.push_back('i');
        break;
      }
      case FieldType::kString:
        out.push_back('"');
        append_escaped(out, *static_cast<const std::string*>(f.value), kStringSpecials);
        out.push_back('"');
        break;
      case FieldType::kBool:
        out.append(*static_cast<const bool*>(f.value) ? "true" : "false");
        break;
    }
  }
  out.push_back(' ');
  const auto r = std::to_chars(num, num + sizeof num, floor_div(point.time(), precision_multiplier(precision)));
  out.append(num, r.ptr);
  out.push_back('\n');
  return Status::ok();
}

Result<std::string> format_line(const ::agent::Point& point, Precision precision) {
  std::string out;
  AGENTRY_RETURN_IF_ERROR(append_line(out, point, precision));
  out.pop_back();
  return out;
}

}  // namespace agentry::udf
