#include "agentry/udf/line_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

namespace agentry::udf {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

LineParseOptions fixed_time() {
  LineParseOptions o;
  o.default_time_ns = 42;
  return o;
}

::agent::Point parse_ok(std::string_view line, const LineParseOptions& options = fixed_time()) {
  ::agent::Point p;
  auto kind = parse_line(line, 1, options, p);
  EXPECT_TRUE(kind.is_ok()) << line << ": " << kind.status().message();
  if (kind.is_ok()) {
    EXPECT_EQ(*kind, LineKind::kPoint) << line;
  }
  return p;
}

std::string parse_error(std::string_view line, size_t line_number = 1,
                        const LineParseOptions& options = fixed_time()) {
  ::agent::Point p;
  auto kind = parse_line(line, line_number, options, p);
  EXPECT_FALSE(kind.is_ok()) << "parsed: " << line;
  if (kind.is_ok()) return "";
  EXPECT_EQ(kind.status().code(), StatusCode::kInvalidArgument);
  return kind.status().message();
}

std::string format_ok(const ::agent::Point& p, Precision precision = Precision::kNanoseconds) {
  auto line = format_line(p, precision);
  EXPECT_TRUE(line.is_ok()) << line.status().message();
  return line.is_ok() ? *line : "";
}

TEST(LineProtocol, ParsesMeasurementTagsFieldsAndTimestamp) {
  const auto p = parse_ok("cpu,host=a,region=eu usage=0.5,count=3i,name=\"x\",up=true 1700000000000000000");
  EXPECT_EQ(p.name(), "cpu");
  ASSERT_EQ(p.tags_size(), 2);
  EXPECT_EQ(p.tags().at("host"), "a");
  EXPECT_EQ(p.tags().at("region"), "eu");
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("usage"), 0.5);
  EXPECT_EQ(p.fieldsint().at("count"), 3);
  EXPECT_EQ(p.fieldsstring().at("name"), "x");
  EXPECT_TRUE(p.fieldsbool().at("up"));
  EXPECT_EQ(p.time(), 1700000000000000000);
  EXPECT_EQ(p.group(), "");
  EXPECT_EQ(p.dimensions_size(), 0);
}

TEST(LineProtocol, FieldTypes) {
  const auto p = parse_ok("m a=1,b=-3,c=1e3,d=-1.5E-2,e=.5,f=7.,g=12i,h=-12i,i=12u,j=\"\",k=0i");
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("a"), 1.0);  // a bare number is a float
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("b"), -3.0);
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("c"), 1000.0);
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("d"), -0.015);
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("e"), 0.5);
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("f"), 7.0);
  EXPECT_EQ(p.fieldsint().at("g"), 12);
  EXPECT_EQ(p.fieldsint().at("h"), -12);
  EXPECT_EQ(p.fieldsint().at("i"), 12);
  EXPECT_EQ(p.fieldsstring().at("j"), "");
  EXPECT_EQ(p.fieldsint().at("k"), 0);
  EXPECT_EQ(p.time(), 42);  // no timestamp: the default time
}

