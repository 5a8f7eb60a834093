#include "agentry/agent/remote_processes.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agentry/agent/config.h"
#include "agentry/base/log.h"

namespace agentry::agent {

RemoteProcessSet::RemoteProcessSet(supervisor::Supervisor& sup, std::string source)
    : sup_(sup), source_(std::move(source)) {}

void RemoteProcessSet::reject(const std::string& id, const std::string& reason) {
  log::get("agentryd")->error("{}: process '{}' rejected: {}", source_, id, reason);
  supervisor::Event e;
  e.process_id = id;
  e.type = std::string(kConfigRejectedEvent);
  e.summary = fmt::format("spec from {} rejected: {}", source_, reason);
  sup_.publish_event(std::move(e));
}

Status RemoteProcessSet::upsert(const std::string& id, const nlohmann::json& entity) {
  Status why;
  if (!supervisor::is_valid_process_id(id)) {
    why = invalid_argument(fmt::format("'{}' is not a valid process id (1 to 128 letters, digits, '_' or '-')", id));
  } else if (!entity.is_object()) {
    why = invalid_argument(fmt::format("expected a JSON object for process '{}', got {}", id, entity.type_name()));
  } else {
    nlohmann::json spec_json = entity;
    spec_json.erase("version");  // the stream's bookkeeping, not part of a ProcessSpec
    auto spec = parse_process_spec(spec_json.dump(), source_, id);
    if (spec.is_ok()) {
      specs_[id] = std::move(spec).value();
      return Status::ok();
    }
    why = spec.status();
  }
  reject(id, why.message());
  return why;
}

void RemoteProcessSet::remove(const std::string& id) { specs_.erase(id); }

void RemoteProcessSet::retain_only(const std::vector<std::string>& keep) {
  std::set<std::string, std::less<>> wanted(keep.begin(), keep.end());
  std::erase_if(specs_, [&](const auto& entry) { return wanted.count(entry.first) == 0; });
}

void RemoteProcessSet::apply(supervisor::Done done) {
  std::vector<supervisor::ProcessSpec> desired;
  desired.reserve(specs_.size());
  for (const auto& [id, spec] : specs_) {
    auto current = sup_.status(id);
    if (current.is_ok() && current->source != source_) {
      // Another source owns this id; taking it over would surprise whoever wrote that one.
      reject(id, fmt::format("a process with this id is already managed by {}", current->source));
      continue;
    }
    desired.push_back(spec);
  }
  sup_.apply(std::move(desired), source_, std::move(done));
}

}  // namespace agentry::agent
