#include "agentry/mgmt/protocol.h"

#include <algorithm>
#include <bit>
#include <concepts>
#include <exception>
#include <limits>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <msgpack.hpp>

#include "agentry/wire/mgmt_frame.h"

namespace agentry::mgmt {

std::string_view msg_type_name(uint8_t type) noexcept {
  switch (type) {
    case 0xA0: return "ListRequest";
    case 0xA1: return "ListResponse";
    case 0xA2: return "StatusRequest";
    case 0xA3: return "StatusResponse";
    case 0xA4: return "LogsRequest";
    case 0xA5: return "LogsStream";
    case 0xA6: return "EventsSubscribe";
    case 0xA7: return "EventsStream";
    case 0xA8: return "StartRequest";
    case 0xA9: return "StopRequest";
    case 0xAA: return "RestartRequest";
    case 0xAB: return "ReloadRequest";
    case 0xAC: return "SignalRequest";
    case 0xAD: return "InfoRequest";
    case 0xAE: return "InfoResponse";
    default: return "unknown";
  }
}

bool is_known_msg_type(uint8_t type) noexcept { return type >= 0xA0 && type <= 0xAE; }

namespace {

// ===================================================================== encoding

// msgpack::packer writes through any type with write(const char*, size_t).
class AppendTo {
 public:
  explicit AppendTo(std::string& out) : out_(out) {}
  void write(const char* data, size_t size) { out_.append(data, size); }

 private:
  std::string& out_;
};

using Packer = msgpack::packer<AppendTo>;

void put_str(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<uint32_t>(s.size()));
}

void put_bin(Packer& pk, std::string_view b) {
  pk.pack_bin(static_cast<uint32_t>(b.size()));
  pk.pack_bin_body(b.data(), static_cast<uint32_t>(b.size()));
}

void kv_str(Packer& pk, std::string_view key, std::string_view value) {
  put_str(pk, key);
  put_str(pk, value);
}
void kv_bin(Packer& pk, std::string_view key, std::string_view value) {
  put_str(pk, key);
  put_bin(pk, value);
}
void kv_int(Packer& pk, std::string_view key, int64_t value) {
  put_str(pk, key);
  pk.pack_int64(value);
}
void kv_uint(Packer& pk, std::string_view key, uint64_t value) {
  put_str(pk, key);
  pk.pack_uint64(value);
}
// Always a float64. msgpack-cxx's pack_double would write integral values as integers
// (and converts values near 2^64 to uint64_t, which is undefined behaviour).
void kv_double(Packer& pk, std::string_view key, double value) {
  put_str(pk, key);
  const auto bits = std::bit_cast<uint64_t>(value);
  char buf[9];
  buf[0] = static_cast<char>(0xcb);
  for (int i = 0; i < 8; ++i) buf[1 + i] = static_cast<char>(static_cast<uint8_t>(bits >> (56 - 8 * i)));
  pk.pack_bin_body(buf, sizeof buf);  // the *_body calls append their bytes verbatim
}
void kv_bool(Packer& pk, std::string_view key, bool value) {
  put_str(pk, key);
  if (value) {
    pk.pack_true();
  } else {
    pk.pack_false();
  }
}

// Keys and string values go out as MessagePack str, like the Go encoder writes them;
// integers take msgpack-cxx's smallest form, which every decoder (Go's included) accepts.
void put_entry(Packer& pk, const ListEntry& e) {
  pk.pack_map(e.udf.empty() ? 13 : 14);
  kv_str(pk, "id", e.id);
  kv_str(pk, "name", e.name);
  kv_str(pk, "state", e.state);
  kv_int(pk, "pid", e.pid);
  kv_uint(pk, "rss", e.rss);
  kv_double(pk, "cpu", e.cpu);
  kv_uint(pk, "restarts", e.restarts);
  kv_int(pk, "since", e.since_ns);
  kv_str(pk, "exit", e.last_exit);
  kv_str(pk, "error", e.error);
  kv_str(pk, "source", e.source);
  kv_str(pk, "cmd", e.command);
  kv_int(pk, "next", e.next_restart_ns);
  if (!e.udf.empty()) kv_str(pk, "udf", e.udf);
}

// ===================================================================== decoding

// Where a value sits in the payload, for error messages ("ListResponse.entries[2].pid").
// A chain of stack frames, so naming costs nothing until an error is reported.
struct Path {
  const Path* parent = nullptr;
  std::string_view name;        // message name at the root, key below it
  std::optional<size_t> index;  // set for array elements (name unused)

