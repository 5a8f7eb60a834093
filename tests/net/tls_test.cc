// Real TLS handshakes over loopback against certificates generated for the test run.
#include "agentry/net/tls.h"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <thread>

#include "tests/support/temp_dir.h"
#include "tests/support/test_pki.h"

namespace agentry::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

const testing::TestPki& pki() {
  static const testing::TestPki instance = testing::TestPki::generate();
  return instance;
}

// Serves exactly one TLS handshake on 127.0.0.1 and sends "ok" when it succeeds.
class OneShotTlsServer {
 public:
  explicit OneShotTlsServer(TlsContextPtr ctx) : ctx_(std::move(ctx)), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] {
      boost::system::error_code ec;
      tcp::socket socket(io_);
      acceptor_.accept(socket, ec);
      if (ec) return;
      asio::ssl::stream<tcp::socket> stream(std::move(socket), *ctx_);
      stream.handshake(asio::ssl::stream_base::server, ec);
      if (!ec) asio::write(stream, asio::buffer("ok", 2), ec);
      stream.shutdown(ec);
    });
  }
  ~OneShotTlsServer() { thread_.join(); }
  std::uint16_t port() const { return port_; }

 private:
  TlsContextPtr ctx_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// Connects to 127.0.0.1:port, verifying the peer as `host`; returns the handshake error.
boost::system::error_code handshake(std::uint16_t port, const std::string& host, const TlsConfig& config) {
  auto ctx = make_client_tls_context(config);
  EXPECT_TRUE(ctx.is_ok()) << ctx.status().message();
  asio::io_context io;
  asio::ssl::stream<tcp::socket> stream(io, **ctx);
  boost::system::error_code ec;
  stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return ec;
  EXPECT_TRUE(configure_tls_peer(stream.native_handle(), host, config).is_ok());
  stream.handshake(asio::ssl::stream_base::client, ec);
  if (!ec) {
    char buf[2];
    asio::read(stream, asio::buffer(buf), ec);
    if (!ec) {
      EXPECT_EQ(std::string(buf, 2), "ok");
    }
  }
  return ec;
}

TlsContextPtr server_ctx(const std::string& client_ca = {}) {
  auto ctx = make_server_tls_context(pki().server.cert_pem, pki().server.key_pem, client_ca);
  EXPECT_TRUE(ctx.is_ok()) << ctx.status().message();
  return *ctx;
}

TEST(TlsTest, VerifiesAgainstAGivenCaByNameAndByIp) {
  TlsConfig config;
  config.ca_pem = pki().ca_cert_pem;
  {
    OneShotTlsServer server(server_ctx());
    EXPECT_FALSE(handshake(server.port(), "localhost", config));
  }
  {
    OneShotTlsServer server(server_ctx());
    EXPECT_FALSE(handshake(server.port(), "127.0.0.1", config));
  }
}

TEST(TlsTest, LoadsTheCaFromAFile) {
  testing::TempDir dir;
  pki().write_to(dir.path());
  TlsConfig config;
  config.ca_file = (dir / "ca.pem").string();
  OneShotTlsServer server(server_ctx());
  EXPECT_FALSE(handshake(server.port(), "localhost", config));
}

TEST(TlsTest, RefusesAnUnknownCa) {
  testing::TestPki other = testing::TestPki::generate("some other CA");
  TlsConfig config;
  config.ca_pem = other.ca_cert_pem;
  OneShotTlsServer server(server_ctx());
  EXPECT_TRUE(handshake(server.port(), "localhost", config));
}

TEST(TlsTest, RefusesTheSystemStoreForAPrivateCa) {
  OneShotTlsServer server(server_ctx());
  EXPECT_TRUE(handshake(server.port(), "localhost", TlsConfig{}));
}

TEST(TlsTest, RefusesAHostNameTheCertificateDoesNotName) {
  TlsConfig config;
  config.ca_pem = pki().ca_cert_pem;
  OneShotTlsServer server(server_ctx());
  EXPECT_TRUE(handshake(server.port(), "agentry.example", config));
}

TEST(TlsTest, InsecureModeSkipsVerificationOnlyWhenAsked) {
  TlsConfig config;
  config.insecure_skip_verify = true;
  OneShotTlsServer server(server_ctx());
  EXPECT_FALSE(handshake(server.port(), "agentry.example", config));
}

TEST(TlsTest, MutualTlsNeedsTheClientCertificate) {
  TlsConfig config;
  config.ca_pem = pki().ca_cert_pem;
  {
    OneShotTlsServer server(server_ctx(pki().ca_cert_pem));
    EXPECT_TRUE(handshake(server.port(), "localhost", config));
  }
  config.cert_pem = pki().client.cert_pem;
  config.key_pem = pki().client.key_pem;
  {
    OneShotTlsServer server(server_ctx(pki().ca_cert_pem));
    EXPECT_FALSE(handshake(server.port(), "localhost", config));
  }
}

TEST(TlsTest, ConfigErrorsNameTheFile) {
  TlsConfig config;
  config.ca_file = "/nonexistent/ca.pem";
  auto ctx = make_client_tls_context(config);
  ASSERT_FALSE(ctx.is_ok());
  EXPECT_NE(ctx.status().message().find("/nonexistent/ca.pem"), std::string::npos);
  TlsConfig half;
  half.cert_pem = pki().client.cert_pem;
  EXPECT_FALSE(make_client_tls_context(half).is_ok());
}

}  // namespace
}  // namespace agentry::net
