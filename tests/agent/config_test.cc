#include "agentry/agent/config.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>

#include <gtest/gtest.h>

namespace agentry::agent {
namespace {

using namespace std::chrono_literals;
using supervisor::Duration;
using supervisor::ProcessSpec;
using supervisor::RestartPolicy;
using supervisor::StdinMode;

// Joins lines with '\n', so that a test reads line N of its document at index N-1.
std::string doc(std::initializer_list<std::string_view> lines) {
  std::string out;
  for (const auto& line : lines) {
    out += line;
    out += '\n';
  }
  return out;
}

DaemonConfig parse_ok(const std::string& text) {
  Result<DaemonConfig> r = parse_config(text, "t.yaml");
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? std::move(r).value() : DaemonConfig{};
}

std::string parse_error(const std::string& text) {
  Result<DaemonConfig> r = parse_config(text, "t.yaml");
  if (r.is_ok()) return "(parsed without error)";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  return r.status().message();
}

// A document with one process made of `id: web`, `command: /bin/true` and `extra`
// lines (indented by the caller as map entries, starting on line 4).
std::string web(std::initializer_list<std::string_view> extra) {
  std::string out = doc({"processes:", "  - id: web", "    command: /bin/true"});
  for (const auto& line : extra) {
    out += line;
    out += '\n';
  }
  return out;
}

ProcessSpec web_spec(std::initializer_list<std::string_view> extra) {
  DaemonConfig cfg = parse_ok(web(extra));
  EXPECT_EQ(cfg.processes.size(), 1u);
  return cfg.processes.empty() ? ProcessSpec{} : cfg.processes[0];
}

std::string web_error(std::initializer_list<std::string_view> extra) { return parse_error(web(extra)); }

// ----------------------------------------------------------------------------------------
// Values parsed into the right fields

TEST(Config, EveryProcessKeyLandsInItsField) {
  const DaemonConfig cfg = parse_ok(doc({
      "runtime_dir: /run/x",
      "state_dir: /var/lib/x",
      "log_level: debug",
      "processes:",
      "  - id: web",
      "    name: Web server",
      "    command: /usr/bin/python3",
      "    args: [\"-m\", http.server, 8080, 1.5, true]",
      "    env: {PYTHONUNBUFFERED: \"1\", LANG: C.UTF-8, N: 3}",
      "    cwd: /srv/www",
      "    user: 1000",
      "    group: www-data",
      "    stdin: none",
      "    autostart: false",
      "    restart: always",
      "    success_exit_codes: [0, 2, 255]",
      "    start_window: 3s",
      "    start_limit: 7",
      "    backoff: {initial: 500ms, max: 1m30s, multiplier: 1.5, jitter: 0.1, reset_after: 2m}",
      "    stop: {signal: INT, timeout: 5s}",
      "    logs:",
      "      ring: 64KiB",
      "      file: /var/log/web.log",
      "      rotate: {size: 10MiB, keep: 4}",
      "      timestamps: yes",
      "    udf: {socket: /run/mirror.sock, keepalive: 2s}",
  }));
  EXPECT_EQ(cfg.source, "t.yaml");
  EXPECT_EQ(cfg.runtime_dir, "/run/x");
  EXPECT_EQ(cfg.state_dir, "/var/lib/x");
  EXPECT_EQ(cfg.log_level, "debug");
  ASSERT_EQ(cfg.processes.size(), 1u);
  const ProcessSpec& p = cfg.processes[0];
  EXPECT_EQ(p.id, "web");
  EXPECT_EQ(p.name, "Web server");
  EXPECT_EQ(p.command, "/usr/bin/python3");
  EXPECT_EQ(p.args, (std::vector<std::string>{"-m", "http.server", "8080", "1.5", "true"}));
  EXPECT_TRUE(p.env.inherit);
  EXPECT_EQ(p.env.set, (std::map<std::string, std::string>{{"PYTHONUNBUFFERED", "1"}, {"LANG", "C.UTF-8"}, {"N", "3"}}));
  EXPECT_TRUE(p.env.unset.empty());
  EXPECT_EQ(p.cwd, "/srv/www");
  EXPECT_EQ(p.user, "1000");
  EXPECT_EQ(p.group, "www-data");
  EXPECT_EQ(p.stdin_mode, StdinMode::kClosed);
  EXPECT_FALSE(p.autostart);
  EXPECT_EQ(p.restart, RestartPolicy::kAlways);
  EXPECT_EQ(p.success_exit_codes, (std::vector<int>{0, 2, 255}));
  EXPECT_EQ(p.start_window, 3s);
  EXPECT_EQ(p.start_limit, 7u);
  EXPECT_EQ(p.backoff.initial, 500ms);
  EXPECT_EQ(p.backoff.max, 90s);
  EXPECT_DOUBLE_EQ(p.backoff.multiplier, 1.5);
  EXPECT_DOUBLE_EQ(p.backoff.jitter, 0.1);
  EXPECT_EQ(p.backoff.reset_after, 2min);
  EXPECT_EQ(p.stop.signal, SIGINT);
  EXPECT_EQ(p.stop.timeout, 5s);
  EXPECT_EQ(p.logs.ring_bytes, 64u * 1024);
  EXPECT_EQ(p.logs.file, "/var/log/web.log");
  EXPECT_EQ(p.logs.rotate.size, 10u * 1024 * 1024);
  EXPECT_EQ(p.logs.rotate.keep, 4u);
  EXPECT_TRUE(p.logs.timestamps);
  ASSERT_TRUE(p.udf.has_value());
  EXPECT_EQ(p.udf->socket, "/run/mirror.sock");
  EXPECT_EQ(p.udf->keepalive, 2s);
}

TEST(Config, AbsentKeysKeepTheProcessSpecDefaults) {
  const DaemonConfig cfg = parse_ok(doc({"processes:", "  - {id: a, command: /bin/true}"}));
  ASSERT_EQ(cfg.processes.size(), 1u);
  ProcessSpec expected;
  expected.id = "a";
  expected.command = "/bin/true";
  EXPECT_EQ(cfg.processes[0], expected);
  EXPECT_EQ(cfg.processes[0].name, "");  // an empty name means "use the id"
  EXPECT_FALSE(cfg.processes[0].udf.has_value());
  EXPECT_EQ(cfg.runtime_dir, "");
  EXPECT_EQ(cfg.state_dir, "");
  EXPECT_EQ(cfg.log_level, "info");
}

TEST(Config, EmptySectionsMeanDefaults) {
  const ProcessSpec p = web_spec({"    backoff:", "    stop: {}", "    logs:", "    env:", "    args:"});
  ProcessSpec expected;
  expected.id = "web";
  expected.command = "/bin/true";
  EXPECT_EQ(p, expected);
}

TEST(Config, ProcessesKeepFileOrder) {
  const DaemonConfig cfg = parse_ok(doc({
      "processes:",
      "  - {id: c, command: x}",
      "  - {id: a, command: x}",
      "  - {id: b, command: x}",
  }));
  ASSERT_EQ(cfg.processes.size(), 3u);
  EXPECT_EQ(cfg.processes[0].id, "c");
  EXPECT_EQ(cfg.processes[1].id, "a");
  EXPECT_EQ(cfg.processes[2].id, "b");
}

TEST(Config, EmptyDocumentsAreValidConfigsWithoutProcesses) {
  for (const std::string text : {"", "\n", "# only a comment\n", "---\n", "processes:\n", "processes: []\n",
                                 "processes: ~\n"}) {
    const DaemonConfig cfg = parse_ok(text);
    EXPECT_TRUE(cfg.processes.empty()) << text;
    EXPECT_EQ(cfg.text, text);
  }
}

TEST(Config, KeepsTheOriginalText) {
  const std::string text = "# hello\nlog_level: warn   # trailing\n";
  const DaemonConfig cfg = parse_ok(text);
  EXPECT_EQ(cfg.text, text);
  EXPECT_EQ(cfg.log_level, "warn");
}

TEST(Config, LogLevels) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(parse_ok(std::string("log_level: ") + level + "\n").log_level, level);
  }
  EXPECT_EQ(parse_ok("log_level: warning\n").log_level, "warn");
  EXPECT_EQ(parse_error("log_level: verbose\n"),
            "t.yaml:1:12: log_level: expected one of trace, debug, info, warn, error, critical, off, got 'verbose'");
  EXPECT_EQ(parse_error("log_level: debgu\n"),
            "t.yaml:1:12: log_level: expected one of trace, debug, info, warn, error, critical, off, got 'debgu' "
            "(did you mean 'debug'?)");
}

