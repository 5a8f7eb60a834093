// Fuzzes the line protocol reader and writer.
//
// The input is split into lines. Every line must either parse or fail with a message that
// names its line and column; a parsed point must format (the parser only produces what the
// writer can express), and the formatted line must parse back to a point that formats to
// the very same text (the written form is canonical). Group-by is on, so the group id code
// runs too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "agentry/udf/line_protocol.h"

namespace {

using agentry::udf::LineKind;
using agentry::udf::LineParseOptions;

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  LineParseOptions options;
  options.default_time_ns = 1;
  options.group_by = agentry::udf::normalize_group_by({"host", "a b"});
  ::agent::Point point;
  ::agent::Point again;
  size_t line_number = 0;
  for (size_t pos = 0; pos <= text.size();) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    const std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_number;

    auto kind = agentry::udf::parse_line(line, line_number, options, point);
    if (!kind.is_ok()) {
      const std::string prefix = "line " + std::to_string(line_number) + ", column ";
      check(kind.status().message().rfind(prefix, 0) == 0);
      continue;
    }
    if (*kind != LineKind::kPoint) continue;
    check(!point.name().empty());
    check(point.fieldsdouble_size() + point.fieldsint_size() + point.fieldsstring_size() +
              point.fieldsbool_size() > 0);
    check(point.dimensions_size() == 2);

    auto once = agentry::udf::format_line(point);
    check(once.is_ok());
    auto back = agentry::udf::parse_line(*once, 1, options, again);
    check(back.is_ok() && *back == LineKind::kPoint);
    check(again.name() == point.name());
    check(again.time() == point.time());
    check(again.group() == point.group());
    check(again.tags_size() == point.tags_size());
    for (const auto& [k, v] : point.tags()) check(again.tags().at(k) == v);
    for (const auto& [k, v] : point.fieldsstring()) check(again.fieldsstring().at(k) == v);
    auto twice = agentry::udf::format_line(again);
    check(twice.is_ok() && *twice == *once);
  }
  return 0;
}
