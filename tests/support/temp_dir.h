// A private temporary directory for one test, removed with everything in it on destruction.
#pragma once

#include <filesystem>
#include <string>

namespace agentry::testing {

class TempDir {
 public:
  // Creates <$TMPDIR or /tmp>/<prefix>XXXXXX with mode 0700; aborts the test run on failure
  // because no test can do anything useful without it.
  explicit TempDir(const std::string& prefix = "agentry-test-");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Writes `content` to `path`, replacing it; throws std::runtime_error on failure.
void write_text_file(const std::filesystem::path& path, const std::string& content);
// Reads a whole file; throws std::runtime_error on failure.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace agentry::testing
