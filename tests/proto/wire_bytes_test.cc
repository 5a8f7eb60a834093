// Pins the exact bytes our .proto files put on the wire.
//
// Every expected byte string below was worked out by hand from the protobuf
// encoding rules (tag = field_number << 3 | wire_type; varint, fixed64 and
// length-delimited payloads) and the field numbers in
// shared/spec/wire-schemas.txt. None of them is produced by the code under
// test, so a renumbered field or a changed type shows up as a byte mismatch.
//
// Messages in the exact-bytes tests hold at most one entry per map: the order
// of map entries on the wire is not specified.

#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/unknown_field_set.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/proto/anyvalue.pb.h"
#include "agentry/proto/opamp.pb.h"
#include "agentry/proto/udf.pb.h"

namespace {

namespace op = opamp::proto;

// Turns "0a 01 ff" (spaces optional, either case) into raw bytes. A malformed
// literal is a bug in the test itself, so it fails the test loudly.
std::string FromHex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  int high = -1;
  for (char c : hex) {
    if (c == ' ') continue;
    const int n = nibble(c);
    if (n < 0) {
      ADD_FAILURE() << "bad hex digit '" << c << "' in test literal";
      return {};
    }
    if (high < 0) {
      high = n;
    } else {
      out.push_back(static_cast<char>(high * 16 + n));
      high = -1;
    }
  }
  if (high >= 0) ADD_FAILURE() << "odd number of hex digits in test literal";
  return out;
}

// Renders bytes as lower-case, space-separated hex pairs, so that a mismatch
// in EXPECT_EQ reads byte by byte.
std::string ToHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    if (i != 0) out.push_back(' ');
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

// Serializes `msg` and compares against the hand-written hex.
void ExpectBytes(const google::protobuf::Message& msg, std::string_view expected_hex) {
  std::string wire;
  ASSERT_TRUE(msg.SerializeToString(&wire));
  const std::string expected = FromHex(expected_hex);
  EXPECT_EQ(ToHex(wire), ToHex(expected)) << "message " << msg.GetTypeName();
  EXPECT_EQ(msg.ByteSizeLong(), expected.size()) << "message " << msg.GetTypeName();
}

// ---------------------------------------------------------------------------
// UDF (package agent)

TEST(UdfWire, PointByNameAndFieldsBoolUseTheirOwnNumbers) {
  agent::Point p;
  p.set_time(1);
  p.set_name("m");
  (*p.mutable_fieldsbool())["b"] = true;
  p.set_byname(true);
  // 08 01                time = 1
  // 12 01 6d             name = "m"
  // 58 01                byName (11, varint) = true
  // 62 05 0a 01 62 10 01 fieldsBool (12, length-delimited) entry {"b": true}
  ExpectBytes(p, "08 01  12 01 6d  58 01  62 05 0a 01 62 10 01");
}

TEST(UdfWire, KeepaliveRequestAndResponseUseField3) {
  agent::Request req;
  req.mutable_keepalive()->set_time(123);
  ExpectBytes(req, "1a 02 08 7b");

  agent::Response resp;
  resp.mutable_keepalive()->set_time(123);
  ExpectBytes(resp, "1a 02 08 7b");

  // A negative int64 is a ten-byte varint (no zigzag for int64).
  agent::Request neg;
  neg.mutable_keepalive()->set_time(-1);
  ExpectBytes(neg, "1a 0b 08 ff ff ff ff ff ff ff ff ff 01");

  // Selecting a oneof member that is itself empty still emits the tag.
  agent::Request zero;
  zero.mutable_keepalive();
  ExpectBytes(zero, "1a 00");
}

TEST(UdfWire, EmptyRequestKindsStillCarryTheirTag) {
  agent::Request info;
  info.mutable_info();
  ExpectBytes(info, "0a 00");

  agent::Request snapshot;
  snapshot.mutable_snapshot();
  ExpectBytes(snapshot, "22 00");

  agent::Request nothing;
  ExpectBytes(nothing, "");
}

