// Payload codecs of the management protocol: bytes written the way cliwrap's Go peer writes
// them (vmihailenco/msgpack: structs as maps in field order, `int` as a fixed-width int64,
// uint8 as 0xcc, uint64 as 0xcf, nil slices as nil), every integer width, error messages,
// limits, and round trips of every payload.
#include "agentry/mgmt/protocol.h"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <msgpack.hpp>

namespace agentry::mgmt {
namespace {

using ::testing::HasSubstr;

// Builds byte strings from a mix of byte values and text, so that test vectors read like
// the MessagePack they spell: bytes({0x81, 0xa2}) + "id".
std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(static_cast<uint8_t>(v)));
  return out;
}

// A fixstr: 0xa0 | length, then the text.
std::string fixstr(std::string_view s) { return bytes({0xa0 | static_cast<int>(s.size())}) + std::string(s); }

// Big-endian fixed-width integer after a type byte, as Go writes int (0xd3) and uint64 (0xcf).
std::string fixed(int type_byte, uint64_t value, int width) {
  std::string out = bytes({type_byte});
  for (int i = width - 1; i >= 0; --i) out.push_back(static_cast<char>(static_cast<uint8_t>(value >> (8 * i))));
  return out;
}

std::string go_int(int64_t v) { return fixed(0xd3, static_cast<uint64_t>(v), 8); }
std::string go_uint64(uint64_t v) { return fixed(0xcf, v, 8); }

// cliwrap's ListEntry{ID, Name, State, ChildPID int, RSS uint64} as the Go encoder writes it.
std::string go_list_entry(std::string_view id, std::string_view name, std::string_view state, int64_t pid,
                          uint64_t rss) {
  return bytes({0x85}) + fixstr("id") + fixstr(id) + fixstr("name") + fixstr(name) + fixstr("state") + fixstr(state) +
         fixstr("pid") + go_int(pid) + fixstr("rss") + go_uint64(rss);
}

// ------------------------------------------------------------------ cliwrap's bytes

TEST(ProtocolGoBytes, StatusRequest) {
  const std::string payload = bytes({0x81, 0xa2, 'i', 'd', 0xa3, 'w', 'e', 'b'});
  auto req = decode_id_request(payload, MsgType::kStatusRequest);
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->id, "web");
  // Our encoder writes the very same bytes.
  EXPECT_EQ(encode_to_string(IdRequest{"web"}), payload);
}

TEST(ProtocolGoBytes, StartAndStopRequestsShareTheShape) {
  const std::string payload = bytes({0x81}) + fixstr("id") + fixstr("worker-1");
  for (MsgType type : {MsgType::kStartRequest, MsgType::kStopRequest, MsgType::kRestartRequest}) {
    auto req = decode_id_request(payload, type);
    ASSERT_TRUE(req.is_ok()) << req.status().to_string();
    EXPECT_EQ(req->id, "worker-1");
  }
}

TEST(ProtocolGoBytes, LogsRequestWithUint8Stream) {
  const std::string payload =
      bytes({0x83, 0xa2, 0x69, 0x64, 0xa3, 'w', 'e', 'b', 0xa1, 's', 0xcc, 0x01, 0xa1, 'f', 0xc3});
  auto req = decode_logs_request(payload);
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->id, "web");
  EXPECT_EQ(req->stream, 1);
  EXPECT_TRUE(req->follow);
}

TEST(ProtocolGoBytes, ListResponseWithFixedWidthIntegers) {
  const std::string payload = bytes({0x81}) + fixstr("entries") + bytes({0x92}) +
                              go_list_entry("web", "Web server", "running", 4242, uint64_t{1} << 40) +
                              go_list_entry("db", "Database", "stopped", 0, 0);
  auto resp = decode_list_response(payload);
  ASSERT_TRUE(resp.is_ok()) << resp.status().to_string();
  ASSERT_EQ(resp->entries.size(), 2u);
  EXPECT_EQ(resp->entries[0].id, "web");
  EXPECT_EQ(resp->entries[0].name, "Web server");
  EXPECT_EQ(resp->entries[0].state, "running");
  EXPECT_EQ(resp->entries[0].pid, 4242);
  EXPECT_EQ(resp->entries[0].rss, uint64_t{1} << 40);
  EXPECT_EQ(resp->entries[0].cpu, 0.0);  // extension keys absent: defaults
  EXPECT_EQ(resp->entries[1].state, "stopped");
}

