#include "agentry/base/log.h"

#include <cstdlib>

#include <gtest/gtest.h>

namespace agentry::log {
namespace {

TEST(Log, ParseLevel) {
  EXPECT_EQ(*parse_level("debug"), spdlog::level::debug);
  EXPECT_EQ(*parse_level("warning"), spdlog::level::warn);
  EXPECT_EQ(*parse_level("error"), spdlog::level::err);
  auto bad = parse_level("loud");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("'loud'"), std::string::npos);
}

TEST(Log, NamedLoggersAreSharedAndFollowSetup) {
  setup({.level = spdlog::level::warn, .journald = false});
  auto a = get("supervisor");
  auto b = get("supervisor");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(a->level(), spdlog::level::warn);
  setup({.level = spdlog::level::debug, .journald = false});
  EXPECT_EQ(a->level(), spdlog::level::debug);
  EXPECT_EQ(get("mgmt")->level(), spdlog::level::debug);
}

TEST(Log, JournaldDetectionNeedsMatchingStderr) {
  ::setenv("JOURNAL_STREAM", "1:1", 1);
  EXPECT_FALSE(stderr_is_journald());
  ::setenv("JOURNAL_STREAM", "garbage", 1);
  EXPECT_FALSE(stderr_is_journald());
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(stderr_is_journald());
}

}  // namespace
}  // namespace agentry::log