TEST(UdfWire, BatchAndPointUseTwoByteTags) {
  agent::Request begin;
  begin.mutable_begin()->set_name("x");
  begin.mutable_begin()->set_size(2);
  begin.mutable_begin()->set_byname(true);
  // field 16, wire type 2 -> 130 -> varint 82 01
  ExpectBytes(begin, "82 01 07  0a 01 78  20 02  28 01");

  agent::Request point;
  point.mutable_point()->set_time(1);
  // field 17, wire type 2 -> 138 -> varint 8a 01
  ExpectBytes(point, "8a 01 02  08 01");

  agent::Request end;
  end.mutable_end()->set_tmax(5);
  // field 18, wire type 2 -> 146 -> varint 92 01
  ExpectBytes(end, "92 01 02  18 05");

  agent::Response resp_point;
  resp_point.mutable_point()->set_time(1);
  ExpectBytes(resp_point, "8a 01 02  08 01");
}

TEST(UdfWire, ResponseErrorAndInitResults) {
  agent::Response err;
  err.mutable_error()->set_error("x");
  ExpectBytes(err, "32 03  0a 01 78");

  agent::Response init;
  init.mutable_init()->set_success(false);
  init.mutable_init()->set_error("bad");
  ExpectBytes(init, "12 05  12 03 62 61 64");

  agent::Response restore;
  restore.mutable_restore()->set_success(true);
  ExpectBytes(restore, "2a 02  08 01");

  agent::Response snap;
  snap.mutable_snapshot()->set_snapshot(std::string("\x00\xff", 2));
  ExpectBytes(snap, "22 04  0a 02 00 ff");
}