TEST(ProtocolGoBytes, ListResponseWithNilEntries) {
  // A Go nil slice is encoded as nil.
  auto resp = decode_list_response(bytes({0x81}) + fixstr("entries") + bytes({0xc0}));
  ASSERT_TRUE(resp.is_ok()) << resp.status().to_string();
  EXPECT_TRUE(resp->entries.empty());
}

TEST(ProtocolGoBytes, StatusResponse) {
  const std::string payload =
      bytes({0x82}) + fixstr("entry") + go_list_entry("web", "Web", "crashed", -1, 7) + fixstr("err") + fixstr("boom");
  auto resp = decode_status_response(payload);
  ASSERT_TRUE(resp.is_ok()) << resp.status().to_string();
  EXPECT_EQ(resp->entry.id, "web");
  EXPECT_EQ(resp->entry.pid, -1);
  EXPECT_EQ(resp->entry.rss, 7u);
  EXPECT_EQ(resp->err, "boom");
  EXPECT_EQ(resp->code, "");
  // Without our `code` key, an error reads as FAILED_PRECONDITION.
  EXPECT_EQ(resp->to_status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(resp->to_status().message(), "boom");
}

TEST(ProtocolGoBytes, EventsSubscribe) {
  auto some = decode_events_subscribe(bytes({0x81}) + fixstr("pids") + bytes({0x92}) + fixstr("a") + fixstr("b"));
  ASSERT_TRUE(some.is_ok()) << some.status().to_string();
  EXPECT_EQ(some->ids, (std::vector<std::string>{"a", "b"}));
  auto all = decode_events_subscribe(bytes({0x81}) + fixstr("pids") + bytes({0xc0}));
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  EXPECT_TRUE(all->ids.empty());
}

TEST(ProtocolGoBytes, EventsStream) {
  const int64_t ts = 1712345678901234567;
  const std::string payload = bytes({0x84}) + fixstr("pid") + fixstr("web") + fixstr("t") + fixstr("process.started") +
                              fixstr("ts") + go_int(ts) + fixstr("sum") + fixstr("process.started web");
  auto event = decode_event(payload);
  ASSERT_TRUE(event.is_ok()) << event.status().to_string();
  EXPECT_EQ(event->process_id, "web");
  EXPECT_EQ(event->type, "process.started");
  EXPECT_EQ(event->ts_ns, ts);
  EXPECT_EQ(event->summary, "process.started web");
  EXPECT_EQ(event->exit_code, -1);  // extension defaults
  EXPECT_EQ(event->signal, 0);
}

TEST(ProtocolGoBytes, LogsStreamWithBinAndNilData) {
  const std::string with_data = bytes({0x84}) + fixstr("id") + fixstr("web") + fixstr("s") + bytes({0xcc, 0x00}) +
                                fixstr("d") + bytes({0xc4, 0x05}) + "hello" + fixstr("eof") + bytes({0xc3});
  auto chunk = decode_logs_stream(with_data);
  ASSERT_TRUE(chunk.is_ok()) << chunk.status().to_string();
  EXPECT_EQ(chunk->data, "hello");
  EXPECT_TRUE(chunk->eof);

  const std::string nil_data = bytes({0x84}) + fixstr("id") + fixstr("web") + fixstr("s") + bytes({0xcc, 0x01}) +
                               fixstr("d") + bytes({0xc0}) + fixstr("eof") + bytes({0xc2});
  chunk = decode_logs_stream(nil_data);
  ASSERT_TRUE(chunk.is_ok()) << chunk.status().to_string();
  EXPECT_EQ(chunk->stream, 1);
  EXPECT_EQ(chunk->data, "");
  EXPECT_FALSE(chunk->eof);
}

TEST(ProtocolGoBytes, ListRequestHasNoPayload) {
  EXPECT_TRUE(decode_empty_request("", MsgType::kListRequest).is_ok());
  EXPECT_TRUE(decode_empty_request(bytes({0xc0}), MsgType::kListRequest).is_ok());  // msgpack.Marshal(nil)
  EXPECT_TRUE(decode_empty_request(bytes({0x80}), MsgType::kListRequest).is_ok());
  auto bad = decode_empty_request(bytes({0x90}), MsgType::kReloadRequest);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message(), "ReloadRequest: expected a map, got array");
}

