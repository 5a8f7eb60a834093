// Fuzzes the command server's request path without sockets: RequestReader framing a byte
// stream delivered in pieces, then command_name() and Request::parse() on the framed object,
// and the reply builders on whatever came out.
//
// Input layout: byte 0 seeds the chunk sizes, byte 1 picks the size cap (16..271 bytes, so
// the over-size path is reachable), the rest is the stream. Checked:
//   - the framing verdict, the framed bytes and the 102 reply do not depend on chunking;
//   - command_name() and Request::parse() agree, and what they accept is a JSON object;
//   - Request::to_json() keeps the command; every reply built is one JSON object that
//     Response::parse() reads back with the same status;
//   - Response::parse() on raw input never crashes, and what it accepts round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/command/protocol.h"

namespace {

using agentry::Result;
using agentry::command::RequestReader;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Framed {
  RequestReader::State state = RequestReader::State::kNeedMore;
  std::string request;
  std::string error_reply;
};

Framed frame(const std::vector<std::string_view>& chunks, std::size_t cap) {
  RequestReader reader(cap);
  Framed out;
  for (const std::string_view chunk : chunks) {
    out.state = reader.feed(chunk);
    if (out.state != RequestReader::State::kNeedMore) break;
  }
  check(reader.state() == out.state);
  if (out.state == RequestReader::State::kComplete) out.request = std::string(reader.request());
  if (out.state == RequestReader::State::kError) out.error_reply = reader.error_response();
  return out;
}

// A reply built by the server must read back as one object with the given status.
void check_reply(const std::string& reply, int status) {
  check(agentry::command::is_json_object(reply));
  const Result<agentry::command::Response> parsed = agentry::command::Response::parse(reply);
  check(parsed.is_ok());
  check(parsed->status == status);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace agentry::command;
  if (size < 2) return 0;
  std::uint32_t seed = data[0] * 2654435761u + 1;
  const std::size_t cap = 16 + data[1];
  const std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);

  std::vector<std::string_view> chunks;
  for (std::size_t pos = 0; pos < stream.size();) {
    seed = seed * 1103515245u + 12345u;
    const std::size_t n = 1 + (seed >> 16) % 11;
    chunks.push_back(stream.substr(pos, n));
    pos += n;
  }

  const Framed whole = frame({stream}, cap);
  const Framed chunked = frame(chunks, cap);
  check(whole.state == chunked.state);
  check(whole.request == chunked.request);
  check(whole.error_reply == chunked.error_reply);

  if (whole.state == RequestReader::State::kError) check_reply(whole.error_reply, kStatusBadRequest);
  if (whole.state == RequestReader::State::kComplete) {
    check(whole.request.size() <= cap);
    check(whole.request.front() == '{' && whole.request.back() == '}');
    const Result<std::string> name = command_name(whole.request);
    const Result<Request> request = Request::parse(whole.request);
    check(name.is_ok() == request.is_ok());
    if (name.is_ok()) {
      check(is_json_object(whole.request));
      check(request->command == *name);
      check(request->fields.is_object());
      const Result<std::string> again = command_name(request->to_json());
      check(again.is_ok() && *again == *name);
      // What the server would send for it: the name inside a handler error, say.
      check_reply(make_response(kStatusHandlerError, *name), kStatusHandlerError);
    } else {
      check(name.status().code() == agentry::StatusCode::kInvalidArgument);
    }
    if (!is_json_object(whole.request)) check(!name.is_ok());
  }

  // Raw bytes as a reply, as send_command()'s callers would parse them.
  const Result<Response> response = Response::parse(stream);
  if (response.is_ok()) {
    const Result<Response> back = Response::parse(response->to_json());
    check(back.is_ok());
    check(back->status == response->status);
    check(back->status_message == response->status_message);
  }
  // Messages of any bytes still make valid replies.
  check_reply(make_response(kStatusHandlerError, stream), kStatusHandlerError);
  return 0;
}