  std::string str() const {
    if (parent == nullptr) return std::string(name);
    if (index) return fmt::format("{}[{}]", parent->str(), *index);
    return fmt::format("{}.{}", parent->str(), name);
  }
  Path key(std::string_view k) const { return {this, k, std::nullopt}; }
  Path at(size_t i) const { return {this, {}, i}; }
};

std::string_view kind_of(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "boolean";
    case msgpack::type::POSITIVE_INTEGER: return "unsigned integer";
    case msgpack::type::NEGATIVE_INTEGER: return "negative integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "string";
    case msgpack::type::BIN: return "binary";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "extension";
  }
  return "unknown value";
}

Status mismatch(const Path& path, std::string_view expected, const msgpack::object& o) {
  return invalid_argument(fmt::format("{}: expected {}, got {}", path.str(), expected, kind_of(o)));
}

// Every reader below leaves `out` alone for nil: Go writes nil for empty slices and
// byte strings, and a missing key must mean the default anyway.
Status read_value(const msgpack::object& o, const Path& path, std::string& out) {
  switch (o.type) {
    case msgpack::type::NIL: return Status::ok();
    case msgpack::type::STR: out.assign(o.via.str.ptr, o.via.str.size); return Status::ok();
    case msgpack::type::BIN: out.assign(o.via.bin.ptr, o.via.bin.size); return Status::ok();
    default: return mismatch(path, "a string", o);
  }
}

Status read_value(const msgpack::object& o, const Path& path, bool& out) {
  if (o.type == msgpack::type::NIL) return Status::ok();
  if (o.type != msgpack::type::BOOLEAN) return mismatch(path, "a boolean", o);
  out = o.via.boolean;
  return Status::ok();
}

template <typename T>
  requires std::unsigned_integral<T> && (!std::same_as<T, bool>)
Status read_value(const msgpack::object& o, const Path& path, T& out) {
  if (o.type == msgpack::type::NIL) return Status::ok();
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    return invalid_argument(fmt::format("{}: expected an unsigned integer, got {}", path.str(), o.via.i64));
  }
  if (o.type != msgpack::type::POSITIVE_INTEGER) return mismatch(path, "an unsigned integer", o);
  if (o.via.u64 > std::numeric_limits<T>::max()) {
    return invalid_argument(
        fmt::format("{}: {} is out of range (0..{})", path.str(), o.via.u64, std::numeric_limits<T>::max()));
  }
  out = static_cast<T>(o.via.u64);
  return Status::ok();
}

template <typename T>
  requires std::signed_integral<T>
Status read_value(const msgpack::object& o, const Path& path, T& out) {
  constexpr auto kMin = std::numeric_limits<T>::min();
  constexpr auto kMax = std::numeric_limits<T>::max();
  switch (o.type) {
    case msgpack::type::NIL: return Status::ok();
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<uint64_t>(kMax)) {
        return invalid_argument(fmt::format("{}: {} is out of range ({}..{})", path.str(), o.via.u64, kMin, kMax));
      }
      out = static_cast<T>(o.via.u64);
      return Status::ok();
    case msgpack::type::NEGATIVE_INTEGER:
      if (o.via.i64 < static_cast<int64_t>(kMin)) {
        return invalid_argument(fmt::format("{}: {} is out of range ({}..{})", path.str(), o.via.i64, kMin, kMax));
      }
      out = static_cast<T>(o.via.i64);
      return Status::ok();
    default: return mismatch(path, "an integer", o);
  }
}

// Floats also accept integers: a peer may well encode 0.0 as 0.
Status read_value(const msgpack::object& o, const Path& path, double& out) {
  switch (o.type) {
    case msgpack::type::NIL: return Status::ok();
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: out = o.via.f64; return Status::ok();
    case msgpack::type::POSITIVE_INTEGER: out = static_cast<double>(o.via.u64); return Status::ok();
    case msgpack::type::NEGATIVE_INTEGER: out = static_cast<double>(o.via.i64); return Status::ok();
    default: return mismatch(path, "a number", o);
  }
}

