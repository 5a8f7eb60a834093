// Throughput of the binary framings: length-delimited (Kapacitor UDF) messages and mgmt
// frames, for small (100-byte) and large (16 KiB) payloads. Decoding is fed in 64 KiB
// chunks, as a socket read loop would, and drains after each chunk.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <benchmark/benchmark.h>

#include "agentry/wire/delimited.h"
#include "agentry/wire/mgmt_frame.h"

namespace {

using agentry::wire::DelimitedDecoder;
using agentry::wire::MgmtFrameDecoder;

constexpr size_t kReadChunk = 64 * 1024;
// Each iteration handles a batch worth about 4 MiB of payload (at least 64 messages), so
// per-iteration overhead does not dominate and the working set outgrows L2.
size_t batch_for(size_t message_size) { return std::max<size_t>(64, (size_t{4} << 20) / message_size); }

std::string payload(size_t size) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

void set_counters(benchmark::State& state, size_t messages, size_t payload_bytes) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * messages));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload_bytes));
}

void BM_DelimitedEncode(benchmark::State& state) {
  const std::string message = payload(static_cast<size_t>(state.range(0)));
  const size_t batch = batch_for(message.size());
  std::string out;
  for (auto _ : state) {
    out.clear();  // keeps its capacity: steady state of a connection's write buffer
    for (size_t i = 0; i < batch; ++i) agentry::wire::append_delimited(out, message);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, batch, batch * message.size());
}
BENCHMARK(BM_DelimitedEncode)->Arg(100)->Arg(16 << 10);

// The serialize-in-place path, with memcpy standing in for SerializeToArray.
void BM_DelimitedEncodeInPlace(benchmark::State& state) {
  const std::string message = payload(static_cast<size_t>(state.range(0)));
  const size_t batch = batch_for(message.size());
  std::string out;
  for (auto _ : state) {
    out.clear();
    for (size_t i = 0; i < batch; ++i) {
      char* dst = agentry::wire::append_delimited_uninitialized(out, message.size());
      std::memcpy(dst, message.data(), message.size());
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, batch, batch * message.size());
}
BENCHMARK(BM_DelimitedEncodeInPlace)->Arg(100)->Arg(16 << 10);

void BM_DelimitedDecode(benchmark::State& state) {
  const std::string message = payload(static_cast<size_t>(state.range(0)));
  const size_t batch = batch_for(message.size());
  std::string stream;
  for (size_t i = 0; i < batch; ++i) agentry::wire::append_delimited(stream, message);
  DelimitedDecoder decoder;  // one long-lived stream, as on a connection
  size_t decoded = 0;
  for (auto _ : state) {
    for (size_t pos = 0; pos < stream.size(); pos += kReadChunk) {
      decoder.feed(std::string_view(stream).substr(pos, kReadChunk));
      for (;;) {
        auto next = decoder.next();
        if (!next.is_ok()) {
          state.SkipWithError(next.status().message().c_str());
          return;
        }
        if (!next->has_value()) break;
        benchmark::DoNotOptimize((*next)->data());
        ++decoded;
      }
    }
  }
  if (decoded != state.iterations() * batch) state.SkipWithError("lost messages");
  set_counters(state, batch, batch * message.size());
}
BENCHMARK(BM_DelimitedDecode)->Arg(100)->Arg(16 << 10);

void BM_MgmtFrameEncode(benchmark::State& state) {
  const std::string message = payload(static_cast<size_t>(state.range(0)));
  const size_t batch = batch_for(message.size());
  std::string out;
  for (auto _ : state) {
    out.clear();
    for (size_t i = 0; i < batch; ++i) {
      if (!agentry::wire::append_mgmt_frame(out, 0xA7, i, message).is_ok()) {
        state.SkipWithError("encode failed");
        return;
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, batch, batch * message.size());
}
BENCHMARK(BM_MgmtFrameEncode)->Arg(100)->Arg(16 << 10);

void BM_MgmtFrameDecode(benchmark::State& state) {
  const std::string message = payload(static_cast<size_t>(state.range(0)));
  const size_t batch = batch_for(message.size());
  std::string stream;
  for (size_t i = 0; i < batch; ++i) {
    if (!agentry::wire::append_mgmt_frame(stream, 0xA7, i, message).is_ok()) {
      state.SkipWithError("encode failed");
      return;
    }
  }
  MgmtFrameDecoder decoder;
  size_t decoded = 0;
  for (auto _ : state) {
    for (size_t pos = 0; pos < stream.size(); pos += kReadChunk) {
      decoder.feed(std::string_view(stream).substr(pos, kReadChunk));
      for (;;) {
        auto next = decoder.next();
        if (!next.is_ok()) {
          state.SkipWithError(next.status().message().c_str());
          return;
        }
        if (!next->has_value()) break;
        benchmark::DoNotOptimize((*next)->payload.data());
        ++decoded;
      }
    }
  }
  if (decoded != state.iterations() * batch) state.SkipWithError("lost frames");
  set_counters(state, batch, batch * message.size());
}
BENCHMARK(BM_MgmtFrameDecode)->Arg(100)->Arg(16 << 10);

}  // namespace

BENCHMARK_MAIN();
