// TLS settings shared by every client agentry runs (SSE config stream, OpAMP, downloads).
// Verification is on unless a config explicitly asks for insecure_skip_verify.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "agentry/base/status.h"

namespace agentry::net {

struct TlsConfig {
  // Trust anchors: a PEM bundle file and/or PEM text. Both empty: the system trust store.
  std::string ca_file;
  std::string ca_pem;
  // Client certificate for mutual TLS: files or PEM text (the chain first, then the key).
  std::string cert_file;
  std::string key_file;
  std::string cert_pem;
  std::string key_pem;
  // Skip certificate and host-name verification. Only for tests and lab setups; logged loudly
  // by the callers that honour it.
  bool insecure_skip_verify = false;
};

using TlsContextPtr = std::shared_ptr<boost::asio::ssl::context>;

// A client context: TLS 1.2 or newer, peer verification on (unless insecure), trust anchors
// and client certificate loaded. Errors name the file or setting that failed.
Result<TlsContextPtr> make_client_tls_context(const TlsConfig& config);

// Per connection: SNI (for host names, never for IP literals) and verification that the
// certificate is for `host` (DNS name or IP address). Call on stream.native_handle() before
// the handshake.
Status configure_tls_peer(SSL* ssl, const std::string& host, const TlsConfig& config);

// A server context for in-process test servers and local listeners. A non-empty
// client_ca_pem requires and verifies client certificates.
Result<TlsContextPtr> make_server_tls_context(const std::string& cert_pem, const std::string& key_pem,
                                              const std::string& client_ca_pem = {});

// The text of the first error in OpenSSL's queue for `what`, e.g. for a failed handshake.
std::string describe_tls_error(const std::string& what, unsigned long openssl_error);

}  // namespace agentry::net
