// Open files and orphans (orphan.cpp, docs/ENGINE.md "Orphans") against the
// real tools: engines mounted on images made by mke2fs + clusterify, checked
// with e2fsck -fn (exit 0, also on crash copies after slot recovery) and
// debugfs (the orphan directory's entries, whether an inode is in use).
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cext3/daemon/slot_recovery.h"
#include "cext3/engine/filesystem.h"
#include "cext3/engine/orphans.h"
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

std::string make_image(const std::string& bin, const std::string& dir, const std::string& name) {
  const std::string img = dir + "/" + name;
  auto r = run_command("truncate -s 64M " + shell_quote(img) + " && mke2fs -q -F -t ext3 -b 1024 -g 8192 " +
                       shell_quote(img) + " 2>&1");
  REQUIRE(r.exit_code == 0);
  r = run_command(shell_quote(bin + "/clusterify") + " convert " + shell_quote(img) +
                  " --slots 2 --journal-size 1 --yes 2>&1");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return img;
}

std::string debugfs(const std::string& img, const std::string& request) {
  return run_command("debugfs -R " + shell_quote(request) + " " + shell_quote(img) + " 2>&1").out;
}

// Names in a directory as debugfs lists them (without . and ..).
std::vector<std::string> names_in(const std::string& img, const std::string& path) {
  const std::string out = debugfs(img, "ls -p " + path);
  std::vector<std::string> v;
  std::regex line("/([0-9]+)/[0-9]+/[0-9]+/[0-9]+/([^/]*)/");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), line); it != std::sregex_iterator(); ++it) {
    const std::string n = (*it)[2].str();
    if (n != "." && n != "..") v.push_back(n);
  }
  return v;
}

bool inode_in_use(const std::string& img, uint64_t ino) {
  const std::string out = debugfs(img, "testi <" + std::to_string(ino) + ">");
  INFO(out);
  REQUIRE((out.find("marked in use") != std::string::npos || out.find("not in use") != std::string::npos));
  return out.find("marked in use") != std::string::npos;
}

std::vector<uint8_t> pattern(size_t len, uint32_t seed) {
  std::vector<uint8_t> v(len);
  for (size_t i = 0; i < len; ++i) v[i] = uint8_t((i * 2654435761u + seed) >> 13);
  return v;
}

using Mounted = MountedEngine;

Mounted mount_image(const std::string& img, uint32_t slot, LockProvider* locks = nullptr,
                    std::chrono::milliseconds scan = std::chrono::milliseconds(3000)) {
  MountOptions mo;
  mo.sync_ops = true;  // every op durable: a copy of the image is a crash state
  mo.orphan_scan_interval = scan;
  return mount_engine(img, slot, locks, mo);
}

uint64_t create_file(Filesystem& fs, uint64_t dir, const std::string& name, const std::vector<uint8_t>& data) {
  auto a = fs.create(dir, name, 0644, Caller{});
  INFO(a.status().ToString());
  REQUIRE(a.ok());
  auto w = fs.write(a->ino, 0, data);
  INFO(w.status().ToString());
  REQUIRE(w.ok());
  return a->ino;
}

std::vector<uint8_t> read_all(Filesystem& fs, uint64_t ino, size_t len) {
  std::vector<uint8_t> v(len + 100);
  auto r = fs.read(ino, 0, v);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  v.resize(*r);
  return v;
}

uint64_t free_blocks(Filesystem& fs) {
  auto s = fs.statfs();
  REQUIRE(s.ok());
  return s->free_blocks;
}

// The image as it is now, as if every node had crashed: a copy whose slot
// journals are replayed and whose counts are recomputed (every node down).
std::string crash_copy(const std::string& img, const std::string& dir, const std::string& name) {
  const std::string c = dir + "/" + name;
  REQUIRE(run_command("cp --sparse=always " + shell_quote(img) + " " + shell_quote(c)).exit_code == 0);
  auto d = open_file_device(c, OpenOptions{});
  REQUIRE(d.ok());
  auto disk = node::ClusterDisk::open(**d);
  REQUIRE(disk.ok());
  for (uint32_t s = 0; s < 2; ++s) REQUIRE(daemon::recover_slot(**disk, s, /*keep_owner=*/true).ok());
  REQUIRE(daemon::recount_all_groups(**disk).ok());
  return c;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

}  // namespace

