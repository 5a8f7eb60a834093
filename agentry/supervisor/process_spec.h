// What the operator asks for: one supervised process, as read from YAML, an SSE stream
// or an OpAMP remote config. Plain data with value semantics; two specs compare equal
// exactly when a running process would not need a restart to match the new one.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "agentry/base/backoff.h"
#include "agentry/base/status.h"

namespace agentry::supervisor {

using Duration = std::chrono::milliseconds;

enum class RestartPolicy { kNever, kOnFailure, kAlways };
// kNull: /dev/null on fd 0 (default). kClosed: fd 0 is closed ("none" in the config).
enum class StdinMode { kNull, kClosed };

struct EnvSpec {
  bool inherit = true;                       // start from the daemon's environment
  std::map<std::string, std::string> set;    // added or overriding
  std::vector<std::string> unset;            // removed after inheriting
  bool operator==(const EnvSpec&) const = default;
};

struct StopSpec {
  int signal = 15;                           // SIGTERM; sent to the whole process group
  Duration timeout = std::chrono::seconds(10);  // then SIGKILL to the group
  bool operator==(const StopSpec&) const = default;
};

struct RotateSpec {
  uint64_t size = 0;   // rotate when the file would exceed this many bytes; 0 = never
  uint32_t keep = 5;   // rotated files kept: file.1 (newest) .. file.<keep>
  bool operator==(const RotateSpec&) const = default;
};

struct LogSpec {
  uint64_t ring_bytes = 1024 * 1024;  // in-memory tail per stream (stdout, stderr)
  std::string file;                   // optional; both streams are appended to it
  RotateSpec rotate;
  bool timestamps = false;            // prefix each line in the file with an RFC 3339 time
  bool operator==(const LogSpec&) const = default;
};

struct BackoffSpec {
  Duration initial = std::chrono::seconds(1);
  Duration max = std::chrono::seconds(60);
  double multiplier = 2.0;
  double jitter = 0.2;                        // +- fraction
  Duration reset_after = std::chrono::seconds(30);  // up this long = stable, backoff resets
  bool operator==(const BackoffSpec&) const = default;

  BackoffPolicy policy() const;
};

// A socket UDF served by this process, health-checked with Info and keepalives.
struct UdfSpec {
  std::string socket;
  Duration keepalive = std::chrono::seconds(10);
  bool operator==(const UdfSpec&) const = default;
};

struct ProcessSpec {
  std::string id;                  // [A-Za-z0-9_-]+, unique
  std::string name;                // display name; defaults to id
  std::string command;             // executable: absolute path, or looked up in PATH
  std::vector<std::string> args;   // argv[1..]
  EnvSpec env;
  std::string cwd;                 // empty: the daemon's working directory
  std::string user;                // name or number; only honoured when running as root
  std::string group;
  StdinMode stdin_mode = StdinMode::kNull;
  bool autostart = true;
  RestartPolicy restart = RestartPolicy::kOnFailure;
  std::vector<int> success_exit_codes{0};
  Duration start_window = std::chrono::seconds(1);  // alive this long = started
  uint32_t start_limit = 5;        // consecutive exits inside the start window -> failed
  BackoffSpec backoff;
  StopSpec stop;
  LogSpec logs;
  std::optional<UdfSpec> udf;

  bool operator==(const ProcessSpec&) const = default;

  // Checks everything that does not need the file system: id charset, command set,
  // ranges of numbers. Messages name the field ("processes[web].backoff.max: ...").
  Status validate() const;
};

bool is_valid_process_id(std::string_view id);
std::string_view to_string(RestartPolicy p);
std::string_view to_string(StdinMode m);

}  // namespace agentry::supervisor