TEST(LineProtocol, IntegerLimits) {
  EXPECT_EQ(parse_ok("m v=9223372036854775807i").fieldsint().at("v"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(parse_ok("m v=-9223372036854775808i").fieldsint().at("v"), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(parse_ok("m v=9223372036854775807u").fieldsint().at("v"), std::numeric_limits<int64_t>::max());
  EXPECT_THAT(parse_error("m v=9223372036854775808i"), HasSubstr("integer out of range"));
  EXPECT_THAT(parse_error("m v=9223372036854775808u"), HasSubstr("does not fit in a UDF int field"));
  EXPECT_THAT(parse_error("m v=-1u"), HasSubstr("invalid unsigned integer"));
  EXPECT_THAT(parse_error("m v=1.5i"), HasSubstr("invalid integer \"1.5i\""));
  EXPECT_THAT(parse_error("m v=1e999"), HasSubstr("float out of range"));
}

TEST(LineProtocol, EveryBooleanSpelling) {
  for (const char* t : {"t", "T", "true", "True", "TRUE"}) {
    EXPECT_TRUE(parse_ok(std::string("m v=") + t).fieldsbool().at("v")) << t;
  }
  for (const char* f : {"f", "F", "false", "False", "FALSE"}) {
    EXPECT_FALSE(parse_ok(std::string("m v=") + f).fieldsbool().at("v")) << f;
  }
  EXPECT_THAT(parse_error("m v=tRUE"), HasSubstr("invalid field value \"tRUE\""));
  EXPECT_THAT(parse_error("m v=yes"), HasSubstr("invalid field value"));
}

TEST(LineProtocol, Escapes) {
  // Measurement: comma and space.
  EXPECT_EQ(parse_ok(R"(my\ cpu\,x v=1)").name(), "my cpu,x");
  // '=' needs no escape in a measurement; a backslash before it stays.
  EXPECT_EQ(parse_ok(R"(a=b v=1)").name(), "a=b");
  EXPECT_EQ(parse_ok(R"(a\=b v=1)").name(), R"(a\=b)");
  // Tag keys and values: comma, equals, space.
  const auto p = parse_ok(R"(m,k\ 1\,x\=y=v\ 1\,2\=3 f\ 1\=\,=1)");
  EXPECT_EQ(p.tags().at("k 1,x=y"), "v 1,2=3");
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("f 1=,"), 1.0);
  // Backslashes: doubled is one; before an ordinary character it is itself.
  EXPECT_EQ(parse_ok(R"(m,path=C:\dir\file v=1)").tags().at("path"), R"(C:\dir\file)");
  EXPECT_EQ(parse_ok(R"(m,t=a\\ v=1)").tags().at("t"), R"(a\)");
  EXPECT_EQ(parse_ok(R"(m\\ v=1)").name(), R"(m\)");
  // String values: quote and backslash.
  const auto s = parse_ok(R"(m s="say \"hi\", a\\b, c\d, x=1 y")");
  EXPECT_EQ(s.fieldsstring().at("s"), R"(say "hi", a\b, c\d, x=1 y)");
}

TEST(LineProtocol, CommentsBlankLinesAndCarriageReturn) {
  ::agent::Point p;
  p.set_name("untouched");
  EXPECT_EQ(*parse_line("", 1, fixed_time(), p), LineKind::kBlank);
  EXPECT_EQ(*parse_line("   \t ", 1, fixed_time(), p), LineKind::kBlank);
  EXPECT_EQ(*parse_line("\r", 1, fixed_time(), p), LineKind::kBlank);
  EXPECT_EQ(*parse_line("# a comment, v=1", 1, fixed_time(), p), LineKind::kComment);
  EXPECT_EQ(*parse_line("  # indented", 1, fixed_time(), p), LineKind::kComment);
  EXPECT_EQ(p.name(), "untouched");
  EXPECT_EQ(parse_ok("m v=1 5\r").time(), 5);
}

TEST(LineProtocol, TimestampsAndPrecision) {
  EXPECT_EQ(parse_ok("m v=1 -5").time(), -5);
  LineParseOptions o = fixed_time();
  o.precision = Precision::kSeconds;
  EXPECT_EQ(parse_ok("m v=1 1700000000", o).time(), 1700000000000000000);
  o.precision = Precision::kMilliseconds;
  EXPECT_EQ(parse_ok("m v=1 1700000000123", o).time(), 1700000000123000000);
  o.precision = Precision::kMicroseconds;
  EXPECT_EQ(parse_ok("m v=1 7", o).time(), 7000);
  o.precision = Precision::kSeconds;
  EXPECT_THAT(parse_error("m v=1 9223372037", 1, o), HasSubstr("overflows int64 nanoseconds at precision s"));
  // Without a timestamp and without a default: the clock.
  LineParseOptions clock;
  ::agent::Point p;
  ASSERT_TRUE(parse_line("m v=1", 1, clock, p).is_ok());
  EXPECT_GT(p.time(), 1'600'000'000'000'000'000);

  EXPECT_EQ(*parse_precision("ns"), Precision::kNanoseconds);
  EXPECT_EQ(*parse_precision("us"), Precision::kMicroseconds);
  EXPECT_EQ(*parse_precision("u"), Precision::kMicroseconds);
  EXPECT_EQ(*parse_precision("ms"), Precision::kMilliseconds);
  EXPECT_EQ(*parse_precision("s"), Precision::kSeconds);
  EXPECT_THAT(parse_precision("h").status().message(), HasSubstr("expected ns, us, ms or s"));
}

TEST(LineProtocol, ErrorsNameLineAndColumn) {
  EXPECT_EQ(parse_error(",t=1 v=1", 3), "line 3, column 1: missing measurement");
  EXPECT_EQ(parse_error("m", 2), "line 2, column 2: missing fields (expected a space and field=value after the measurement and tags)");
  EXPECT_EQ(parse_error("m ", 2), "line 2, column 3: missing fields");
  EXPECT_EQ(parse_error("cpu,host v=1"), "line 1, column 9: expected '=' after tag key \"host\"");
  EXPECT_EQ(parse_error("cpu,=a v=1"), "line 1, column 5: empty tag key");
  EXPECT_EQ(parse_error("cpu, v=1"), "line 1, column 5: missing tag key after ','");
  EXPECT_EQ(parse_error("cpu,host= v=1"), "line 1, column 10: empty value for tag \"host\"");
  EXPECT_EQ(parse_error("cpu,host=a=b v=1"), "line 1, column 11: unescaped '=' in the value of tag \"host\"");
  EXPECT_EQ(parse_error("cpu,a=1,a=2 v=1"), "line 1, column 9: duplicate tag key \"a\"");
  EXPECT_EQ(parse_error("cpu v=1,v=2i"), "line 1, column 9: duplicate field key \"v\"");
  EXPECT_EQ(parse_error("cpu v"), "line 1, column 6: expected '=' after field key \"v\"");
  EXPECT_EQ(parse_error("cpu =1"), "line 1, column 5: empty field key");
  EXPECT_EQ(parse_error("cpu v="), "line 1, column 7: missing value for field \"v\"");
  EXPECT_EQ(parse_error("cpu v=,w=1"), "line 1, column 7: missing value for field \"v\"");
  EXPECT_EQ(parse_error("cpu v=abc"), "line 1, column 7: invalid field value \"abc\"");
  EXPECT_EQ(parse_error("cpu v=\"abc"), "line 1, column 7: unterminated string value (missing closing '\"')");
  EXPECT_EQ(parse_error("cpu v=\"a\"x"), "line 1, column 10: expected ',' or ' ' after the value of field \"v\"");
  EXPECT_EQ(parse_error("cpu v=1 12x"), "line 1, column 9: invalid timestamp \"12x\"");
  EXPECT_EQ(parse_error("cpu v=1 1 2"), "line 1, column 11: unexpected text after the timestamp");
  EXPECT_EQ(parse_error("cpu v=1 99999999999999999999"), "line 1, column 9: timestamp out of range \"99999999999999999999\"");
  EXPECT_EQ(parse_error("cpu v=1,"), "line 1, column 9: missing field key");
}

TEST(LineProtocol, ExtraSpacesBetweenSections) {
  const auto p = parse_ok("m,t=1   v=1   7  ");
  EXPECT_EQ(p.time(), 7);
  EXPECT_DOUBLE_EQ(p.fieldsdouble().at("v"), 1.0);
}

TEST(LineProtocol, GroupBy) {
  LineParseOptions o = fixed_time();
  o.group_by = normalize_group_by({"host", "dc", "", "host"});
  EXPECT_THAT(o.group_by, ElementsAre("dc", "host"));
  const auto p = parse_ok("cpu,host=a,dc=eu,cpu=0 v=1", o);
  EXPECT_EQ(p.group(), "dc=eu,host=a");
  EXPECT_THAT(p.dimensions(), ElementsAre("dc", "host"));
  const auto q = parse_ok("cpu,host=b v=1", o);
  EXPECT_EQ(q.group(), "dc=,host=b");
}

TEST(LineProtocol, FormatIsCanonical) {
  ::agent::Point p;
  p.set_name("cpu load");
  (*p.mutable_tags())["z"] = "1";
  (*p.mutable_tags())["a b"] = "x,y=z";
  (*p.mutable_fieldsdouble())["d"] = 0.1;
  (*p.mutable_fieldsint())["c"] = -7;
  (*p.mutable_fieldsstring())["b"] = "q\"uo\\te";
  (*p.mutable_fieldsbool())["a"] = false;
  p.set_time(1500);
  EXPECT_EQ(format_ok(p), R"(cpu\ load,a\ b=x\,y\=z,z=1 a=false,b="q\"uo\te",c=-7i,d=0.1 1500)");
  EXPECT_EQ(format_ok(p, Precision::kMicroseconds), R"(cpu\ load,a\ b=x\,y\=z,z=1 a=false,b="q\"uo\te",c=-7i,d=0.1 1)");
  p.set_time(-1500);  // floor, so that it reads back as an earlier time, never a later one
  EXPECT_THAT(format_ok(p, Precision::kMicroseconds), ::testing::EndsWith(" -2"));

  std::string out;
  ASSERT_TRUE(append_line(out, p).is_ok());
  EXPECT_EQ(out.back(), '\n');
}

TEST(LineProtocol, FormatDoublesShortestAndExact) {
  ::agent::Point p;
  p.set_name("m");
  for (double d : {5.0, 0.1, 1e21, -0.0, 1.7976931348623157e308, 5e-324, 0.30000000000000004}) {
    (*p.mutable_fieldsdouble())["v"] = d;
    const std::string line = format_ok(p);
    const auto back = parse_ok(line);
    EXPECT_EQ(std::signbit(back.fieldsdouble().at("v")), std::signbit(d));
    EXPECT_EQ(back.fieldsdouble().at("v"), d) << line;
  }
}

TEST(LineProtocol, FormatRefusesWhatCannotBeWritten) {
  ::agent::Point p;
  p.set_name("m");
  EXPECT_THAT(format_line(p).status().message(), HasSubstr("has no fields"));
  (*p.mutable_fieldsdouble())["v"] = std::nan("");
  EXPECT_THAT(format_line(p).status().message(), HasSubstr("is NaN"));
  (*p.mutable_fieldsdouble())["v"] = 1;
  (*p.mutable_tags())["t"] = "";
  EXPECT_THAT(format_line(p).status().message(), HasSubstr("is empty"));
  p.clear_tags();
  (*p.mutable_fieldsstring())["s"] = "two\nlines";
  EXPECT_THAT(format_line(p).status().message(), HasSubstr("newline"));
  p.clear_fieldsstring();
  p.set_name("#m");
  EXPECT_THAT(format_line(p).status().message(), HasSubstr("starts with '#'"));
  p.set_name("");
  EXPECT_THAT(format_line(p).status().message(), HasSubstr("measurement is empty"));
  std::string out = "keep";
  EXPECT_FALSE(append_line(out, p).is_ok());
  EXPECT_EQ(out, "keep");  // nothing appended on error
}

TEST(LineProtocol, RoundTrip) {
  const char* lines[] = {
      "cpu,host=a,region=eu usage=0.5,count=3i,name=\"x\",up=true 1700000000000000000",
      R"(my\ cpu\,x,k\ 1\,x\=y=v\ 1\,2\=3 f\ 1\=\,=1 5)",
      R"(m,path=C:\dir\file s="say \"hi\", a\\b, c\d" 0)",
      R"(m\\,t=a\\ s="end\\" -1)",
      R"(a=b,t=\\\, v=-0 9)",
      "m big=9223372036854775807i,small=-9223372036854775808i,f=1e+300 1",
  };
  for (const char* line : lines) {
    const auto p = parse_ok(line);
    const std::string once = format_ok(p);
    const auto q = parse_ok(once);
    EXPECT_EQ(p.SerializeAsString().size(), q.SerializeAsString().size()) << line;
    EXPECT_EQ(format_ok(q), once) << line;
    EXPECT_EQ(q.name(), p.name());
    EXPECT_EQ(q.tags().size(), p.tags().size());
    for (const auto& [k, v] : p.tags()) EXPECT_EQ(q.tags().at(k), v) << line;
    for (const auto& [k, v] : p.fieldsstring()) EXPECT_EQ(q.fieldsstring().at(k), v) << line;
    EXPECT_EQ(q.time(), p.time());
  }
  // A canonical line comes back byte for byte.
  const std::string canonical = R"(cpu,host=a,region=eu count=3i,name="x",up=true,usage=0.5 1700000000000000000)";
  EXPECT_EQ(format_ok(parse_ok(canonical)), canonical);
}

}  // namespace
}  // namespace agentry::udf
