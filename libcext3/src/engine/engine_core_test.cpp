// The engine core against the real tools: images made by mke2fs + debugfs +
// clusterify, changed through engine::Filesystem, then checked with
// e2fsck -fn (exit 0), debugfs (stat, bmap, dump) and the raw image bytes at
// the blocks debugfs names. Files are created with debugfs before the
// conversion and opened by inode number (the namespace ops are tested
// beside fs_namespace.cpp).
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <regex>
#include <thread>
#include <string>
#include <vector>

#include "cext3/daemon/slot_recovery.h"
#include "cext3/engine/filesystem.h"
#include "cext3/file_device.h"
#include "cext3/node/cluster_disk.h"
#include "engine/local_locks.h"
#include "engine/engine_test_support.h"
#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::engine;
using namespace cext3::engine::testing;
using cext3::node::testing::run_command;
using cext3::node::testing::ScratchDir;
using cext3::node::testing::shell_quote;

namespace {

// ext3's largest file for a block size, computed here from first
// principles (not from the engine): the triple-indirect map's reach, capped
// by a 32-bit i_blocks in 512-byte units minus the map's own blocks.
uint64_t expected_max_size(uint64_t bs) {
  const uint64_t apb = bs / 4;
  const uint64_t map_reach = (12 + apb + apb * apb + apb * apb * apb) * bs;
  const uint64_t iblocks_limit = (((uint64_t(1) << 32) - 1) / (bs / 512) - (1 + 1 + apb + 1 + apb + apb * apb)) * bs;
  return std::min(map_reach, iblocks_limit);
}

std::vector<uint8_t> pattern(uint64_t offset, size_t len, uint32_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) {
    uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 29;
    v[i] = uint8_t(x * 0xBF58476D1CE4E5B9ull >> 56);
  }
  return v;
}

struct Tools {
  std::string bin;
  ScratchDir dir;
};

uint64_t size_of(const std::string& img, const std::string& path) {
  return debugfs_number(img, "stat " + path, "Size: ([0-9]+)");
}
// Bytes [offset, offset+len) of `path` as the image holds them: debugfs
// names the block of each logical block, the bytes are read straight from
// the image file (holes must read as zeros).
std::vector<uint8_t> file_bytes_via_bmap(const std::string& img, const std::string& path, uint32_t bs, uint64_t offset,
                                         size_t len) {
  std::vector<uint8_t> out;
  uint64_t pos = offset;
  while (pos < offset + len) {
    const uint64_t lblk = pos / bs, boff = pos % bs;
    const size_t n = size_t(std::min<uint64_t>(bs - boff, offset + len - pos));
    const uint64_t phys = bmap_of(img, path, lblk);
    if (phys == 0) {
      out.insert(out.end(), n, 0);
    } else {
      auto b = image_bytes(img, phys * bs + boff, n);
      out.insert(out.end(), b.begin(), b.end());
    }
    pos += n;
  }
  return out;
}

using Mounted = MountedEngine;

Mounted mount_image(const std::string& img, uint32_t slot, LockProvider* locks = nullptr, bool sync_ops = false) {
  MountOptions mo;
  mo.sync_ops = sync_ops;
  return mount_engine(img, slot, locks, mo);
}

}  // namespace

