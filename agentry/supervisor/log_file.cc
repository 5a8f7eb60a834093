#include "agentry/supervisor/log_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string.h>  // memrchr (a GNU extension)

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/format.h>

namespace agentry::supervisor {
namespace {

// Tags written after the time stamp: [broken-line continuation][stream].
constexpr std::string_view kTags[2][2] = {{"out ", "err "}, {"out+ ", "err+ "}};

// Past a call that needed more, the output buffer is given back rather than kept.
constexpr size_t kRetainedBufferBytes = 256 * 1024;

bool valid_stream(int stream) { return stream == LogFile::kStdout || stream == LogFile::kStderr; }

Status bad_stream(int stream) {
  return invalid_argument(fmt::format("log stream {} is neither stdout (0) nor stderr (1)", stream));
}

std::string numbered(const std::string& path, uint32_t n) { return fmt::format("{}.{}", path, n); }

// "2026-11-22T02:31:35.123456Z " into `out`; returns its length.
size_t format_stamp(std::chrono::system_clock::time_point t, std::array<char, 48>& out) {
  using namespace std::chrono;
  const auto us = floor<microseconds>(t);
  const auto day = floor<days>(us);
  const year_month_day ymd{day};
  const int64_t in_day = (us - day).count();  // [0, 86'400'000'000)
  const int64_t secs = in_day / 1'000'000;
  const auto r = fmt::format_to_n(out.data(), out.size(), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z ",
                                  static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                                  static_cast<unsigned>(ymd.day()), secs / 3600, secs / 60 % 60, secs % 60,
                                  in_day % 1'000'000);
  return std::min(r.size, out.size());
}

}  // namespace

Result<std::unique_ptr<LogFile>> LogFile::open(LogFileOptions options) {
  if (options.path.empty()) return invalid_argument("log file path is empty");
  if (options.max_line == 0 || options.max_line > kMaxLineLimit) {
    return invalid_argument(fmt::format("log file {}: max_line {} is outside [1, {}]", options.path,
                                        options.max_line, kMaxLineLimit));
  }
  // O_NONBLOCK so that a FIFO at this path fails at once instead of blocking the daemon
  // until a reader shows up; it is cleared again once the file is known to be regular.
  UniqueFd fd(::open(options.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                     options.mode));
  if (!fd) {
    const int err = errno;
    Status s = Status::from_errno(err, "opening log file " + options.path);
    if (err == ENOENT) return Status(s.code(), s.message() + " (its directory must already exist)");
    return s;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::from_errno(errno, "fstat on log file " + options.path);
  if (!S_ISREG(st.st_mode)) {
    return invalid_argument(fmt::format("log file {} is not a regular file", options.path));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return Status::from_errno(errno, "fcntl on log file " + options.path);
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  return std::unique_ptr<LogFile>(new LogFile(std::move(options), std::move(fd), size));
}

LogFile::LogFile(LogFileOptions options, UniqueFd fd, uint64_t size)
    : opts_(std::move(options)), fd_(std::move(fd)), file_size_(size) {}

Status LogFile::write(int stream, std::string_view chunk, TimePoint now) {
  if (!valid_stream(stream)) return bad_stream(stream);
  now_ = now;
  stamp_ready_ = false;
  consume(stream, chunk);
  return finish_call();
}

Status LogFile::flush_partial(int stream, TimePoint now) {
  if (!valid_stream(stream)) return bad_stream(stream);
  std::string& partial = partial_[static_cast<size_t>(stream)];
  if (partial.empty()) return Status::ok();
  now_ = now;
  stamp_ready_ = false;
  add_line(stream, partial, {}, /*broken=*/false);
  partial.clear();
  return finish_call();
}

size_t LogFile::partial_size(int stream) const {
  return valid_stream(stream) ? partial_[static_cast<size_t>(stream)].size() : 0;
}

void LogFile::consume(int stream, std::string_view rest) {
  std::string& partial = partial_[static_cast<size_t>(stream)];
  const size_t max_line = opts_.max_line;
  while (!rest.empty()) {
    // partial.size() <= max_line always holds, so `room` is the number of bytes the
    // current line may still take; a newline right after them still ends it whole.
    const size_t room = max_line - partial.size();
    const size_t scan = std::min(rest.size(), room + 1);
    const auto* nl = static_cast<const char*>(std::memchr(rest.data(), '\n', scan));
    if (nl != nullptr) {
      const auto len = static_cast<size_t>(nl - rest.data());
      add_line(stream, partial, rest.substr(0, len), /*broken=*/false);
      partial.clear();
      rest.remove_prefix(len + 1);
      if (!opts_.timestamps) add_whole_lines(rest);
    } else if (rest.size() > room) {
      // max_line bytes and no newline in sight: break the line here.
      add_line(stream, partial, rest.substr(0, room), /*broken=*/true);
      partial.clear();
      rest.remove_prefix(room);
    } else {
      partial.append(rest);
      break;
    }
  }
}

void LogFile::add_line(int stream, std::string_view head, std::string_view tail, bool broken) {
  auto& continued = continued_[static_cast<size_t>(stream)];
  std::string_view tag;
  if (opts_.timestamps) {
    if (!stamp_ready_) {
      stamp_len_ = format_stamp(now_, stamp_);
      stamp_ready_ = true;
    }
    tag = kTags[continued ? 1 : 0][stream];
  }
  const size_t prefix = opts_.timestamps ? stamp_len_ + tag.size() : 0;
  const uint64_t line_bytes = prefix + head.size() + tail.size() + 1 + (out_.empty() && torn_ ? 1 : 0);
  if (should_rotate_before(line_bytes)) {
    commit();
    rotate();
  }
  if (out_.empty() && torn_) out_.push_back('\n');  // end the torn line of a failed write
  if (opts_.timestamps) {
    out_.append(stamp_.data(), stamp_len_);
    out_.append(tag);
  }
  out_.append(head);
  out_.append(tail);
  out_.push_back('\n');
  continued = broken;
}

void LogFile::add_whole_lines(std::string_view& rest) {
  // Raw lines need no per-line work, so a run of them is queued as one block: the last
  // newline within the next max_line + 1 bytes ends a run in which no line is too long,
  // and limiting the search to the room left before a rotation keeps every line of the
  // run out of the rotation decision. add_line() takes over for the line after the run.
  // It always runs first in a batch, so out_ is not empty here and any newline that
  // repairs a torn write is already queued (and counted in room_before_rotation()).
  while (!rest.empty()) {
    const uint64_t room = room_before_rotation();
    const size_t window = static_cast<size_t>(std::min<uint64_t>({rest.size(), opts_.max_line + 1, room}));
    if (window == 0) return;
    const void* last = ::memrchr(rest.data(), '\n', window);
    if (last == nullptr) return;
    const auto len = static_cast<size_t>(static_cast<const char*>(last) - rest.data()) + 1;
    out_.append(rest.substr(0, len));
    rest.remove_prefix(len);
  }
}

uint64_t LogFile::room_before_rotation() const {
  if (opts_.rotate_size == 0) return UINT64_MAX;
  const uint64_t pending = file_size_ + out_.size();
  // While a failed rotation waits for its retry, lines go on until the retry point.
  if (pending < rotation_retry_at_) return rotation_retry_at_ - pending;
  return pending < opts_.rotate_size ? opts_.rotate_size - pending : 0;
}

bool LogFile::should_rotate_before(uint64_t line_bytes) const {
  if (opts_.rotate_size == 0) return false;
  const uint64_t pending = file_size_ + out_.size();
  // An empty file takes the line whatever its size: lines are never split across files.
  if (pending == 0 || pending + line_bytes <= opts_.rotate_size) return false;
  return pending >= rotation_retry_at_;
}

void LogFile::commit() {
  const char* p = out_.data();
  size_t left = out_.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_.get(), p, left);
    if (n > 0) {
      const auto done = static_cast<size_t>(n);
      p += done;
      left -= done;
      file_size_ += done;
      bytes_written_ += done;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // write() returning 0 for a non-empty regular-file write has no errno; call it EIO.
    const int err = n < 0 ? errno : EIO;
    bytes_dropped_ += left;
    note(Status::from_errno(err, fmt::format("writing log file {} ({} bytes dropped)", opts_.path, left)));
    break;
  }
  // Whatever reached the file ends in a newline unless the write was cut mid-line.
  // When nothing was written the file's state (torn or not) is unchanged.
  if (p != out_.data()) torn_ = p[-1] != '\n';
  out_.clear();
}

void LogFile::rotate() {
  const std::string& path = opts_.path;
  // Shift the rotated files up by one, oldest first. A missing file is a gap, not an
  // error. Any other failure abandons the rotation before a file still holding data is
  // replaced: the renames done so far only moved files to free names.
  bool moved_current = false;  // path is now path.1
  if (opts_.keep > 0) {
    for (uint32_t i = opts_.keep; i >= 1; --i) {
      const std::string from = i == 1 ? path : numbered(path, i - 1);
      const std::string to = numbered(path, i);
      if (::rename(from.c_str(), to.c_str()) == 0) {
        moved_current = i == 1;
      } else if (const int err = errno; err != ENOENT) {
        return rotation_failed(
            Status::from_errno(err, fmt::format("rotating log file: renaming {} to {}", from, to)));
      }
    }
  } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return rotation_failed(Status::from_errno(errno, "rotating log file: removing " + path));
  }

  UniqueFd fresh(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, opts_.mode));
  struct stat st {};
  if (!fresh || ::fstat(fresh.get(), &st) != 0) {
    const int err = errno;
    // Put the current file back under its name (it is still open and written to), so
    // that the next attempt does not push it further down the list half-empty.
    if (moved_current) (void)::rename(numbered(path, 1).c_str(), path.c_str());
    return rotation_failed(Status::from_errno(err, "rotating log file: creating " + path));
  }
  fd_ = std::move(fresh);
  file_size_ = static_cast<uint64_t>(st.st_size);  // 0 unless someone else created it meanwhile
  torn_ = false;
  ++rotations_;
  rotation_error_reported_ = false;
  rotation_retry_at_ = 0;
}

void LogFile::rotation_failed(Status status) {
  // Keep writing to the current file; try again after another rotate_size bytes so that
  // a persistent failure costs a few system calls per rotate_size, not per line.
  rotation_retry_at_ = file_size_ + opts_.rotate_size;
  if (rotation_error_reported_) return;
  rotation_error_reported_ = true;
  note(Status(status.code(), status.message() + "; still writing to " + opts_.path));
}

void LogFile::note(Status status) {
  if (call_status_.is_ok()) call_status_ = std::move(status);
}

Status LogFile::finish_call() {
  commit();
  if (out_.capacity() > kRetainedBufferBytes) out_ = std::string();
  return std::exchange(call_status_, Status::ok());
}

}  // namespace agentry::supervisor
