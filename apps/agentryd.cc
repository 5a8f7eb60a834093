// agentryd: the agentry daemon. Runs in the foreground and logs to stderr; systemd (or
// any supervisor of supervisors) owns daemonization.
#include <unistd.h>

#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>

#include "agentry/agent/config.h"
#include "agentry/agent/daemon.h"
#include "agentry/base/log.h"
#include "agentry/base/version.h"

int main(int argc, char** argv) {
  CLI::App app{"agentryd: supervises processes and is managed over local and remote protocols"};
  agentry::agent::DaemonOptions options;
  bool check = false;
  bool version = false;
  app.add_option("-c,--config", options.config_path, "YAML configuration file")->check(CLI::ExistingFile);
  app.add_flag("--check", check, "validate the configuration and exit (0: valid, 1: invalid)");
  app.add_option("--runtime-dir", options.runtime_dir, "directory for the control socket and lock");
  app.add_option("--log-level", options.log_level, "trace, debug, info, warn, error, critical, off");
  app.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);

  if (version) {
    std::printf("agentryd %s\n", AGENTRY_VERSION);
    return 0;
  }
  if (options.config_path.empty()) {
    std::fprintf(stderr, "agentryd: --config FILE is required\n");
    return 2;
  }
  if (check) {
    auto cfg = agentry::agent::load_config_file(options.config_path);
    if (!cfg) {
      std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
      return 1;
    }
    std::printf("%s: OK (%zu processes)\n", options.config_path.c_str(), cfg->processes.size());
    return 0;
  }

  agentry::log::setup({});
  boost::asio::io_context io;
  agentry::agent::Daemon daemon(io, options);
  if (agentry::Status s = daemon.start(); !s.is_ok()) {
    std::fprintf(stderr, "agentryd: %s\n", s.message().c_str());
    return 1;
  }
  io.run();
  return daemon.exit_code();
}