TEST_CASE("engine: sparse writes through direct, indirect, double and triple indirect blocks (1 KiB), EFBIG past ext3's limit",
          "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const uint32_t bs = 1024;
  const std::string img = make_converted_image(*bin, dir.path(), "a.img", bs, 64, 8192,
                                     {"write /dev/null big", "write /dev/null small"});
  const uint64_t big = inode_of(img, "/big"), small = inode_of(img, "/small");
  const uint64_t max = expected_max_size(bs);
  REQUIRE(max == 17247252480ull);  // (12 + 256 + 256^2 + 256^3) KiB
  struct Piece {
    uint64_t off;
    size_t len;
  };
  // Direct, direct->indirect boundary, double-indirect, triple-indirect
  // (starts at 65804 KiB), far into triple, and the very last bytes.
  const std::vector<Piece> pieces = {{0, 5000},           {12 * 1024 - 100, 300}, {300 * 1024, 2000},
                                     {100ull << 20, 4096}, {(5ull << 30) + 123, 3000}, {max - 10, 10}};
  {
    auto m = mount_image(img, 0);
    for (auto& p : pieces) write_ok(*m.fs, big, p.off, pattern(p.off, p.len, 1));
    // One byte past the limit: EFBIG, and nothing changes.
    auto r = m.fs->write(big, max - 5, pattern(0, 10, 9));
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.status().errno_value() == EFBIG);
    auto a = m.fs->getattr(big);
    REQUIRE(a.ok());
    REQUIRE(a->size == max);
    for (auto& p : pieces) REQUIRE(read_all(*m.fs, big, p.off, p.len) == pattern(p.off, p.len, 1));
    // A hole reads as zeros.
    REQUIRE(read_all(*m.fs, big, 50ull << 20, 3000) == std::vector<uint8_t>(3000, 0));
    // The small file, whole-block and partial writes mixed.
    write_ok(*m.fs, small, 0, pattern(0, 200 * 1024 + 17, 2));
    write_ok(*m.fs, small, 1000, pattern(1000, 5000, 3));
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(size_of(img, "/big") == max);
  for (auto& p : pieces) REQUIRE(file_bytes_via_bmap(img, "/big", bs, p.off, p.len) == pattern(p.off, p.len, 1));
  std::vector<uint8_t> want = pattern(0, 200 * 1024 + 17, 2);
  auto over = pattern(1000, 5000, 3);
  std::copy(over.begin(), over.end(), want.begin() + 1000);
  REQUIRE(dump_of(img, dir.path(), "/small") == want);
}

