#include "agentry/agent/udf_health.h"

#include <atomic>
#include <mutex>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include "agentry/base/log.h"
#include "agentry/udf/host.h"

namespace agentry::agent {

namespace asio = boost::asio;

namespace {

// One health check of one run (pid) of one process.
struct Checker {
  std::string id;
  int64_t pid = 0;
  supervisor::UdfSpec spec;
  std::mutex mu;
  bool stopping = false;
  udf::HostSession* session = nullptr;  // set while connected; guarded by mu
  std::atomic<bool> finished{false};
  std::thread thread;
};

}  // namespace

class UdfHealth::Impl : public std::enable_shared_from_this<UdfHealth::Impl> {
 public:
  Impl(asio::io_context& io_ctx, supervisor::Supervisor& s) : io(io_ctx), sup(s) {}

  void on_event(const supervisor::Event& e);
  void start_checker(const std::string& id);
  void stop_checker(const std::string& id);
  void run(const std::shared_ptr<Checker>& c);

  asio::io_context& io;
  supervisor::Supervisor& sup;
  std::shared_ptr<spdlog::logger> log = log::get("udf-health");
  std::unique_ptr<supervisor::Subscription> events;
  std::map<std::string, std::shared_ptr<Checker>> checkers;  // loop thread only
  std::vector<std::shared_ptr<Checker>> retired;             // stopped, maybe still running
  void join_finished(bool all);

  mutable std::mutex mu;  // guards the two maps below (read by any thread)
  std::map<std::string, ::agent::InfoResponse> infos;
  std::map<std::string, std::string> states;
};

void UdfHealth::Impl::on_event(const supervisor::Event& e) {
  if (e.process_id.empty()) return;
  if (e.type == supervisor::event_type::kStarted) {
    start_checker(e.process_id);
  } else if (e.type == supervisor::event_type::kStopping || e.type == supervisor::event_type::kCrashed ||
             e.type == supervisor::event_type::kStopped || e.type == supervisor::event_type::kRemoved ||
             e.type == supervisor::event_type::kFailed) {
    stop_checker(e.process_id);
  }
}

void UdfHealth::Impl::start_checker(const std::string& id) {
  auto spec = sup.spec(id);
  auto st = sup.status(id);
  if (!spec || !st || !spec->udf) return;
  stop_checker(id);
  auto c = std::make_shared<Checker>();
  c->id = id;
  c->pid = st->pid;
  c->spec = *spec->udf;
  {
    std::lock_guard lock(mu);
    states[id] = "checking";
  }
  // The thread keeps the Impl alive while it runs; ~UdfHealth joins every thread.
  c->thread = std::thread([self = shared_from_this(), c] { self->run(c); });
  checkers[id] = c;
}

void UdfHealth::Impl::stop_checker(const std::string& id) {
  auto it = checkers.find(id);
  if (it == checkers.end()) return;
  auto c = it->second;
  checkers.erase(it);
  {
    std::lock_guard lock(c->mu);
    c->stopping = true;
    if (c->session != nullptr) c->session->abort(cancelled("process is stopping"));
  }
  // The checker may still be connecting (bounded by its connect timeout): keep it aside
  // and join it once it has finished, instead of blocking the loop now.
  retired.push_back(std::move(c));
  join_finished(false);
}

void UdfHealth::Impl::join_finished(bool all) {
  std::erase_if(retired, [all](const std::shared_ptr<Checker>& c) {
    if (!all && !c->finished.load()) return false;
    if (c->thread.joinable()) c->thread.join();
    return true;
  });
}

void UdfHealth::Impl::run(const std::shared_ptr<Checker>& c) {
  // Reports under the checker's lock: once stop_checker() set `stopping`, nothing more
  // is posted, so no report can outlive the loop or the supervisor.
  auto report = [this, c](std::string reason) {
    std::lock_guard lock(c->mu);
    if (c->stopping) return;
    {
      std::lock_guard state_lock(mu);
      states[c->id] = "unhealthy: " + reason;
    }
    std::weak_ptr<Impl> weak = shared_from_this();
    asio::post(io, [weak, id = c->id, pid = c->pid, reason = std::move(reason)] {
      if (auto self = weak.lock()) self->sup.mark_unhealthy(id, pid, "udf health check: " + reason);
    });
  };
  struct MarkFinished {
    Checker& c;
    ~MarkFinished() { c.finished = true; }
  } mark_finished{*c};

  udf::HostOptions opts;
  opts.keepalive_timeout = c->spec.keepalive;
  opts.connect_timeout = std::max<std::chrono::milliseconds>(c->spec.keepalive, std::chrono::seconds(5));
  opts.name = c->id;
  auto session = udf::HostSession::connect_socket(c->spec.socket, opts, [](const ::agent::Response&) {});
  if (!session) {
    report(fmt::format("cannot connect to {}: {}", c->spec.socket, session.status().message()));
    return;
  }
  {
    std::lock_guard lock(c->mu);
    if (c->stopping) return;
    c->session = session->get();
  }
  auto info = (*session)->info();
  if (!info) {
    report("Info failed: " + info.status().message());
  } else {
    // describe_info() is multi-line; status rows and events want one line.
    std::string described;
    for (char ch : udf::describe_info(*info)) described += ch == '\n' ? std::string("; ") : std::string(1, ch);
    while (described.size() >= 2 && described.compare(described.size() - 2, 2, "; ") == 0) described.resize(described.size() - 2);
    {
      std::lock_guard lock(mu);
      infos[c->id] = *info;
      states[c->id] = "healthy; " + described;
    }
    {
      std::lock_guard lock(c->mu);
      if (!c->stopping) {
        std::weak_ptr<Impl> weak = shared_from_this();
        asio::post(io, [weak, id = c->id, described] {
          auto self = weak.lock();
          if (!self) return;
          supervisor::Event e;
          e.process_id = id;
          e.type = "udf.healthy";
          e.summary = "UDF answered Info: " + described;
          self->sup.publish_event(std::move(e));
        });
      }
    }
    // Blocks until the session ends: a keepalive not answered in time, or the UDF gone.
    auto end = (*session)->wait();
    Status why = (*session)->status();
    report(!why.is_ok() ? why.message() : std::string("the UDF closed the connection"));
  }
  std::lock_guard lock(c->mu);
  c->session = nullptr;
}

UdfHealth::UdfHealth(asio::io_context& io, supervisor::Supervisor& sup) : impl_(std::make_shared<Impl>(io, sup)) {
  std::weak_ptr<Impl> weak = impl_;
  impl_->events = sup.watch_events({}, [weak](const supervisor::Event& e) {
    if (auto self = weak.lock()) self->on_event(e);
    return true;
  });
}

UdfHealth::~UdfHealth() {
  impl_->events.reset();
  std::vector<std::string> ids;
  for (const auto& [id, c] : impl_->checkers) ids.push_back(id);
  for (const auto& id : ids) impl_->stop_checker(id);
  impl_->join_finished(/*all=*/true);
}

std::string UdfHealth::describe(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->states.find(id);
  return it == impl_->states.end() ? std::string() : it->second;
}

std::optional<::agent::InfoResponse> UdfHealth::info(const std::string& id) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->infos.find(id);
  if (it == impl_->infos.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, ::agent::InfoResponse> UdfHealth::all_info() const {
  std::lock_guard lock(impl_->mu);
  return impl_->infos;
}

}  // namespace agentry::agent