// ------------------------------------------------------------------ our encoding

TEST(ProtocolEncoding, LogsStreamSendsDataAsBin) {
  const std::string payload = encode_to_string(LogsStream{"web", 1, "abc", true});
  const std::string expected = bytes({0x84}) + fixstr("id") + fixstr("web") + fixstr("s") + bytes({0x01}) +
                               fixstr("d") + bytes({0xc4, 0x03}) + "abc" + fixstr("eof") + bytes({0xc3});
  EXPECT_EQ(payload, expected);
}

TEST(ProtocolEncoding, ListEntryStartsWithCliwrapKeysInOrder) {
  ListEntry e;
  e.id = "web";
  e.pid = 300;
  e.rss = 70000;
  const std::string payload = encode_to_string(e);
  msgpack::object_handle oh = msgpack::unpack(payload.data(), payload.size());
  const msgpack::object& root = oh.get();
  ASSERT_EQ(root.type, msgpack::type::MAP);
  ASSERT_EQ(root.via.map.size, 13u);
  const char* expected_keys[] = {"id",    "name", "state", "pid",    "rss", "cpu", "restarts",
                                 "since", "exit", "error", "source", "cmd", "next"};
  for (uint32_t i = 0; i < root.via.map.size; ++i) {
    EXPECT_EQ(root.via.map.ptr[i].key.as<std::string>(), expected_keys[i]);
  }
  EXPECT_EQ(root.via.map.ptr[3].val.as<int64_t>(), 300);
  EXPECT_EQ(root.via.map.ptr[4].val.as<uint64_t>(), 70000u);
}

TEST(ProtocolEncoding, CpuIsAlwaysAFloat64) {
  // Even integral values, and values at the edge of uint64 (where msgpack-cxx's own
  // pack_double would misbehave).
  for (double cpu : {0.0, 2.0, 18446744073709551615.0, -1.5}) {
    ListEntry e;
    e.cpu = cpu;
    const std::string payload = encode_to_string(e);
    msgpack::object_handle oh = msgpack::unpack(payload.data(), payload.size());
    const msgpack::object& value = oh.get().via.map.ptr[5].val;
    EXPECT_EQ(value.type, msgpack::type::FLOAT64) << cpu;
    EXPECT_EQ(value.via.f64, cpu);
  }
}

TEST(ProtocolEncoding, StatusResponseCarriesCodeOnlyOnError) {
  const std::string ok = encode_to_string(StatusResponse::from_status(Status::ok()));
  msgpack::object_handle oh = msgpack::unpack(ok.data(), ok.size());
  EXPECT_EQ(oh.get().via.map.size, 2u);

  const StatusResponse failed = StatusResponse::from_status(not_found("no process 'x'"));
  EXPECT_EQ(failed.err, "no process 'x'");
  EXPECT_EQ(failed.code, "NOT_FOUND");
  auto decoded = decode_status_response(encode_to_string(failed));
  ASSERT_TRUE(decoded.is_ok()) << decoded.status().to_string();
  EXPECT_EQ(decoded->to_status(), not_found("no process 'x'"));
}

// ------------------------------------------------------------------ integer widths

class IntegerWidths : public ::testing::TestWithParam<std::pair<std::string, int64_t>> {};

