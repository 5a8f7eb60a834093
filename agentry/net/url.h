// URLs of the servers agentry talks to (SSE config streams, OpAMP servers, package downloads,
// proxies). Only what an HTTP client needs: scheme, host, port and request target.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "agentry/base/status.h"

namespace agentry::net {

struct Url {
  std::string scheme;    // lower-case: http, https, ws, wss or socks5
  std::string userinfo;  // "user:password" before '@', still percent-encoded; usually empty
  std::string host;      // lower-case for names; IPv6 literals without the brackets
  std::uint16_t port = 0;  // the explicit port, else the scheme's default
  std::string target;    // path and query, always starting with '/'; the fragment is dropped

  // https and wss.
  bool secure() const;
  // True when the port is the scheme's default, so Host and to_string() leave it out.
  bool default_port() const;
  // The Host header value: host (bracketed when IPv6) plus ":port" unless default.
  std::string host_header() const;
  std::string to_string() const;

  // Accepts absolute URLs only. Rejects control characters, spaces, unknown schemes, an empty
  // host, bad ports and anything over 8 KiB, naming the problem.
  static Result<Url> parse(std::string_view text);

  // The URL a redirect's Location refers to: absolute, scheme-relative ("//host/x"),
  // absolute-path ("/x") or relative ("x", resolved against this URL's directory).
  Result<Url> resolve(std::string_view location) const;
};

// The default port of a scheme this module knows, or 0.
std::uint16_t default_port_for(std::string_view scheme);

}  // namespace agentry::net