TEST_CASE("orphans: open, unlink, read and write, last release frees it - blocks back, e2fsck clean at every point",
          "[engine][orphan]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_image(*bin, dir.path(), "o.img");
  uint64_t ino = 0;
  {
    auto m = mount_image(img, 0);
    Filesystem& fs = *m.fs;
    // The first unlink makes the slot's orphan directory (one block); a
    // file not open is freed at once.
    create_file(fs, kRootIno, "warm-up", pattern(3000, 0));
    REQUIRE(fs.unlink(kRootIno, "warm-up").ok());
    const uint64_t before = free_blocks(fs);
    const auto data = pattern(300 * 1024, 1);
    ino = create_file(fs, kRootIno, "f", data);
    REQUIRE(free_blocks(fs) < before - 300);
    REQUIRE(fs.open(ino).ok());
    REQUIRE(fs.open(ino).ok());  // a second open of the same inode
    REQUIRE(fs.unlink(kRootIno, "f").ok());
    CHECK(fs.lookup(kRootIno, "f").status().errno_value() == ENOENT);
    auto a = fs.getattr(ino);
    REQUIRE(a.ok());
    CHECK(a->nlink == 0);
    CHECK(a->size == data.size());
    REQUIRE(read_all(fs, ino, data.size()) == data);
    const auto more = pattern(5000, 2);
    REQUIRE(fs.write(ino, data.size(), more).ok());
    CHECK(fs.link(ino, kRootIno, "back").status().errno_value() == ENOENT);

    // A crash now: the orphan is a valid file in /.cext3/orphan.00.
    const std::string c = crash_copy(img, dir.path(), "crash1.img");
    REQUIRE(fsck(c) == 0);
    REQUIRE(names_in(c, "/.cext3/orphan.00") == std::vector<std::string>{std::to_string(ino)});
    REQUIRE(inode_in_use(c, ino));

    REQUIRE(fs.release(ino).ok());  // one open left: nothing happens
    REQUIRE(read_all(fs, ino, data.size() + more.size()).size() == data.size() + more.size());
    REQUIRE(fs.release(ino).ok());  // the last one frees it
    CHECK(fs.release(ino).errno_value() == EBADF);
    CHECK(free_blocks(fs) == before);
    CHECK(fs.open(ino).errno_value() == ENOENT);
    REQUIRE(fs.unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  CHECK(names_in(img, "/.cext3/orphan.00").empty());
  CHECK_FALSE(inode_in_use(img, ino));
}

TEST_CASE("orphans: unlinked on node B while open on node A - A keeps reading and writing, B's scan frees it after A's release",
          "[engine][orphan]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_image(*bin, dir.path(), "ab.img");
  LocalLockCluster cluster;
  auto pa = cluster.provider(0), pb = cluster.provider(1);
  uint64_t ino = 0;
  {
    auto a = mount_image(img, 0, pa.get(), std::chrono::milliseconds(100));
    auto b = mount_image(img, 1, pb.get(), std::chrono::milliseconds(100));
    Filesystem* fa = a.fs.get();
    Filesystem* fb = b.fs.get();
    cluster.set_leaving_callback(0, [fa](auto& r, auto from, auto to) { fa->on_lock_leaving(r, from, to); });
    cluster.set_leaving_callback(1, [fb](auto& r, auto from, auto to) { fb->on_lock_leaving(r, from, to); });

    const uint64_t before = free_blocks(*fa);
    const auto data = pattern(200 * 1024, 3);
    ino = create_file(*fa, kRootIno, "shared", data);
    REQUIRE(fa->open(ino).ok());
    REQUIRE(fb->unlink(kRootIno, "shared").ok());
    CHECK(fa->lookup(kRootIno, "shared").status().errno_value() == ENOENT);
    auto odir = fb->lookup(fb->lookup(kRootIno, ".cext3")->ino, "orphan.01");
    REQUIRE(odir.ok());
    REQUIRE(fb->lookup(odir->ino, std::to_string(ino)).ok());
    // Scans run on B meanwhile and must not free it.
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    REQUIRE(read_all(*fa, ino, data.size()) == data);
    const auto more = pattern(3000, 4);
    REQUIRE(fa->write(ino, 1000, more).ok());
    auto back = read_all(*fa, ino, data.size());
    REQUIRE(std::equal(more.begin(), more.end(), back.begin() + 1000));
    const std::string c = crash_copy(img, dir.path(), "crash2.img");
    REQUIRE(fsck(c) == 0);
    REQUIRE(names_in(c, "/.cext3/orphan.01") == std::vector<std::string>{std::to_string(ino)});

    REQUIRE(fa->release(ino).ok());  // A is not the unlinker: B's scan frees it
    REQUIRE(wait_until([&] { return fb->lookup(odir->ino, std::to_string(ino)).status().errno_value() == ENOENT; },
                       std::chrono::milliseconds(5000)));
    CHECK(fa->open(ino).errno_value() == ENOENT);
    REQUIRE(fa->unmount().ok());
    REQUIRE(fb->unmount().ok());
    (void)before;
  }
  REQUIRE(fsck(img) == 0);
  CHECK(names_in(img, "/.cext3/orphan.01").empty());
  CHECK_FALSE(inode_in_use(img, ino));
}

TEST_CASE("orphans: a crashed node's orphans - recovery frees the closed ones and adopts the ones still open elsewhere",
          "[engine][orphan]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_image(*bin, dir.path(), "crash.img");
  LocalLockCluster cluster;
  auto px = cluster.provider(0), py = cluster.provider(1);
  auto y = mount_image(img, 1, py.get(), std::chrono::milliseconds(100));
  Filesystem* fy = y.fs.get();
  cluster.set_leaving_callback(1, [fy](auto& r, auto from, auto to) { fy->on_lock_leaving(r, from, to); });
  const auto d1 = pattern(50 * 1024, 5), d2 = pattern(70 * 1024, 6);
  uint64_t still_open = 0, closed = 0;
  {
    // X (slot 0) never scans during the test: its orphans outlive it.
    auto x = mount_image(img, 0, px.get(), std::chrono::hours(1));
    Filesystem* fx = x.fs.get();
    cluster.set_leaving_callback(0, [fx](auto& r, auto from, auto to) { fx->on_lock_leaving(r, from, to); });
    still_open = create_file(*fx, kRootIno, "a", d1);
    closed = create_file(*fx, kRootIno, "b", d2);
    REQUIRE(fy->open(still_open).ok());
    REQUIRE(fy->open(closed).ok());
    REQUIRE(fx->unlink(kRootIno, "a").ok());
    REQUIRE(fx->unlink(kRootIno, "b").ok());
    REQUIRE(fy->release(closed).ok());  // Y is not the unlinker: X's scan would free it, but X dies first
    // X dies: no unmount. Its locks stay with it until its slot is recovered.
    cluster.set_leaving_callback(0, nullptr);
    x.fs.reset();
  }
  {
    const std::string c = crash_copy(img, dir.path(), "crash3.img");
    REQUIRE(fsck(c) == 0);
    auto names = names_in(c, "/.cext3/orphan.00");
    std::sort(names.begin(), names.end());
    std::vector<std::string> want{std::to_string(still_open), std::to_string(closed)};
    std::sort(want.begin(), want.end());
    REQUIRE(names == want);
  }
  // The survivor replays X's journal, then takes its orphans.
  {
    auto d = open_file_device(img, OpenOptions{});
    REQUIRE(d.ok());
    auto disk = node::ClusterDisk::open(**d);
    REQUIRE(disk.ok());
    REQUIRE(daemon::recover_slot(**disk, 0, /*keep_owner=*/false).ok());
  }
  Status s = adopt_orphans(*fy, 0);
  INFO(s.ToString());
  REQUIRE(s.ok());
  auto sys = fy->lookup(kRootIno, ".cext3");
  REQUIRE(sys.ok());
  auto o0 = fy->lookup(sys->ino, "orphan.00");
  auto o1 = fy->lookup(sys->ino, "orphan.01");
  REQUIRE(o0.ok());
  REQUIRE(o1.ok());
  CHECK(fy->lookup(o0->ino, std::to_string(closed)).status().errno_value() == ENOENT);
  CHECK(fy->lookup(o0->ino, std::to_string(still_open)).status().errno_value() == ENOENT);
  REQUIRE(fy->lookup(o1->ino, std::to_string(still_open)).ok());  // adopted: still open here
  REQUIRE(read_all(*fy, still_open, d1.size()) == d1);
  CHECK(fy->open(closed).errno_value() == ENOENT);
  REQUIRE(fy->release(still_open).ok());  // now Y's own orphan: its last release frees it
  CHECK(fy->lookup(o1->ino, std::to_string(still_open)).status().errno_value() == ENOENT);
  REQUIRE(fy->unmount().ok());
  {
    auto d = open_file_device(img, OpenOptions{});
    REQUIRE(d.ok());
    auto disk = node::ClusterDisk::open(**d);
    REQUIRE(disk.ok());
    REQUIRE(daemon::recount_all_groups(**disk).ok());  // every node is down now
  }
  REQUIRE(fsck(img) == 0);
  CHECK_FALSE(inode_in_use(img, still_open));
  CHECK_FALSE(inode_in_use(img, closed));
  CHECK(names_in(img, "/.cext3/orphan.00").empty());
  CHECK(names_in(img, "/.cext3/orphan.01").empty());
}

TEST_CASE("orphans: a crash with an orphan - the slot's next mount frees it", "[engine][orphan]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_image(*bin, dir.path(), "remount.img");
  uint64_t ino = 0;
  {
    auto m = mount_image(img, 1);
    ino = create_file(*m.fs, kRootIno, "f", pattern(40 * 1024, 7));
    REQUIRE(m.fs->open(ino).ok());
    REQUIRE(m.fs->unlink(kRootIno, "f").ok());
    m.fs.reset();  // crash: no release, no unmount
  }
  {
    auto d = open_file_device(img, OpenOptions{});
    REQUIRE(d.ok());
    auto disk = node::ClusterDisk::open(**d);
    REQUIRE(disk.ok());
    REQUIRE(daemon::recover_slot(**disk, 1, /*keep_owner=*/true).ok());
  }
  REQUIRE(names_in(img, "/.cext3/orphan.01") == std::vector<std::string>{std::to_string(ino)});
  auto d = open_file_device(img, OpenOptions{});
  REQUIRE(d.ok());
  auto n = free_orphans_offline(**d, 1);
  INFO(n.status().ToString());
  REQUIRE(n.ok());
  CHECK(*n == 1);
  d->reset();
  {
    auto dd = open_file_device(img, OpenOptions{});
    REQUIRE(dd.ok());
    auto disk = node::ClusterDisk::open(**dd);
    REQUIRE(disk.ok());
    REQUIRE(daemon::recount_all_groups(**disk).ok());
  }
  REQUIRE(fsck(img) == 0);
  CHECK(names_in(img, "/.cext3/orphan.01").empty());
  CHECK_FALSE(inode_in_use(img, ino));
}

TEST_CASE("orphans: rmdir of an open directory and rename over an open file", "[engine][orphan]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_image(*bin, dir.path(), "dr.img");
  uint64_t d = 0, old_target = 0, src = 0;
  {
    auto m = mount_image(img, 0);
    Filesystem& fs = *m.fs;
    // The first unlink makes the slot's orphan directory (one block); a
    // file not open is freed at once.
    create_file(fs, kRootIno, "warm-up", pattern(3000, 0));
    REQUIRE(fs.unlink(kRootIno, "warm-up").ok());
    const uint64_t before = free_blocks(fs);
    const uint32_t root_links = fs.getattr(kRootIno)->nlink;
    auto md = fs.mkdir(kRootIno, "d", 0755, Caller{});
    REQUIRE(md.ok());
    d = md->ino;
    REQUIRE(fs.open(d).ok());
    REQUIRE(fs.rmdir(kRootIno, "d").ok());
    auto da = fs.getattr(d);
    REQUIRE(da.ok());
    CHECK(da->nlink == 0);
    CHECK(fs.create(d, "x", 0644, Caller{}).status().errno_value() == ENOENT);
    REQUIRE(fs.readdir(d, 0, 100).ok());
    auto ra = fs.getattr(kRootIno);
    REQUIRE(ra.ok());
    CHECK(ra->nlink == root_links);  // d's ".." names the orphan directory now

    const auto old_data = pattern(20 * 1024, 8), new_data = pattern(9 * 1024, 9);
    old_target = create_file(fs, kRootIno, "t", old_data);
    src = create_file(fs, kRootIno, "s", new_data);
    REQUIRE(fs.open(old_target).ok());
    REQUIRE(fs.rename(kRootIno, "s", kRootIno, "t").ok());
    REQUIRE(fs.lookup(kRootIno, "t")->ino == src);
    REQUIRE(read_all(fs, old_target, old_data.size()) == old_data);

    const std::string c = crash_copy(img, dir.path(), "crash4.img");
    REQUIRE(fsck(c) == 0);
    auto names = names_in(c, "/.cext3/orphan.00");
    std::sort(names.begin(), names.end());
    std::vector<std::string> want{std::to_string(d), std::to_string(old_target)};
    std::sort(want.begin(), want.end());
    REQUIRE(names == want);

    REQUIRE(fs.release(d).ok());
    REQUIRE(fs.release(old_target).ok());
    CHECK(fs.getattr(kRootIno)->nlink == root_links);
    REQUIRE(fs.unlink(kRootIno, "t").ok());  // not open: freed at once
    CHECK(free_blocks(fs) == before);
    REQUIRE(fs.unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  CHECK(names_in(img, "/.cext3/orphan.00").empty());
  CHECK_FALSE(inode_in_use(img, d));
  CHECK_FALSE(inode_in_use(img, old_target));
  CHECK_FALSE(inode_in_use(img, src));
}
