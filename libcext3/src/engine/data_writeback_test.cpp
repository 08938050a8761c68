// File data write-back (data_writeback.cpp) against the image itself: what
// the disk holds at a file's blocks (debugfs names them) before and after
// the commit, what reads return meanwhile, and that a block freed before
// its commit never receives the bytes written to it. The commit thread is
// slowed to an hour so that only the test's own fsync calls commit.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "cext3/engine/filesystem.h"
#include "engine/engine_test_support.h"
#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::engine;
using namespace cext3::engine::testing;
using cext3::node::testing::ScratchDir;

namespace {

std::vector<uint8_t> bytes(size_t len, uint32_t seed) {
  std::vector<uint8_t> v(len);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = uint8_t(x);
  }
  return v;
}

std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t off, size_t len) {
  return std::vector<uint8_t>(v.begin() + long(off), v.begin() + long(off + len));
}

void put(std::vector<uint8_t>& v, size_t off, const std::vector<uint8_t>& part) {
  if (v.size() < off + part.size()) v.resize(off + part.size(), 0);
  std::copy(part.begin(), part.end(), v.begin() + long(off));
}

}  // namespace

TEST_CASE("engine: written data reaches the disk with its commit, reads see it before, a freed block never gets it",
          "[engine][writeback]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const uint32_t bs = 4096;
  const std::vector<uint8_t> old = bytes(3 * bs, 1);  // what debugfs writes before the conversion
  {
    std::ofstream f(dir.path() + "/old", std::ios::binary);
    f.write(reinterpret_cast<const char*>(old.data()), std::streamsize(old.size()));
  }
  const std::string img = make_converted_image(*bin, dir.path(), "wb.img", bs, 64, 8192,
                                               {"write " + dir.path() + "/old f"});
  const uint64_t ino = inode_of(img, "/f");
  const uint64_t blk[3] = {bmap_of(img, "/f", 0), bmap_of(img, "/f", 1), bmap_of(img, "/f", 2)};
  auto on_disk = [&](int i) { return image_bytes(img, blk[i] * bs, bs); };

  MountOptions mo;
  mo.commit_interval = std::chrono::hours(1);
  auto m = mount_engine(img, 0, nullptr, mo);
  std::vector<uint8_t> want = old;

  // A whole block and a part of another: read back at once, not yet on disk.
  const auto whole = bytes(bs, 2), part = bytes(100, 3);
  write_ok(*m.fs, ino, 0, whole);
  write_ok(*m.fs, ino, bs + 100, part);
  put(want, 0, whole);
  put(want, bs + 100, part);
  REQUIRE(read_all(*m.fs, ino, 0, want.size() + 100) == want);
  REQUIRE(on_disk(0) == slice(old, 0, bs));
  REQUIRE(on_disk(1) == slice(old, bs, bs));

  // fsync commits: the blocks hold the new bytes.
  REQUIRE(m.fs->fsync(ino).ok());
  REQUIRE(on_disk(0) == slice(want, 0, bs));
  REQUIRE(on_disk(1) == slice(want, bs, bs));
  REQUIRE(on_disk(2) == slice(old, 2 * bs, bs));

  // Writes into blocks 1 and 2, then a truncate frees both before any
  // commit: neither block may receive those bytes.
  write_ok(*m.fs, ino, 2 * bs + 5, bytes(50, 4));
  write_ok(*m.fs, ino, bs, bytes(bs, 5));
  SetAttr shrink;
  shrink.size = bs;
  REQUIRE(m.fs->setattr(ino, shrink).ok());
  REQUIRE(m.fs->fsync(ino).ok());
  REQUIRE(on_disk(1) == slice(want, bs, bs));
  REQUIRE(on_disk(2) == slice(old, 2 * bs, bs));
  want.resize(bs);
  REQUIRE(read_all(*m.fs, ino, 0, want.size() + 100) == want);

  // Shrink into a block (its tail is zeroed once the shrink is durable),
  // then grow past it with a buffered partial block: the gap reads as zeros.
  SetAttr mid;
  mid.size = 3000;
  REQUIRE(m.fs->setattr(ino, mid).ok());
  want.resize(3000);
  const auto tail = bytes(10, 6);
  write_ok(*m.fs, ino, 5000, tail);
  put(want, 5000, tail);
  REQUIRE(read_all(*m.fs, ino, 0, want.size() + 100) == want);
  const auto far = bytes(3 * bs + 7, 7);
  write_ok(*m.fs, ino, 5 * bs + 1, far);
  put(want, 5 * bs + 1, far);
  REQUIRE(read_all(*m.fs, ino, 0, want.size() + 100) == want);
  REQUIRE(m.fs->unmount().ok());

  REQUIRE(fsck(img) == 0);
  REQUIRE(dump_of(img, dir.path(), "/f") == want);
}