TEST(Config, RestartPolicies) {
  EXPECT_EQ(web_spec({"    restart: never"}).restart, RestartPolicy::kNever);
  EXPECT_EQ(web_spec({"    restart: on-failure"}).restart, RestartPolicy::kOnFailure);
  EXPECT_EQ(web_spec({"    restart: on_failure"}).restart, RestartPolicy::kOnFailure);
  EXPECT_EQ(web_spec({"    restart: always"}).restart, RestartPolicy::kAlways);
}

TEST(Config, StdinModes) {
  EXPECT_EQ(web_spec({"    stdin: null"}).stdin_mode, StdinMode::kNull);
  EXPECT_EQ(web_spec({"    stdin:"}).stdin_mode, StdinMode::kNull);
  EXPECT_EQ(web_spec({"    stdin: \"null\""}).stdin_mode, StdinMode::kNull);
  EXPECT_EQ(web_spec({"    stdin: none"}).stdin_mode, StdinMode::kClosed);
  EXPECT_EQ(web_error({"    stdin: pipe"}),
            "t.yaml:4:12: processes[web].stdin: expected null (read from /dev/null) or none (closed), got 'pipe'");
}

TEST(Config, Booleans) {
  for (const char* yes : {"true", "True", "TRUE", "yes", "on"}) {
    EXPECT_TRUE(web_spec({std::string("    logs: {timestamps: ") + yes + "}"}).logs.timestamps) << yes;
  }
  for (const char* no : {"false", "False", "no", "off"}) {
    EXPECT_FALSE(web_spec({std::string("    autostart: ") + no}).autostart) << no;
  }
  EXPECT_EQ(web_error({"    autostart: 1"}), "t.yaml:4:16: processes[web].autostart: expected true or false, got '1'");
}

TEST(Config, ProcessKeysMayComeInAnyOrder) {
  const DaemonConfig cfg = parse_ok(doc({
      "processes:",
      "  - restart: never",
      "    command: x",
      "    backoff: {max: 10s, initial: 1s}",
      "    id: late",
  }));
  ASSERT_EQ(cfg.processes.size(), 1u);
  EXPECT_EQ(cfg.processes[0].id, "late");
  EXPECT_EQ(cfg.processes[0].backoff.max, 10s);
}

// ----------------------------------------------------------------------------------------
// env: the two forms

TEST(ConfigEnv, PlainFormSetsVariables) {
  const ProcessSpec p = web_spec({"    env:", "      A: one", "      B: \"\"", "      C: 42"});
  EXPECT_TRUE(p.env.inherit);
  EXPECT_EQ(p.env.set, (std::map<std::string, std::string>{{"A", "one"}, {"B", ""}, {"C", "42"}}));
  EXPECT_TRUE(p.env.unset.empty());
}

TEST(ConfigEnv, StructuredForm) {
  const ProcessSpec p = web_spec({
      "    env:",
      "      inherit: false",
      "      set: {LANG: C.UTF-8, set: x}",
      "      unset: [HTTP_PROXY, https_proxy]",
  });
  EXPECT_FALSE(p.env.inherit);
  EXPECT_EQ(p.env.set, (std::map<std::string, std::string>{{"LANG", "C.UTF-8"}, {"set", "x"}}));
  EXPECT_EQ(p.env.unset, (std::vector<std::string>{"HTTP_PROXY", "https_proxy"}));

  // Any one of the three keys is enough.
  const ProcessSpec only_unset = web_spec({"    env: {unset: [TERM]}"});
  EXPECT_TRUE(only_unset.env.inherit);
  EXPECT_TRUE(only_unset.env.set.empty());
  EXPECT_EQ(only_unset.env.unset, (std::vector<std::string>{"TERM"}));
  EXPECT_FALSE(web_spec({"    env: {inherit: no}"}).env.inherit);
}

