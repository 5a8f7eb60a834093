#include "agentry/base/unix_socket.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentry/base/log.h"
#include "tests/support/temp_dir.h"

namespace agentry {
namespace {

using ::testing::HasSubstr;

mode_t mode_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

class UnixSocketTest : public ::testing::Test {
 protected:
  testing::TempDir tmp_;
  std::shared_ptr<spdlog::logger> log_ = log::get("test");
};

TEST_F(UnixSocketTest, SocketHasItsFinalModeWhateverTheUmask) {
  const mode_t old = ::umask(0);
  const std::string path = (tmp_ / "s.sock").string();
  auto bound = bind_unix_socket(path, 0660, std::nullopt);
  ::umask(old);
  ASSERT_TRUE(bound.is_ok()) << bound.status().message();
  EXPECT_EQ(mode_of(path), 0660u);
  EXPECT_TRUE(remove_own_socket_file(path, bound->dev, bound->ino));
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

TEST_F(UnixSocketTest, CreatesDirectoriesWithTheRequestedModes) {
  const std::string dir = (tmp_ / "a/b/run").string();
  SocketDirPolicy policy;
  policy.mode = 0750;
  policy.parent_mode = 0755;
  ASSERT_TRUE(prepare_socket_dir(dir, policy, *log_).is_ok());
  EXPECT_EQ(mode_of(dir), 0750u);
  EXPECT_EQ(mode_of((tmp_ / "a").string()) & 0700, 0700u);
}

TEST_F(UnixSocketTest, RefusesOrNarrowsAWiderDirectoryAsTheCallerChose) {
  const std::string dir = (tmp_ / "open").string();
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
  SocketDirPolicy refuse;
  refuse.what = "test socket";
  Status refused = prepare_socket_dir(dir, refuse, *log_);
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.message(), HasSubstr("writable by group or others"));
  EXPECT_THAT(refused.message(), HasSubstr("test socket"));
  EXPECT_EQ(mode_of(dir), 0777u);

  SocketDirPolicy narrow;
  narrow.mode = 0770;
  narrow.narrow_existing = true;
  ASSERT_TRUE(prepare_socket_dir(dir, narrow, *log_).is_ok());
  EXPECT_EQ(mode_of(dir), 0770u);
}

TEST_F(UnixSocketTest, RefusesSymlinksAndFiles) {
  const std::string target = (tmp_ / "real").string();
  ASSERT_EQ(::mkdir(target.c_str(), 0700), 0);
  const std::string link = (tmp_ / "link").string();
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  EXPECT_EQ(prepare_socket_dir(link, {}, *log_).code(), StatusCode::kPermissionDenied);
  testing::write_text_file(tmp_ / "file", "x");
  EXPECT_EQ(prepare_socket_dir((tmp_ / "file").string(), {}, *log_).code(), StatusCode::kFailedPrecondition);
}

TEST_F(UnixSocketTest, StaleSocketIsReplacedLiveOneIsNot) {
  const std::string path = (tmp_ / "s.sock").string();
  {
    auto first = bind_unix_socket(path, 0600, std::nullopt);
    ASSERT_TRUE(first.is_ok());
    EXPECT_EQ(remove_stale_socket(path, "test socket", *log_).code(), StatusCode::kAlreadyExists);
  }  // closed: the file stays behind, nobody listens
  EXPECT_TRUE(remove_stale_socket(path, "test socket", *log_).is_ok());
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
  testing::write_text_file(path, "not a socket");
  EXPECT_EQ(remove_stale_socket(path, "test socket", *log_).code(), StatusCode::kFailedPrecondition);
}

TEST_F(UnixSocketTest, NeverRemovesASuccessorsSocket) {
  const std::string path = (tmp_ / "s.sock").string();
  auto first = bind_unix_socket(path, 0600, std::nullopt);
  ASSERT_TRUE(first.is_ok());
  ASSERT_EQ(::unlink(path.c_str()), 0);
  auto second = bind_unix_socket(path, 0600, std::nullopt);
  ASSERT_TRUE(second.is_ok());
  EXPECT_FALSE(remove_own_socket_file(path, first->dev, first->ino));
  EXPECT_EQ(::access(path.c_str(), F_OK), 0);
}

TEST_F(UnixSocketTest, PathChecks) {
  EXPECT_FALSE(check_unix_socket_path("", "x").is_ok());
  EXPECT_FALSE(check_unix_socket_path(std::string(200, 'a'), "x").is_ok());
  EXPECT_FALSE(check_unix_socket_path(std::string("a\0b", 3), "x").is_ok());
  EXPECT_TRUE(check_unix_socket_path("/run/x.sock", "x").is_ok());
}

}  // namespace
}  // namespace agentry
