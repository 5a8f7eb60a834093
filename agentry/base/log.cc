#include "agentry/base/log.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

namespace agentry::log {
namespace {

// Maps spdlog levels to syslog priorities for journald's "<N>" line prefix.
class SyslogPriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    static constexpr char kPriority[] = {'7', '7', '6', '4', '3', '2', '6'};
    const auto idx = static_cast<size_t>(msg.level);
    dest.push_back('<');
    dest.push_back(idx < sizeof(kPriority) ? kPriority[idx] : '6');
    dest.push_back('>');
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

struct State {
  std::mutex mu;
  spdlog::sink_ptr sink;
  spdlog::level::level_enum level = spdlog::level::info;
  bool journald = false;
};

State& state() {
  static State s;
  return s;
}

std::unique_ptr<spdlog::formatter> make_formatter(bool journald) {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  if (journald) {
    f->add_flag<SyslogPriorityFlag>('*').set_pattern("%*[%n] %v");
  } else {
    f->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%-5l%$ [%n] %v");
  }
  return f;
}

// Caller holds state().mu.
void ensure_sink_locked(State& s) {
  if (!s.sink) {
    s.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    s.sink->set_formatter(make_formatter(s.journald));
  }
}

}  // namespace

bool stderr_is_journald() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st{};
  if (fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

void setup(const Options& options) {
  State& s = state();
  std::lock_guard lock(s.mu);
  s.journald = options.journald.value_or(stderr_is_journald());
  s.level = options.level;
  ensure_sink_locked(s);
  s.sink->set_formatter(make_formatter(s.journald));
  spdlog::set_level(s.level);
  auto def = std::make_shared<spdlog::logger>("agentry", s.sink);
  def->set_level(s.level);
  spdlog::set_default_logger(def);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(s.level); });
}

std::shared_ptr<spdlog::logger> get(std::string_view component) {
  State& s = state();
  std::lock_guard lock(s.mu);
  std::string name(component);
  if (auto existing = spdlog::get(name)) return existing;
  ensure_sink_locked(s);
  auto logger = std::make_shared<spdlog::logger>(name, s.sink);
  logger->set_level(s.level);
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

Result<spdlog::level::level_enum> parse_level(std::string_view name) {
  using spdlog::level::level_enum;
  struct Entry { std::string_view name; level_enum level; };
  static constexpr Entry kLevels[] = {
      {"trace", level_enum::trace}, {"debug", level_enum::debug}, {"info", level_enum::info},
      {"warn", level_enum::warn},   {"warning", level_enum::warn}, {"error", level_enum::err},
      {"critical", level_enum::critical}, {"off", level_enum::off},
  };
  for (const auto& e : kLevels) {
    if (e.name == name) return e.level;
  }
  return invalid_argument("unknown log level '" + std::string(name) +
                          "', expected one of trace, debug, info, warn, error, critical, off");
}

}  // namespace agentry::log