// Calls on_field(key, value) for each string key of a map; other keys are skipped. Nil
// stands for a struct left at its defaults.
template <typename OnField>
Status read_map(const msgpack::object& o, const Path& path, OnField&& on_field) {
  if (o.type == msgpack::type::NIL) return Status::ok();
  if (o.type != msgpack::type::MAP) return mismatch(path, "a map", o);
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object_kv& kv = o.via.map.ptr[i];
    std::string_view key;
    if (kv.key.type == msgpack::type::STR) {
      key = {kv.key.via.str.ptr, kv.key.via.str.size};
    } else if (kv.key.type == msgpack::type::BIN) {
      key = {kv.key.via.bin.ptr, kv.key.via.bin.size};
    } else {
      continue;
    }
    AGENTRY_RETURN_IF_ERROR(on_field(key, kv.val));
  }
  return Status::ok();
}

template <typename ReadElement>
Status read_array(const msgpack::object& o, const Path& path, ReadElement&& read_element) {
  if (o.type == msgpack::type::NIL) return Status::ok();
  if (o.type != msgpack::type::ARRAY) return mismatch(path, "an array", o);
  for (uint32_t i = 0; i < o.via.array.size; ++i) {
    AGENTRY_RETURN_IF_ERROR(read_element(o.via.array.ptr[i], path.at(i)));
  }
  return Status::ok();
}

Status read_value(const msgpack::object& o, const Path& path, std::vector<std::string>& out) {
  return read_array(o, path, [&](const msgpack::object& element, const Path& where) {
    return read_value(element, where, out.emplace_back());
  });
}

Status read_value(const msgpack::object& o, const Path& path, ListEntry& e) {
  return read_map(o, path, [&](std::string_view key, const msgpack::object& v) -> Status {
    const Path p = path.key(key);
    if (key == "id") return read_value(v, p, e.id);
    if (key == "name") return read_value(v, p, e.name);
    if (key == "state") return read_value(v, p, e.state);
    if (key == "pid") return read_value(v, p, e.pid);
    if (key == "rss") return read_value(v, p, e.rss);
    if (key == "cpu") return read_value(v, p, e.cpu);
    if (key == "restarts") return read_value(v, p, e.restarts);
    if (key == "since") return read_value(v, p, e.since_ns);
    if (key == "exit") return read_value(v, p, e.last_exit);
    if (key == "error") return read_value(v, p, e.error);
    if (key == "source") return read_value(v, p, e.source);
    if (key == "cmd") return read_value(v, p, e.command);
    if (key == "next") return read_value(v, p, e.next_restart_ns);
    if (key == "udf") return read_value(v, p, e.udf);
    return Status::ok();
  });
}

Status check_stream(uint64_t stream, const Path& path) {
  if (stream <= 1) return Status::ok();
  return out_of_range(fmt::format("{}: stream {} is not 0 (stdout) or 1 (stderr)", path.str(), stream));
}

// ---- Turning bytes into a msgpack::object, within bounds.

// A first pass over the bytes that builds nothing: it rejects malformed input, nesting
// beyond kMaxNestingDepth, and containers whose declared sizes add up to more values than
// the payload could hold (every value takes at least one byte) or than
// kMaxObjectsPerPayload. msgpack-cxx allocates a container's element array as soon as it
// reads the count, so this is what keeps a 5-byte "array of 4 billion" from costing 96 GiB.
class BoundsCheck : public msgpack::null_visitor {
 public:
  explicit BoundsCheck(size_t payload_size)
      : budget_(std::min<uint64_t>(payload_size, kMaxObjectsPerPayload)), payload_size_(payload_size) {}

  bool start_array(uint32_t n) { return open(n); }
  bool end_array() { return close(); }
  bool start_map(uint32_t n) { return open(uint64_t{2} * n); }
  bool end_map() { return close(); }
  void parse_error(size_t /*parsed_offset*/, size_t error_offset) {
    problem_ = fmt::format("not valid MessagePack (bad byte at offset {})", error_offset);
  }
  void insufficient_bytes(size_t /*parsed_offset*/, size_t /*error_offset*/) {
    problem_ = "the payload ends inside a MessagePack value";
  }

