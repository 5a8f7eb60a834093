#include "agentry/net/tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>

namespace agentry::net {
namespace ssl = boost::asio::ssl;
namespace {

constexpr auto kContextOptions = ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                 ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                                 ssl::context::no_tlsv1_1 | ssl::context::single_dh_use;

Status tls_failure(const std::string& what, const boost::system::error_code& ec) {
  return invalid_argument(what + ": " + ec.message());
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec;
}

}  // namespace

std::string describe_tls_error(const std::string& what, unsigned long openssl_error) {
  char buf[256];
  ERR_error_string_n(openssl_error, buf, sizeof buf);
  return what + ": " + buf;
}

Result<TlsContextPtr> make_client_tls_context(const TlsConfig& config) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(kContextOptions, ec);
  if (ec) return tls_failure("setting TLS options", ec);
  if (config.insecure_skip_verify) {
    ctx->set_verify_mode(ssl::verify_none, ec);
  } else {
    ctx->set_verify_mode(ssl::verify_peer, ec);
  }
  if (ec) return tls_failure("setting the TLS verify mode", ec);
  if (config.ca_file.empty() && config.ca_pem.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) return tls_failure("loading the system trust store", ec);
  }
  if (!config.ca_file.empty()) {
    ctx->load_verify_file(config.ca_file, ec);
    if (ec) return tls_failure("loading CA file " + config.ca_file, ec);
  }
  if (!config.ca_pem.empty()) {
    ctx->add_certificate_authority(boost::asio::buffer(config.ca_pem), ec);
    if (ec) return tls_failure("loading the CA certificate", ec);
  }
  const bool has_cert = !config.cert_file.empty() || !config.cert_pem.empty();
  const bool has_key = !config.key_file.empty() || !config.key_pem.empty();
  if (has_cert != has_key) {
    return invalid_argument("a TLS client certificate needs both a certificate and a key");
  }
  if (!config.cert_file.empty()) {
    ctx->use_certificate_chain_file(config.cert_file, ec);
    if (ec) return tls_failure("loading client certificate " + config.cert_file, ec);
  } else if (!config.cert_pem.empty()) {
    ctx->use_certificate_chain(boost::asio::buffer(config.cert_pem), ec);
    if (ec) return tls_failure("loading the client certificate", ec);
  }
  if (!config.key_file.empty()) {
    ctx->use_private_key_file(config.key_file, ssl::context::pem, ec);
    if (ec) return tls_failure("loading client key " + config.key_file, ec);
  } else if (!config.key_pem.empty()) {
    ctx->use_private_key(boost::asio::buffer(config.key_pem), ssl::context::pem, ec);
    if (ec) return tls_failure("loading the client key", ec);
  }
  return ctx;
}

Status configure_tls_peer(SSL* ssl, const std::string& host, const TlsConfig& config) {
  const bool ip = is_ip_literal(host);
  // SNI carries host names only (RFC 6066 forbids IP literals).
  if (!ip && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                        const_cast<char*>(host.c_str())) != 1) {
    return invalid_argument("setting TLS server name " + host);
  }
  if (config.insecure_skip_verify) return Status::ok();
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  const int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str())
                    : X509_VERIFY_PARAM_set1_host(param, host.c_str(), host.size());
  if (ok != 1) return invalid_argument("setting TLS peer verification for " + host);
  return Status::ok();
}

Result<TlsContextPtr> make_server_tls_context(const std::string& cert_pem, const std::string& key_pem,
                                              const std::string& client_ca_pem) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(kContextOptions, ec);
  if (ec) return tls_failure("setting TLS options", ec);
  ctx->use_certificate_chain(boost::asio::buffer(cert_pem), ec);
  if (ec) return tls_failure("loading the server certificate", ec);
  ctx->use_private_key(boost::asio::buffer(key_pem), ssl::context::pem, ec);
  if (ec) return tls_failure("loading the server key", ec);
  if (!client_ca_pem.empty()) {
    ctx->add_certificate_authority(boost::asio::buffer(client_ca_pem), ec);
    if (ec) return tls_failure("loading the client CA", ec);
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
    if (ec) return tls_failure("setting the TLS verify mode", ec);
  }
  return ctx;
}

}  // namespace agentry::net
