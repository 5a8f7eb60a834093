// Serves the management socket's operations from the Supervisor: converts the
// supervisor's status and events into the mgmt protocol's rows and frames.
#pragma once

#include <functional>

#include "agentry/mgmt/manager_api.h"
#include "agentry/supervisor/supervisor.h"

namespace agentry::agent {

using DaemonInfoSource = std::function<mgmt::DaemonInfo()>;
using ReloadFn = std::function<void(std::function<void(Status)>)>;

mgmt::ListEntry to_list_entry(const supervisor::ProcessStatus& s);
mgmt::Event to_mgmt_event(const supervisor::Event& e);

class ManagerAdapter final : public mgmt::ManagerApi {
 public:
  // Extra text for a process's `udf` column (its UDF health), or "".
  using UdfState = std::function<std::string(const std::string& id)>;

  ManagerAdapter(supervisor::Supervisor& sup, ReloadFn reload, DaemonInfoSource info, UdfState udf_state = nullptr)
      : sup_(sup), reload_(std::move(reload)), info_(std::move(info)), udf_state_(std::move(udf_state)) {}

  std::vector<mgmt::ListEntry> list() override;
  Result<mgmt::ListEntry> status(std::string_view id) override;
  void start(std::string_view id, mgmt::Done done) override;
  void stop(std::string_view id, mgmt::Done done) override;
  void restart(std::string_view id, mgmt::Done done) override;
  Status signal(std::string_view id, int signo) override;
  void reload(mgmt::Done done) override;
  mgmt::DaemonInfo info() override;
  Result<std::string> logs_snapshot(std::string_view id, int stream) override;
  Result<std::unique_ptr<mgmt::Subscription>> watch_logs(std::string_view id, int stream,
                                                         mgmt::LogSink sink) override;
  std::unique_ptr<mgmt::Subscription> watch_events(std::vector<std::string> ids, mgmt::EventSink sink) override;

 private:
  supervisor::Supervisor& sup_;
  ReloadFn reload_;
  DaemonInfoSource info_;
  UdfState udf_state_;
};

}  // namespace agentry::agent
