#include "agentry/agent/manager_adapter.h"

#include <set>

namespace agentry::agent {
namespace {

int64_t unix_ns(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Keeps a supervisor subscription alive for as long as the mgmt side holds it.
class SubscriptionBridge final : public mgmt::Subscription {
 public:
  explicit SubscriptionBridge(std::unique_ptr<supervisor::Subscription> inner) : inner_(std::move(inner)) {}

 private:
  std::unique_ptr<supervisor::Subscription> inner_;
};

}  // namespace

mgmt::ListEntry to_list_entry(const supervisor::ProcessStatus& s) {
  mgmt::ListEntry e;
  e.id = s.id;
  e.name = s.name;
  e.state = std::string(supervisor::to_string(s.state));
  e.pid = s.pid;
  e.rss = s.rss_bytes;
  e.cpu = s.cpu_percent;
  e.restarts = s.restarts;
  e.since_ns = unix_ns(s.since);
  e.last_exit = s.last_exit;
  e.error = s.error;
  e.source = s.source;
  e.command = s.command_line;
  e.next_restart_ns = s.next_restart ? unix_ns(*s.next_restart) : 0;
  return e;
}

mgmt::Event to_mgmt_event(const supervisor::Event& e) {
  mgmt::Event m;
  m.process_id = e.process_id;
  m.type = e.type;
  m.ts_ns = unix_ns(e.time);
  m.summary = e.summary;
  m.exit_code = e.exit_code;
  m.signal = e.signal;
  m.restarts = e.restarts;
  m.delay_ns = e.delay.count();
  return m;
}

std::vector<mgmt::ListEntry> ManagerAdapter::list() {
  std::vector<mgmt::ListEntry> out;
  for (const auto& s : sup_.list()) {
    out.push_back(to_list_entry(s));
    if (udf_state_) out.back().udf = udf_state_(s.id);
  }
  return out;
}

Result<mgmt::ListEntry> ManagerAdapter::status(std::string_view id) {
  auto s = sup_.status(id);
  if (!s) return s.status();
  mgmt::ListEntry e = to_list_entry(*s);
  if (udf_state_) e.udf = udf_state_(e.id);
  return e;
}

void ManagerAdapter::start(std::string_view id, mgmt::Done done) { sup_.start(id, std::move(done)); }
void ManagerAdapter::stop(std::string_view id, mgmt::Done done) { sup_.stop(id, std::move(done)); }
void ManagerAdapter::restart(std::string_view id, mgmt::Done done) { sup_.restart(id, std::move(done)); }
Status ManagerAdapter::signal(std::string_view id, int signo) { return sup_.signal(id, signo); }
void ManagerAdapter::reload(mgmt::Done done) { reload_(std::move(done)); }
mgmt::DaemonInfo ManagerAdapter::info() { return info_(); }

Result<std::string> ManagerAdapter::logs_snapshot(std::string_view id, int stream) {
  return sup_.logs_snapshot(id, stream);
}

Result<std::unique_ptr<mgmt::Subscription>> ManagerAdapter::watch_logs(std::string_view id, int stream,
                                                                       mgmt::LogSink sink) {
  auto sub = sup_.watch_logs(id, stream, std::move(sink));
  if (!sub) return sub.status();
  return std::unique_ptr<mgmt::Subscription>(std::make_unique<SubscriptionBridge>(std::move(sub).value()));
}

std::unique_ptr<mgmt::Subscription> ManagerAdapter::watch_events(std::vector<std::string> ids, mgmt::EventSink sink) {
  std::set<std::string> filter(ids.begin(), ids.end());
  auto sub = sup_.watch_events(std::move(filter), [sink = std::move(sink)](const supervisor::Event& e) {
    return sink(to_mgmt_event(e));
  });
  return std::make_unique<SubscriptionBridge>(std::move(sub));
}

}  // namespace agentry::agent
