#include "agentry/wire/mgmt_frame.h"

#include <cassert>
#include <utility>

#include <fmt/format.h>

namespace agentry::wire {

namespace {

constexpr size_t kVersionOffset = 2;
constexpr size_t kTypeOffset = 3;
constexpr size_t kFlagsOffset = 4;
constexpr size_t kSeqOffset = 5;
constexpr size_t kLengthOffset = 13;

// Byte-wise big-endian access: no alignment or host byte-order assumptions, and compilers
// turn these loops into a single load/store plus bswap.
uint64_t load_be(const char* p, size_t n) noexcept {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

void store_be(char* p, uint64_t v, size_t n) noexcept {
  for (size_t i = n; i-- > 0;) {
    p[i] = static_cast<char>(static_cast<uint8_t>(v));
    v >>= 8;
  }
}

void store_header(char* p, const MgmtFrameHeader& header) noexcept {
  p[0] = static_cast<char>(kMgmtMagic0);
  p[1] = static_cast<char>(kMgmtMagic1);
  p[kVersionOffset] = static_cast<char>(kMgmtVersion);
  p[kTypeOffset] = static_cast<char>(header.type);
  p[kFlagsOffset] = static_cast<char>(header.flags);
  store_be(p + kSeqOffset, header.seq, 8);
  store_be(p + kLengthOffset, header.length, 4);
}

// `bytes` holds at least kMgmtHeaderSize bytes.
MgmtFrameHeader load_header(std::string_view bytes) noexcept {
  const char* p = bytes.data();
  return {static_cast<uint8_t>(p[kTypeOffset]), static_cast<uint8_t>(p[kFlagsOffset]),
          load_be(p + kSeqOffset, 8), static_cast<uint32_t>(load_be(p + kLengthOffset, 4))};
}

Status too_large_status(uint64_t length, uint32_t max_payload) {
  return out_of_range(fmt::format("payload length {} exceeds {}", length, max_payload));
}

struct HeaderProblem {
  MgmtFrameError error;
  Status status;
};

// Runs every check that the first bytes.size() bytes of a header allow (bytes past the
// header are ignored). An incomplete but so far valid header is not a problem here.
std::optional<HeaderProblem> check_header(std::string_view bytes, uint32_t max_payload) {
  if (bytes.size() >= 2) {
    const auto magic = static_cast<uint16_t>(load_be(bytes.data(), 2));
    if (magic != kMgmtMagic) {
      return HeaderProblem{MgmtFrameError::kBadMagic,
                           invalid_argument(fmt::format("bad magic {:#06x}, expected {:#06x}", magic, kMgmtMagic))};
    }
  }
  if (bytes.size() > kVersionOffset) {
    const auto version = static_cast<uint8_t>(bytes[kVersionOffset]);
    if (version != kMgmtVersion) {
      return HeaderProblem{MgmtFrameError::kBadVersion,
                           invalid_argument(fmt::format("unsupported protocol version {}", version))};
    }
  }
  if (bytes.size() >= kMgmtHeaderSize) {
    const uint64_t length = load_be(bytes.data() + kLengthOffset, 4);
    if (length > max_payload) return HeaderProblem{MgmtFrameError::kTooLarge, too_large_status(length, max_payload)};
  }
  return std::nullopt;
}

// Magic and version, for a `bytes` of at least 3 bytes.
bool has_valid_prefix(std::string_view bytes) noexcept {
  return static_cast<uint8_t>(bytes[0]) == kMgmtMagic0 && static_cast<uint8_t>(bytes[1]) == kMgmtMagic1 &&
         static_cast<uint8_t>(bytes[kVersionOffset]) == kMgmtVersion;
}

Status short_header_status(size_t have) {
  return data_loss(fmt::format("short header: {} of {} bytes", have, kMgmtHeaderSize));
}

}  // namespace

std::string_view mgmt_frame_error_name(MgmtFrameError error) noexcept {
  switch (error) {
    case MgmtFrameError::kShortHeader: return "short_header";
    case MgmtFrameError::kBadMagic: return "bad_magic";
    case MgmtFrameError::kBadVersion: return "bad_version";
    case MgmtFrameError::kTooLarge: return "too_large";
    case MgmtFrameError::kTruncatedPayload: return "truncated_payload";
  }
  return "unknown";
}

std::array<uint8_t, kMgmtHeaderSize> encode_mgmt_header(const MgmtFrameHeader& header) noexcept {
  char bytes[kMgmtHeaderSize];
  store_header(bytes, header);
  std::array<uint8_t, kMgmtHeaderSize> out{};
  for (size_t i = 0; i < kMgmtHeaderSize; ++i) out[i] = static_cast<uint8_t>(bytes[i]);
  return out;
}

Status append_mgmt_frame(std::string& out, uint8_t type, uint64_t seq, std::string_view payload, uint8_t flags,
                         uint32_t max_payload) {
  if (payload.size() > max_payload) return too_large_status(payload.size(), max_payload);
  char header[kMgmtHeaderSize];
  store_header(header, {type, flags, seq, static_cast<uint32_t>(payload.size())});
  out.append(header, kMgmtHeaderSize);
  out.append(payload);
  return Status::ok();
}

size_t begin_mgmt_frame(std::string& out, uint8_t type, uint64_t seq, uint8_t flags) {
  const size_t start = out.size();
  char header[kMgmtHeaderSize];
  store_header(header, {type, flags, seq, 0});
  out.append(header, kMgmtHeaderSize);
  return start;
}

Status end_mgmt_frame(std::string& out, size_t frame_start, uint32_t max_payload) {
  assert(frame_start <= out.size() && out.size() - frame_start >= kMgmtHeaderSize);
  const size_t payload_size = out.size() - frame_start - kMgmtHeaderSize;
  if (payload_size > max_payload) {
    out.resize(frame_start);
    return too_large_status(payload_size, max_payload);
  }
  store_be(out.data() + frame_start + kLengthOffset, payload_size, 4);
  return Status::ok();
}

Result<MgmtFrameHeader> decode_mgmt_header(std::string_view bytes, uint32_t max_payload, MgmtFrameError* error) {
  std::optional<HeaderProblem> problem = check_header(bytes, max_payload);
  if (!problem && bytes.size() < kMgmtHeaderSize) {
    problem = HeaderProblem{MgmtFrameError::kShortHeader, short_header_status(bytes.size())};
  }
  if (problem) {
    if (error != nullptr) *error = problem->error;
    return std::move(problem->status);
  }
  return load_header(bytes);
}

MgmtFrameDecoder::MgmtFrameDecoder(uint32_t max_payload) : max_payload_(max_payload) {}

void MgmtFrameDecoder::feed(std::string_view bytes) {
  if (failed()) return;  // nothing after an error can be decoded; don't hold on to it
  buffer_.append(bytes);
}

std::span<char> MgmtFrameDecoder::prepare(size_t min_size) { return buffer_.prepare(min_size); }

void MgmtFrameDecoder::commit(size_t n) noexcept {
  if (failed()) return;
  buffer_.commit(n);
}

bool MgmtFrameDecoder::decode_header() {
  if (header_) return true;
  const std::string_view live = buffer_.data();
  // Fast path for the usual case, a whole and valid header; check_header() below covers
  // partial headers and builds the error descriptions.
  if (live.size() >= kMgmtHeaderSize && has_valid_prefix(live)) {
    const MgmtFrameHeader header = load_header(live);
    if (header.length <= max_payload_) {
      header_ = header;
      const size_t frame_size = kMgmtHeaderSize + header.length;
      if (live.size() < frame_size) buffer_.set_frame_hint(frame_size);
      return true;
    }
  }
  if (std::optional<HeaderProblem> problem = check_header(live, max_payload_)) {
    if (problem->error == MgmtFrameError::kTooLarge) rejected_header_ = load_header(live);
    fail(problem->error, std::move(problem->status));
    return false;
  }
  return true;  // valid so far, but incomplete
}

Result<std::optional<MgmtFrame>> MgmtFrameDecoder::next() {
  if (failed() || !decode_header()) return status_;
  const std::string_view live = buffer_.data();
  if (!header_ || live.size() - kMgmtHeaderSize < header_->length) return std::optional<MgmtFrame>();
  // Filled in place in the returned object: with a MgmtFrame temporary copied in, g++'s code
  // hit store-forwarding stalls that doubled the time per small frame.
  Result<std::optional<MgmtFrame>> result{std::optional<MgmtFrame>{std::in_place}};
  MgmtFrame& frame = **result;
  frame.header = *header_;
  frame.payload = live.substr(kMgmtHeaderSize, header_->length);
  buffer_.consume(kMgmtHeaderSize + header_->length);
  header_.reset();
  return result;
}

Status MgmtFrameDecoder::finish() {
  if (failed()) return status_;
  if (buffer_.size() == 0) return Status::ok();
  if (!decode_header()) return status_;
  if (!header_) return fail(MgmtFrameError::kShortHeader, short_header_status(buffer_.size()));
  const size_t received = buffer_.size() - kMgmtHeaderSize;
  if (received >= header_->length) {
    return failed_precondition("finish() called before next() returned every complete frame");
  }
  return fail(MgmtFrameError::kTruncatedPayload,
              data_loss(fmt::format("truncated payload: {} of {} bytes", received, header_->length)));
}

const Status& MgmtFrameDecoder::fail(MgmtFrameError error, Status status) {
  error_ = error;
  status_ = std::move(status);
  buffer_.release();
  header_.reset();
  return status_;
}

}  // namespace agentry::wire