TEST(ConfigEnv, Errors) {
  EXPECT_EQ(web_error({"    env: {inherit: false, FOO: bar}"}),
            "t.yaml:4:27: processes[web].env.FOO: expected only inherit, set and unset next to 'inherit', "
            "got a variable; move it under processes[web].env.set");
  EXPECT_EQ(web_error({"    env: {inherit: maybe}"}),
            "t.yaml:4:20: processes[web].env.inherit: expected true or false, got 'maybe'");
  EXPECT_EQ(web_error({"    env: {set: [A]}"}),
            "t.yaml:4:16: processes[web].env.set: expected a map of variables like {NAME: value}, got a sequence");
  EXPECT_EQ(web_error({"    env: {unset: [A, \"B=1\"]}"}),
            "t.yaml:4:22: processes[web].env.unset[1]: expected a variable name without '=', got 'B=1'");
  EXPECT_EQ(web_error({"    env:", "      FOO:"}),
            "t.yaml:5:7: processes[web].env.FOO: expected a value (a string or a number; \"\" for an empty one), "
            "got null");
  EXPECT_EQ(web_error({"    env: {A: [1]}"}),
            "t.yaml:4:14: processes[web].env.A: expected a value (a string or a number; \"\" for an empty one), "
            "got a sequence");
  EXPECT_EQ(web_error({"    env: {\"A=B\": x}"}),
            "t.yaml:4:11: processes[web].env.A=B: expected a variable name without '=', got 'A=B'");
  EXPECT_EQ(web_error({"    env: [A=1]"}),
            "t.yaml:4:10: processes[web].env: expected a map of variables like {NAME: value}, or "
            "{inherit: ..., set: {...}, unset: [...]}, got a sequence");
}

// ----------------------------------------------------------------------------------------
// Errors: location, field path, what was expected

TEST(ConfigErrors, BadEnumValueNamesFileLineColumnAndField) {
  // Line 12, column 14: the value after "    restart: ".
  const std::string text = doc({
      "runtime_dir: /tmp/x",                 // 1
      "processes:",                          // 2
      "  - id: other",                       // 3
      "    command: /bin/true",              // 4
      "",                                    // 5
      "  - id: web",                         // 6
      "    command: python3",                // 7
      "    args:",                           // 8
      "      - -m",                          // 9
      "      - http.server",                 // 10
      "    cwd: /tmp",                       // 11
      "    restart: sometimes",              // 12
  });
  Result<DaemonConfig> r = parse_config(text, "examples/agentry.yaml");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "examples/agentry.yaml:12:14: processes[web].restart: expected one of never, on-failure, always, "
            "got 'sometimes'");
}

TEST(ConfigErrors, CloseEnumValueGetsASuggestion) {
  EXPECT_EQ(web_error({"    restart: allways"}),
            "t.yaml:4:14: processes[web].restart: expected one of never, on-failure, always, got 'allways' "
            "(did you mean 'always'?)");
}

TEST(ConfigErrors, UnknownKeys) {
  EXPECT_EQ(web_error({"    restat: always"}), "t.yaml:4:5: processes[web].restat: unknown key, did you mean 'restart'?");
  EXPECT_EQ(web_error({"    Restart: always"}), "t.yaml:4:5: processes[web].Restart: unknown key, did you mean 'restart'?");
  EXPECT_EQ(web_error({"    restrat: always"}), "t.yaml:4:5: processes[web].restrat: unknown key, did you mean 'restart'?");
  EXPECT_EQ(web_error({"    frobnicate: 1"}),
            "t.yaml:4:5: processes[web].frobnicate: unknown key, expected one of id, name, command, args, env, cwd, "
            "user, group, stdin, autostart, restart, success_exit_codes, start_window, start_limit, backoff, stop, "
            "logs, udf");
  EXPECT_EQ(parse_error("proceses: []\n"), "t.yaml:1:1: proceses: unknown key, did you mean 'processes'?");
  EXPECT_EQ(parse_error("x: 1\n"),
            "t.yaml:1:1: x: unknown key, expected one of runtime_dir, state_dir, log_level, processes, command, "
            "autoconfig, opamp");
  EXPECT_EQ(parse_error(doc({"processes:", "  - id: a", "    command: x", "autostart: false"})),
            "t.yaml:4:1: autostart: unknown key at the top level, expected it inside an item of processes");
  EXPECT_EQ(web_error({"    backoff: {initial: 1s, maxx: 5s}"}),
            "t.yaml:4:28: processes[web].backoff.maxx: unknown key, did you mean 'max'?");
  EXPECT_EQ(web_error({"    logs: {rotate: {size: 1MiB, keeep: 2}}"}),
            "t.yaml:4:33: processes[web].logs.rotate.keeep: unknown key, did you mean 'keep'?");
  EXPECT_EQ(web_error({"    stop: {sig: TERM}"}),
            "t.yaml:4:12: processes[web].stop.sig: unknown key, expected one of signal, timeout");
  EXPECT_EQ(web_error({"    udf: {sock: /x}"}), "t.yaml:4:11: processes[web].udf.sock: unknown key, did you mean 'socket'?");
}

TEST(ConfigErrors, KeysThatBelongElsewhereAreRedirected) {
  EXPECT_EQ(web_error({"    timeout: 5s"}), "t.yaml:4:5: processes[web].timeout: unknown key, did you mean 'stop.timeout'?");
  EXPECT_EQ(web_error({"    timout: 5s"}), "t.yaml:4:5: processes[web].timout: unknown key, did you mean 'stop.timeout'?");
  EXPECT_EQ(web_error({"    environment: {}"}), "t.yaml:4:5: processes[web].environment: unknown key, did you mean 'env'?");
  EXPECT_EQ(web_error({"    working_dir: /"}), "t.yaml:4:5: processes[web].working_dir: unknown key, did you mean 'cwd'?");
  EXPECT_EQ(web_error({"    jitter: 0.1"}), "t.yaml:4:5: processes[web].jitter: unknown key, did you mean 'backoff.jitter'?");
}

TEST(ConfigErrors, MergeKeysAreNamed) {
  EXPECT_EQ(parse_error(doc({"processes:", "  - <<: {command: x}", "    id: a"})),
            "t.yaml:2:5: processes[a].<<: YAML merge keys are not supported, expected the keys written out");
}

TEST(ConfigErrors, MissingRequiredKeys) {
  EXPECT_EQ(parse_error(doc({"processes:", "  - {id: a, command: x}", "  - command: /bin/true", "    restart: never"})),
            "t.yaml:3:5: processes[1]: missing required key 'id'");
  EXPECT_EQ(parse_error(doc({"processes:", "  - id: web", "    restart: never"})),
            "t.yaml:2:5: processes[web]: missing required key 'command'");
}

