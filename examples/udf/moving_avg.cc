// agentry-udf-moving_avg: a process UDF (stdin/stdout) computing a moving average per group.
//
// Kapacitor configuration:
//   [udf.functions.movingAverage]
//     prog = "/usr/bin/agentry-udf-moving_avg"
//     timeout = "10s"
// TICKscript:  |movingAverage().field('value').size(10).as('avg')
//
// Options: field (string, required), size (int, > 0, required), as (string, default "avg").
// STREAM in, STREAM out. Every input point produces one output point: the input point with
// its double fields replaced by {<as>: average of the last `size` values of <field> in the
// point's group} and its int and string fields removed (bool fields are kept). Until a
// group's window is full the average is over the values seen so far. A point without
// <field> among its double fields counts as 0, as in Kapacitor's reference example.
// Batches are refused with an error.
//
// Snapshot/Restore carry every group's window (see encode_snapshot for the format), and the
// running sum exactly, so a restored process continues with bit-identical averages.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "agentry/udf/agent.h"
#include "agentry/wire/uvarint.h"

namespace {

using agentry::Status;

// A window of the last `size` values with a compensated running sum (Neumaier): adding and
// removing values one at a time does not drift the way a plain running sum does.
struct Window {
  std::deque<double> values;
  double sum = 0;
  double compensation = 0;

  void add(double v) {
    const double t = sum + v;
    if (std::fabs(sum) >= std::fabs(v)) {
      compensation += (sum - t) + v;
    } else {
      compensation += (v - t) + sum;
    }
    sum = t;
  }
  double update(double value, size_t size) {
    values.push_back(value);
    add(value);
    while (values.size() > size) {
      add(-values.front());
      values.pop_front();
    }
    return (sum + compensation) / static_cast<double>(values.size());
  }
};

// Snapshot format, version 1 (all integers unsigned varints, doubles 8 bytes little-endian):
//   "agentry.moving_avg" 0x01
//   group count, then per group: name length, name bytes, sum, compensation, value count,
//   values (oldest first).
constexpr std::string_view kSnapshotMagic = "agentry.moving_avg";
constexpr uint8_t kSnapshotVersion = 1;

void put_double(std::string& out, double v) {
  auto bits = std::bit_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) {
    out.push_back(static_cast<char>(bits & 0xffU));
    bits >>= 8;
  }
}

class SnapshotReader {
 public:
  explicit SnapshotReader(std::string_view data) : data_(data) {}
  bool ok() const { return ok_; }
  bool at_end() const { return data_.empty(); }
  uint64_t varint() {
    const auto r = agentry::wire::decode_uvarint(data_);
    if (r.outcome != agentry::wire::UvarintOutcome::kDecoded) return fail();
    data_.remove_prefix(r.size);
    return r.value;
  }
  double real() {
    if (data_.size() < 8) return static_cast<double>(fail());
    uint64_t bits = 0;
    for (int i = 7; i >= 0; --i) bits = (bits << 8) | static_cast<uint8_t>(data_[static_cast<size_t>(i)]);
    data_.remove_prefix(8);
    return std::bit_cast<double>(bits);
  }
  std::string_view bytes(uint64_t n) {
    if (data_.size() < n) {
      fail();
      return {};
    }
    const std::string_view out = data_.substr(0, n);
    data_.remove_prefix(n);
    return out;
  }

 private:
  uint64_t fail() {
    ok_ = false;
    data_ = {};
    return 0;
  }
  std::string_view data_;
  bool ok_ = true;
};

class MovingAverage final : public agentry::udf::Handler {
 public:
  explicit MovingAverage(agentry::udf::Agent& agent) : agent_(agent) {}

  agent::InfoResponse Info() override {
    agent::InfoResponse info;
    info.set_wants(agent::STREAM);
    info.set_provides(agent::STREAM);
    (*info.mutable_options())["field"].add_valuetypes(agent::STRING);
    (*info.mutable_options())["size"].add_valuetypes(agent::INT);
    (*info.mutable_options())["as"].add_valuetypes(agent::STRING);
    return info;
  }

