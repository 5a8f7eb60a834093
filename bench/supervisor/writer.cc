// writer: a program that writes a known amount of output to stdout, for the log-capture
// and rotation parts of bench/supervisor/compare.py.
//
//   writer MODE COUNT [STAMP_FILE]
//
//   MODE bulk      COUNT bytes in 64 KiB write()s (the stream is 100-byte text lines)
//   MODE lines     COUNT bytes, one write() per 100-byte line (COUNT rounded down to 100s)
//   (use a COUNT that is a multiple of 100: agentryd ends an unterminated last line with a
//   newline of its own when the process exits, which would add a byte to the log file)
//   MODE numbered  COUNT lines "line 0000000000\n" (16 bytes), one write() per line
//
// Before the first write it writes its CLOCK_REALTIME start time (ns) to STAMP_FILE, and
// after the last write returned, a second line with the end time, so that the time the
// output took to land in a log file can be measured from the writer's own start, whatever
// the supervisor did before starting it. Exits 0 when everything was written.
// Build: g++ -O2 -std=c++20 writer.cc
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

long long realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

bool write_all(const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void stamp(const char* path, long long ns) {
  if (!path) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%lld\n", ns);
  (void)!write(fd, buf, static_cast<size_t>(n));
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: writer bulk|lines|numbered COUNT [STAMP_FILE]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_DFL);
  const std::string mode = argv[1];
  const long long count = std::atoll(argv[2]);
  const char* stamp_path = argc > 3 ? argv[3] : nullptr;

  // One 100-byte line: 99 printable bytes and a newline.
  char line[100];
  for (int i = 0; i < 99; ++i) line[i] = static_cast<char>('a' + i % 26);
  line[99] = '\n';
  // 64 KiB plus one line, so that every 64 KiB write can start where the previous one
  // stopped within a line: the stream stays whole 100-byte lines across writes.
  constexpr size_t kChunk = 64 * 1024;
  std::vector<char> chunk(kChunk + 100);
  for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = line[i % 100];

  stamp(stamp_path, realtime_ns());
  bool ok = true;
  if (mode == "bulk") {
    long long left = count;
    size_t phase = 0;  // position within the current line
    while (ok && left > 0) {
      size_t n = left < static_cast<long long>(kChunk) ? static_cast<size_t>(left) : kChunk;
      ok = write_all(chunk.data() + phase, n);
      phase = (phase + n) % 100;
      left -= static_cast<long long>(n);
    }
  } else if (mode == "lines") {
    for (long long i = 0; ok && i < count / 100; ++i) ok = write_all(line, sizeof line);
  } else if (mode == "numbered") {
    char buf[32];
    for (long long i = 0; ok && i < count; ++i) {
      int n = std::snprintf(buf, sizeof buf, "line %010lld\n", i);
      ok = write_all(buf, static_cast<size_t>(n));
    }
  } else {
    std::fprintf(stderr, "writer: unknown mode %s\n", mode.c_str());
    return 2;
  }
  stamp(stamp_path, realtime_ns());
  return ok ? 0 : 1;
}