TEST(ConfigErrors, InvalidIdUsesTheIndex) {
  EXPECT_EQ(parse_error(doc({"processes:", "  - {id: a, command: x}", "  - {id: a b, command: x}"})),
            "t.yaml:3:10: processes[1].id: expected an id of 1 to 128 letters, digits, '_' or '-', got 'a b'");
  EXPECT_EQ(parse_error(doc({"processes:", "  - id: [a]", "    command: x"})),
            "t.yaml:2:9: processes[0].id: expected a process id, got a sequence");
  EXPECT_EQ(parse_error(doc({"processes:", "  - id:", "    command: x"})),
            "t.yaml:2:5: processes[0].id: expected a process id, got null");
}

TEST(ConfigErrors, DuplicateIdNamesBothLines) {
  EXPECT_EQ(parse_error(doc({
                "processes:",                // 1
                "  - id: web",               // 2
                "    command: a",            // 3
                "  - id: db",                // 4
                "    command: b",            // 5
                "  - command: c",            // 6
                "    id: web",               // 7
            })),
            "t.yaml:7:9: processes[2].id: duplicate process id 'web', first used at line 2");
}

TEST(ConfigErrors, DuplicateKeyNamesBothLines) {
  EXPECT_EQ(web_error({"    restart: always", "    cwd: /", "    restart: never"}),
            "t.yaml:6:5: processes[web].restart: duplicate key, first given at line 4");
  EXPECT_EQ(parse_error(doc({"log_level: info", "log_level: debug"})),
            "t.yaml:2:1: log_level: duplicate key, first given at line 1");
}

TEST(ConfigErrors, WrongShapes) {
  // A map where a scalar belongs.
  EXPECT_EQ(web_error({"    cwd: {a: b}"}), "t.yaml:4:10: processes[web].cwd: expected a directory path, got a map");
  // A sequence where a map belongs.
  EXPECT_EQ(web_error({"    backoff: [1s, 2s]"}),
            "t.yaml:4:14: processes[web].backoff: expected a map with keys initial, max, multiplier, jitter, "
            "reset_after, got a sequence");
  EXPECT_EQ(web_error({"    logs: 1MiB"}),
            "t.yaml:4:11: processes[web].logs: expected a map with keys ring, file, rotate, timestamps, got '1MiB'");
  // Scalars where a sequence belongs.
  EXPECT_EQ(web_error({"    args: -m http.server"}),
            "t.yaml:4:11: processes[web].args: expected a sequence of arguments like [\"-m\", \"http.server\"], "
            "got '-m http.server'");
  EXPECT_EQ(web_error({"    args: [a, {b: c}]"}),
            "t.yaml:4:15: processes[web].args[1]: expected an argument (a string or a number), got a map");
  EXPECT_EQ(web_error({"    success_exit_codes: 0"}),
            "t.yaml:4:25: processes[web].success_exit_codes: expected a sequence of exit codes like [0, 2], got '0'");
  EXPECT_EQ(web_error({"    success_exit_codes: [0, 256]"}),
            "t.yaml:4:29: processes[web].success_exit_codes[1]: expected an exit code from 0 to 255, got '256'");
  EXPECT_EQ(web_error({"    success_exit_codes: [0, x]"}),
            "t.yaml:4:29: processes[web].success_exit_codes[1]: expected an exit code from 0 to 255, got 'x'");
  // Numbers.
  EXPECT_EQ(web_error({"    start_limit: five"}),
            "t.yaml:4:18: processes[web].start_limit: expected an integer from 1 to 4294967295, got 'five'");
  EXPECT_EQ(web_error({"    start_limit: 0"}),
            "t.yaml:4:18: processes[web].start_limit: expected an integer from 1 to 4294967295, got '0'");
  EXPECT_EQ(web_error({"    start_limit: 2.5"}),
            "t.yaml:4:18: processes[web].start_limit: expected an integer from 1 to 4294967295, got '2.5'");
  EXPECT_EQ(web_error({"    start_limit: 4294967296"}),
            "t.yaml:4:18: processes[web].start_limit: expected an integer from 1 to 4294967295, got '4294967296'");
  EXPECT_EQ(web_error({"    backoff: {multiplier: two}"}),
            "t.yaml:4:27: processes[web].backoff.multiplier: expected a number, got 'two'");
  EXPECT_EQ(web_error({"    backoff: {jitter: .nan}"}),
            "t.yaml:4:23: processes[web].backoff.jitter: expected a number, got '.nan'");
  // Units.
  EXPECT_EQ(web_error({"    stop: {timeout: 10}"}),
            "t.yaml:4:21: processes[web].stop.timeout: expected a duration like 250ms, 10s, 5m, got '10' "
            "(a number needs a unit: ms, s, m or h)");
  EXPECT_EQ(web_error({"    stop: {signal: TREM}"}),
            "t.yaml:4:20: processes[web].stop.signal: expected a signal name like TERM, INT, HUP, KILL or a number "
            "from 1 to 64, got 'TREM' (did you mean 'TERM'?)");
  EXPECT_EQ(web_error({"    logs: {ring: [1]}"}),
            "t.yaml:4:18: processes[web].logs.ring: expected a size like 512B, 64KiB, 10MiB, 1GB, got a sequence");
  // Null where a value is needed points at the key.
  EXPECT_EQ(web_error({"    cwd:", "    user: root"}), "t.yaml:4:5: processes[web].cwd: expected a directory path, got null");
}

TEST(ConfigErrors, WrongShapesAtTheTop) {
  EXPECT_EQ(parse_error("- a\n- b\n"),
            "t.yaml:1:1: expected a map of settings such as processes and runtime_dir, got a sequence");
  EXPECT_EQ(parse_error("just text\n"),
            "t.yaml:1:1: expected a map of settings such as processes and runtime_dir, got 'just text'");
  EXPECT_EQ(parse_error("processes: {web: {command: x}}\n"),
            "t.yaml:1:12: processes: expected a sequence of processes, each starting with '- id: ...', got a map");
  EXPECT_EQ(parse_error(doc({"processes:", "  - web"})),
            "t.yaml:2:5: processes[0]: expected a map with at least id and command, got 'web'");
  EXPECT_EQ(parse_error("runtime_dir: [a]\n"), "t.yaml:1:14: runtime_dir: expected a directory path, got a sequence");
  EXPECT_EQ(parse_error("{[a]: 1}\n"), "t.yaml:1:2: expected a key name, got a sequence as a key");
}

