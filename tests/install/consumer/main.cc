// A program outside the tree that uses installed agentry modules.
#include <cstdio>
#include <string>

#include <agentry/base/status.h>
#include <agentry/proto/udf.pb.h>
#include <agentry/wire/delimited.h>

int main() {
  agent::Response response;
  response.mutable_keepalive()->set_time(42);
  std::string framed;
  agentry::wire::append_delimited(framed, response.SerializeAsString());
  agentry::Status status = agentry::Status::ok();
  if (!status.is_ok() || framed.size() != response.ByteSizeLong() + 1) {
    std::puts("consumer broken");
    return 1;
  }
  std::puts("consumer ok");
  return 0;
}
