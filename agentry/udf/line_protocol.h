// InfluxDB line protocol <-> UDF points, for `agentry udf run` and tests.
//
//   measurement[,tag=value...] field=value[,field=value...] [timestamp]
//
// Reading (parse_line) maps measurement -> Point.name, tags -> tags, a bare number ->
// fieldsDouble, `12i` and `12u` -> fieldsInt, `"text"` -> fieldsString, the boolean words
// -> fieldsBool, and the timestamp (scaled by the precision) -> time in nanoseconds.
// Errors name the place: "line 4, column 17: invalid integer \"12x\"" (columns count
// bytes from 1).
//
// Escaping. In the measurement a backslash escapes ',' and ' '; in tag keys, tag values
// and field keys it escapes ',', '=' and ' '. Everywhere (string field values included,
// where '"' is the special character) a doubled backslash stands for one backslash, and a
// backslash in front of any other character is an ordinary character. So Windows paths and
// similar data read naturally, and the writer only doubles a backslash when it would
// otherwise be taken as an escape (before a special character, before another backslash,
// or at the end of the element). format(parse(x)) reproduces the point exactly.
//
// Other rules: lines whose first non-blank character is '#' are comments; a line holding
// only blanks is reported as kBlank (the caller decides what it means: `agentry udf run
// --batch` ends a batch there); a trailing '\r' is ignored; empty keys, empty tag values,
// duplicate tag keys and duplicate field keys are errors; floats must be finite; a `u`
// value must fit in int64 (the UDF Point has no unsigned field).
//
// Group-by. Kapacitor gives every point the group id of its task's group-by and the list of
// group-by tag keys (Point.dimensions); UDFs such as moving_avg keep state per group. With
// LineParseOptions::group_by set, the parser fills both the same way: dimensions are the
// keys sorted, and the group id is "key=value" for each of them in that order, joined by
// ',' (a tag the point lacks contributes "key="). Without group-by, group is "" and
// dimensions are empty (Kapacitor's "nil group"). Example: group_by {host, dc} and tags
// dc=eu,host=a,cpu=0 give dimensions [dc, host] and group "dc=eu,host=a".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/proto/udf.pb.h"

namespace agentry::udf {

// Unit of the timestamps in the text. Points always carry nanoseconds.
enum class Precision : uint8_t { kNanoseconds, kMicroseconds, kMilliseconds, kSeconds };

// "ns", "us" (also "u"), "ms", "s"; anything else is kInvalidArgument naming the choices.
Result<Precision> parse_precision(std::string_view name);
std::string_view precision_name(Precision precision) noexcept;
// Nanoseconds per unit of `precision` (1, 1000, ...).
int64_t precision_multiplier(Precision precision) noexcept;

// Sorts the tag keys and drops duplicates and empty keys: the form group_id() expects.
std::vector<std::string> normalize_group_by(std::vector<std::string> keys);

// The group id of a point with `tags` under group-by keys `sorted_keys` (already
// normalized): "k1=v1,k2=v2"; "" when there are no keys.
std::string group_id(const google::protobuf::Map<std::string, std::string>& tags,
                     std::span<const std::string> sorted_keys);

// Sets point.dimensions and point.group from its tags (see the file comment).
void apply_group_by(::agent::Point& point, std::span<const std::string> sorted_keys);

struct LineParseOptions {
  Precision precision = Precision::kNanoseconds;
  // Group-by tag keys, normalized (normalize_group_by). Empty: no grouping.
  std::vector<std::string> group_by;
  // Time given to points written without a timestamp. Unset: the system clock at the
  // moment the line is parsed.
  std::optional<int64_t> default_time_ns;
};

enum class LineKind : uint8_t { kPoint, kBlank, kComment };

// Parses one line (without its '\n') into `point`, which is cleared first when the line
// holds a point. `line_number` (1-based) is only used in error messages. Blank and comment
// lines leave `point` untouched.
Result<LineKind> parse_line(std::string_view line, size_t line_number, const LineParseOptions& options,
                            ::agent::Point& point);

// Appends `point` as one line followed by '\n'. Tags and fields are written sorted by key,
// so the text is canonical. Database, retention policy, group, dimensions and byName are
// not part of the format and are not written. Errors (kInvalidArgument; nothing is
// appended): empty measurement, no fields, an empty key or tag value, a '\n' anywhere, a
// NaN or infinite float.
Status append_line(std::string& out, const ::agent::Point& point, Precision precision = Precision::kNanoseconds);

// The same line without the '\n'.
Result<std::string> format_line(const ::agent::Point& point, Precision precision = Precision::kNanoseconds);

}  // namespace agentry::udf