TEST(ConfigErrors, ValidationErrorsPointAtTheOffendingValue) {
  // backoff.max below backoff.initial: reported by ProcessSpec::validate(), located at max.
  EXPECT_EQ(web_error({"    backoff:", "      initial: 10s", "      max: 5s"}),
            "t.yaml:6:12: processes[web].backoff.max must be at least backoff.initial");
  EXPECT_EQ(web_error({"    backoff: {jitter: 1.5}"}),
            "t.yaml:4:23: processes[web].backoff.jitter must be between 0 and 1");
  EXPECT_EQ(web_error({"    logs: {ring: 1KiB}"}),
            "t.yaml:4:18: processes[web].logs.ring: must be between 4KiB and 1GiB");
  EXPECT_EQ(web_error({"    logs:", "      rotate: {size: 1MiB}"}), "t.yaml:5:15: processes[web].logs.rotate: needs logs.file");
  EXPECT_EQ(web_error({"    udf: {keepalive: 5s}"}), "t.yaml:4:10: processes[web].udf.socket: must not be empty");
  EXPECT_EQ(web_error({"    udf: {socket: /x, keepalive: 0}"}),
            "t.yaml:4:34: processes[web].udf.keepalive: must be positive");
  // Written but empty: command is present, so validate() speaks, at the value.
  EXPECT_EQ(parse_error(doc({"processes:", "  - id: web", "    command: \"\""})),
            "t.yaml:3:14: processes[web].command: must not be empty");
}

TEST(ConfigErrors, YamlSyntaxErrorsCarryLineAndColumn) {
  EXPECT_EQ(parse_error(doc({"processes:", "  - id: web", "    args: [a, b", "    cwd: /"})),
            "t.yaml:4:8: YAML syntax error: end of sequence flow not found");
  const std::string message = parse_error(doc({"runtime_dir: /x", "log_level: info: debug"}));
  EXPECT_EQ(message.rfind("t.yaml:2:", 0), 0u) << message;
  EXPECT_NE(message.find(": YAML syntax error: "), std::string::npos) << message;
}

TEST(ConfigErrors, TabIndentationIsNamed) {
  // yaml-cpp names the tab itself here...
  const std::string message = parse_error(doc({"processes:", "  - id: web", "\tcommand: x"}));
  EXPECT_EQ(message.rfind("t.yaml:3:", 0), 0u) << message;
  EXPECT_NE(message.find("YAML syntax error"), std::string::npos) << message;
  EXPECT_NE(message.find("tab"), std::string::npos) << message;
  // ...but not here, so the loader adds it.
  EXPECT_EQ(parse_error(doc({"state_dir:", "\tx: 1"})),
            "t.yaml:2:3: YAML syntax error: illegal map value (this line is indented with a tab; YAML indentation "
            "must use spaces)");
}

TEST(ConfigErrors, StrayCommaIsASyntaxError) {
  // yaml-cpp 0.7 alone would loop here, producing empty documents until memory runs out.
  EXPECT_EQ(parse_error(","),
            "t.yaml:1:1: YAML syntax error: unexpected ',' (commas separate items only inside [ ] and { })");
  EXPECT_EQ(parse_error(doc({"- a", ", b"})),
            "t.yaml:2:1: YAML syntax error: unexpected ',' (commas separate items only inside [ ] and { })");
  EXPECT_EQ(parse_process_spec(",", "<sse>").status().message(),
            "<sse>:1:1: YAML syntax error: unexpected ',' (commas separate items only inside [ ] and { })");
}

TEST(ConfigErrors, OnlyOneDocument) {
  EXPECT_EQ(parse_error(doc({"log_level: info", "---", "log_level: debug"})),
            "t.yaml:3:1: expected a single YAML document, got a second one here");
  EXPECT_EQ(parse_ok(doc({"log_level: debug", "---"})).log_level, "debug");
  EXPECT_EQ(parse_ok(doc({"---", "log_level: debug", "...", "---", "# nothing"})).log_level, "debug");
  EXPECT_EQ(parse_error(doc({"---", "---", "log_level: debug"})),
            "t.yaml:3:1: expected a single YAML document, got a second one here");
}

// ----------------------------------------------------------------------------------------
// Files

std::filesystem::path example_path() {
  return std::filesystem::path(__FILE__).parent_path() / "../../examples/agentry.yaml";
}

TEST(ConfigFile, TheExampleParses) {
  Result<DaemonConfig> r = load_config_file(example_path().string());
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  const DaemonConfig& cfg = *r;
  ASSERT_EQ(cfg.processes.size(), 3u);

  const ProcessSpec& web = cfg.processes[0];
  EXPECT_EQ(web.id, "web");
  EXPECT_EQ(web.command, "python3");
  EXPECT_EQ(web.args, (std::vector<std::string>{"-m", "http.server", "8080", "--bind", "127.0.0.1"}));
  EXPECT_EQ(web.restart, RestartPolicy::kAlways);
  EXPECT_EQ(web.cwd, "/tmp");
  EXPECT_EQ(web.env.set.at("PYTHONUNBUFFERED"), "1");
  EXPECT_EQ(web.logs.file, "/tmp/agentry-demo/logs/web.log");
  EXPECT_EQ(web.logs.rotate.size, 1024u * 1024);
  EXPECT_EQ(web.logs.rotate.keep, 3u);

  const ProcessSpec& ticker = cfg.processes[1];
  EXPECT_EQ(ticker.id, "ticker");
  EXPECT_EQ(ticker.command, "/bin/sh");
  ASSERT_EQ(ticker.args.size(), 2u);
  EXPECT_EQ(ticker.args[1], "i=0; while true; do i=$((i+1)); echo \"tick $i\"; sleep 1; done");
  EXPECT_TRUE(ticker.logs.timestamps);
  EXPECT_EQ(ticker.logs.file, "/tmp/agentry-demo/logs/ticker.log");

  const ProcessSpec& flaky = cfg.processes[2];
  EXPECT_EQ(flaky.id, "flaky");
  EXPECT_EQ(flaky.restart, RestartPolicy::kOnFailure);
  EXPECT_EQ(flaky.args.at(1), "echo \"starting, will crash\"; sleep 2; echo \"crashing now\" >&2; exit 3");
  EXPECT_EQ(flaky.backoff.initial, 1s);
  EXPECT_EQ(flaky.backoff.max, 30s);
  EXPECT_DOUBLE_EQ(flaky.backoff.multiplier, 2.0);
  EXPECT_DOUBLE_EQ(flaky.backoff.jitter, 0.2);
  EXPECT_EQ(flaky.backoff.reset_after, 60s);
}