  const std::string& problem() const { return problem_; }

 private:
  bool open(uint64_t members) {
    if (++depth_ > kMaxNestingDepth) {
      problem_ = fmt::format("values nested more than {} levels deep", kMaxNestingDepth);
      return false;
    }
    values_ += members;
    if (values_ > budget_) {
      problem_ = values_ > payload_size_ ? fmt::format("containers declare {} values but the payload has only {} bytes",
                                                       values_, payload_size_)
                                         : fmt::format("more than {} values", kMaxObjectsPerPayload);
      return false;
    }
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }

  uint64_t budget_;
  size_t payload_size_;
  uint64_t values_ = 1;  // the root
  uint32_t depth_ = 0;
  std::string problem_;
};

// Strings and byte strings point into the payload instead of being copied: the object
// never outlives the decode call that owns the payload view.
bool reference_payload(msgpack::type::object_type /*type*/, size_t /*size*/, void* /*user_data*/) { return true; }

Result<msgpack::object_handle> parse_payload(std::string_view payload, std::string_view name) {
  BoundsCheck check(payload.size());
  size_t scanned = 0;
  if (!msgpack::parse(payload.data(), payload.size(), scanned, check)) {
    return invalid_argument(
        fmt::format("{}: {}", name, check.problem().empty() ? "not valid MessagePack" : check.problem()));
  }
  if (scanned != payload.size()) {
    return invalid_argument(
        fmt::format("{}: {} stray bytes after the MessagePack value", name, payload.size() - scanned));
  }
  // The scan already enforced tighter bounds; these make msgpack-cxx itself refuse anything
  // the scan might have let through.
  const msgpack::unpack_limit limits(kMaxObjectsPerPayload, kMaxObjectsPerPayload, wire::kMgmtMaxPayload,
                                     wire::kMgmtMaxPayload, wire::kMgmtMaxPayload, kMaxNestingDepth + 1);
  try {
    size_t offset = 0;
    bool referenced = false;
    return msgpack::unpack(payload.data(), payload.size(), offset, referenced, &reference_payload, nullptr, limits);
  } catch (const std::bad_alloc&) {
    return resource_exhausted(fmt::format("{}: out of memory decoding {} bytes", name, payload.size()));
  } catch (const std::exception& e) {
    return invalid_argument(fmt::format("{}: not valid MessagePack ({})", name, e.what()));
  }
}

// Decodes a payload whose root is a map. `fill` reads the root map into a T.
template <typename T, typename Fill>
Result<T> decode_map_payload(std::string_view payload, std::string_view name, bool allow_empty, Fill&& fill) {
  if (payload.empty()) {
    if (allow_empty) return T{};
    return invalid_argument(fmt::format("{}: empty payload, expected a MessagePack map", name));
  }
  Result<msgpack::object_handle> parsed = parse_payload(payload, name);
  if (!parsed.is_ok()) return std::move(parsed).take_status();
  const msgpack::object& root = parsed->get();
  const Path root_path{nullptr, name, std::nullopt};
  if (root.type == msgpack::type::NIL && allow_empty) return T{};
  if (root.type != msgpack::type::MAP) return mismatch(root_path, "a map", root);
  T value{};
  AGENTRY_RETURN_IF_ERROR(fill(root, root_path, value));
  return value;
}

std::string_view name_of(MsgType type) { return msg_type_name(to_byte(type)); }

}  // namespace

// ===================================================================== StatusResponse

Status StatusResponse::to_status() const {
  if (err.empty()) return Status::ok();
  StatusCode parsed = StatusCode::kFailedPrecondition;
  for (int c = static_cast<int>(StatusCode::kInvalidArgument); c <= static_cast<int>(StatusCode::kInternal); ++c) {
    if (status_code_name(static_cast<StatusCode>(c)) == code) {
      parsed = static_cast<StatusCode>(c);
      break;
    }
  }
  return {parsed, err};
}

StatusResponse StatusResponse::from_status(const Status& status, ListEntry entry) {
  StatusResponse r;
  r.entry = std::move(entry);
  if (!status.is_ok()) {
    // A Status always has a message in practice; never send err "" for a failure.
    r.err = status.message().empty() ? std::string(status_code_name(status.code())) : status.message();
    r.code = std::string(status_code_name(status.code()));
  }
  return r;
}

