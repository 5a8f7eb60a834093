#include "agentry/base/status.h"

#include <cerrno>
#include <memory>

#include <gtest/gtest.h>

namespace agentry {
namespace {

TEST(Status, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.to_string(), "OK");
}

TEST(Status, CarriesCodeAndMessage) {
  Status s = invalid_argument("line 3: field 'restart': expected never, on-failure or always");
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.to_string(), "INVALID_ARGUMENT: line 3: field 'restart': expected never, on-failure or always");
}

TEST(Status, ContextIsPrependedAndCodeKept) {
  Status s = not_found("no process 'web'").with_context("stop");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "stop: no process 'web'");
  EXPECT_TRUE(Status::ok().with_context("ignored").is_ok());
}

TEST(Status, FromErrnoMapsCommonErrors) {
  EXPECT_EQ(Status::from_errno(ENOENT, "open x").code(), StatusCode::kNotFound);
  EXPECT_EQ(Status::from_errno(EACCES, "open x").code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Status::from_errno(ECONNREFUSED, "connect").code(), StatusCode::kUnavailable);
  EXPECT_EQ(Status::from_errno(EMFILE, "accept").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(Status::from_errno(ENOENT, "open /x").message(), "open /x: No such file or directory");
}

TEST(Result, HoldsValueOrError) {
  Result<int> good = 42;
  ASSERT_TRUE(good.is_ok());
  EXPECT_EQ(*good, 42);
  EXPECT_TRUE(good.status().is_ok());

  Result<int> bad = out_of_range("too big");
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(bad.value_or(7), 7);
  EXPECT_EQ(std::move(bad).take_status().message(), "too big");
}

TEST(Result, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(5);
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 5);
}

Status fails_then_returns() {
  AGENTRY_RETURN_IF_ERROR(data_loss("truncated"));
  return internal_error("not reached");
}

TEST(Status, ReturnIfErrorPropagates) {
  EXPECT_EQ(fails_then_returns().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace agentry
