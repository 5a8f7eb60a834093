// agentry-udf-outliers: a process UDF (stdin/stdout) that keeps the outliers of each batch.
//
// Kapacitor configuration:
//   [udf.functions.outliers]
//     prog = "/usr/bin/agentry-udf-outliers"
//     timeout = "10s"
// TICKscript:  |outliers().field('value').scale(1.5)
//
// Options: field (string, required), scale (double, >= 1, default 1.5).
// BATCH in, BATCH out. For each batch the values of <field> (a double field; a point
// without it counts as 0, as in Kapacitor's reference example) are sorted and split into
// a lower and an upper half, each of floor(n/2) values: for an odd n the median belongs to
// neither. Q1 and Q3 are the medians of the halves (the mean of the two middle values for
// an even half). With IQR = Q3 - Q1, a point is an outlier when its value is below
// Q1 - scale*IQR or above Q3 + scale*IQR (Tukey's fences). The output batch is the input's
// BeginBatch with size = the number of outliers, the outlier points unchanged in ascending
// order of value (equal values in arrival order), and the input's EndBatch. Batches of
// fewer than two points have no outliers. NaN values sort last and are never outliers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "agentry/udf/agent.h"

namespace {

using agentry::Status;

struct Entry {
  double value;
  agent::Point point;
};

// Sorted by value with NaN after everything (a strict weak order, unlike plain `<`).
bool value_less(const Entry& a, const Entry& b) {
  return !std::isnan(a.value) && (std::isnan(b.value) || a.value < b.value);
}

// Median of sorted entries [begin, begin + n), n > 0.
double median(const std::vector<Entry>& sorted, size_t begin, size_t n) {
  const size_t mid = begin + n / 2;
  if (n % 2 == 0) return (sorted[mid - 1].value + sorted[mid].value) / 2.0;
  return sorted[mid].value;
}

class Outliers final : public agentry::udf::Handler {
 public:
  explicit Outliers(agentry::udf::Agent& agent) : agent_(agent) {}

  agent::InfoResponse Info() override {
    agent::InfoResponse info;
    info.set_wants(agent::BATCH);
    info.set_provides(agent::BATCH);
    (*info.mutable_options())["field"].add_valuetypes(agent::STRING);
    (*info.mutable_options())["scale"].add_valuetypes(agent::DOUBLE);
    return info;
  }

  agent::InitResponse Init(const agent::InitRequest& request) override {
    for (const agent::Option& option : request.options()) {
      if (option.values().empty()) continue;
      if (option.name() == "field") {
        field_ = option.values(0).stringvalue();
      } else if (option.name() == "scale") {
        scale_ = option.values(0).doublevalue();
      }
    }
    std::string errors;
    if (field_.empty()) errors = "field must not be empty";
    if (!(scale_ >= 1.0)) {
      if (!errors.empty()) errors += "; ";
      errors += "scale must be >= 1";
    }
    agent::InitResponse response;
    response.set_success(errors.empty());
    response.set_error(errors);
    return response;
  }

  // No state survives a batch, so there is nothing to keep.
  agent::SnapshotResponse Snapshot() override { return {}; }
  agent::RestoreResponse Restore(const agent::RestoreRequest&) override {
    agent::RestoreResponse response;
    response.set_success(true);
    return response;
  }

  Status BeginBatch(const agent::BeginBatch& begin) override {
    begin_ = begin;
    entries_.clear();
    return Status::ok();
  }

  Status Point(const agent::Point& point) override {
    const auto found = point.fieldsdouble().find(field_);
    entries_.push_back(Entry{found == point.fieldsdouble().end() ? 0.0 : found->second, point});
    return Status::ok();
  }

  Status EndBatch(const agent::EndBatch& end) override {
    std::vector<const Entry*> outliers;
    const size_t n = entries_.size();
    if (n >= 2) {
      std::stable_sort(entries_.begin(), entries_.end(), value_less);
      const size_t half = n / 2;
      const double q1 = median(entries_, 0, half);
      const double q3 = median(entries_, n - half, half);
      const double spread = (q3 - q1) * scale_;
      const double lower = q1 - spread;
      const double upper = q3 + spread;
      for (const Entry& e : entries_) {
        if (e.value < lower || e.value > upper) outliers.push_back(&e);
      }
    }
    begin_.set_size(static_cast<int64_t>(outliers.size()));
    AGENTRY_RETURN_IF_ERROR(agent_.send_begin(begin_));
    for (const Entry* e : outliers) AGENTRY_RETURN_IF_ERROR(agent_.send_point(e->point));
    AGENTRY_RETURN_IF_ERROR(agent_.send_end(end));
    entries_.clear();
    return Status::ok();
  }

  void Stop() override {}

 private:
  agentry::udf::Agent& agent_;
  std::string field_;
  double scale_ = 1.5;
  agent::BeginBatch begin_;
  std::vector<Entry> entries_;
};

}  // namespace

int main() {
  auto agent = agentry::udf::Agent::stdio();
  Outliers handler(*agent);
  const Status status = agent->run(handler);
  if (!status.is_ok()) {
    std::fprintf(stderr, "agentry-udf-outliers: %s\n", status.to_string().c_str());
    return 1;
  }
  return 0;
}