// ===================================================================== encoders

void encode(const EmptyRequest& /*value*/, std::string& out) {
  AppendTo sink(out);
  Packer(sink).pack_map(0);
}

void encode(const IdRequest& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(1);
  kv_str(pk, "id", value.id);
}

void encode(const SignalRequest& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(2);
  kv_str(pk, "id", value.id);
  kv_int(pk, "sig", value.signal);
}

void encode(const ListEntry& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  put_entry(pk, value);
}

void encode(const ListResponse& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(1);
  put_str(pk, "entries");
  pk.pack_array(static_cast<uint32_t>(value.entries.size()));
  for (const ListEntry& e : value.entries) put_entry(pk, e);
}

void encode(const StatusResponse& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  const bool with_code = !value.code.empty();
  pk.pack_map(with_code ? 3 : 2);
  put_str(pk, "entry");
  put_entry(pk, value.entry);
  kv_str(pk, "err", value.err);
  if (with_code) kv_str(pk, "code", value.code);
}

void encode(const LogsRequest& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(3);
  kv_str(pk, "id", value.id);
  kv_uint(pk, "s", value.stream);
  kv_bool(pk, "f", value.follow);
}

void encode_logs_stream(std::string_view id, uint8_t stream, std::string_view data, bool eof, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(4);
  kv_str(pk, "id", id);
  kv_uint(pk, "s", stream);
  kv_bin(pk, "d", data);
  kv_bool(pk, "eof", eof);
}

void encode(const LogsStream& value, std::string& out) {
  encode_logs_stream(value.id, value.stream, value.data, value.eof, out);
}

void encode(const EventsSubscribe& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(1);
  put_str(pk, "pids");
  pk.pack_array(static_cast<uint32_t>(value.ids.size()));
  for (const std::string& id : value.ids) put_str(pk, id);
}

void encode(const Event& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(8);
  kv_str(pk, "pid", value.process_id);
  kv_str(pk, "t", value.type);
  kv_int(pk, "ts", value.ts_ns);
  kv_str(pk, "sum", value.summary);
  kv_int(pk, "code", value.exit_code);
  kv_int(pk, "sig", value.signal);
  kv_uint(pk, "restarts", value.restarts);
  kv_int(pk, "delay", value.delay_ns);
}

void encode(const DaemonInfo& value, std::string& out) {
  AppendTo sink(out);
  Packer pk(sink);
  pk.pack_map(5);
  kv_str(pk, "version", value.version);
  kv_int(pk, "pid", value.pid);
  kv_int(pk, "started", value.started_ns);
  kv_str(pk, "config", value.config_path);
  kv_uint(pk, "processes", value.processes);
}

// ===================================================================== decoders

Result<EmptyRequest> decode_empty_request(std::string_view payload, MsgType type) {
  return decode_map_payload<EmptyRequest>(
      payload, name_of(type), /*allow_empty=*/true,
      [](const msgpack::object&, const Path&, EmptyRequest&) { return Status::ok(); });
}

Result<IdRequest> decode_id_request(std::string_view payload, MsgType type) {
  return decode_map_payload<IdRequest>(
      payload, name_of(type), false, [](const msgpack::object& root, const Path& path, IdRequest& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key == "id") return read_value(v, path.key(key), out.id);
          return Status::ok();
        });
      });
}

Result<SignalRequest> decode_signal_request(std::string_view payload) {
  return decode_map_payload<SignalRequest>(
      payload, "SignalRequest", false, [](const msgpack::object& root, const Path& path, SignalRequest& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key == "id") return read_value(v, path.key(key), out.id);
          if (key == "sig") return read_value(v, path.key(key), out.signal);
          return Status::ok();
        });
      });
}

Result<ListEntry> decode_list_entry(std::string_view payload) {
  return decode_map_payload<ListEntry>(
      payload, "ListEntry", false,
      [](const msgpack::object& root, const Path& path, ListEntry& out) { return read_value(root, path, out); });
}