TEST_P(IntegerWidths, PidDecodesFromEveryEncoding) {
  const auto& [encoded, value] = GetParam();
  const std::string payload = bytes({0x81}) + fixstr("pid") + encoded;
  auto entry = decode_list_entry(payload);
  ASSERT_TRUE(entry.is_ok()) << entry.status().to_string();
  EXPECT_EQ(entry->pid, value);
}

INSTANTIATE_TEST_SUITE_P(AllWidths, IntegerWidths,
                         ::testing::Values(std::pair{bytes({0x07}), int64_t{7}},                   // positive fixint
                                           std::pair{bytes({0xff}), int64_t{-1}},                  // negative fixint
                                           std::pair{bytes({0xcc, 0xc8}), int64_t{200}},           // uint8
                                           std::pair{bytes({0xcd, 0x12, 0x34}), int64_t{0x1234}},  // uint16
                                           std::pair{bytes({0xce, 0x00, 0x01, 0x00, 0x00}), int64_t{65536}},  // uint32
                                           std::pair{fixed(0xcf, 5000000000, 8), int64_t{5000000000}},        // uint64
                                           std::pair{bytes({0xd0, 0x80}), int64_t{-128}},                     // int8
                                           std::pair{bytes({0xd1, 0xff, 0x00}), int64_t{-256}},               // int16
                                           std::pair{bytes({0xd2, 0xff, 0xff, 0xff, 0xfe}), int64_t{-2}},     // int32
                                           std::pair{go_int(123456), int64_t{123456}},  // int64, positive
                                           std::pair{go_int(std::numeric_limits<int64_t>::min()),
                                                     std::numeric_limits<int64_t>::min()}));  // int64, negative

TEST(ProtocolIntegers, UnsignedFieldsAcceptSignedEncodingsOfNonNegativeValues) {
  // A peer may write rss with a signed format; the value is what counts.
  auto entry = decode_list_entry(bytes({0x81}) + fixstr("rss") + go_int(4096));
  ASSERT_TRUE(entry.is_ok()) << entry.status().to_string();
  EXPECT_EQ(entry->rss, 4096u);
  entry = decode_list_entry(bytes({0x81}) + fixstr("rss") + go_uint64(std::numeric_limits<uint64_t>::max()));
  ASSERT_TRUE(entry.is_ok());
  EXPECT_EQ(entry->rss, std::numeric_limits<uint64_t>::max());
}

TEST(ProtocolIntegers, NegativeForUnsignedIsAnError) {
  auto entry = decode_list_entry(bytes({0x81}) + fixstr("rss") + go_int(-5));
  ASSERT_FALSE(entry.is_ok());
  EXPECT_EQ(entry.status().message(), "ListEntry.rss: expected an unsigned integer, got -5");
}

TEST(ProtocolIntegers, OutOfRangeValuesAreErrors) {
  auto entry = decode_list_entry(bytes({0x81}) + fixstr("pid") + go_uint64(uint64_t{1} << 63));
  ASSERT_FALSE(entry.is_ok());
  EXPECT_THAT(entry.status().message(), HasSubstr("ListEntry.pid: 9223372036854775808 is out of range"));

  auto sig = decode_signal_request(bytes({0x81}) + fixstr("sig") + go_int(int64_t{1} << 40));
  ASSERT_FALSE(sig.is_ok());
  EXPECT_THAT(sig.status().message(), HasSubstr("SignalRequest.sig: 1099511627776 is out of range"));

  auto restarts = decode_list_entry(bytes({0x81}) + fixstr("restarts") + go_uint64(uint64_t{1} << 32));
  ASSERT_FALSE(restarts.is_ok());
  EXPECT_THAT(restarts.status().message(), HasSubstr("ListEntry.restarts: 4294967296 is out of range (0..4294967295)"));
}