TEST_CASE("engine: truncate shrinks and grows a file - e2fsck is clean and the blocks come back", "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_converted_image(*bin, dir.path(), "t.img", 1024, 64, 8192, {"write /dev/null f"});
  const uint64_t f = inode_of(img, "/f");
  const size_t len = 3 << 20;
  {
    auto m = mount_image(img, 0);
    auto before = m.fs->statfs();
    REQUIRE(before.ok());
    write_ok(*m.fs, f, 0, pattern(0, len, 7));
    auto full = m.fs->statfs();
    REQUIRE(full.ok());
    // 3072 data blocks + 12 indirect blocks (1 + 1 dind + 11 ind... at least the data).
    REQUIRE(before->free_blocks - full->free_blocks >= 3072);
    SetAttr shrink;
    shrink.size = 100000;
    auto a = m.fs->setattr(f, shrink);
    REQUIRE(a.ok());
    REQUIRE(a->size == 100000);
    auto after = m.fs->statfs();
    REQUIRE(after.ok());
    // 98 data blocks + 1 indirect block remain.
    REQUIRE(before->free_blocks - after->free_blocks == 98 + 1);
    SetAttr grow;
    grow.size = 5 << 20;
    a = m.fs->setattr(f, grow);
    REQUIRE(a.ok());
    REQUIRE(a->size == (5u << 20));
    REQUIRE(a->blocks512 == (98 + 1) * 2);
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  std::vector<uint8_t> want(5 << 20, 0);
  auto head = pattern(0, 100000, 7);
  std::copy(head.begin(), head.end(), want.begin());
  REQUIRE(dump_of(img, dir.path(), "/f") == want);
}

TEST_CASE("engine: filling the filesystem ends in ENOSPC after borrowing the other slot's groups - e2fsck stays clean",
          "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_converted_image(*bin, dir.path(), "n.img", 1024, 32, 4096, {"write /dev/null f"});
  const uint64_t f = inode_of(img, "/f");
  uint64_t written = 0;
  {
    auto m = mount_image(img, 0);
    auto st = m.fs->statfs();
    REQUIRE(st.ok());
    const uint64_t free_at_start = st->free_blocks;
    Status last;
    for (int i = 0; i < 64; ++i) {
      auto r = m.fs->write(f, written, pattern(written, 1 << 20, 5));
      if (!r.ok()) {
        last = r.status();
        break;
      }
      written += *r;
    }
    INFO(last.ToString());
    REQUIRE(last.errno_value() == ENOSPC);
    // More than this slot's half: the other slot's groups were borrowed.
    REQUIRE(written > free_at_start * 1024 / 2 + (2 << 20));
    auto end = m.fs->statfs();
    REQUIRE(end.ok());
    REQUIRE(end->free_blocks < 64);
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(size_of(img, "/f") >= written);
  REQUIRE(file_bytes_via_bmap(img, "/f", 1024, written - 5000, 5000) == pattern(written - 5000, 5000, 5));
}

TEST_CASE("engine: sync ops survive a crash - slot recovery replays them and e2fsck is clean", "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img =
      make_converted_image(*bin, dir.path(), "c.img", 1024, 64, 8192, {"write /dev/null f", "write /etc/services g"});
  const uint64_t f = inode_of(img, "/f"), g = inode_of(img, "/g");
  const std::string crashed = dir.path() + "/crashed.img";
  const auto data = pattern(0, 300 * 1024 + 5, 11);
  {
    auto m = mount_image(img, 1, nullptr, /*sync_ops=*/true);
    write_ok(*m.fs, f, 0, data);
    SetAttr t;
    t.size = 10;
    REQUIRE(m.fs->setattr(g, t).ok());
    // The power goes out now: copy the disk as it is (every op above was
    // acknowledged durable).
    REQUIRE(run_command("cp --sparse=always " + shell_quote(img) + " " + shell_quote(crashed)).exit_code == 0);
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  // Before replay the inode table still has the old inode: the journal
  // alone carries the ops.
  REQUIRE(size_of(crashed, "/f") == 0);
  {
    auto d = open_file_device(crashed, {});
    REQUIRE(d.ok());
    auto disk = node::ClusterDisk::open(**d);
    REQUIRE(disk.ok());
    auto rec = daemon::recover_slot(**disk, 1, /*keep_owner=*/true);
    INFO(rec.status().ToString());
    REQUIRE(rec.ok());
    REQUIRE(rec->replay.transactions > 0);
    // Every node is down: recount every group from the bitmaps (the node
    // freed blocks of g in slot 0's group 0 too, whose count it had only
    // as an unfolded delta).
    auto fixed = daemon::recount_all_groups(**disk);
    INFO(fixed.status().ToString());
    REQUIRE(fixed.ok());
  }
  REQUIRE(fsck(crashed) == 0);
  REQUIRE(size_of(crashed, "/f") == data.size());
  REQUIRE(dump_of(crashed, dir.path(), "/f") == data);
  REQUIRE(size_of(crashed, "/g") == 10);
}

TEST_CASE("engine: two nodes on one image stay coherent through lock callbacks", "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_converted_image(*bin, dir.path(), "2.img", 1024, 64, 8192, {"write /dev/null f"});
  const uint64_t f = inode_of(img, "/f");
  LocalLockCluster cluster;
  auto pa = cluster.provider(0), pb = cluster.provider(1);
  std::vector<uint8_t> want = pattern(0, 500 * 1024, 21);
  {
    auto a = mount_image(img, 0, pa.get());
    auto b = mount_image(img, 1, pb.get());
    Filesystem* fa = a.fs.get();
    Filesystem* fb = b.fs.get();
    cluster.set_leaving_callback(0, [fa](auto& r, auto from, auto to) { fa->on_lock_leaving(r, from, to); });
    cluster.set_leaving_callback(1, [fb](auto& r, auto from, auto to) { fb->on_lock_leaving(r, from, to); });

    write_ok(*fa, f, 0, want);  // A allocates in its groups; nothing is synced
    REQUIRE(read_all(*fb, f, 0, want.size()) == want);  // B sees it byte for byte
    const uint64_t cb_after_read = cluster.callbacks();
    REQUIRE(cb_after_read > 0);

    // B changes the middle and appends (allocating in B's groups).
    auto mid = pattern(123456, 70000, 22);
    write_ok(*fb, f, 123456, mid);
    std::copy(mid.begin(), mid.end(), want.begin() + 123456);
    auto tail = pattern(want.size(), 40000, 23);
    write_ok(*fb, f, want.size(), tail);
    want.insert(want.end(), tail.begin(), tail.end());
    REQUIRE(read_all(*fa, f, 0, want.size() + 10) == want);
    // A truncates; B sees the new size and the bytes.
    SetAttr t;
    t.size = 300000;
    REQUIRE(fa->setattr(f, t).ok());
    want.resize(300000);
    auto attr = fb->getattr(f);
    REQUIRE(attr.ok());
    REQUIRE(attr->size == 300000);
    REQUIRE(read_all(*fb, f, 0, 400000) == want);
    REQUIRE(cluster.callbacks() > cb_after_read);

    REQUIRE(fa->unmount().ok());
    REQUIRE(fb->unmount().ok());
    cluster.set_leaving_callback(0, nullptr);
    cluster.set_leaving_callback(1, nullptr);
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(dump_of(img, dir.path(), "/f") == want);
}

TEST_CASE("engine: 4 KiB blocks: writes through every map level, EFBIG at ext3's 2 TiB limit", "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const uint32_t bs = 4096;
  const std::string img = make_converted_image(*bin, dir.path(), "4k.img", bs, 64, 8192, {"write /dev/null f"});
  const uint64_t f = inode_of(img, "/f");
  const uint64_t max = expected_max_size(bs);
  REQUIRE(max == 2194719883264ull);
  struct Piece {
    uint64_t off;
    size_t len;
  };
  const std::vector<Piece> pieces = {{0, 10000}, {60 * 1024, 9000}, {5ull << 20, 4096}, {5ull << 30, 12345}, {max - 1, 1}};
  {
    auto m = mount_image(img, 1);
    for (auto& p : pieces) write_ok(*m.fs, f, p.off, pattern(p.off, p.len, 31));
    auto r = m.fs->write(f, max - 1, pattern(0, 2, 9));
    REQUIRE(r.status().errno_value() == EFBIG);
    SetAttr t;
    t.size = max + 1;
    REQUIRE(m.fs->setattr(f, t).status().errno_value() == EFBIG);
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(size_of(img, "/f") == max);
  for (auto& p : pieces) REQUIRE(file_bytes_via_bmap(img, "/f", bs, p.off, p.len) == pattern(p.off, p.len, 31));
}

TEST_CASE("engine: concurrent writers with sync ops wrap the slot journal many times - e2fsck is clean", "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_converted_image(*bin, dir.path(), "w.img", 1024, 64, 8192,
                                     {"write /dev/null f0", "write /dev/null f1", "write /dev/null f2", "write /dev/null f3"});
  constexpr int kThreads = 4, kOps = 150;
  constexpr size_t kLen = 3000;
  std::vector<uint64_t> inos;
  for (int t = 0; t < kThreads; ++t) inos.push_back(inode_of(img, "/f" + std::to_string(t)));
  {
    auto m = mount_image(img, 0, nullptr, /*sync_ops=*/true);
    std::vector<std::thread> threads;
    std::vector<Status> errors(kThreads);
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < kOps && errors[t].ok(); ++i) {
          auto r = m.fs->write(inos[t], uint64_t(i) * kLen, pattern(uint64_t(i) * kLen, kLen, 40 + t));
          if (!r.ok()) errors[t] = r.status();
        }
      });
    for (auto& th : threads) th.join();
    for (auto& e : errors) {
      INFO(e.ToString());
      REQUIRE(e.ok());
    }
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  for (int t = 0; t < kThreads; ++t)
    REQUIRE(dump_of(img, dir.path(), "/f" + std::to_string(t)) == pattern(0, kOps * kLen, 40 + t));
}

TEST_CASE("engine: reads xattrs that debugfs stored in the inode and in an xattr block",
          "[engine]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string big_value(600, 'v');
  {
    std::ofstream(dir.path() + "/big.val", std::ios::binary) << big_value;
  }
  const std::string img = make_converted_image(*bin, dir.path(), "x.img", 1024, 64, 8192,
                                     {"write /dev/null x", "ea_set /x user.color red",
                                      "ea_set -f " + dir.path() + "/big.val /x user.big"});
  const uint64_t x = inode_of(img, "/x");
  // The big value needs the xattr block: debugfs says the file has one.
  REQUIRE(debugfs_number(img, "stat /x", "File ACL: ([0-9]+)") != 0);
  {
    auto m = mount_image(img, 0);
    auto color = m.fs->getxattr(x, "user.color");
    INFO(color.status().ToString());
    REQUIRE(color.ok());
    REQUIRE(std::string(color->begin(), color->end()) == "red");
    auto big = m.fs->getxattr(x, "user.big");
    REQUIRE(big.ok());
    REQUIRE(std::string(big->begin(), big->end()) == big_value);
    auto names = m.fs->listxattr(x);
    REQUIRE(names.ok());
    std::sort(names->begin(), names->end());
    REQUIRE(*names == std::vector<std::string>{"user.big", "user.color"});
    REQUIRE(m.fs->getxattr(x, "user.none").status().errno_value() == ENODATA);
    // Changing them is covered in xattr_test.cpp.
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
}
