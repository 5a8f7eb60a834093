// A throwaway public-key infrastructure generated at test time: a CA, a server certificate
// for localhost / 127.0.0.1 / ::1 and a client certificate, so TLS tests never depend on
// files checked into the repository or on the system trust store.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace agentry::testing {

struct CertAndKey {
  std::string cert_pem;
  std::string key_pem;
};

struct TestPki {
  std::string ca_cert_pem;
  std::string ca_key_pem;
  CertAndKey server;  // CN=localhost; SAN DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth
  CertAndKey client;  // CN=agentry-test-client; clientAuth

  // EC P-256 keys, SHA-256 signatures, valid from one hour ago for one day. Throws
  // std::runtime_error if OpenSSL fails (a broken test environment, not a test failure).
  static TestPki generate(const std::string& ca_name = "agentry test CA");

  // Issues another leaf certificate from this CA, e.g. one whose name does not match.
  CertAndKey issue(const std::string& common_name, const std::vector<std::string>& dns_names,
                   const std::vector<std::string>& ip_addresses, bool server_auth) const;

  // Writes ca.pem, server.pem, server.key, client.pem and client.key into `dir`.
  void write_to(const std::filesystem::path& dir) const;
};

}  // namespace agentry::testing
