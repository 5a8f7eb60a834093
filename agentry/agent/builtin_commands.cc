#include "agentry/agent/builtin_commands.h"

#include <cctype>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agentry/agent/manager_adapter.h"
#include "agentry/command/protocol.h"

namespace agentry::agent {

namespace asio = boost::asio;
using json = nlohmann::json;

struct LoopCaller::Call {
  bool done = false;
  std::optional<Result<std::string>> result;
};

Result<std::string> LoopCaller::call(std::function<void(std::function<void(Result<std::string>)>)> fn) {
  auto state = std::make_shared<Call>();
  {
    std::lock_guard lock(mu_);
    if (closed_) return cancelled("the daemon is shutting down");
  }
  auto complete = [this, state](Result<std::string> r) {
    std::lock_guard lock(mu_);
    if (state->done) return;
    state->done = true;
    state->result.emplace(std::move(r));
    cv_.notify_all();
  };
  asio::post(io_, [fn = std::move(fn), complete]() mutable { fn(std::move(complete)); });
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state->done || closed_; });
  if (!state->done) return cancelled("the daemon is shutting down");
  return std::move(*state->result);
}

void LoopCaller::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

namespace {

// Go decodes JSON keys case-insensitively, so clients send "Option", "option", "OPTION".
std::optional<json> field(const json& request, std::string_view name) {
  if (!request.is_object()) return std::nullopt;
  for (auto it = request.begin(); it != request.end(); ++it) {
    const std::string& key = it.key();
    if (key.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < key.size() && same; ++i) {
      same = std::tolower(static_cast<unsigned char>(key[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (same) return it.value();
  }
  return std::nullopt;
}

Result<json> parse_request(std::string_view request_json) {
  try {
    return json::parse(request_json);
  } catch (const json::exception& e) {
    return invalid_argument(std::string("request is not JSON: ") + e.what());
  }
}

json entry_json(const mgmt::ListEntry& e) {
  json j = {{"Id", e.id},         {"Name", e.name},         {"State", e.state},       {"Pid", e.pid},
            {"RssBytes", e.rss},   {"CpuPercent", e.cpu},    {"Restarts", e.restarts}, {"SinceUnixNano", e.since_ns},
            {"LastExit", e.last_exit}, {"Error", e.error},   {"Source", e.source},     {"Command", e.command}};
  return j;
}

std::string ok_response(json body) {
  body["Status"] = 0;
  if (!body.contains("StatusMessage")) body["StatusMessage"] = "";
  return body.dump();
}

Result<std::string> getoption(LoopCaller& loop, const BuiltinContext& ctx, std::string_view request_json) {
  auto request = parse_request(request_json);
  if (!request) return request.status();
  auto option = field(*request, "Option");
  std::string name = option && option->is_string() ? option->get<std::string>() : std::string();
  return loop.call([ctx, name](auto complete) {
    json out = {{"Option", name}};
    auto value = get_option(ctx.config(), name);
    if (value) {
      out["Status"] = 0;
      out["StatusMessage"] = "";
      out["Value"] = *value;
    } else {
      // The statuses upstream gives: 1 unknown option, 2 empty value, 3 malformed key.
      const StatusCode code = value.status().code();
      out["Status"] = code == StatusCode::kNotFound ? 1 : code == StatusCode::kFailedPrecondition ? 2 : 3;
      out["StatusMessage"] = value.status().message();
      out["Value"] = "";
    }
    complete(out.dump());
  });
}

// process.start / stop / restart
Result<std::string> process_op(LoopCaller& loop, const BuiltinContext& ctx, std::string_view request_json,
                               std::string op) {
  auto request = parse_request(request_json);
  if (!request) return request.status();
  auto id = field(*request, "Id");
  if (!id || !id->is_string() || id->get<std::string>().empty()) {
    return invalid_argument(fmt::format("process.{} needs \"Id\": the process id", op));
  }
  std::string pid = id->get<std::string>();
  return loop.call([ctx, pid, op](auto complete) {
    auto finish = [ctx, pid, complete](Status s) {
      if (!s.is_ok()) {
        complete(s);
        return;
      }
      auto st = ctx.supervisor->status(pid);
      if (!st) {
        complete(st.status());
        return;
      }
      complete(ok_response({{"Process", entry_json(to_list_entry(*st))}}));
    };
    if (op == "start") ctx.supervisor->start(pid, finish);
    else if (op == "stop") ctx.supervisor->stop(pid, finish);
    else ctx.supervisor->restart(pid, finish);
  });
}

}  // namespace

Status register_builtin_commands(command::Monitor& monitor, LoopCaller& loop, BuiltinContext ctx) {
  auto* l = &loop;
  AGENTRY_RETURN_IF_ERROR(monitor.register_handler(
      "agent.config.getoption", [l, ctx](std::string_view req) { return getoption(*l, ctx, req); }));
  AGENTRY_RETURN_IF_ERROR(monitor.register_handler("agent.status", [l, ctx](std::string_view) {
    return l->call([ctx](auto complete) {
      mgmt::DaemonInfo info = ctx.info();
      complete(ok_response({{"Version", info.version},
                            {"Pid", info.pid},
                            {"StartedUnixNano", info.started_ns},
                            {"Config", info.config_path},
                            {"Processes", info.processes}}));
    });
  }));
  AGENTRY_RETURN_IF_ERROR(monitor.register_handler("agent.reload", [l, ctx](std::string_view) {
    return l->call([ctx](auto complete) {
      ctx.reload([complete](Status s) {
        if (!s.is_ok()) complete(s);
        else complete(ok_response({{"StatusMessage", "reloaded"}}));
      });
    });
  }));
  AGENTRY_RETURN_IF_ERROR(monitor.register_handler("process.list", [l, ctx](std::string_view) {
    return l->call([ctx](auto complete) {
      json list = json::array();
      for (const auto& s : ctx.supervisor->list()) list.push_back(entry_json(to_list_entry(s)));
      complete(ok_response({{"Processes", std::move(list)}}));
    });
  }));
  for (const char* op : {"start", "stop", "restart"}) {
    AGENTRY_RETURN_IF_ERROR(monitor.register_handler(
        std::string("process.") + op,
        [l, ctx, op = std::string(op)](std::string_view req) { return process_op(*l, ctx, req, op); }));
  }
  return Status::ok();
}

}  // namespace agentry::agent
