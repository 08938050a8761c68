// The shared BlockDevice conformance suite.
//
// Every backend's test file calls run_backend_suite() with a factory that
// returns a fresh, zero-filled device of at least 8 MiB. The suite checks the
// contract written at the top of cext3/block_device.h, so a backend that
// passes can be swapped for any other under the rest of libcext3.
#pragma once

#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "cext3/block_device.h"

namespace cext3::testing {

using DeviceFactory = std::function<std::unique_ptr<BlockDevice>()>;

inline std::vector<uint8_t> pattern(size_t len, uint32_t seed) {
  std::vector<uint8_t> v(len);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

inline void run_backend_suite(const DeviceFactory& make) {
  auto dev = make();
  REQUIRE(dev);
  const uint32_t ss = dev->sector_size();
  const uint64_t size = dev->size();

  INFO("backend " << dev->name());

  // Geometry
  REQUIRE(ss >= 512);
  REQUIRE((ss & (ss - 1)) == 0);
  REQUIRE(size >= 8u << 20);
  REQUIRE(size % ss == 0);
  REQUIRE_FALSE(dev->read_only());

  // A fresh device reads back zeros, first and last sector.
  {
    std::vector<uint8_t> buf(ss, 0xAA);
    REQUIRE(dev->read(0, buf.data(), ss).ok());
    CHECK(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0; }));
    REQUIRE(dev->read(size - ss, buf.data(), ss).ok());
    CHECK(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0; }));
  }

  // Write then read back: aligned buffer, unaligned buffer, multi-sector,
  // last sector of the device.
  {
    AlignedBuffer a(64 * 1024);
    auto p = pattern(a.size(), 1);
    std::memcpy(a.data(), p.data(), p.size());
    REQUIRE(dev->write(1 << 20, a.data(), a.size()).ok());
    AlignedBuffer back(a.size());
    REQUIRE(dev->read(1 << 20, back.data(), back.size()).ok());
    CHECK(std::memcmp(back.data(), p.data(), p.size()) == 0);

    // Unaligned user memory: one byte into a vector.
    std::vector<uint8_t> raw(3 * ss + 1);
    auto q = pattern(3 * ss, 2);
    std::memcpy(raw.data() + 1, q.data(), q.size());
    REQUIRE(dev->write(2 << 20, raw.data() + 1, 3 * ss).ok());
    std::vector<uint8_t> raw2(3 * ss + 1);
    REQUIRE(dev->read(2 << 20, raw2.data() + 1, 3 * ss).ok());
    CHECK(std::memcmp(raw2.data() + 1, q.data(), q.size()) == 0);

    auto last = pattern(ss, 3);
    REQUIRE(dev->write(size - ss, last.data(), ss).ok());
    std::vector<uint8_t> lastb(ss);
    REQUIRE(dev->read(size - ss, lastb.data(), ss).ok());
    CHECK(lastb == last);
  }

  // Bad requests are refused and transfer nothing.
  {
    std::vector<uint8_t> buf(2 * ss, 0x5A);
    CHECK(dev->write(1, buf.data(), ss).code() == Status::Code::kInvalidArgument);
    CHECK(dev->write(0, buf.data(), ss + 1).code() == Status::Code::kInvalidArgument);
    CHECK(dev->write(size - ss, buf.data(), 2 * ss).code() == Status::Code::kInvalidArgument);
    CHECK(dev->read(size, buf.data(), ss).code() == Status::Code::kInvalidArgument);
    std::vector<uint8_t> first(ss, 0xFF);
    REQUIRE(dev->read(0, first.data(), ss).ok());
    CHECK(std::all_of(first.begin(), first.end(), [](uint8_t b) { return b == 0; }));
    std::vector<uint8_t> lastb(ss);
    REQUIRE(dev->read(size - ss, lastb.data(), ss).ok());
    CHECK(lastb == pattern(ss, 3));
  }

  // A batch of 64 scattered writes, then a batch of 64 reads.
  {
    constexpr int kN = 64;
    std::vector<std::vector<uint8_t>> data;
    std::vector<IoRequest> reqs;
    for (int i = 0; i < kN; ++i) {
      data.push_back(pattern(4096, 100 + i));
      reqs.push_back({IoRequest::Op::kWrite, (4ull << 20) + uint64_t(i) * 8192, data.back().data(), 4096});
    }
    REQUIRE(dev->submit(reqs).ok());
    REQUIRE(dev->flush().ok());
    std::vector<std::vector<uint8_t>> back(kN, std::vector<uint8_t>(4096));
    std::vector<IoRequest> rreqs;
    for (int i = 0; i < kN; ++i)
      rreqs.push_back({IoRequest::Op::kRead, (4ull << 20) + uint64_t(i) * 8192, back[i].data(), 4096});
    REQUIRE(dev->submit(rreqs).ok());
    for (int i = 0; i < kN; ++i) CHECK(back[i] == data[i]);
    // The gaps between the batch's writes are untouched.
    std::vector<uint8_t> gap(4096, 0xFF);
    REQUIRE(dev->read((4ull << 20) + 4096, gap.data(), 4096).ok());
    CHECK(std::all_of(gap.begin(), gap.end(), [](uint8_t b) { return b == 0; }));
  }

  // A batch with one bad request reports the failure.
  {
    std::vector<uint8_t> buf(ss);
    std::vector<IoRequest> reqs = {{IoRequest::Op::kRead, 0, buf.data(), ss},
                                   {IoRequest::Op::kRead, size, buf.data(), ss}};
    CHECK_FALSE(dev->submit(reqs).ok());
  }

  // Durable (write-through) writes: the same data path as plain writes,
  // alone, mixed into a batch with plain writes and reads, from unaligned
  // memory, and larger than the backends' 1 MiB request pieces. (That they
  // are durable cannot be seen from here: the recording device's tests and
  // the journal crash tests check the write + flush they stand for.)
  {
    auto one = pattern(4096, 300);
    IoRequest w{IoRequest::Op::kWrite, 6ull << 20, one.data(), one.size()};
    w.durable = true;
    REQUIRE(dev->submit(std::span<IoRequest>(&w, 1)).ok());
    std::vector<uint8_t> back(4096);
    REQUIRE(dev->read(6ull << 20, back.data(), back.size()).ok());
    CHECK(back == one);

    // Unaligned memory, 3 MiB (split into pieces by the backends), durable,
    // next to a plain write and a read of the first write, in one batch.
    std::vector<uint8_t> big(3 * (1u << 20) + 1);
    auto bigp = pattern(big.size() - 1, 301);
    std::memcpy(big.data() + 1, bigp.data(), bigp.size());
    auto plain = pattern(ss, 302);
    std::vector<uint8_t> first_back(4096);
    std::vector<IoRequest> mixed = {{IoRequest::Op::kWrite, 2ull << 20, big.data() + 1, bigp.size()},
                                    {IoRequest::Op::kWrite, (6ull << 20) + 8192, plain.data(), ss},
                                    {IoRequest::Op::kRead, 6ull << 20, first_back.data(), 4096}};
    mixed[0].durable = true;
    mixed[2].durable = true;  // meaningless on a read: ignored
    REQUIRE(dev->submit(mixed).ok());
    CHECK(first_back == one);
    std::vector<uint8_t> bigback(bigp.size());
    REQUIRE(dev->read(2ull << 20, bigback.data(), bigback.size()).ok());
    CHECK(bigback == bigp);
    std::vector<uint8_t> plainback(ss);
    REQUIRE(dev->read((6ull << 20) + 8192, plainback.data(), ss).ok());
    CHECK(plainback == plain);

    // A bad durable request is refused like any other and writes nothing.
    std::vector<uint8_t> junk(2 * ss, 0x77);
    IoRequest bad{IoRequest::Op::kWrite, size - ss, junk.data(), 2 * ss};
    bad.durable = true;
    CHECK(dev->submit(std::span<IoRequest>(&bad, 1)).code() == Status::Code::kInvalidArgument);
    IoRequest odd{IoRequest::Op::kWrite, (6ull << 20) + 1, junk.data(), ss};
    odd.durable = true;
    CHECK(dev->submit(std::span<IoRequest>(&odd, 1)).code() == Status::Code::kInvalidArgument);
    std::vector<uint8_t> lastb(ss);
    REQUIRE(dev->read(size - ss, lastb.data(), ss).ok());
    CHECK(lastb == pattern(ss, 3));
    REQUIRE(dev->read(6ull << 20, back.data(), back.size()).ok());
    CHECK(back == one);
    // A device that says it does them natively must also keep flush() working.
    INFO("native durable writes: " << dev->native_durable_writes());
    CHECK(dev->flush().ok());
  }

  // Zero-length requests are harmless no-ops.
  CHECK(dev->read(0, nullptr, 0).ok());
  CHECK(dev->flush().ok());
}

}  // namespace cext3::testing