Result<ListResponse> decode_list_response(std::string_view payload) {
  return decode_map_payload<ListResponse>(
      payload, "ListResponse", false, [](const msgpack::object& root, const Path& path, ListResponse& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key != "entries") return Status::ok();
          out.entries.clear();  // a repeated key replaces, like every other field
          return read_array(v, path.key(key), [&](const msgpack::object& element, const Path& where) {
            return read_value(element, where, out.entries.emplace_back());
          });
        });
      });
}

Result<StatusResponse> decode_status_response(std::string_view payload) {
  return decode_map_payload<StatusResponse>(
      payload, "StatusResponse", false, [](const msgpack::object& root, const Path& path, StatusResponse& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key == "entry") {
            out.entry = {};
            return read_value(v, path.key(key), out.entry);
          }
          if (key == "err") return read_value(v, path.key(key), out.err);
          if (key == "code") return read_value(v, path.key(key), out.code);
          return Status::ok();
        });
      });
}

Result<LogsRequest> decode_logs_request(std::string_view payload) {
  return decode_map_payload<LogsRequest>(
      payload, "LogsRequest", false, [](const msgpack::object& root, const Path& path, LogsRequest& out) {
        uint64_t stream = 0;
        AGENTRY_RETURN_IF_ERROR(read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key == "id") return read_value(v, path.key(key), out.id);
          if (key == "s") return read_value(v, path.key(key), stream);
          if (key == "f") return read_value(v, path.key(key), out.follow);
          return Status::ok();
        }));
        // Checked last so that a malformed field elsewhere wins over a bad stream number.
        AGENTRY_RETURN_IF_ERROR(check_stream(stream, path.key("s")));
        out.stream = static_cast<uint8_t>(stream);
        return Status::ok();
      });
}

Result<LogsStream> decode_logs_stream(std::string_view payload) {
  return decode_map_payload<LogsStream>(
      payload, "LogsStream", false, [](const msgpack::object& root, const Path& path, LogsStream& out) {
        uint64_t stream = 0;
        AGENTRY_RETURN_IF_ERROR(read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key == "id") return read_value(v, path.key(key), out.id);
          if (key == "s") return read_value(v, path.key(key), stream);
          if (key == "d") return read_value(v, path.key(key), out.data);
          if (key == "eof") return read_value(v, path.key(key), out.eof);
          return Status::ok();
        }));
        AGENTRY_RETURN_IF_ERROR(check_stream(stream, path.key("s")));
        out.stream = static_cast<uint8_t>(stream);
        return Status::ok();
      });
}

Result<EventsSubscribe> decode_events_subscribe(std::string_view payload) {
  return decode_map_payload<EventsSubscribe>(
      payload, "EventsSubscribe", false, [](const msgpack::object& root, const Path& path, EventsSubscribe& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          if (key != "pids") return Status::ok();
          out.ids.clear();
          return read_value(v, path.key(key), out.ids);
        });
      });
}

Result<Event> decode_event(std::string_view payload) {
  return decode_map_payload<Event>(
      payload, "EventsStream", false, [](const msgpack::object& root, const Path& path, Event& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          const Path p = path.key(key);
          if (key == "pid") return read_value(v, p, out.process_id);
          if (key == "t") return read_value(v, p, out.type);
          if (key == "ts") return read_value(v, p, out.ts_ns);
          if (key == "sum") return read_value(v, p, out.summary);
          if (key == "code") return read_value(v, p, out.exit_code);
          if (key == "sig") return read_value(v, p, out.signal);
          if (key == "restarts") return read_value(v, p, out.restarts);
          if (key == "delay") return read_value(v, p, out.delay_ns);
          return Status::ok();
        });
      });
}

Result<DaemonInfo> decode_daemon_info(std::string_view payload) {
  return decode_map_payload<DaemonInfo>(
      payload, "InfoResponse", false, [](const msgpack::object& root, const Path& path, DaemonInfo& out) {
        return read_map(root, path, [&](std::string_view key, const msgpack::object& v) -> Status {
          const Path p = path.key(key);
          if (key == "version") return read_value(v, p, out.version);
          if (key == "pid") return read_value(v, p, out.pid);
          if (key == "started") return read_value(v, p, out.started_ns);
          if (key == "config") return read_value(v, p, out.config_path);
          if (key == "processes") return read_value(v, p, out.processes);
          return Status::ok();
        });
      });
}

}  // namespace agentry::mgmt
