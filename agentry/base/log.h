// Logging set-up: one stderr sink shared by named per-component loggers.
//
// Under systemd (JOURNAL_STREAM names our stderr) lines carry a "<N>" syslog priority
// prefix and no timestamp, since journald records both itself.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include <spdlog/spdlog.h>

#include "agentry/base/status.h"

namespace agentry::log {

struct Options {
  spdlog::level::level_enum level = spdlog::level::info;
  // Force the journald format on or off; unset means detect from JOURNAL_STREAM.
  std::optional<bool> journald;
};

// Installs the shared sink and the default logger. Safe to call again (e.g. on reload
// with a new level); loggers handed out earlier follow the new settings.
void setup(const Options& options);

// A logger named after a component ("supervisor", "mgmt", ...), sharing the sink.
std::shared_ptr<spdlog::logger> get(std::string_view component);

// "trace", "debug", "info", "warn"/"warning", "error", "critical", "off".
Result<spdlog::level::level_enum> parse_level(std::string_view name);

// True when the process's stderr is the journald stream systemd gave it.
bool stderr_is_journald();

}  // namespace agentry::log