TEST(UdfWire, OptionValueDurationIsField6) {
  agent::OptionValue v;
  v.set_type(agent::DURATION);
  v.set_durationvalue(5'000'000'000);  // 5 s in nanoseconds
  ExpectBytes(v, "08 04  30 80 e4 97 d0 12");

  // type BOOL is the zero value and is left out, but a oneof member set to
  // its default is still written.
  agent::OptionValue f;
  f.set_type(agent::BOOL);
  f.set_boolvalue(false);
  ExpectBytes(f, "10 00");

  agent::OptionValue d;
  d.set_type(agent::DOUBLE);
  d.set_doublevalue(1.5);
  ExpectBytes(d, "08 02  21 00 00 00 00 00 00 f8 3f");

  agent::OptionValue s;
  s.set_type(agent::STRING);
  s.set_stringvalue("avg");
  ExpectBytes(s, "08 03  2a 03 61 76 67");

  agent::OptionValue i;
  i.set_type(agent::INT);
  i.set_intvalue(300);
  ExpectBytes(i, "08 01  18 ac 02");
}

TEST(UdfWire, InfoResponseOptionsMapWithPackedValueTypes) {
  agent::InfoResponse info;
  info.set_wants(agent::STREAM);  // zero value: not written
  info.set_provides(agent::BATCH);
  auto& opt = (*info.mutable_options())["size"];
  opt.add_valuetypes(agent::INT);
  opt.add_valuetypes(agent::DURATION);
  // 10 01                    provides = BATCH
  // 1a 0c                    options entry, 12 bytes
  //   0a 04 73 69 7a 65      key "size"
  //   12 04                  value OptionInfo, 4 bytes
  //     0a 02 01 04          valueTypes packed: [INT, DURATION]
  ExpectBytes(info, "10 01  1a 0c  0a 04 73 69 7a 65  12 04  0a 02 01 04");
}

TEST(UdfWire, InitRequestOptionsAndIds) {
  agent::InitRequest init;
  auto* o = init.add_options();
  o->set_name("as");
  auto* v = o->add_values();
  v->set_type(agent::STRING);
  v->set_stringvalue("m");
  init.set_taskid("t");
  init.set_nodeid("n");
  // 0a 0b                    options[0], 11 bytes
  //   0a 02 61 73            name "as"
  //   12 05 08 03 2a 01 6d   values[0] = {STRING, "m"}
  // 12 01 74                 taskID
  // 1a 01 6e                 nodeID
  ExpectBytes(init, "0a 0b  0a 02 61 73  12 05 08 03 2a 01 6d  12 01 74  1a 01 6e");
}

// ---------------------------------------------------------------------------
// OpAMP (package opamp.proto)

TEST(OpampWire, AgentToServerIdentitySequenceAndCapabilities) {
  op::AgentToServer msg;
  std::string uid;
  for (int b = 1; b <= 16; ++b) uid.push_back(static_cast<char>(b));
  msg.set_instance_uid(uid);
  msg.set_sequence_num(1);
  msg.set_capabilities(op::AgentCapabilities_ReportsStatus | op::AgentCapabilities_AcceptsRemoteConfig |
                       op::AgentCapabilities_ReportsHeartbeat);
  ASSERT_EQ(msg.capabilities(), 8195U);
  ExpectBytes(msg,
              "0a 10 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10"
              "  10 01"
              "  20 83 40");
}

TEST(OpampWire, AgentToServerEmptySubmessagesAndFlags) {
  op::AgentToServer msg;
  msg.mutable_agent_disconnect();
  msg.set_flags(op::AgentToServerFlags_RequestInstanceUid);
  // Every capability bit at once: 0xffff -> varint ff ff 03.
  msg.set_capabilities(0xffff);
  ExpectBytes(msg, "20 ff ff 03  4a 00  50 01");
}

TEST(OpampWire, AgentDescriptionWithStringAttribute) {
  op::AgentToServer msg;
  auto* kv = msg.mutable_agent_description()->add_identifying_attributes();
  kv->set_key("service.name");
  kv->mutable_value()->set_string_value("agentryd");
  // 1a 1c                        agent_description, 28 bytes
  //   0a 1a                      identifying_attributes[0], 26 bytes
  //     0a 0c "service.name"
  //     12 0a                    value AnyValue, 10 bytes
  //       0a 08 "agentryd"
  ExpectBytes(msg,
              "1a 1c  0a 1a  0a 0c 73 65 72 76 69 63 65 2e 6e 61 6d 65"
              "  12 0a  0a 08 61 67 65 6e 74 72 79 64");
}

TEST(OpampWire, ComponentHealthTimesAreFixed64) {
  op::ComponentHealth h;
  h.set_healthy(true);
  h.set_start_time_unix_nano(0x0102030405060708ULL);
  ExpectBytes(h, "08 01  11 08 07 06 05 04 03 02 01");

  op::ComponentHealth t;
  t.set_start_time_unix_nano(1'700'000'000'000'000'000ULL);  // 0x17979cfe362a0000
  t.set_status("ok");
  t.set_status_time_unix_nano(1);
  ExpectBytes(t,
              "11 00 00 2a 36 fe 9c 97 17"
              "  22 02 6f 6b"
              "  29 01 00 00 00 00 00 00 00");
}

TEST(OpampWire, ComponentHealthMapAndAttributes) {
  op::ComponentHealth h;
  (*h.mutable_component_health_map())["c"].set_healthy(true);
  auto* attr = h.add_attributes();
  attr->set_key("k");
  attr->mutable_value()->set_int_value(1);
  // 32 07 0a 01 63 12 02 08 01   component_health_map (6) {"c": {healthy}}
  // 3a 07 0a 01 6b 12 02 18 01   attributes (7) [{k: int 1}]
  ExpectBytes(h, "32 07 0a 01 63 12 02 08 01  3a 07 0a 01 6b 12 02 18 01");
}

TEST(OpampWire, AnyValueEachKind) {
  op::AnyValue s;
  s.set_string_value("hi");
  ExpectBytes(s, "0a 02 68 69");

  op::AnyValue b;
  b.set_bool_value(true);
  ExpectBytes(b, "10 01");

  op::AnyValue bf;
  bf.set_bool_value(false);  // oneof member at its default is still written
  ExpectBytes(bf, "10 00");

  op::AnyValue i;
  i.set_int_value(300);
  ExpectBytes(i, "18 ac 02");

  op::AnyValue in;
  in.set_int_value(-2);
  ExpectBytes(in, "18 fe ff ff ff ff ff ff ff ff 01");

  op::AnyValue d;
  d.set_double_value(1.5);
  ExpectBytes(d, "21 00 00 00 00 00 00 f8 3f");

  op::AnyValue by;
  by.set_bytes_value(std::string("\x00\xff", 2));
  ExpectBytes(by, "3a 02 00 ff");

  op::AnyValue none;
  EXPECT_EQ(none.value_case(), op::AnyValue::VALUE_NOT_SET);
  ExpectBytes(none, "");
}

TEST(OpampWire, AnyValueNestedArrayAndKvlist) {
  op::AnyValue arr;
  arr.mutable_array_value()->add_values()->set_int_value(1);
  arr.mutable_array_value()->add_values()->set_string_value("a");
  // 2a 09                array_value (5), 9 bytes
  //   0a 02 18 01        values[0] = int 1
  //   0a 03 0a 01 61     values[1] = string "a"
  ExpectBytes(arr, "2a 09  0a 02 18 01  0a 03 0a 01 61");

  op::AnyValue kv;
  auto* entry = kv.mutable_kvlist_value()->add_values();
  entry->set_key("k");
  entry->mutable_value()->set_bool_value(true);
  // 32 09                kvlist_value (6), 9 bytes
  //   0a 07              values[0], 7 bytes
  //     0a 01 6b         key "k"
  //     12 02 10 01      value bool true
  ExpectBytes(kv, "32 09  0a 07  0a 01 6b  12 02 10 01");

  // An array inside a kvlist inside an array.
  op::AnyValue deep;
  auto* inner_kv = deep.mutable_array_value()->add_values()->mutable_kvlist_value()->add_values();
  inner_kv->set_key("k");
  inner_kv->mutable_value()->mutable_array_value()->add_values()->set_bool_value(true);
  // Built from the inside out:
  //   AnyValue{bool true}                       10 01                 2 bytes
  //   AnyValue{array_value{[that]}}             2a 04 0a 02 ..        6 bytes
  //   KeyValue{key "k", value that}             0a 01 6b 12 06 ..    11 bytes
  //   KeyValueList{[that]}                      0a 0b ..             13 bytes
  //   AnyValue{kvlist_value that}               32 0d ..             15 bytes
  //   ArrayValue{[that]}                        0a 0f ..             17 bytes
  //   AnyValue{array_value that}                2a 11 ..
  ExpectBytes(deep, "2a 11  0a 0f  32 0d  0a 0b  0a 01 6b  12 06  2a 04  0a 02 10 01");
}

TEST(OpampWire, ServerErrorResponseRetryInfo) {
  op::ServerErrorResponse err;
  err.set_type(op::ServerErrorResponseType_Unavailable);
  err.set_error_message("busy");
  err.mutable_retry_info()->set_retry_after_nanoseconds(1'000'000'000);
  EXPECT_EQ(err.Details_case(), op::ServerErrorResponse::kRetryInfo);
  // 08 02                      type = Unavailable
  // 12 04 "busy"               error_message
  // 1a 06 08 80 94 eb dc 03    retry_info (3) {1e9 ns}
  ExpectBytes(err, "08 02  12 04 62 75 73 79  1a 06 08 80 94 eb dc 03");

  op::ServerToAgent msg;
  msg.mutable_error_response()->set_type(op::ServerErrorResponseType_BadRequest);
  ExpectBytes(msg, "12 02 08 01");
}

TEST(OpampWire, RemoteConfigAndStatus) {
  op::ServerToAgent msg;
  auto& file = (*msg.mutable_remote_config()->mutable_config()->mutable_config_map())["c"];
  file.set_body("a: 1");
  file.set_content_type("text/yaml");
  msg.mutable_remote_config()->set_config_hash("h");
  // 1a 1d                          remote_config (3), 29 bytes
  //   0a 18                        config AgentConfigMap, 24 bytes
  //     0a 16                      config_map entry, 22 bytes
  //       0a 01 63                 key "c"
  //       12 11                    value AgentConfigFile, 17 bytes
  //         0a 04 "a: 1"
  //         12 09 "text/yaml"
  //   12 01 68                     config_hash "h"
  ExpectBytes(msg,
              "1a 1d  0a 18  0a 16  0a 01 63  12 11  0a 04 61 3a 20 31"
              "  12 09 74 65 78 74 2f 79 61 6d 6c  12 01 68");

  op::RemoteConfigStatus st;
  st.set_last_remote_config_hash("h");
  st.set_status(op::RemoteConfigStatuses_FAILED);
  st.set_error_message("e");
  ExpectBytes(st, "0a 01 68  10 03  1a 01 65");
}

TEST(OpampWire, PackageStatusDownloadDetails) {
  op::PackageStatus ps;
  ps.set_name("p");
  ps.set_status(op::PackageStatusEnum_Downloading);
  ps.mutable_download_details()->set_download_percent(1.5);
  // 0a 01 70                                name
  // 30 04                                   status (6) = Downloading
  // 42 09 09 00 00 00 00 00 00 f8 3f        download_details (8) {percent 1.5}
  ExpectBytes(ps, "0a 01 70  30 04  42 09  09 00 00 00 00 00 00 f8 3f");
}

// ---------------------------------------------------------------------------
// Decoding hand-written bytes

TEST(WireDecode, FullPointRoundTrips) {
  // Request{point{...}} with every Point field, in field-number order, so that
  // re-encoding must reproduce the input exactly.
  const std::string wire = FromHex(
      "8a 01 57"
      "  08 02"                                        // time = 2
      "  12 03 63 70 75"                               // name = "cpu"
      "  1a 02 64 62"                                  // database = "db"
      "  22 02 72 70"                                  // retentionPolicy = "rp"
      "  2a 06 68 6f 73 74 3d 61"                      // group = "host=a"
      "  32 04 68 6f 73 74"                            // dimensions = ["host"]
      "  3a 09 0a 04 68 6f 73 74 12 01 61"             // tags {host: a}
      "  42 0c 0a 01 66 11 00 00 00 00 00 00 f8 3f"    // fieldsDouble {f: 1.5}
      "  4a 0e 0a 01 69 10 ff ff ff ff ff ff ff ff ff 01"  // fieldsInt {i: -1}
      "  52 06 0a 01 73 12 01 76"                      // fieldsString {s: v}
      "  58 01"                                        // byName = true
      "  62 05 0a 01 62 10 01");                       // fieldsBool {b: true}
  agent::Request req;
  ASSERT_TRUE(req.ParseFromString(wire));
  ASSERT_EQ(req.message_case(), agent::Request::kPoint);
  const agent::Point& p = req.point();
  EXPECT_EQ(p.time(), 2);
  EXPECT_EQ(p.name(), "cpu");
  EXPECT_EQ(p.database(), "db");
  EXPECT_EQ(p.retentionpolicy(), "rp");
  EXPECT_EQ(p.group(), "host=a");
  ASSERT_EQ(p.dimensions_size(), 1);
  EXPECT_EQ(p.dimensions(0), "host");
  EXPECT_EQ(p.tags().at("host"), "a");
  EXPECT_EQ(p.fieldsdouble().at("f"), 1.5);
  EXPECT_EQ(p.fieldsint().at("i"), -1);
  EXPECT_EQ(p.fieldsstring().at("s"), "v");
  EXPECT_TRUE(p.fieldsbool().at("b"));
  EXPECT_TRUE(p.byname());

  std::string again;
  ASSERT_TRUE(req.SerializeToString(&again));
  EXPECT_EQ(ToHex(again), ToHex(wire));
}

TEST(WireDecode, FieldsBoolBeforeByNameOnTheWireIsAccepted) {
  // Other encoders may write fields in declaration order; the parser must not
  // care. fieldsBool (12) first, then byName (11).
  agent::Point p;
  ASSERT_TRUE(p.ParseFromString(FromHex("62 05 0a 01 62 10 00  58 01")));
  ASSERT_EQ(p.fieldsbool().count("b"), 1U);
  EXPECT_FALSE(p.fieldsbool().at("b"));
  EXPECT_TRUE(p.byname());

  // A map entry may leave out its key or its value; each then takes its
  // default ("" and false).
  agent::Point no_key;
  ASSERT_TRUE(no_key.ParseFromString(FromHex("62 02 10 01")));
  ASSERT_EQ(no_key.fieldsbool().count(""), 1U);
  EXPECT_TRUE(no_key.fieldsbool().at(""));
  agent::Point no_value;
  ASSERT_TRUE(no_value.ParseFromString(FromHex("62 03 0a 01 62")));
  ASSERT_EQ(no_value.fieldsbool().count("b"), 1U);
  EXPECT_FALSE(no_value.fieldsbool().at("b"));
}

TEST(WireDecode, UnpackedValueTypesAreAccepted) {
  // proto3 writes repeated enums packed, but parsers accept both forms.
  agent::OptionInfo packed;
  ASSERT_TRUE(packed.ParseFromString(FromHex("0a 02 01 04")));
  agent::OptionInfo unpacked;
  ASSERT_TRUE(unpacked.ParseFromString(FromHex("08 01 08 04")));
  for (const auto* info : {&packed, &unpacked}) {
    ASSERT_EQ(info->valuetypes_size(), 2);
    EXPECT_EQ(info->valuetypes(0), agent::INT);
    EXPECT_EQ(info->valuetypes(1), agent::DURATION);
  }
}

TEST(WireDecode, UnknownFieldsArePreservedAndCanBeDropped) {
  // KeepaliveResponse{time=123} followed by two fields it does not define:
  // field 99 varint 7 (tag 792 -> 98 06) and field 100 bytes "zz" (tag 802 -> a2 06).
  const std::string wire = FromHex("08 7b  98 06 07  a2 06 02 7a 7a");
  agent::KeepaliveResponse k;
  ASSERT_TRUE(k.ParseFromString(wire));
  EXPECT_EQ(k.time(), 123);
  const auto& unknown = k.GetReflection()->GetUnknownFields(k);
  ASSERT_EQ(unknown.field_count(), 2);
  EXPECT_EQ(unknown.field(0).number(), 99);
  EXPECT_EQ(unknown.field(0).varint(), 7U);
  EXPECT_EQ(unknown.field(1).number(), 100);
  EXPECT_EQ(unknown.field(1).length_delimited(), "zz");

  std::string again;
  ASSERT_TRUE(k.SerializeToString(&again));
  EXPECT_EQ(ToHex(again), ToHex(wire));

  k.DiscardUnknownFields();
  ASSERT_TRUE(k.SerializeToString(&again));
  EXPECT_EQ(ToHex(again), "08 7b");
}

TEST(WireDecode, NewerOpampPeerFieldsDoNotBreakParsing) {
  // AgentToServer with sequence_num = 5 and a field 16 we do not know about
  // (a length-delimited blob, tag 130 -> 82 01), then capabilities.
  const std::string wire = FromHex("10 05  82 01 03 01 02 03  20 01");
  op::AgentToServer msg;
  ASSERT_TRUE(msg.ParseFromString(wire));
  EXPECT_EQ(msg.sequence_num(), 5U);
  EXPECT_EQ(msg.capabilities(), 1U);
  EXPECT_EQ(msg.GetReflection()->GetUnknownFields(msg).field_count(), 1);
}

TEST(WireDecode, UnknownEnumNumbersAreKept) {
  // proto3 enums are open: status 7 is not a known RemoteConfigStatuses
  // value but must survive a parse/serialize cycle.
  const std::string wire = FromHex("10 07");
  op::RemoteConfigStatus st;
  ASSERT_TRUE(st.ParseFromString(wire));
  EXPECT_EQ(static_cast<int>(st.status()), 7);
  std::string again;
  ASSERT_TRUE(st.SerializeToString(&again));
  EXPECT_EQ(ToHex(again), "10 07");
}

TEST(WireDecode, ServerToAgentCommandAndFlags) {
  // flags = ReportFullState, capabilities = AcceptsStatus|OffersRemoteConfig,
  // command = {Restart} (type 0, so the sub-message is empty).
  op::ServerToAgent msg;
  ASSERT_TRUE(msg.ParseFromString(FromHex("30 01  38 03  4a 00")));
  EXPECT_EQ(msg.flags(), static_cast<std::uint64_t>(op::ServerToAgentFlags_ReportFullState));
  EXPECT_EQ(msg.capabilities(),
            static_cast<std::uint64_t>(op::ServerCapabilities_AcceptsStatus |
                                       op::ServerCapabilities_OffersRemoteConfig));
  ASSERT_TRUE(msg.has_command());
  EXPECT_EQ(msg.command().type(), op::CommandType_Restart);
  EXPECT_FALSE(msg.has_remote_config());
}

TEST(WireDecode, LaterOneofMemberWins) {
  // keepalive{time=1} then info{}: the last member seen is the one kept.
  agent::Request req;
  ASSERT_TRUE(req.ParseFromString(FromHex("1a 02 08 01  0a 00")));
  EXPECT_EQ(req.message_case(), agent::Request::kInfo);
}

TEST(WireDecode, TruncatedInputIsRejected) {
  agent::Request req;
  // keepalive claims 5 bytes, only 2 follow
  EXPECT_FALSE(req.ParseFromString(FromHex("1a 05 08 7b")));
  // varint cut off in the middle
  op::AgentToServer msg;
  EXPECT_FALSE(msg.ParseFromString(FromHex("20 83")));
  // fixed64 with only 4 of its 8 bytes
  op::ComponentHealth h;
  EXPECT_FALSE(h.ParseFromString(FromHex("11 01 02 03 04")));
}

TEST(WireDecode, ServerErrorResponseFromBytes) {
  op::ServerErrorResponse err;
  ASSERT_TRUE(err.ParseFromString(FromHex("08 02  1a 06 08 80 94 eb dc 03")));
  EXPECT_EQ(err.type(), op::ServerErrorResponseType_Unavailable);
  ASSERT_EQ(err.Details_case(), op::ServerErrorResponse::kRetryInfo);
  EXPECT_EQ(err.retry_info().retry_after_nanoseconds(), 1'000'000'000U);
}

// ---------------------------------------------------------------------------
// Names and enum values

TEST(Descriptors, FullNamesMatchUpstreamPackages) {
  EXPECT_EQ(agent::Point::descriptor()->full_name(), "agent.Point");
  EXPECT_EQ(agent::Request::descriptor()->full_name(), "agent.Request");
  EXPECT_EQ(op::AgentToServer::descriptor()->full_name(), "opamp.proto.AgentToServer");
  EXPECT_EQ(op::AnyValue::descriptor()->full_name(), "opamp.proto.AnyValue");
  EXPECT_EQ(op::AnyValue::descriptor()->file()->name(), "agentry/proto/anyvalue.proto");
  EXPECT_EQ(op::ComponentHealth::descriptor()->FindFieldByName("attributes")->number(), 7);
  EXPECT_EQ(agent::Point::descriptor()->FindFieldByName("fieldsBool")->number(), 12);
  EXPECT_EQ(agent::Point::descriptor()->FindFieldByName("byName")->number(), 11);
}

TEST(Descriptors, TextFormatWorks) {
  // Full (non-lite) runtime: reflection-based debug printing is available.
  agent::Point p;
  p.set_byname(true);
  std::string text;
  ASSERT_TRUE(google::protobuf::TextFormat::PrintToString(p, &text));
  EXPECT_EQ(text, "byName: true\n");
}

struct EnumRow {
  const char* enum_name;   // fully qualified
  const char* value_name;
  int expected;            // from wire-schemas.txt
  int generated;           // the C++ constant protoc produced
};

#define OPAMP_ROW(E, V, N) EnumRow{"opamp.proto." #E, #V, N, static_cast<int>(op::V)}
#define UDF_ROW(E, V, N) EnumRow{"agent." #E, #V, N, static_cast<int>(agent::V)}

const std::vector<EnumRow>& EnumTable() {
  static const std::vector<EnumRow> rows = {
      OPAMP_ROW(AgentToServerFlags, AgentToServerFlags_Unspecified, 0),
      OPAMP_ROW(AgentToServerFlags, AgentToServerFlags_RequestInstanceUid, 1),

      OPAMP_ROW(ServerToAgentFlags, ServerToAgentFlags_Unspecified, 0),
      OPAMP_ROW(ServerToAgentFlags, ServerToAgentFlags_ReportFullState, 1),
      OPAMP_ROW(ServerToAgentFlags, ServerToAgentFlags_ReportAvailableComponents, 2),

      OPAMP_ROW(ServerCapabilities, ServerCapabilities_Unspecified, 0),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_AcceptsStatus, 1),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_OffersRemoteConfig, 2),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_AcceptsEffectiveConfig, 4),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_OffersPackages, 8),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_AcceptsPackagesStatus, 16),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_OffersConnectionSettings, 32),
      OPAMP_ROW(ServerCapabilities, ServerCapabilities_AcceptsConnectionSettingsRequest, 64),

      OPAMP_ROW(PackageType, PackageType_TopLevel, 0),
      OPAMP_ROW(PackageType, PackageType_Addon, 1),

      OPAMP_ROW(ServerErrorResponseType, ServerErrorResponseType_Unknown, 0),
      OPAMP_ROW(ServerErrorResponseType, ServerErrorResponseType_BadRequest, 1),
      OPAMP_ROW(ServerErrorResponseType, ServerErrorResponseType_Unavailable, 2),

      OPAMP_ROW(CommandType, CommandType_Restart, 0),

      OPAMP_ROW(AgentCapabilities, AgentCapabilities_Unspecified, 0),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsStatus, 1),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_AcceptsRemoteConfig, 2),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsEffectiveConfig, 4),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_AcceptsPackages, 8),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsPackageStatuses, 16),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsOwnTraces, 32),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsOwnMetrics, 64),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsOwnLogs, 128),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_AcceptsOpAMPConnectionSettings, 256),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_AcceptsOtherConnectionSettings, 512),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_AcceptsRestartCommand, 1024),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsHealth, 2048),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsRemoteConfig, 4096),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsHeartbeat, 8192),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsAvailableComponents, 16384),
      OPAMP_ROW(AgentCapabilities, AgentCapabilities_ReportsConnectionSettingsStatus, 32768),

      OPAMP_ROW(ConnectionSettingsStatuses, ConnectionSettingsStatuses_UNSET, 0),
      OPAMP_ROW(ConnectionSettingsStatuses, ConnectionSettingsStatuses_APPLIED, 1),
      OPAMP_ROW(ConnectionSettingsStatuses, ConnectionSettingsStatuses_APPLYING, 2),
      OPAMP_ROW(ConnectionSettingsStatuses, ConnectionSettingsStatuses_FAILED, 3),

      OPAMP_ROW(RemoteConfigStatuses, RemoteConfigStatuses_UNSET, 0),
      OPAMP_ROW(RemoteConfigStatuses, RemoteConfigStatuses_APPLIED, 1),
      OPAMP_ROW(RemoteConfigStatuses, RemoteConfigStatuses_APPLYING, 2),
      OPAMP_ROW(RemoteConfigStatuses, RemoteConfigStatuses_FAILED, 3),

      OPAMP_ROW(PackageStatusEnum, PackageStatusEnum_Installed, 0),
      OPAMP_ROW(PackageStatusEnum, PackageStatusEnum_InstallPending, 1),
      OPAMP_ROW(PackageStatusEnum, PackageStatusEnum_Installing, 2),
      OPAMP_ROW(PackageStatusEnum, PackageStatusEnum_InstallFailed, 3),
      OPAMP_ROW(PackageStatusEnum, PackageStatusEnum_Downloading, 4),

      UDF_ROW(EdgeType, STREAM, 0),
      UDF_ROW(EdgeType, BATCH, 1),

      UDF_ROW(ValueType, BOOL, 0),
      UDF_ROW(ValueType, INT, 1),
      UDF_ROW(ValueType, DOUBLE, 2),
      UDF_ROW(ValueType, STRING, 3),
      UDF_ROW(ValueType, DURATION, 4),
  };
  return rows;
}

