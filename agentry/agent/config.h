// The daemon's YAML configuration: the file given with `-c`, turned into a DaemonConfig.
//
// Every error names where it happened and what was wanted, in one line:
//
//   <source>:<line>:<column>: <field path>: <what was expected>, got <what was found>
//   examples/agentry.yaml:12:14: processes[web].restart: expected one of never, on-failure, always, got 'sometimes'
//
// Lines and columns are 1-based. The field path names a process by its id once the id
// is known ("processes[web].backoff.max"), otherwise by its 0-based position in the
// list ("processes[2].id"). Only the first error is reported. Errors in the text have
// code kInvalidArgument; a file that cannot be read keeps the errno-derived code
// (kNotFound for a missing file).
//
// The accepted keys are documented in examples/agentry.yaml. Durations are strings such
// as "250ms", "10s", "5m", "1h", "1m30s" (or "0"); sizes are "512B", "64KiB", "1MiB",
// "10MB" or a bare number of bytes. yaml-cpp is an implementation detail and does not
// appear in this header.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "agentry/base/status.h"
#include "agentry/supervisor/process_spec.h"

namespace agentry::agent {

// The JSON command socket (`command:` section). Absent section: enabled with defaults.
struct CommandConfig {
  bool enabled = true;
  std::string dir;           // empty: <runtime dir>/cmd
  uint32_t mode = 0770;      // of the directory
  std::string group;         // name or number; empty: the daemon's group
  supervisor::Duration timeout = std::chrono::seconds(10);  // to read one request
  bool operator==(const CommandConfig&) const = default;
};

// TLS for a remote control plane. Verification is on unless insecure_skip_verify.
struct TlsSettings {
  std::string ca_file;    // PEM bundle; empty: the system trust store
  std::string cert_file;  // client certificate (mutual TLS), with key_file
  std::string key_file;
  bool insecure_skip_verify = false;
  bool operator==(const TlsSettings&) const = default;
};

// The SSE auto-configuration stream (`autoconfig:` section): processes put, patched and
// deleted by a remote server (docs/autoconfig.md). Absent section: disabled.
struct AutoconfigConfig {
  bool enabled = false;
  std::string url;       // the stream's full URL, http:// or https://
  std::string key;       // sent as the Authorization header, or:
  std::string key_file;  // a file holding the key (one line), to keep it out of the config
  TlsSettings tls;       // `ca: FILE` is short for tls.ca_file
  supervisor::Duration read_timeout = std::chrono::minutes(5);
  supervisor::Duration initial_retry_delay = std::chrono::seconds(1);
  bool operator==(const AutoconfigConfig&) const = default;
};

// OpAMP management (`opamp:` section, docs/opamp.md). Absent section: disabled.
struct OpampConfig {
  bool enabled = false;
  std::string endpoint;  // ws://, wss:// (WebSocket) or http://, https:// (polling)
  std::map<std::string, std::string> headers;
  TlsSettings tls;
  supervisor::Duration heartbeat = std::chrono::seconds(30);
  std::string instance_uid;  // a UUID; empty: generated once and kept in the state dir
  bool compression = false;
  std::string signature_public_key_file;  // Ed25519 PEM; packages must be signed with it
  supervisor::Duration download_report_interval = std::chrono::seconds(10);
  // Capabilities offered to the server, all on by default; each can be switched off.
  bool accepts_remote_config = true;
  bool reports_effective_config = true;
  bool reports_health = true;
  bool accepts_packages = true;
  bool accepts_restart_command = true;
  bool accepts_connection_settings = true;
  bool reports_available_components = true;
  bool accepts_commands = true;  // custom capability io.agentry.command
  bool operator==(const OpampConfig&) const = default;
};

struct DaemonConfig {
  std::string source;       // file path, or a name such as "<opamp>", used in messages
  std::string runtime_dir;  // empty: the daemon picks its default
  std::string state_dir;    // empty: the daemon picks its default
  std::string log_level = "info";  // trace, debug, info, warn, error, critical, off
  std::vector<supervisor::ProcessSpec> processes;  // in file order, ids unique, validated
  CommandConfig command;
  AutoconfigConfig autoconfig;
  OpampConfig opamp;
  std::string text;         // the original text, byte for byte
};

// Parses a whole configuration. An empty document, or an empty `processes:`, is a valid
// configuration with no processes. Each process passes ProcessSpec::validate().
Result<DaemonConfig> parse_config(std::string_view yaml_text, std::string_view source_name);

// Reads `path` and parses it with the path as the source name. A missing file gives
// "cannot read config file '<path>': No such file or directory".
Result<DaemonConfig> load_config_file(const std::string& path);

// Parses one process entry on its own: the text of a single mapping with the same keys
// as an item of `processes:`. JSON objects are YAML, so this also reads a ProcessSpec
// carried as JSON (an SSE "put", an OpAMP config body). When `id` is not empty it is
// the process's id: the mapping may omit `id`, and if it has one it must be equal.
// Messages use `processes[<id>]` as the field path, like the file loader.
Result<supervisor::ProcessSpec> parse_process_spec(std::string_view text, std::string_view source_name,
                                                   std::string_view id = {});

// Looks up a dotted path ("log_level", "command.timeout", "processes.0.command") in the
// configuration's text, for the `agent.config.getoption` command. Scalars come back as
// their text, maps and sequences as JSON. Errors: kNotFound (no such option),
// kFailedPrecondition (the option exists but is empty), kInvalidArgument (malformed path).
Result<std::string> get_option(const DaemonConfig& config, std::string_view dotted_path);

// "250ms", "10s", "5m", "1h", "1m30s", "1.5s", "0". Units: ms, s, m, h; parts add up and
// fractions are allowed when the total is a whole number of milliseconds. A number
// without a unit is refused unless it is 0, and so are negative durations and ones
// over 2562047h (the range of std::chrono::nanoseconds, which backoff code converts to).
Result<supervisor::Duration> parse_duration(std::string_view text);

// "512B", "64KiB", "1MiB", "1GiB", "1TiB" (powers of 1024), "10KB", "10MB", "1GB",
// "1TB" (powers of 1000), or a bare number of bytes. Units are case-insensitive and may
// follow the number after one space. Fractions are allowed when the result is a whole
// number of bytes ("1.5KiB" = 1536).
Result<uint64_t> parse_size(std::string_view text);

// A signal name with or without "SIG", in any case ("TERM", "SIGTERM", "term"), a number
// 1-64 ("15"), or a real-time signal ("RTMIN", "RTMIN+3", "RTMAX-1").
Result<int> parse_signal(std::string_view text);

}  // namespace agentry::agent