TEST(ProtocolIntegers, FloatFieldTakesIntegersToo) {
  auto entry = decode_list_entry(bytes({0x82}) + fixstr("cpu") + bytes({0x02}) + fixstr("pid") + bytes({0x01}));
  ASSERT_TRUE(entry.is_ok());
  EXPECT_EQ(entry->cpu, 2.0);
  entry = decode_list_entry(bytes({0x81}) + fixstr("cpu") + bytes({0xca, 0x3f, 0xc0, 0x00, 0x00}));  // float32 1.5
  ASSERT_TRUE(entry.is_ok());
  EXPECT_EQ(entry->cpu, 1.5);
}

// ------------------------------------------------------------------ leniency and errors

TEST(ProtocolDecoding, TypeMismatchNamesTheField) {
  auto req = decode_logs_request(bytes({0x82}) + fixstr("id") + fixstr("web") + fixstr("s") + fixstr("out"));
  ASSERT_FALSE(req.is_ok());
  EXPECT_EQ(req.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(req.status().message(), "LogsRequest.s: expected an unsigned integer, got string");

  auto follow = decode_logs_request(bytes({0x81}) + fixstr("f") + bytes({0x01}));
  ASSERT_FALSE(follow.is_ok());
  EXPECT_EQ(follow.status().message(), "LogsRequest.f: expected a boolean, got unsigned integer");

  auto id = decode_id_request(bytes({0x81}) + fixstr("id") + bytes({0x05}), MsgType::kStopRequest);
  ASSERT_FALSE(id.is_ok());
  EXPECT_EQ(id.status().message(), "StopRequest.id: expected a string, got unsigned integer");
}

TEST(ProtocolDecoding, NestedErrorsGiveThePath) {
  const std::string payload = bytes({0x81}) + fixstr("entries") + bytes({0x92}) +
                              go_list_entry("a", "A", "running", 1, 1) + bytes({0x81}) + fixstr("pid") + fixstr("nope");
  auto resp = decode_list_response(payload);
  ASSERT_FALSE(resp.is_ok());
  EXPECT_EQ(resp.status().message(), "ListResponse.entries[1].pid: expected an integer, got string");

  auto subscribe =
      decode_events_subscribe(bytes({0x81}) + fixstr("pids") + bytes({0x92}) + fixstr("a") + bytes({0xc3}));
  ASSERT_FALSE(subscribe.is_ok());
  EXPECT_EQ(subscribe.status().message(), "EventsSubscribe.pids[1]: expected a string, got boolean");
}

TEST(ProtocolDecoding, StreamAboveOneIsOutOfRange) {
  auto req = decode_logs_request(bytes({0x82}) + fixstr("id") + fixstr("web") + fixstr("s") + bytes({0xcc, 0x02}));
  ASSERT_FALSE(req.is_ok());
  EXPECT_EQ(req.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(req.status().message(), "LogsRequest.s: stream 2 is not 0 (stdout) or 1 (stderr)");

  auto chunk = decode_logs_stream(bytes({0x81}) + fixstr("s") + bytes({0x07}));
  ASSERT_FALSE(chunk.is_ok());
  EXPECT_EQ(chunk.status().message(), "LogsStream.s: stream 7 is not 0 (stdout) or 1 (stderr)");
}

TEST(ProtocolDecoding, UnknownKeysAreIgnored) {
  // Unknown string keys with values of any shape, plus a non-string key.
  const std::string payload = bytes({0x85}) + fixstr("zz") + bytes({0x93, 0x01, 0xc0, 0x81, 0xa1, 'k', 0xc3}) +
                              fixstr("id") + fixstr("web") + bytes({0x07}) + fixstr("seven") + fixstr("ext") +
                              bytes({0xd4, 0x01, 0x00}) + fixstr("other") + bytes({0xcb, 0, 0, 0, 0, 0, 0, 0, 0});
  auto req = decode_id_request(payload, MsgType::kStatusRequest);
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->id, "web");
}

TEST(ProtocolDecoding, MissingKeysAndNilsMeanDefaults) {
  auto req = decode_logs_request(bytes({0x80}));
  ASSERT_TRUE(req.is_ok());
  EXPECT_EQ(*req, LogsRequest{});
  auto entry = decode_list_entry(bytes({0x83}) + fixstr("id") + bytes({0xc0}) + fixstr("pid") + bytes({0xc0}) +
                                 fixstr("name") + fixstr("n"));
  ASSERT_TRUE(entry.is_ok());
  EXPECT_EQ(entry->id, "");
  EXPECT_EQ(entry->pid, 0);
  EXPECT_EQ(entry->name, "n");
}

TEST(ProtocolDecoding, StringsMayArriveAsBin) {
  auto req = decode_id_request(bytes({0x81}) + fixstr("id") + bytes({0xc4, 0x03}) + "web", MsgType::kStatusRequest);
  ASSERT_TRUE(req.is_ok());
  EXPECT_EQ(req->id, "web");
  // ...and str8/str16 forms are fine too.
  auto wide =
      decode_id_request(bytes({0x81}) + fixstr("id") + bytes({0xda, 0x00, 0x03}) + "web", MsgType::kStatusRequest);
  ASSERT_TRUE(wide.is_ok());
  EXPECT_EQ(wide->id, "web");
}

TEST(ProtocolDecoding, MalformedInput) {
  struct Case {
    std::string payload;
    std::string message;
  };
  const Case cases[] = {
      {"", "StatusRequest: empty payload, expected a MessagePack map"},
      {bytes({0x92, 0x01, 0x02}), "StatusRequest: expected a map, got array"},
      {bytes({0xa3, 'a', 'b', 'c'}), "StatusRequest: expected a map, got string"},
      {bytes({0xc1}), "StatusRequest: not valid MessagePack (bad byte at offset 0)"},
      {bytes({0x81, 0xa2, 'i', 'd', 0xa3, 'w'}), "StatusRequest: the payload ends inside a MessagePack value"},
      {bytes({0x80, 0x00, 0x00}), "StatusRequest: 2 stray bytes after the MessagePack value"},
  };
  for (const Case& c : cases) {
    auto req = decode_id_request(c.payload, MsgType::kStatusRequest);
    ASSERT_FALSE(req.is_ok()) << c.message;
    EXPECT_EQ(req.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(req.status().message(), c.message);
  }
}

TEST(ProtocolDecoding, HugeDeclaredSizesAreRefusedUpFront) {
  // Five bytes claiming four billion elements: refused without allocating for them.
  auto arr = decode_list_response(bytes({0x81}) + fixstr("entries") + bytes({0xdd, 0xff, 0xff, 0xff, 0xff}));
  ASSERT_FALSE(arr.is_ok());
  EXPECT_THAT(arr.status().message(), HasSubstr("containers declare"));
  auto map = decode_list_entry(bytes({0xdf, 0x7f, 0xff, 0xff, 0xff}));
  ASSERT_FALSE(map.is_ok());
  EXPECT_THAT(map.status().message(), HasSubstr("containers declare"));
  auto str =
      decode_id_request(bytes({0x81}) + fixstr("id") + bytes({0xdb, 0xff, 0xff, 0xff, 0xff}), MsgType::kStatusRequest);
  ASSERT_FALSE(str.is_ok());
  EXPECT_THAT(str.status().message(), HasSubstr("ends inside"));
}

TEST(ProtocolDecoding, DeepNestingIsRefused) {
  std::string payload = bytes({0x81}) + fixstr("x");
  payload.append(10000, static_cast<char>(0x91));
  payload.push_back(static_cast<char>(0xc0));
  auto req = decode_id_request(payload, MsgType::kStatusRequest);
  ASSERT_FALSE(req.is_ok());
  EXPECT_THAT(req.status().message(), HasSubstr("nested more than 32 levels"));
}

TEST(ProtocolDecoding, TooManyValuesAreRefused) {
  // A valid 1.1 MB array of nils: more values than kMaxObjectsPerPayload.
  const uint32_t n = kMaxObjectsPerPayload + 10;
  std::string payload = bytes({0x81}) + fixstr("x") + bytes({0xdd}) +
                        std::string({static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                                     static_cast<char>(n)});
  payload.append(n, static_cast<char>(0xc0));
  auto req = decode_id_request(payload, MsgType::kStatusRequest);
  ASSERT_FALSE(req.is_ok());
  EXPECT_THAT(req.status().message(), HasSubstr("more than 1048576 values"));
}

// ------------------------------------------------------------------ round trips

ListEntry full_entry(std::string id) {
  ListEntry e;
  e.id = std::move(id);
  e.name = "Web server";
  e.state = "restarting";
  e.pid = std::numeric_limits<int64_t>::min();
  e.rss = std::numeric_limits<uint64_t>::max();
  e.cpu = 12.625;
  e.restarts = std::numeric_limits<uint32_t>::max();
  e.since_ns = 1712345678901234567;
  e.last_exit = "killed by signal 9 (SIGKILL)";
  e.error = "exited too often";
  e.source = "file";
  e.command = "/usr/bin/python3 -m http.server";
  e.next_restart_ns = std::numeric_limits<int64_t>::max();
  return e;
}

TEST(ProtocolRoundTrip, EveryPayload) {
  {
    const IdRequest v{"web"};
    auto d = decode_id_request(encode_to_string(v), MsgType::kRestartRequest);
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    auto d = decode_empty_request(encode_to_string(EmptyRequest{}), MsgType::kInfoRequest);
    EXPECT_TRUE(d.is_ok());
  }
  {
    const SignalRequest v{"web", 15};
    auto d = decode_signal_request(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    const ListEntry v = full_entry("a");
    auto d = decode_list_entry(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    const ListResponse v{{full_entry("a"), ListEntry{}, full_entry("c")}};
    auto d = decode_list_response(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
    auto empty = decode_list_response(encode_to_string(ListResponse{}));
    ASSERT_TRUE(empty.is_ok());
    EXPECT_TRUE(empty->entries.empty());
  }
  {
    const StatusResponse v{full_entry("x"), "it broke", "INTERNAL"};
    auto d = decode_status_response(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    const LogsRequest v{"web", 1, true};
    auto d = decode_logs_request(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    std::string binary(300, '\0');
    for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i);
    const LogsStream v{"web", 0, binary, false};
    auto d = decode_logs_stream(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    const EventsSubscribe v{{"web", "db", ""}};
    auto d = decode_events_subscribe(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
  }
  {
    const Event v{"web",     "process.restarting", 1712345678901234567, "web crashed; restart 3 in 4s", 3, 0, 3,
                  4000000000};
    auto d = decode_event(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(*d, v);
    const Event defaults{};
    auto dd = decode_event(encode_to_string(defaults));
    ASSERT_TRUE(dd.is_ok());
    EXPECT_EQ(*dd, defaults);
  }
  {
    const DaemonInfo v{"0.1.0", 4242, 1712345678901234567, "/etc/agentry.yaml", 17};
    auto d = decode_daemon_info(encode_to_string(v));
    ASSERT_TRUE(d.is_ok());
    EXPECT_EQ(d->version, v.version);
    EXPECT_EQ(d->pid, v.pid);
    EXPECT_EQ(d->started_ns, v.started_ns);
    EXPECT_EQ(d->config_path, v.config_path);
    EXPECT_EQ(d->processes, v.processes);
  }
}

TEST(ProtocolNames, MessageTypes) {
  EXPECT_EQ(msg_type_name(0xA0), "ListRequest");
  EXPECT_EQ(msg_type_name(0xA7), "EventsStream");
  EXPECT_EQ(msg_type_name(0xAE), "InfoResponse");
  EXPECT_EQ(msg_type_name(0xAF), "unknown");
  EXPECT_TRUE(is_known_msg_type(0xAD));
  EXPECT_FALSE(is_known_msg_type(0xAF));
  EXPECT_FALSE(is_known_msg_type(0x01));
}

}  // namespace
}  // namespace agentry::mgmt
