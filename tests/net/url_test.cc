#include "agentry/net/url.h"

#include <gtest/gtest.h>

namespace agentry::net {
namespace {

Url parse_ok(std::string_view text) {
  auto url = Url::parse(text);
  EXPECT_TRUE(url.is_ok()) << text << ": " << url.status().message();
  return url.is_ok() ? *url : Url{};
}

TEST(UrlTest, ParsesSchemeHostPortAndTarget) {
  Url u = parse_ok("HTTPS://Example.COM:8443/relay_auto_config?rpacProtocolVersion=2#frag");
  EXPECT_EQ(u.scheme, "https");
  EXPECT_EQ(u.host, "example.com");
  EXPECT_EQ(u.port, 8443);
  EXPECT_EQ(u.target, "/relay_auto_config?rpacProtocolVersion=2");
  EXPECT_TRUE(u.secure());
  EXPECT_EQ(u.host_header(), "example.com:8443");
  EXPECT_EQ(u.to_string(), "https://example.com:8443/relay_auto_config?rpacProtocolVersion=2");
}

TEST(UrlTest, DefaultPortsAndTargets) {
  EXPECT_EQ(parse_ok("http://h").port, 80);
  EXPECT_EQ(parse_ok("http://h").target, "/");
  EXPECT_EQ(parse_ok("ws://h/v1/opamp").port, 80);
  EXPECT_EQ(parse_ok("wss://h/v1/opamp").port, 443);
  EXPECT_TRUE(parse_ok("wss://h").secure());
  EXPECT_FALSE(parse_ok("ws://h").secure());
  EXPECT_EQ(parse_ok("socks5://proxy").port, 1080);
  EXPECT_EQ(parse_ok("http://h?x=1").target, "/?x=1");
  EXPECT_EQ(parse_ok("https://h:443/").host_header(), "h");
}

TEST(UrlTest, Ipv6LiteralsAndUserinfo) {
  Url u = parse_ok("http://user:pw@[::1]:9000/p");
  EXPECT_EQ(u.userinfo, "user:pw");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.host_header(), "[::1]:9000");
  EXPECT_EQ(parse_ok("http://[::1]").host_header(), "[::1]");
}

TEST(UrlTest, RejectsBadInputWithAReason) {
  struct Case { const char* text; const char* reason; };
  const Case cases[] = {
      {"example.com/path", "no scheme"},
      {"ftp://h/", "not supported"},
      {"http:///path", "no host"},
      {"http://h:0/", "1..65535"},
      {"http://h:65536/", "1..65535"},
      {"http://h:8x/", "1..65535"},
      {"http://h /", "space or control"},
      {"http://h/\x01", "space or control"},
      {"http://[::1/", "unterminated"},
      {"http://[zz]/", "invalid IPv6"},
      {"http://h!x/", "invalid character"},
  };
  for (const auto& c : cases) {
    auto url = Url::parse(c.text);
    ASSERT_FALSE(url.is_ok()) << c.text;
    EXPECT_NE(url.status().message().find(c.reason), std::string::npos)
        << c.text << " -> " << url.status().message();
  }
  EXPECT_FALSE(Url::parse("http://h/" + std::string(9000, 'a')).is_ok());
}

TEST(UrlTest, ResolvesRedirectLocations) {
  Url base = parse_ok("https://a.example:8443/v1/opamp?x=1");
  EXPECT_EQ(base.resolve("wss://b.example/other")->to_string(), "wss://b.example/other");
  EXPECT_EQ(base.resolve("//c.example/p")->to_string(), "https://c.example/p");
  EXPECT_EQ(base.resolve("/root")->to_string(), "https://a.example:8443/root");
  EXPECT_EQ(base.resolve("sibling?y=2")->to_string(), "https://a.example:8443/v1/sibling?y=2");
  EXPECT_FALSE(base.resolve("").is_ok());
  EXPECT_FALSE(base.resolve("gopher://x/").is_ok());
}

}  // namespace
}  // namespace agentry::net
