#include "cext3/node/fence.h"

#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "cext3/memory_device.h"

using namespace cext3;
using namespace cext3::node;

namespace {
constexpr uint64_t kMs = 1000000;
}

TEST_CASE("FenceGate: a gate never renewed refuses writes without closing for good", "[node][fence]") {
  FenceGate gate;
  Status s = gate.check();
  REQUIRE(s.code() == Status::Code::kFenced);
  CHECK_FALSE(gate.fenced());
  gate.renew(monotonic_ns() + 1000 * kMs);
  CHECK(gate.check().ok());
}

TEST_CASE("FenceGate: once the deadline passes, check fences and the gate never reopens", "[node][fence]") {
  FenceGate gate;
  gate.renew(monotonic_ns() + 30 * kMs);
  REQUIRE(gate.check().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(40));
  Status s = gate.check();
  REQUIRE(s.code() == Status::Code::kFenced);
  CHECK(gate.fenced());
  CHECK(gate.reason().find("expired") != std::string::npos);
  CHECK(s.message().find("restart jcoord") != std::string::npos);
  // A renewal after the fence changes nothing.
  gate.renew(monotonic_ns() + 10000 * kMs);
  CHECK(gate.check().code() == Status::Code::kFenced);
}

TEST_CASE("FenceGate: deadlines only move forward; the first fence reason is kept", "[node][fence]") {
  FenceGate gate;
  const uint64_t far = monotonic_ns() + 5000 * kMs;
  gate.renew(far);
  gate.renew(far - 1000 * kMs);
  CHECK(gate.deadline_mono_ns() == far);
  gate.fence("first cause");
  gate.fence("second cause");
  CHECK(gate.reason() == "first cause");
  CHECK(gate.check().message().find("first cause") != std::string::npos);
}

TEST_CASE("FenceGate: concurrent renewals keep the latest deadline", "[node][fence]") {
  FenceGate gate;
  const uint64_t base = monotonic_ns() + 1000 * kMs;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (uint64_t i = 0; i < 2000; ++i) gate.renew(base + i * 4 + static_cast<uint64_t>(t));
    });
  for (auto& t : ts) t.join();
  CHECK(gate.deadline_mono_ns() == base + 1999 * 4 + 3);
}

TEST_CASE("FencedDevice: reads pass, writes, write batches and flushes are refused once fenced", "[node][fence]") {
  MemoryDevice mem(64 * 1024);
  FenceGate gate;
  FencedDevice dev(mem, gate);
  std::vector<uint8_t> buf(512, 0xAB), back(512, 0);
  gate.renew(monotonic_ns() + 1000 * kMs);
  REQUIRE(dev.write(1024, buf.data(), buf.size()).ok());
  REQUIRE(dev.flush().ok());
  const unsigned flushes = mem.flush_count();

  gate.fence("test: lease lost");
  CHECK(dev.write(2048, buf.data(), buf.size()).code() == Status::Code::kFenced);
  CHECK(dev.flush().code() == Status::Code::kFenced);
  CHECK(mem.flush_count() == flushes);  // the flush never reached the device
  IoRequest wr{IoRequest::Op::kWrite, 4096, buf.data(), buf.size()};
  IoRequest rd{IoRequest::Op::kRead, 1024, back.data(), back.size()};
  std::vector<IoRequest> mixed{rd, wr};
  CHECK(dev.submit(mixed).code() == Status::Code::kFenced);
  // Nothing refused reached the memory.
  CHECK(mem.bytes()[2048] == 0);
  CHECK(mem.bytes()[4096] == 0);
  // Reads still work, alone and in a read-only batch.
  REQUIRE(dev.read(1024, back.data(), back.size()).ok());
  CHECK(back == buf);
  std::fill(back.begin(), back.end(), 0);
  std::vector<IoRequest> reads{IoRequest{IoRequest::Op::kRead, 1024, back.data(), back.size()}};
  REQUIRE(dev.submit(reads).ok());
  CHECK(back == buf);
}
