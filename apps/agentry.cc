// agentry: the command-line client of agentryd's management socket.
//
// Human output by default (aligned tables, colour on a terminal, relative times, readable
// sizes); --json for scripts. Every failure is one line on stderr and a non-zero exit.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agentry/agent/config.h"
#include "agentry/base/version.h"
#include "agentry/command/client.h"
#include "agentry/agent/daemon.h"
#include "agentry/mgmt/client.h"
#include "agentry/mgmt/protocol.h"
#include "apps/udf_cli.h"

namespace {

using agentry::Result;
using agentry::Status;
using agentry::mgmt::Client;
using agentry::mgmt::Event;
using agentry::mgmt::ListEntry;
using json = nlohmann::json;

struct Globals {
  std::string socket;
  bool json = false;
  bool color = false;
};

int fail(const std::string& message) {
  std::fprintf(stderr, "agentry: %s\n", message.c_str());
  return 1;
}

int fail(const Status& s) { return fail(s.message()); }

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string human_duration(int64_t ns) {
  if (ns < 0) ns = 0;
  int64_t s = ns / 1'000'000'000;
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  return fmt::format("{}d{:02}h", s / 86400, (s % 86400) / 3600);
}

std::string human_bytes(uint64_t b) {
  if (b == 0) return "-";
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{}B", b) : fmt::format("{:.1f}{}", v, kUnits[u]);
}

std::string state_color(const std::string& state) {
  if (state == "running") return "\033[32m";
  if (state == "starting" || state == "restarting" || state == "stopping") return "\033[33m";
  if (state == "crashed" || state == "failed") return "\033[31m";
  return "\033[2m";
}

std::string paint(const Globals& g, const std::string& text, const std::string& state) {
  if (!g.color) return text;
  return state_color(state) + text + "\033[0m";
}

json entry_json(const ListEntry& e) {
  json j = {{"id", e.id},
            {"name", e.name},
            {"state", e.state},
            {"pid", e.pid},
            {"rss_bytes", e.rss},
            {"cpu_percent", e.cpu},
            {"restarts", e.restarts},
            {"since_ns", e.since_ns},
            {"last_exit", e.last_exit},
            {"error", e.error},
            {"source", e.source},
            {"command", e.command}};
  if (!e.udf.empty()) j["udf"] = e.udf;
  if (e.next_restart_ns != 0) j["next_restart_ns"] = e.next_restart_ns;
  return j;
}

json event_json(const Event& e) {
  json j = {{"process", e.process_id}, {"type", e.type}, {"ts_ns", e.ts_ns}, {"summary", e.summary}};
  if (e.exit_code >= 0) j["exit_code"] = e.exit_code;
  if (e.signal != 0) j["signal"] = e.signal;
  if (e.restarts != 0) j["restarts"] = e.restarts;
  if (e.delay_ns != 0) j["delay_ns"] = e.delay_ns;
  return j;
}

// What the UPTIME column shows: how long it has been up, or how long ago it changed.
std::string uptime_cell(const ListEntry& e, int64_t now) {
  if (e.since_ns == 0) return "-";
  if (e.state == "running" || e.state == "starting") return human_duration(now - e.since_ns);
  if (e.state == "restarting" && e.next_restart_ns != 0) {
    return "in " + human_duration(e.next_restart_ns - now + 999'999'999);
  }
  return human_duration(now - e.since_ns) + " ago";
}

Result<Client> dial(const Globals& g) {
  std::string path = g.socket.empty() ? agentry::mgmt::default_socket_path() : g.socket;
  auto c = Client::connect(path);
  if (!c) {
    return Status(c.status().code(),
                  fmt::format("cannot reach agentryd at {}: {} (is agentryd running? use --socket or AGENTRY_SOCKET)",
                              path, c.status().message()));
  }
  return c;
}

int cmd_list(const Globals& g) {
  auto c = dial(g);
  if (!c) return fail(c.status());
  auto entries = c->list();
  if (!entries) return fail(entries.status());
  if (g.json) {
    json arr = json::array();
    for (const auto& e : *entries) arr.push_back(entry_json(e));
    std::printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  if (entries->empty()) {
    std::printf("no processes\n");
    return 0;
  }
  const int64_t now = now_ns();
  struct Row {
    std::vector<std::string> cells;
    std::string state;
  };
  std::vector<Row> rows;
  rows.push_back(Row{{"ID", "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "CPU", "RSS"}, ""});
  for (const auto& e : *entries) {
    rows.push_back(Row{{e.id, e.name, e.state, e.pid != 0 ? std::to_string(e.pid) : "-", uptime_cell(e, now),
                     std::to_string(e.restarts), e.pid != 0 ? fmt::format("{:.1f}%", e.cpu) : "-",
                     human_bytes(e.rss)},
                    e.state});
  }
  std::vector<size_t> width(rows[0].cells.size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.cells.size(); ++i) width[i] = std::max(width[i], r.cells[i].size());
  }
  std::string out;
  for (size_t ri = 0; ri < rows.size(); ++ri) {
    const auto& r = rows[ri];
    std::string line;
    for (size_t i = 0; i < r.cells.size(); ++i) {
      std::string cell = fmt::format("{:<{}}", r.cells[i], i + 1 == r.cells.size() ? 0 : width[i]);
      if (i == 2 && ri > 0) cell = paint(g, cell, r.state);
      line += cell;
      if (i + 1 < r.cells.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

void print_entry(const Globals& g, const ListEntry& e) {
  const int64_t now = now_ns();
  auto row = [](const char* k, const std::string& v) {
    if (!v.empty()) std::printf("%-13s %s\n", k, v.c_str());
  };
  row("id:", e.id);
  if (e.name != e.id) row("name:", e.name);
  row("state:", paint(g, e.state, e.state) + (e.since_ns != 0 ? " for " + human_duration(now - e.since_ns) : ""));
  if (e.pid != 0) row("pid:", std::to_string(e.pid));
  row("command:", e.command);
  row("source:", e.source);
  row("restarts:", std::to_string(e.restarts));
  if (e.pid != 0) {
    row("cpu:", fmt::format("{:.1f}%", e.cpu));
    row("rss:", human_bytes(e.rss));
  }
  row("udf:", e.udf);
  row("last exit:", e.last_exit);
  row("error:", e.error);
  if (e.next_restart_ns != 0) row("next start:", "in " + human_duration(e.next_restart_ns - now + 999'999'999));
}

int report_entry(const Globals& g, const Result<ListEntry>& r, const char* verb) {
  if (!r) return fail(r.status());
  if (g.json) {
    std::printf("%s\n", entry_json(*r).dump(2).c_str());
  } else if (verb != nullptr) {
    std::printf("%s: %s (%s)\n", r->id.c_str(), verb, paint(g, r->state, r->state).c_str());
  } else {
    print_entry(g, *r);
  }
  return 0;
}

int cmd_status(const Globals& g, const std::string& id) {
  auto c = dial(g);
  if (!c) return fail(c.status());
  return report_entry(g, c->status(id), nullptr);
}

int cmd_simple(const Globals& g, const std::vector<std::string>& ids, const char* verb,
               Result<ListEntry> (Client::*op)(std::string_view)) {
  auto c = dial(g);
  if (!c) return fail(c.status());
  int rc = 0;
  for (const auto& id : ids) {
    if (report_entry(g, ((*c).*op)(id), verb) != 0) rc = 1;
  }
  return rc;
}

int cmd_logs(const Globals& g, const std::string& id, const std::string& stream, bool follow) {
  std::vector<int> streams;
  if (stream == "stdout") streams = {0};
  else if (stream == "stderr") streams = {1};
  else streams = {0, 1};
  auto write_chunk = [](int s, std::string_view data) {
    FILE* f = s == 1 ? stderr : stdout;
    std::fwrite(data.data(), 1, data.size(), f);
    std::fflush(f);
  };
  auto c = dial(g);
  if (!c) return fail(c.status());
  if (!follow) {
    for (int s : streams) {
      Status st = c->logs(id, s, false, [&](std::string_view d) {
        write_chunk(s, d);
        return true;
      });
      if (!st.is_ok()) return fail(st);
    }
    return 0;
  }
  // Follow every requested stream over the one connection; frames say which stream.
  for (int s : streams) {
    agentry::mgmt::LogsRequest req{id, static_cast<uint8_t>(s), true};
    auto sent = c->send(agentry::mgmt::MsgType::kLogsRequest, agentry::mgmt::encode_to_string(req));
    if (!sent) return fail(sent.status());
  }
  size_t open_streams = streams.size();
  while (open_streams > 0) {
    auto frame = c->read_frame();
    if (!frame) {
      if (frame.status().code() == agentry::StatusCode::kUnavailable) return 0;  // daemon went away
      return fail(frame.status());
    }
    if (frame->type == agentry::mgmt::to_byte(agentry::mgmt::MsgType::kStatusResponse)) {
      auto resp = agentry::mgmt::decode_status_response(frame->payload);
      if (resp && !resp->err.empty()) return fail(resp->err);
      continue;
    }
    if (frame->type != agentry::mgmt::to_byte(agentry::mgmt::MsgType::kLogsStream)) continue;
    auto chunk = agentry::mgmt::decode_logs_stream(frame->payload);
    if (!chunk) return fail(chunk.status());
    write_chunk(chunk->stream, chunk->data);
    if (chunk->eof) --open_streams;
  }
  return 0;
}

int cmd_events(const Globals& g, const std::vector<std::string>& ids) {
  auto c = dial(g);
  if (!c) return fail(c.status());
  Status st = c->events(ids, [&](const Event& e) {
    if (g.json) {
      std::printf("%s\n", event_json(e).dump().c_str());
    } else {
      std::time_t secs = static_cast<std::time_t>(e.ts_ns / 1'000'000'000);
      std::tm tm{};
      localtime_r(&secs, &tm);
      char when[32];
      std::strftime(when, sizeof(when), "%H:%M:%S", &tm);
      std::string type = e.type;
      if (g.color) {
        std::string color = e.type.find("crash") != std::string::npos || e.type.find("fail") != std::string::npos ||
                                    e.type.find("overflow") != std::string::npos
                                ? "\033[31m"
                                : "\033[36m";
        type = color + type + "\033[0m";
      }
      std::printf("%s.%03d  %-12s %s  %s\n", when, static_cast<int>((e.ts_ns / 1'000'000) % 1000),
                  e.process_id.empty() ? "-" : e.process_id.c_str(), type.c_str(), e.summary.c_str());
    }
    std::fflush(stdout);
    return true;
  });
  if (!st.is_ok() && st.code() != agentry::StatusCode::kUnavailable) return fail(st);
  return 0;
}

int cmd_reload(const Globals& g) {
  auto c = dial(g);
  if (!c) return fail(c.status());
  Status st = c->reload();
  if (!st.is_ok()) return fail(st);
  if (!g.json) std::printf("reloaded\n");
  else std::printf("{\"reloaded\": true}\n");
  return 0;
}

int cmd_signal(const Globals& g, const std::string& id, const std::string& sig) {
  auto signo = agentry::agent::parse_signal(sig);
  if (!signo) return fail(signo.status());
  auto c = dial(g);
  if (!c) return fail(c.status());
  return report_entry(g, c->signal(id, *signo), "signalled");
}

int cmd_info(const Globals& g) {
  auto c = dial(g);
  if (!c) return fail(c.status());
  auto info = c->info();
  if (!info) return fail(info.status());
  if (g.json) {
    json j = {{"version", info->version},
              {"pid", info->pid},
              {"started_ns", info->started_ns},
              {"config", info->config_path},
              {"processes", info->processes}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("agentryd %s, pid %lld, up %s, config %s, %u processes\n", info->version.c_str(),
                static_cast<long long>(info->pid), human_duration(now_ns() - info->started_ns).c_str(),
                info->config_path.c_str(), info->processes);
  }
  return 0;
}

int cmd_validate(const Globals& g, const std::string& file) {
  auto cfg = agentry::agent::load_config_file(file);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
    return 1;
  }
  if (g.json) std::printf("{\"valid\": true, \"processes\": %zu}\n", cfg->processes.size());
  else std::printf("%s: OK (%zu processes)\n", file.c_str(), cfg->processes.size());
  return 0;
}

// `agentry cmd '{"Command": ...}'` or `agentry cmd NAME key=value...`. Values that parse as
// JSON (numbers, true, {"a": 1}) are sent as such, anything else as a string.
int cmd_command(const Globals& g, const std::vector<std::string>& words, const std::string& listener_name,
                std::string dir, std::chrono::milliseconds timeout) {
  if (words.empty()) return fail("cmd: give a JSON request or a command name");
  std::string request;
  if (words.size() == 1 && !words[0].empty() && words[0].front() == '{') {
    request = words[0];
  } else {
    json req = {{"Command", words[0]}};
    for (size_t i = 1; i < words.size(); ++i) {
      const auto eq = words[i].find('=');
      if (eq == std::string::npos || eq == 0) return fail("cmd: expected key=value, got '" + words[i] + "'");
      const std::string key = words[i].substr(0, eq);
      const std::string value = words[i].substr(eq + 1);
      json parsed = json::parse(value, nullptr, /*allow_exceptions=*/false);
      req[key] = parsed.is_discarded() ? json(value) : parsed;
    }
    request = req.dump();
  }
  auto listener = agentry::command::parse_listener(listener_name);
  if (!listener) return fail(listener.status());
  if (dir.empty()) {
    const char* env = std::getenv("AGENTRY_COMMAND_DIR");
    dir = env != nullptr && env[0] != '\0' ? env : agentry::agent::default_runtime_dir() + "/cmd";
  }
  std::string reply = agentry::command::send_command(request, dir, *listener, timeout);
  json parsed = json::parse(reply, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    std::printf("%s\n", reply.c_str());
    return 1;
  }
  std::printf("%s\n", (::isatty(1) == 1 && !g.json ? parsed.dump(2) : parsed.dump()).c_str());
  const auto status = parsed.find("Status");
  return status != parsed.end() && status->is_number_integer() && status->get<int>() == 0 ? 0 : 1;
}

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // A reader that closed our stdout (agentry logs x | head) ends us quietly.
  ::signal(SIGPIPE, SIG_DFL);
  CLI::App app{"agentry: control agentryd"};
  app.require_subcommand(1);
  app.fallthrough();  // global flags work after the subcommand too: agentry list --json
  Globals g;
  bool no_color = false;
  app.add_option("--socket", g.socket, "management socket (default: $AGENTRY_SOCKET, then the runtime dir)");
  app.add_flag("--json", g.json, "machine-readable output");
  app.add_flag("--no-color", no_color, "never colour the output");

  auto* list = app.add_subcommand("list", "list processes");
  std::string id;
  auto* status = app.add_subcommand("status", "show one process in detail");
  status->add_option("id", id)->required();

  auto* logs = app.add_subcommand("logs", "print a process's captured output");
  std::string stream = "all";
  bool follow = false;
  logs->add_option("--stream", stream, "stdout, stderr or all")->check(CLI::IsMember({"stdout", "stderr", "all"}));
  logs->add_flag("-f,--follow", follow, "keep printing new output");
  logs->add_option("id", id)->required();

  auto* events = app.add_subcommand("events", "print lifecycle events as they happen");
  std::string process_filter;
  events->add_option("--process", process_filter, "only these processes (comma-separated)");

  std::vector<std::string> ids;
  auto* start = app.add_subcommand("start", "start processes (clears a failed state)");
  start->add_option("id", ids)->required();
  auto* stop = app.add_subcommand("stop", "stop processes");
  stop->add_option("id", ids)->required();
  auto* restart = app.add_subcommand("restart", "restart processes");
  restart->add_option("id", ids)->required();
  auto* signal_cmd = app.add_subcommand("signal", "send a signal to a process group");
  std::string sig;
  signal_cmd->add_option("id", id)->required();
  signal_cmd->add_option("signal", sig, "e.g. HUP, USR1, 15")->required();
  auto* reload = app.add_subcommand("reload", "re-read the daemon's config; restart only what changed");
  auto* info = app.add_subcommand("info", "show the daemon's version, pid and uptime");
  auto* validate = app.add_subcommand("validate", "check a config file without a daemon");
  std::string file;
  validate->add_option("-f,--file", file, "YAML config")->required();
  auto* version = app.add_subcommand("version", "print the CLI version");
  auto* cmd = app.add_subcommand("cmd", "send a JSON command to agentryd's (or a plugin's) command socket");
  std::vector<std::string> cmd_words;
  std::string cmd_listener = "agent";
  std::string cmd_dir;
  int cmd_timeout_ms = 10000;
  cmd->add_option("request", cmd_words, "'{\"Command\": ...}' or NAME key=value...")->required();
  cmd->add_option("--listener", cmd_listener, "agent (agentryd) or plugin")->check(CLI::IsMember({"agent", "plugin"}));
  cmd->add_option("--dir", cmd_dir, "command socket directory (default: $AGENTRY_COMMAND_DIR, then <runtime dir>/cmd)");
  cmd->add_option("--timeout-ms", cmd_timeout_ms, "give up after this many milliseconds");

  std::function<int()> udf_action;
  agentry::apps::add_udf_commands(app, udf_action);

  CLI11_PARSE(app, argc, argv);
  if (udf_action) return udf_action();
  const char* no_color_env = std::getenv("NO_COLOR");
  g.color = !no_color && !g.json && (no_color_env == nullptr || no_color_env[0] == '\0') && ::isatty(1) == 1;

  if (*list) return cmd_list(g);
  if (*status) return cmd_status(g, id);
  if (*logs) return cmd_logs(g, id, stream, follow);
  if (*events) return cmd_events(g, split_csv(process_filter));
  if (*start) return cmd_simple(g, ids, "started", &Client::start);
  if (*stop) return cmd_simple(g, ids, "stopped", &Client::stop);
  if (*restart) return cmd_simple(g, ids, "restarted", &Client::restart);
  if (*signal_cmd) return cmd_signal(g, id, sig);
  if (*reload) return cmd_reload(g);
  if (*info) return cmd_info(g);
  if (*validate) return cmd_validate(g, file);
  if (*cmd) return cmd_command(g, cmd_words, cmd_listener, cmd_dir, std::chrono::milliseconds(cmd_timeout_ms));
  if (*version) {
    std::printf("agentry %s\n", AGENTRY_VERSION);
    return 0;
  }
  return 2;
}
