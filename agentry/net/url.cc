#include "agentry/net/url.h"

#include <algorithm>
#include <charconv>
#include <cctype>

namespace agentry::net {
namespace {

constexpr std::size_t kMaxUrlLength = 8 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool valid_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.' || c == '_';
}

}  // namespace

std::uint16_t default_port_for(std::string_view scheme) {
  if (scheme == "http" || scheme == "ws") return 80;
  if (scheme == "https" || scheme == "wss") return 443;
  if (scheme == "socks5" || scheme == "socks5h") return 1080;
  return 0;
}

bool Url::secure() const { return scheme == "https" || scheme == "wss"; }

bool Url::default_port() const { return port == default_port_for(scheme); }

std::string Url::host_header() const {
  std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (!default_port()) out += ":" + std::to_string(port);
  return out;
}

std::string Url::to_string() const {
  return scheme + "://" + (userinfo.empty() ? "" : userinfo + "@") + host_header() + target;
}

Result<Url> Url::parse(std::string_view text) {
  if (text.size() > kMaxUrlLength) {
    return invalid_argument("URL is " + std::to_string(text.size()) + " bytes; the limit is 8 KiB");
  }
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return invalid_argument("URL contains a space or control character");
    }
  }
  Url url;
  auto colon = text.find("://");
  if (colon == std::string_view::npos || colon == 0) {
    return invalid_argument("URL \"" + std::string(text) + "\" has no scheme (expected e.g. https://host/path)");
  }
  url.scheme = lower(text.substr(0, colon));
  if (default_port_for(url.scheme) == 0) {
    return invalid_argument("URL scheme \"" + url.scheme + "\" is not supported (expected http, https, ws, wss or socks5)");
  }
  std::string_view rest = text.substr(colon + 3);
  auto frag = rest.find('#');
  if (frag != std::string_view::npos) rest = rest.substr(0, frag);
  auto path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);
  std::string_view target = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  auto at = authority.rfind('@');
  if (at != std::string_view::npos) {
    url.userinfo = std::string(authority.substr(0, at));
    authority = authority.substr(at + 1);
  }
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return invalid_argument("URL has an unterminated IPv6 literal");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid_argument("URL has junk after the IPv6 literal");
      port = after.substr(1);
    }
    for (char c : host) {
      if (std::isxdigit(static_cast<unsigned char>(c)) == 0 && c != ':' && c != '.') {
        return invalid_argument("URL has an invalid IPv6 literal");
      }
    }
  } else {
    auto pc = authority.rfind(':');
    host = authority.substr(0, pc);
    if (pc != std::string_view::npos) port = authority.substr(pc + 1);
    for (char c : host) {
      if (!valid_host_char(c)) {
        return invalid_argument("URL host \"" + std::string(host) + "\" contains an invalid character");
      }
    }
  }
  if (host.empty()) return invalid_argument("URL \"" + std::string(text) + "\" has no host");
  url.host = lower(host);
  if (port.empty()) {
    url.port = default_port_for(url.scheme);
  } else {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return invalid_argument("URL port \"" + std::string(port) + "\" is not a number in 1..65535");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  url.target = target.empty() || target.front() != '/' ? "/" + std::string(target) : std::string(target);
  return url;
}

Result<Url> Url::resolve(std::string_view location) const {
  if (location.empty()) return invalid_argument("redirect has an empty Location");
  if (location.find("://") != std::string_view::npos) return parse(location);
  if (location.substr(0, 2) == "//") return parse(scheme + ":" + std::string(location));
  Url out = *this;
  if (location.front() == '/') {
    out.target = std::string(location);
  } else {
    std::string dir = target.substr(0, target.find('?'));
    dir = dir.substr(0, dir.rfind('/') + 1);
    out.target = dir + std::string(location);
  }
  // Re-validate the combined target (control characters, length) through the parser.
  return parse(out.to_string());
}

}  // namespace agentry::net
