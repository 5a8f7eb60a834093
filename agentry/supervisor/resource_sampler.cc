#include "agentry/supervisor/resource_sampler.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace agentry::supervisor {
namespace {

// Parses the fields we need from /proc/<pid>/stat. The command name (field 2) may hold
// spaces and parentheses, so fields are counted from the last ')'.
bool parse_stat(const char* text, pid_t& pgrp, uint64_t& ticks, uint64_t& rss_pages) {
  const char* p = std::strrchr(text, ')');
  if (p == nullptr) return false;
  ++p;
  // After ')': state(3) ppid(4) pgrp(5) session(6) tty(7) tpgid(8) flags(9) minflt(10)
  // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15) ... rss(24).
  int field = 2;
  uint64_t utime = 0, stime = 0;
  while (*p != '\0') {
    while (*p == ' ') ++p;
    if (*p == '\0') break;
    ++field;
    char* end = nullptr;
    switch (field) {
      case 5: pgrp = static_cast<pid_t>(std::strtol(p, &end, 10)); break;
      case 14: utime = std::strtoull(p, &end, 10); break;
      case 15: stime = std::strtoull(p, &end, 10); break;
      case 24:
        rss_pages = std::strtoull(p, &end, 10);
        ticks = utime + stime;
        return true;
      default: break;
    }
    while (*p != ' ' && *p != '\0') ++p;
  }
  return false;
}

}  // namespace

std::unordered_map<pid_t, GroupUsage> scan_process_groups(const std::unordered_set<pid_t>& pgids,
                                                          std::unordered_map<pid_t, uint64_t>& cpu_ticks) {
  std::unordered_map<pid_t, GroupUsage> usage;
  cpu_ticks.clear();
  if (pgids.empty()) return usage;
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return usage;
  char path[300];  // "/proc/" + d_name (up to 255) + "/stat"
  char buf[1024];
  while (struct dirent* de = ::readdir(dir)) {
    if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
    std::snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // exited meanwhile
    ssize_t n = ::read(fd, buf, sizeof(buf) - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    pid_t pgrp = 0;
    uint64_t ticks = 0, rss = 0;
    if (!parse_stat(buf, pgrp, ticks, rss) || pgids.count(pgrp) == 0) continue;
    usage[pgrp].rss_bytes += rss * page;
    cpu_ticks[pgrp] += ticks;
  }
  ::closedir(dir);
  return usage;
}

ResourceSampler::ResourceSampler(std::chrono::milliseconds interval, Report report)
    : interval_(interval), report_(std::move(report)), thread_([this] { run(); }) {}

ResourceSampler::~ResourceSampler() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ResourceSampler::track(pid_t pgid) {
  std::lock_guard lock(mu_);
  pgids_.insert(pgid);
}

void ResourceSampler::untrack(pid_t pgid) {
  std::lock_guard lock(mu_);
  pgids_.erase(pgid);
}

void ResourceSampler::run() {
  static const double ticks_per_second = static_cast<double>(::sysconf(_SC_CLK_TCK));
  std::unordered_map<pid_t, uint64_t> previous_ticks;
  auto previous_time = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, interval_, [this] { return stopping_; });
    if (stopping_) break;
    std::unordered_set<pid_t> groups = pgids_;
    lock.unlock();

    std::unordered_map<pid_t, uint64_t> ticks;
    auto usage = scan_process_groups(groups, ticks);
    const auto now = std::chrono::steady_clock::now();
    const double wall = std::chrono::duration<double>(now - previous_time).count();
    for (auto& [pgid, u] : usage) {
      auto prev = previous_ticks.find(pgid);
      if (prev != previous_ticks.end() && wall > 0 && ticks[pgid] >= prev->second) {
        u.cpu_percent = 100.0 * static_cast<double>(ticks[pgid] - prev->second) / ticks_per_second / wall;
      }
    }
    previous_ticks = std::move(ticks);
    previous_time = now;
    report_(std::move(usage));
    lock.lock();
  }
}

}  // namespace agentry::supervisor