  agent::InitResponse Init(const agent::InitRequest& request) override {
    for (const agent::Option& option : request.options()) {
      if (option.values().empty()) continue;
      const agent::OptionValue& value = option.values(0);
      if (option.name() == "field") {
        field_ = value.stringvalue();
      } else if (option.name() == "size") {
        size_ = value.intvalue();
      } else if (option.name() == "as") {
        as_ = value.stringvalue();
      }
    }
    std::string errors;
    auto complain = [&errors](std::string_view text) {
      if (!errors.empty()) errors += "; ";
      errors += text;
    };
    if (field_.empty()) complain("field must not be empty");
    if (size_ <= 0) complain("size must be greater than 0");
    if (as_.empty()) complain("as must not be empty");
    agent::InitResponse response;
    response.set_success(errors.empty());
    response.set_error(errors);
    initialized_ = errors.empty();
    return response;
  }

  agent::SnapshotResponse Snapshot() override {
    std::string out(kSnapshotMagic);
    out.push_back(static_cast<char>(kSnapshotVersion));
    agentry::wire::append_uvarint(out, windows_.size());
    for (const auto& [group, window] : windows_) {
      agentry::wire::append_uvarint(out, group.size());
      out += group;
      put_double(out, window.sum);
      put_double(out, window.compensation);
      agentry::wire::append_uvarint(out, window.values.size());
      for (double v : window.values) put_double(out, v);
    }
    agent::SnapshotResponse response;
    response.set_snapshot(std::move(out));
    return response;
  }

  agent::RestoreResponse Restore(const agent::RestoreRequest& request) override {
    agent::RestoreResponse response;
    std::string_view data = request.snapshot();
    if (data.substr(0, kSnapshotMagic.size()) != kSnapshotMagic || data.size() <= kSnapshotMagic.size()) {
      response.set_error("not a moving_avg snapshot");
      return response;
    }
    data.remove_prefix(kSnapshotMagic.size());
    const auto version = static_cast<uint8_t>(data[0]);
    if (version != kSnapshotVersion) {
      response.set_error("unsupported moving_avg snapshot version " + std::to_string(version));
      return response;
    }
    data.remove_prefix(1);
    SnapshotReader in(data);
    std::map<std::string, Window> windows;
    const uint64_t groups = in.varint();
    for (uint64_t g = 0; g < groups && in.ok(); ++g) {
      std::string group(in.bytes(in.varint()));
      Window window;
      window.sum = in.real();
      window.compensation = in.real();
      const uint64_t count = in.varint();
      for (uint64_t i = 0; i < count && in.ok(); ++i) window.values.push_back(in.real());
      windows[std::move(group)] = std::move(window);
    }
    if (!in.ok() || !in.at_end()) {
      response.set_error("corrupt moving_avg snapshot");
      return response;
    }
    windows_ = std::move(windows);
    response.set_success(true);
    return response;
  }

  Status BeginBatch(const agent::BeginBatch&) override { return batches_refused(); }
  Status EndBatch(const agent::EndBatch&) override { return batches_refused(); }

  Status Point(const agent::Point& point) override {
    if (!initialized_) return agentry::failed_precondition("moving_avg received a point before a successful Init");
    const auto found = point.fieldsdouble().find(field_);
    const double value = found == point.fieldsdouble().end() ? 0.0 : found->second;
    const double average = windows_[point.group()].update(value, static_cast<size_t>(size_));

    out_ = point;
    out_.clear_fieldsdouble();
    out_.clear_fieldsint();
    out_.clear_fieldsstring();
    (*out_.mutable_fieldsdouble())[as_] = average;
    return agent_.send_point(out_);
  }

  void Stop() override {}

 private:
  static Status batches_refused() {
    return agentry::invalid_argument("moving_avg works on a stream; batches are not supported");
  }

  agentry::udf::Agent& agent_;
  std::string field_;
  int64_t size_ = 0;
  std::string as_ = "avg";
  bool initialized_ = false;
  std::map<std::string, Window> windows_;
  agent::Point out_;  // reused for every output point
};

}  // namespace

int main() {
  auto agent = agentry::udf::Agent::stdio();
  MovingAverage handler(*agent);
  const Status status = agent->run(handler);
  if (!status.is_ok()) {
    std::fprintf(stderr, "agentry-udf-moving_avg: %s\n", status.to_string().c_str());
    return 1;
  }
  return 0;
}
