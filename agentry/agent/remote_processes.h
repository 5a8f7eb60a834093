// Processes whose specs arrive from a remote control plane (the SSE auto-configuration
// stream; OpAMP uses whole config files instead) rather than from the config file.
//
// Entities arrive one at a time (a patch, a delete) or as a full set (a put). Each entity
// is validated on its own: an invalid one is reported (log + a config.rejected event
// naming the field) and skipped, and the rest is applied. A rejected update leaves the
// last good spec of that id running. The desired set goes to Supervisor::apply under its
// own source name, so the file's processes are never touched, and an id the file already
// manages is refused rather than taken over.
//
// Threading: the Supervisor's loop thread only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "agentry/base/status.h"
#include "agentry/supervisor/supervisor.h"

namespace agentry::agent {

inline constexpr std::string_view kConfigRejectedEvent = "config.rejected";

class RemoteProcessSet {
 public:
  RemoteProcessSet(supervisor::Supervisor& sup, std::string source);

  // Adds or replaces the spec of `id` from its JSON object (the same keys as an item of
  // `processes:` in the file; `id` may be left out; `version` is ignored). Returns the
  // reason when the entity is rejected. Takes effect at the next apply().
  Status upsert(const std::string& id, const nlohmann::json& entity);
  // Forgets `id`; it is stopped at the next apply().
  void remove(const std::string& id);
  // Forgets every id not in `keep` (a put replaces the whole set).
  void retain_only(const std::vector<std::string>& keep);
  // Reconciles the supervisor with the desired set. `done` gets the supervisor's result.
  void apply(supervisor::Done done = nullptr);

  const std::string& source() const { return source_; }
  size_t size() const { return specs_.size(); }
  bool contains(const std::string& id) const { return specs_.count(id) != 0; }

 private:
  void reject(const std::string& id, const std::string& reason);

  supervisor::Supervisor& sup_;
  std::string source_;
  std::map<std::string, supervisor::ProcessSpec> specs_;
};

}  // namespace agentry::agent
