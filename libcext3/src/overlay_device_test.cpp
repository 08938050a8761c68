#include <catch2/catch.hpp>

#include <cstring>

#include "backend_suite.h"
#include "cext3/memory_device.h"
#include "cext3/overlay_device.h"

using namespace cext3;

TEST_CASE("overlay device passes the backend suite", "[overlay]") {
  std::vector<std::unique_ptr<MemoryDevice>> bases;
  testing::run_backend_suite([&]() -> std::unique_ptr<BlockDevice> {
    bases.push_back(std::make_unique<MemoryDevice>(8u << 20));
    return std::make_unique<OverlayDevice>(*bases.back());
  });
}

TEST_CASE("overlay never writes the base and reads its own writes first", "[overlay]") {
  MemoryDevice base(1 << 20);
  auto pat = testing::pattern(1 << 20, 5);
  std::memcpy(base.bytes().data(), pat.data(), pat.size());
  OverlayDevice ov(base);
  std::vector<uint8_t> w(4096, 0xAB);
  REQUIRE(ov.write(8192 + 512, w.data(), 1024).ok());
  REQUIRE(ov.write(65536, w.data(), 4096).ok());
  CHECK(std::memcmp(base.bytes().data(), pat.data(), pat.size()) == 0);
  std::vector<uint8_t> r(16384);
  REQUIRE(ov.read(4096, r.data(), r.size()).ok());
  for (size_t i = 0; i < r.size(); ++i) {
    uint64_t off = 4096 + i;
    uint8_t want = (off >= 8704 && off < 9728) ? 0xAB : pat[off];
    if (r[i] != want) FAIL("byte " << off);
  }
  CHECK(ov.dirty_sectors().size() == 2 + 8);
  CHECK(ov.dirty_units(4096) == std::vector<uint64_t>{8192, 65536});
  CHECK(ov.dirty_units(1024) == std::vector<uint64_t>{8192, 9216, 65536, 66560, 67584, 68608});
}
