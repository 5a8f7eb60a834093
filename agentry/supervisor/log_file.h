// The log file of one supervised process: stdout and stderr appended to one file, line
// by line, with optional size rotation and optional per-line timestamps.
//
// Lines never mix. Each stream has its own buffer for the line it is in the middle of,
// and only whole lines reach the file, so a stdout line and a stderr line can never end
// up spliced together however the pipes' reads happen to be cut. Within a stream, order
// is kept. The unfinished line of a stream is written:
//  - when its newline arrives;
//  - by flush_partial(), which the owner calls when the process has exited (the line is
//    written with a newline added);
//  - when it grows past `max_line` bytes (64 KiB by default): the first `max_line`
//    bytes are written as a line of their own, with a newline added, and the rest of the
//    line continues as the next line. Lines are always broken at the same place
//    whatever the read sizes, so the file content does not depend on timing. With
//    timestamps on, continuation pieces carry the tag `out+` / `err+` so that a reader
//    can join them again; without timestamps the added newline is the only change.
//
// File format. Without timestamps each line is written exactly as the process printed
// it. With timestamps each line is
//   2026-11-22T02:31:35.123456Z out <line>
// that is, the UTC time (microseconds) at which the line was handed to write() or
// flush_partial(), then `out` or `err`. All lines handed over by one call share the
// time stamp that call was given.
//
// Rotation (rotate_size > 0). A line that would push the file past rotate_size starts a
// new file; rotation only ever happens between two lines, and a line is never split
// across files. A line longer than rotate_size on its own is written alone into a file,
// which then exceeds the limit. Rotating renames path.<keep-1> to path.<keep> (replacing
// the oldest), ..., path.1 to path.2, path to path.1, and creates a fresh path; with
// keep == 0 the old file is simply deleted. The size of a file that already exists when
// it is opened counts toward the limit. Since this object is the only writer and
// rotates synchronously between two write() calls of its own, no line can be lost or
// written twice at the rotation instant.
//
// Errors are values: nothing here throws but std::bad_alloc. A failed write (ENOSPC,
// EIO, EFBIG, ...) returns an error Status; the bytes that could not be written are
// dropped and counted in bytes_dropped(), and the next call simply tries again
// (nothing is retried in a loop).
// If a write was torn mid-line, a newline is inserted before the next write so that
// the following lines stay intact. A rotation that fails (a rename or the new open)
// is abandoned at the first failing step, without ever replacing a file that still
// holds data, and writing goes on into the current file: no data is lost, the file
// just grows past rotate_size. The failure is returned once; the rotation is then
// retried silently each time the file has grown by another rotate_size bytes, and the
// first success re-arms the report. A non-OK Status therefore means "needs attention",
// not necessarily "data lost": bytes_dropped() tells which.
//
// Not thread-safe: the daemon's event loop owns each LogFile. Destroying a LogFile
// closes the file and discards unfinished lines; call flush_partial() on both streams
// first to keep them.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "agentry/base/status.h"
#include "agentry/base/unique_fd.h"

namespace agentry::supervisor {

struct LogFileOptions {
  std::string path;            // the directory must exist; it is not created
  uint64_t rotate_size = 0;    // bytes; 0 = never rotate
  uint32_t keep = 5;           // rotated files kept: path.1 (newest) .. path.<keep>
  bool timestamps = false;     // prefix each line with "<UTC time> <out|err> "
  mode_t mode = 0640;          // for files this creates (the umask still applies)
  size_t max_line = 64 * 1024; // longer lines are broken into pieces of this size
};

class LogFile {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  static constexpr int kStdout = 0;
  static constexpr int kStderr = 1;
  // Upper bound for LogFileOptions::max_line (each stream buffers up to that much).
  static constexpr size_t kMaxLineLimit = size_t{64} * 1024 * 1024;

  // Opens (creating it if needed) options.path for appending. Fails, naming the path,
  // if its directory is missing, if it is not a regular file, or if the options are out
  // of range (empty path, max_line 0 or over kMaxLineLimit).
  static Result<std::unique_ptr<LogFile>> open(LogFileOptions options);

  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;
  ~LogFile() = default;

  // Feeds a chunk read from `stream` (kStdout or kStderr). The complete lines it ends
  // are written with one write() per file they go to (so one, or two around a
  // rotation); a trailing unfinished line is kept for later. The cost per byte is a
  // memrchr and a memcpy in raw mode, plus a memchr and the prefix per line with
  // timestamps.
  Status write(int stream, std::string_view chunk, TimePoint now);

  // Writes the unfinished line of `stream`, if any, with a newline added.
  Status flush_partial(int stream, TimePoint now);

  // Bytes of `stream` waiting for their newline.
  size_t partial_size(int stream) const;

  const std::string& path() const noexcept { return opts_.path; }
  // Successful rotations since open.
  uint64_t rotations() const noexcept { return rotations_; }
  // Bytes written to files since open, time stamps and added newlines included.
  uint64_t bytes_written() const noexcept { return bytes_written_; }
  // Bytes that a failed write() system call could not write.
  uint64_t bytes_dropped() const noexcept { return bytes_dropped_; }
  // Size of the current file (what counts toward rotate_size).
  uint64_t file_size() const noexcept { return file_size_; }

 private:
  LogFile(LogFileOptions options, UniqueFd fd, uint64_t size);

  // Breaks `chunk` into lines (continuing the stream's unfinished one) and queues them.
  void consume(int stream, std::string_view chunk);
  // Queues the line head + tail (its newline excluded) in out_, rotating first if it
  // does not fit in the current file. `broken` marks a line cut at max_line.
  void add_line(int stream, std::string_view head, std::string_view tail, bool broken);
  // Raw mode: queues the complete lines at the front of `rest` in bulk, as far as
  // add_line() would have queued them one by one without rotating or breaking any.
  void add_whole_lines(std::string_view& rest);
  // Bytes that can still be queued before a line would trigger a rotation.
  uint64_t room_before_rotation() const;
  bool should_rotate_before(uint64_t line_bytes) const;
  // Writes out_ to the current file and empties it.
  void commit();
  void rotate();
  void rotation_failed(Status status);
  // Keeps the first error of the current call.
  void note(Status status);
  Status finish_call();

  LogFileOptions opts_;
  UniqueFd fd_;
  uint64_t file_size_ = 0;
  uint64_t bytes_written_ = 0;
  uint64_t bytes_dropped_ = 0;
  uint64_t rotations_ = 0;

  std::array<std::string, 2> partial_;   // per stream: the line being received
  std::array<bool, 2> continued_{};      // per stream: last line written was broken
  bool torn_ = false;                    // the file ends in the middle of a line
  bool rotation_error_reported_ = false;
  uint64_t rotation_retry_at_ = 0;       // after a failure: file size for the next try

  // State of the call in progress.
  std::string out_;                      // lines waiting for write()
  Status call_status_;
  TimePoint now_;
  bool stamp_ready_ = false;
  std::array<char, 48> stamp_{};         // "<time> " of now_, formatted on first use
  size_t stamp_len_ = 0;
};

}  // namespace agentry::supervisor
