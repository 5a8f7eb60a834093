// Samples RSS and CPU of whole process groups on a background thread.
//
// One /proc scan per interval serves every tracked group, so `list` with 1000 processes
// reads cached numbers and never touches /proc itself.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace agentry::supervisor {

struct GroupUsage {
  uint64_t rss_bytes = 0;
  double cpu_percent = 0;  // of one core, averaged over the last interval
};

// Sums the members of each group in `pgids` from one pass over /proc (exposed for tests).
// cpu_ticks gets utime+stime per group, in clock ticks.
std::unordered_map<pid_t, GroupUsage> scan_process_groups(const std::unordered_set<pid_t>& pgids,
                                                          std::unordered_map<pid_t, uint64_t>& cpu_ticks);

class ResourceSampler {
 public:
  using Report = std::function<void(std::unordered_map<pid_t, GroupUsage>)>;

  // `report` runs on the sampler thread after every scan.
  ResourceSampler(std::chrono::milliseconds interval, Report report);
  ~ResourceSampler();  // stops and joins the thread
  ResourceSampler(const ResourceSampler&) = delete;
  ResourceSampler& operator=(const ResourceSampler&) = delete;

  void track(pid_t pgid);
  void untrack(pid_t pgid);

 private:
  void run();

  const std::chrono::milliseconds interval_;
  Report report_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::unordered_set<pid_t> pgids_;
  std::thread thread_;
};

}  // namespace agentry::supervisor