TEST(ConfigFile, MissingFile) {
  Result<DaemonConfig> r = load_config_file("/nonexistent/agentry.yaml");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "cannot read config file '/nonexistent/agentry.yaml': No such file or directory");
}

TEST(ConfigFile, DirectoryIsNotAConfig) {
  Result<DaemonConfig> r = load_config_file("/");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "cannot read config file '/': Is a directory");
}

TEST(ConfigFile, ErrorsNameThePath) {
  const auto path = std::filesystem::temp_directory_path() / ("agentry_config_test_" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << "processes:\n  - id: a\n    command: x\n    restart: sometimes\n";
  }
  Result<DaemonConfig> r = load_config_file(path.string());
  std::filesystem::remove(path);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), path.string() + ":4:14: processes[a].restart: expected one of never, on-failure, "
                                                  "always, got 'sometimes'");
}

// ----------------------------------------------------------------------------------------
// One process on its own (later: SSE and OpAMP payloads)

TEST(ProcessSpecText, ReadsAJsonObject) {
  Result<ProcessSpec> r = parse_process_spec(
      R"({"id": "web", "command": "/usr/bin/python3", "args": ["-m", "http.server", 8080],)"
      R"( "env": {"A": "1"}, "restart": "always", "backoff": {"max": "10s"}})",
      "<sse>");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->id, "web");
  EXPECT_EQ(r->args, (std::vector<std::string>{"-m", "http.server", "8080"}));
  EXPECT_EQ(r->env.set.at("A"), "1");
  EXPECT_EQ(r->restart, RestartPolicy::kAlways);
  EXPECT_EQ(r->backoff.max, 10s);
}

TEST(ProcessSpecText, IdFromOutside) {
  Result<ProcessSpec> r = parse_process_spec(R"({"command": "x"})", "<sse>", "db");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r->id, "db");

  Result<ProcessSpec> same = parse_process_spec(R"({"id": "db", "command": "x"})", "<sse>", "db");
  EXPECT_TRUE(same.is_ok());

  Result<ProcessSpec> other = parse_process_spec(R"({"id": "web", "command": "x"})", "<sse>", "db");
  ASSERT_FALSE(other.is_ok());
  EXPECT_EQ(other.status().message(),
            "<sse>:1:8: processes[db].id: expected 'db', the id this entry was sent for, got 'web'");

  Result<ProcessSpec> bad = parse_process_spec(R"({"command": "x", "restart": 3})", "<sse>", "db");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().message(),
            "<sse>:1:29: processes[db].restart: expected one of never, on-failure, always, got '3'");
}

TEST(ProcessSpecText, Errors) {
  EXPECT_EQ(parse_process_spec("", "<sse>").status().message(),
            "<sse>:1:1: process: expected a map with at least id and command, got null");
  EXPECT_EQ(parse_process_spec("[1]", "<sse>").status().message(),
            "<sse>:1:1: process: expected a map with at least id and command, got a sequence");
  EXPECT_EQ(parse_process_spec(R"({"command": "x"})", "<sse>").status().message(),
            "<sse>:1:1: process: missing required key 'id'");
  EXPECT_EQ(parse_process_spec(R"({"id": "a", "command": "x", "start_limit": 0})", "<sse>").status().message(),
            "<sse>:1:44: processes[a].start_limit: expected an integer from 1 to 4294967295, got '0'");
  EXPECT_EQ(parse_process_spec("{\"id\": \"a\",", "<sse>").status().message().rfind("<sse>:", 0), 0u);
}

// ----------------------------------------------------------------------------------------
// Durations, sizes, signals

TEST(ParseDuration, Accepted) {
  EXPECT_EQ(*parse_duration("0"), 0ms);
  EXPECT_EQ(*parse_duration("0s"), 0ms);
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("10s"), 10s);
  EXPECT_EQ(*parse_duration("5m"), 5min);
  EXPECT_EQ(*parse_duration("1h"), 1h);
  EXPECT_EQ(*parse_duration("1m30s"), 90s);
  EXPECT_EQ(*parse_duration("1h2m3s4ms"), 1h + 2min + 3s + 4ms);
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("0.25m"), 15s);
  EXPECT_EQ(*parse_duration("2562047h"), 2562047h);
}

TEST(ParseDuration, Refused) {
  const auto message = [](std::string_view text) { return parse_duration(text).status().message(); };
  EXPECT_EQ(message("10x"), "expected a duration like 250ms, 10s, 5m, got '10x'");
  EXPECT_EQ(message(""), "expected a duration like 250ms, 10s, 5m, got ''");
  EXPECT_EQ(message("s"), "expected a duration like 250ms, 10s, 5m, got 's'");
  EXPECT_EQ(message("1m 30s"), "expected a duration like 250ms, 10s, 5m, got '1m 30s'");
  EXPECT_EQ(message("10S"), "expected a duration like 250ms, 10s, 5m, got '10S'");
  EXPECT_EQ(message("1.s"), "expected a duration like 250ms, 10s, 5m, got '1.s'");
  EXPECT_EQ(message("10"), "expected a duration like 250ms, 10s, 5m, got '10' (a number needs a unit: ms, s, m or h)");
  EXPECT_EQ(message("1m30"), "expected a duration like 250ms, 10s, 5m, got '1m30' (a number needs a unit: ms, s, m or h)");
  EXPECT_EQ(message("-5s"), "expected a duration that is not negative, got '-5s'");
  EXPECT_EQ(message("0.5ms"), "expected a whole number of milliseconds, got '0.5ms'");
  EXPECT_EQ(message("2562048h"), "expected a duration of at most 2562047h, got '2562048h'");
  EXPECT_EQ(message("99999999999999999999999999h"),
            "expected a duration of at most 2562047h, got '99999999999999999999999999h'");
  EXPECT_EQ(message("2562047h2562047h"), "expected a duration of at most 2562047h, got '2562047h2562047h'");
  EXPECT_EQ(parse_duration("10x").status().code(), StatusCode::kInvalidArgument);
}