#undef OPAMP_ROW
#undef UDF_ROW

TEST(Enums, EveryValueHasItsTableNumber) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const auto& row : EnumTable()) {
    SCOPED_TRACE(std::string(row.enum_name) + "." + row.value_name);
    EXPECT_EQ(row.generated, row.expected);
    const auto* e = pool->FindEnumTypeByName(row.enum_name);
    ASSERT_NE(e, nullptr);
    const auto* v = e->FindValueByName(row.value_name);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->number(), row.expected);
  }
}

TEST(Enums, NoValuesBeyondTheTable) {
  // Count rows per enum and compare with the descriptor, so a value added to
  // a .proto without updating the table is caught.
  std::map<std::string, int> rows_per_enum;
  for (const auto& row : EnumTable()) ++rows_per_enum[row.enum_name];
  // Twelve enums: ten in opamp.proto, two in udf.proto.
  EXPECT_EQ(rows_per_enum.size(), 12U);
  EXPECT_EQ(op::AgentToServer::descriptor()->file()->enum_type_count(), 10);
  EXPECT_EQ(agent::Request::descriptor()->file()->enum_type_count(), 2);
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const auto& [name, rows] : rows_per_enum) {
    const auto* e = pool->FindEnumTypeByName(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(e->value_count(), rows) << name;
  }
}

}  // namespace
