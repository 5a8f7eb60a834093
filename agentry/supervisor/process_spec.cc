#include "agentry/supervisor/process_spec.h"

#include <fmt/format.h>

namespace agentry::supervisor {

BackoffPolicy BackoffSpec::policy() const {
  BackoffPolicy p;
  p.initial = initial;
  p.max = max;
  p.multiplier = multiplier;
  p.jitter = jitter > 0 ? JitterKind::kPlusMinus : JitterKind::kNone;
  p.jitter_fraction = jitter;
  p.reset_after = reset_after;
  return p;
}

bool is_valid_process_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string_view to_string(RestartPolicy p) {
  switch (p) {
    case RestartPolicy::kNever: return "never";
    case RestartPolicy::kOnFailure: return "on-failure";
    case RestartPolicy::kAlways: return "always";
  }
  return "?";
}

std::string_view to_string(StdinMode m) { return m == StdinMode::kNull ? "null" : "none"; }

Status ProcessSpec::validate() const {
  const std::string where = fmt::format("processes[{}]", id);
  if (!is_valid_process_id(id)) {
    return invalid_argument(fmt::format("{}.id: '{}' is not a valid id, expected 1-128 of [A-Za-z0-9_-]", where, id));
  }
  if (command.empty()) return invalid_argument(where + ".command: must not be empty");
  if (command.find('\0') != std::string::npos) return invalid_argument(where + ".command: contains a NUL byte");
  for (const auto& a : args) {
    if (a.find('\0') != std::string::npos) return invalid_argument(where + ".args: an argument contains a NUL byte");
  }
  for (const auto& [k, v] : env.set) {
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos) {
      return invalid_argument(fmt::format("{}.env: '{}' is not a valid variable name", where, k));
    }
  }
  if (stop.signal <= 0 || stop.signal >= 65) {
    return invalid_argument(fmt::format("{}.stop.signal: {} is not a signal number", where, stop.signal));
  }
  if (stop.timeout.count() < 0) return invalid_argument(where + ".stop.timeout: must not be negative");
  if (start_window.count() < 0) return invalid_argument(where + ".start_window: must not be negative");
  if (start_limit == 0) return invalid_argument(where + ".start_limit: must be at least 1");
  for (int code : success_exit_codes) {
    if (code < 0 || code > 255) {
      return invalid_argument(fmt::format("{}.success_exit_codes: {} is not an exit code (0-255)", where, code));
    }
  }
  if (logs.ring_bytes < 4096 || logs.ring_bytes > (uint64_t{1} << 30)) {
    return invalid_argument(where + ".logs.ring: must be between 4KiB and 1GiB");
  }
  if (logs.rotate.size != 0 && logs.file.empty()) {
    return invalid_argument(where + ".logs.rotate: needs logs.file");
  }
  if (logs.rotate.size != 0 && logs.rotate.keep == 0) {
    return invalid_argument(where + ".logs.rotate.keep: must be at least 1");
  }
  if (udf && udf->socket.empty()) return invalid_argument(where + ".udf.socket: must not be empty");
  if (udf && udf->keepalive.count() <= 0) return invalid_argument(where + ".udf.keepalive: must be positive");
  Status b = backoff.policy().validate();
  if (!b.is_ok()) return invalid_argument(where + "." + b.message());
  return Status::ok();
}

}  // namespace agentry::supervisor