TEST(ParseSize, Accepted) {
  EXPECT_EQ(*parse_size("0"), 0u);
  EXPECT_EQ(*parse_size("1000"), 1000u);
  EXPECT_EQ(*parse_size("512B"), 512u);
  EXPECT_EQ(*parse_size("512b"), 512u);
  EXPECT_EQ(*parse_size("64KiB"), 64u * 1024);
  EXPECT_EQ(*parse_size("64kib"), 64u * 1024);
  EXPECT_EQ(*parse_size("1MiB"), 1024u * 1024);
  EXPECT_EQ(*parse_size("10MiB"), 10u * 1024 * 1024);
  EXPECT_EQ(*parse_size("1GiB"), uint64_t{1} << 30);
  EXPECT_EQ(*parse_size("2TiB"), uint64_t{2} << 40);
  EXPECT_EQ(*parse_size("10KB"), 10'000u);
  EXPECT_EQ(*parse_size("10kb"), 10'000u);
  EXPECT_EQ(*parse_size("10MB"), 10'000'000u);
  EXPECT_EQ(*parse_size("3GB"), 3'000'000'000u);
  EXPECT_EQ(*parse_size("1.5KiB"), 1536u);
  EXPECT_EQ(*parse_size("10 MiB"), 10u * 1024 * 1024);
  EXPECT_EQ(*parse_size("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSize, Refused) {
  const auto message = [](std::string_view text) { return parse_size(text).status().message(); };
  EXPECT_EQ(message("10x"), "expected a size like 512B, 64KiB, 10MiB, 1GB, got '10x'");
  EXPECT_EQ(message(""), "expected a size like 512B, 64KiB, 10MiB, 1GB, got ''");
  EXPECT_EQ(message("MiB"), "expected a size like 512B, 64KiB, 10MiB, 1GB, got 'MiB'");
  EXPECT_EQ(message("10M"),
            "expected a size like 512B, 64KiB, 10MiB, 1GB, got '10M' (write 10MiB for units of 1024 or 10MB for units "
            "of 1000)");
  EXPECT_EQ(message("-1KiB"), "expected a size that is not negative, got '-1KiB'");
  EXPECT_EQ(message("1.5B"), "expected a whole number of bytes, got '1.5B'");
  EXPECT_EQ(message("18446744073709551616"), "expected a size below 16EiB, got '18446744073709551616'");
  EXPECT_EQ(message("16777216TiB"), "expected a size below 16EiB, got '16777216TiB'");
  EXPECT_EQ(message("999999999999999999999999GiB"), "expected a size below 16EiB, got '999999999999999999999999GiB'");
}

TEST(ParseSignal, Accepted) {
  EXPECT_EQ(*parse_signal("TERM"), SIGTERM);
  EXPECT_EQ(*parse_signal("SIGTERM"), SIGTERM);
  EXPECT_EQ(*parse_signal("term"), SIGTERM);
  EXPECT_EQ(*parse_signal("sigterm"), SIGTERM);
  EXPECT_EQ(*parse_signal("15"), 15);
  EXPECT_EQ(*parse_signal("INT"), SIGINT);
  EXPECT_EQ(*parse_signal("HUP"), SIGHUP);
  EXPECT_EQ(*parse_signal("QUIT"), SIGQUIT);
  EXPECT_EQ(*parse_signal("KILL"), SIGKILL);
  EXPECT_EQ(*parse_signal("USR1"), SIGUSR1);
  EXPECT_EQ(*parse_signal("USR2"), SIGUSR2);
  EXPECT_EQ(*parse_signal("WINCH"), SIGWINCH);
  EXPECT_EQ(*parse_signal("1"), 1);
  EXPECT_EQ(*parse_signal("64"), 64);
  EXPECT_EQ(*parse_signal("RTMIN"), SIGRTMIN);
  EXPECT_EQ(*parse_signal("SIGRTMIN+2"), SIGRTMIN + 2);
  EXPECT_EQ(*parse_signal("RTMAX-1"), SIGRTMAX - 1);
}

TEST(ParseSignal, Refused) {
  const auto message = [](std::string_view text) { return parse_signal(text).status().message(); };
  EXPECT_EQ(message("0"), "expected a signal number from 1 to 64, got '0'");
  EXPECT_EQ(message("65"), "expected a signal number from 1 to 64, got '65'");
  EXPECT_EQ(message("99999999999"), "expected a signal number from 1 to 64, got '99999999999'");
  EXPECT_EQ(message("-9"), "expected a signal name like TERM, INT, HUP, KILL or a number from 1 to 64, got '-9'");
  EXPECT_EQ(message(""), "expected a signal name like TERM, INT, HUP, KILL or a number from 1 to 64, got ''");
  EXPECT_EQ(message("SIG"), "expected a signal name like TERM, INT, HUP, KILL or a number from 1 to 64, got 'SIG'");
  EXPECT_EQ(message("BOGUS"), "expected a signal name like TERM, INT, HUP, KILL or a number from 1 to 64, got 'BOGUS'");
  EXPECT_EQ(message("SIGKIL"),
            "expected a signal name like TERM, INT, HUP, KILL or a number from 1 to 64, got 'SIGKIL' "
            "(did you mean 'KILL'?)");
  EXPECT_EQ(message("RTMIN+99").rfind("expected a real-time signal from RTMIN to RTMIN+", 0), 0u);
  EXPECT_EQ(message("RTMAX+1").rfind("expected a real-time signal", 0), 0u);
}

}  // namespace
}  // namespace agentry::agent

namespace agentry::agent {
namespace {

TEST(CommandSection, DefaultsWhenAbsentAndEveryKeyParsed) {
  auto plain = parse_config("processes: []\n", "c.yaml");
  ASSERT_TRUE(plain.is_ok()) << plain.status().message();
  EXPECT_EQ(plain->command, CommandConfig{});
  EXPECT_TRUE(plain->command.enabled);

  auto full = parse_config(
      "command: {enabled: false, dir: /run/x/cmd, mode: \"0700\", group: adm, timeout: 3s}\n", "c.yaml");
  ASSERT_TRUE(full.is_ok()) << full.status().message();
  EXPECT_FALSE(full->command.enabled);
  EXPECT_EQ(full->command.dir, "/run/x/cmd");
  EXPECT_EQ(full->command.mode, 0700u);
  EXPECT_EQ(full->command.group, "adm");
  EXPECT_EQ(full->command.timeout, std::chrono::seconds(3));
}

TEST(CommandSection, ErrorsNameTheField) {
  auto bad_mode = parse_config("command:\n  mode: \"0999\"\n", "c.yaml");
  ASSERT_FALSE(bad_mode.is_ok());
  EXPECT_EQ(bad_mode.status().message(), "c.yaml:2:9: command.mode: expected an octal mode like \"0770\", got '0999'");
  auto unknown = parse_config("command:\n  timout: 1s\n", "c.yaml");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("did you mean 'timeout'"), std::string::npos)
      << unknown.status().message();
  auto zero = parse_config("command: {timeout: 0s}\n", "c.yaml");
  EXPECT_FALSE(zero.is_ok());
}

TEST(AutoconfigSection, AbsentDisabledAndEveryKeyParsed) {
  EXPECT_FALSE(parse_ok("processes: []\n").autoconfig.enabled);
  const DaemonConfig cfg = parse_ok(doc({
      "autoconfig:",
      "  url: https://relay.example/relay_auto_config",
      "  key_file: /etc/agentry/stream.key",
      "  ca: /etc/agentry/ca.pem",
      "  read_timeout: 90s",
      "  initial_retry_delay: 250ms",
  }));
  const AutoconfigConfig& a = cfg.autoconfig;
  EXPECT_TRUE(a.enabled);
  EXPECT_EQ(a.url, "https://relay.example/relay_auto_config");
  EXPECT_EQ(a.key_file, "/etc/agentry/stream.key");
  EXPECT_EQ(a.tls.ca_file, "/etc/agentry/ca.pem");
  EXPECT_EQ(a.read_timeout, 90s);
  EXPECT_EQ(a.initial_retry_delay, 250ms);
  EXPECT_FALSE(parse_ok("autoconfig: {enabled: false}\n").autoconfig.enabled);
}

TEST(AutoconfigSection, ErrorsNameTheField) {
  EXPECT_EQ(parse_error("autoconfig: {url: \"ftp://x/\", key: k}\n"),
            "t.yaml:1:19: autoconfig.url: URL scheme \"ftp\" is not supported (expected http, https, ws, wss or socks5)");
  EXPECT_EQ(parse_error("autoconfig: {url: \"wss://x/\", key: k}\n"),
            "t.yaml:1:19: autoconfig.url: expected a URL starting with http://, https://, got 'wss://x/'");
  EXPECT_EQ(parse_error("autoconfig: {url: \"https://x/\"}\n"),
            "t.yaml:1:13: autoconfig: expected exactly one of 'key' and 'key_file'");
  EXPECT_EQ(parse_error("autoconfig: {key: k}\n"), "t.yaml:1:13: autoconfig: missing required key 'url'");
  EXPECT_NE(parse_error("autoconfig: {url: \"https://x/\", key: k, read_timout: 1s}\n").find("did you mean 'read_timeout'"),
            std::string::npos);
  EXPECT_EQ(parse_error("autoconfig: {url: \"https://x/\", key: k, tls: {cert: c.pem}}\n"),
            "t.yaml:1:46: autoconfig.tls: a client certificate needs both cert and key");
}

TEST(OpampSection, DefaultsAndEveryKeyParsed) {
  const DaemonConfig plain = parse_ok(doc({"opamp: {endpoint: \"ws://127.0.0.1:4320/v1/opamp\"}"}));
  EXPECT_TRUE(plain.opamp.enabled);
  EXPECT_EQ(plain.opamp.heartbeat, 30s);
  EXPECT_TRUE(plain.opamp.accepts_remote_config);
  EXPECT_TRUE(plain.opamp.accepts_commands);
  EXPECT_FALSE(plain.opamp.tls.insecure_skip_verify);

  const DaemonConfig cfg = parse_ok(doc({
      "opamp:",
      "  endpoint: https://fleet.example/v1/opamp",
      "  headers: {Authorization: \"Secret-Key abc\"}",
      "  tls: {ca: ca.pem, cert: c.pem, key: c.key}",
      "  heartbeat: 15s",
      "  instance_uid: 0192f3a4-5b6c-7d8e-9f00-112233445566",
      "  compression: true",
      "  signature_public_key: /etc/agentry/packages.pub",
      "  download_report_interval: 2s",
      "  capabilities: {accepts_packages: false, accepts_restart_command: false}",
  }));
  const OpampConfig& o = cfg.opamp;
  EXPECT_EQ(o.endpoint, "https://fleet.example/v1/opamp");
  EXPECT_EQ(o.headers.at("Authorization"), "Secret-Key abc");
  EXPECT_EQ(o.tls.ca_file, "ca.pem");
  EXPECT_EQ(o.tls.cert_file, "c.pem");
  EXPECT_EQ(o.tls.key_file, "c.key");
  EXPECT_EQ(o.heartbeat, 15s);
  EXPECT_EQ(o.instance_uid, "0192f3a4-5b6c-7d8e-9f00-112233445566");
  EXPECT_TRUE(o.compression);
  EXPECT_EQ(o.signature_public_key_file, "/etc/agentry/packages.pub");
  EXPECT_EQ(o.download_report_interval, 2s);
  EXPECT_FALSE(o.accepts_packages);
  EXPECT_FALSE(o.accepts_restart_command);
  EXPECT_TRUE(o.reports_health);
}

TEST(OpampSection, ErrorsNameTheField) {
  EXPECT_EQ(parse_error("opamp: {headers: {}}\n"), "t.yaml:1:8: opamp: missing required key 'endpoint'");
  EXPECT_NE(parse_error("opamp: {endpoint: \"ws://h/\", capabilities: {accepts_pakages: true}}\n")
                .find("did you mean 'accepts_packages'"),
            std::string::npos);
  EXPECT_EQ(parse_error("opamp: {endpoint: \"ws://h/\", download_report_interval: 100ms}\n"),
            "t.yaml:1:56: opamp.download_report_interval: expected a duration of at least 1s, got '100ms'");
}

TEST(GetOption, ScalarsMapsSequencesAndErrors) {
  auto cfg = parse_config(R"(log_level: debug
command: {dir: /run/cmd, group: ""}
processes:
  - id: web
    command: /bin/true
    args: [a, b]
)",
                          "c.yaml");
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().message();
  EXPECT_EQ(*get_option(*cfg, "log_level"), "debug");
  EXPECT_EQ(*get_option(*cfg, "command.dir"), "/run/cmd");
  EXPECT_EQ(*get_option(*cfg, "processes.0.id"), "web");
  EXPECT_EQ(*get_option(*cfg, "processes.0.args"), "[\"a\",\"b\"]");
  EXPECT_EQ(get_option(*cfg, "command.nothing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(get_option(*cfg, "processes.7.id").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(get_option(*cfg, "command.group").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(get_option(*cfg, "command..dir").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(get_option(*cfg, "").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace agentry::agent
