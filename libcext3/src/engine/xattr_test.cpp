// Extended attributes through the engine against the real tools: images
// made by mke2fs + debugfs (or the kernel) + clusterify, attributes set and
// removed through engine::Filesystem, then checked with e2fsck -fn (exit 0),
// debugfs ea_list / ea_get / stat, and, where loop mounts are permitted, the
// kernel's own reading (getfattr, getfacl) on a read-only mount.
//
// The on-disk codecs (xattr_format.h, xattr_acl.h) are also checked on
// buffers against values the kernel produced.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "cext3/engine/filesystem.h"
#include "cext3/file_device.h"
#include "engine/local_locks.h"
#include "engine/xattr_acl.h"
#include "engine/xattr_format.h"
#include "engine/engine_test_support.h"
#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::engine;
using namespace cext3::engine::testing;
using cext3::node::testing::run_command;
using cext3::node::testing::ScratchDir;
using cext3::node::testing::shell_quote;

namespace {

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

void run_debugfs(const std::string& dir, const std::string& img, const std::vector<std::string>& cmds) {
  std::string text;
  for (auto& c : cmds) text += c + "\n";
  std::ofstream(dir + "/cmds") << text;
  auto r = run_command("debugfs -w -f " + shell_quote(dir + "/cmds") + " " + shell_quote(img) + " 2>&1");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
}

// mke2fs -t ext3 with the given inode size and block size, 32 MiB in four
// groups (two slots need a group each), no files yet.
std::string make_fs(const std::string& dir, const std::string& name, uint32_t bs, uint32_t inode_size) {
  const std::string img = dir + "/" + name;
  auto r = run_command("truncate -s 32M " + shell_quote(img) + " && mke2fs -q -F -t ext3 -b " + std::to_string(bs) +
                       " -I " + std::to_string(inode_size) + " -g " + std::to_string((32u << 20) / bs / 4) + " " +
                       shell_quote(img) + " 2>&1");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return img;
}

void clusterify(const std::string& bin, const std::string& img, uint32_t bs) {
  auto r = run_command(shell_quote(bin + "/clusterify") + " convert " + shell_quote(img) +
                       " --slots 2 --journal-size " + std::to_string(bs == 1024 ? 1 : 4) + " --yes 2>&1");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
}

uint64_t xattr_block_of(const std::string& img, const std::string& path) {
  return debugfs_number(img, "stat " + path, "File ACL: ([0-9]+)");
}
uint64_t blockcount_of(const std::string& img, const std::string& path) {
  return debugfs_number(img, "stat " + path, "Blockcount: ([0-9]+)");
}

// debugfs ea_list as sorted lines "name (size) = value" (debugfs's own
// rendering of the value).
std::vector<std::string> ea_list(const std::string& img, const std::string& path) {
  std::istringstream in(debugfs_out(img, "ea_list " + path));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  ", 0) != 0) continue;
    out.push_back(line.substr(2));
  }
  std::sort(out.begin(), out.end());
  return out;
}
// One value, byte for byte, through debugfs ea_get -f.
std::vector<uint8_t> ea_get(const std::string& img, const std::string& dir, const std::string& path,
                            const std::string& name) {
  const std::string out = dir + "/ea.out";
  run_command("rm -f " + shell_quote(out));
  run_command("debugfs -R " + shell_quote("ea_get -f " + out + " " + path + " " + name) + " " + shell_quote(img) +
              " 2>&1");
  std::ifstream f(out, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

uint32_t le32_at(const std::string& img, uint64_t offset) {
  std::ifstream f(img, std::ios::binary);
  f.seekg(std::streamoff(offset));
  uint8_t b[4] = {0, 0, 0, 0};
  f.read(reinterpret_cast<char*>(b), 4);
  return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
}

using Mounted = MountedEngine;

Mounted mount_image(const std::string& img, uint32_t slot, LockProvider* locks = nullptr) {
  return mount_engine(img, slot, locks);
}

void set_ok(Filesystem& fs, uint64_t ino, const std::string& name, const std::vector<uint8_t>& v, int flags = 0) {
  Status s = fs.setxattr(ino, name, v, flags);
  INFO(name << ": " << s.ToString());
  REQUIRE(s.ok());
}
void remove_ok(Filesystem& fs, uint64_t ino, const std::string& name) {
  Status s = fs.removexattr(ino, name);
  INFO(name << ": " << s.ToString());
  REQUIRE(s.ok());
}
std::vector<uint8_t> get_ok(Filesystem& fs, uint64_t ino, const std::string& name) {
  auto r = fs.getxattr(ino, name);
  INFO(name << ": " << r.status().ToString());
  REQUIRE(r.ok());
  return *r;
}
std::vector<std::string> list_sorted(Filesystem& fs, uint64_t ino) {
  auto r = fs.listxattr(ino);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  std::vector<std::string> v = *r;
  std::sort(v.begin(), v.end());
  return v;
}

// A read-only kernel mount (the loop device goes with the unmount: mount -o
// loop sets autoclear). Unmounted at scope end, also after a failed REQUIRE.
struct KernelMount {
  std::string dir;
  bool mounted = false;
  std::string error;
  KernelMount(const std::string& img, std::string mount_dir, bool read_only = true) : dir(std::move(mount_dir)) {
    std::filesystem::create_directories(dir);
    auto r = run_command(std::string("mount -t ext4 -o loop") + (read_only ? ",ro,noload " : " ") + shell_quote(img) +
                         " " + shell_quote(dir) + " 2>&1");
    mounted = r.exit_code == 0;
    error = r.out;
  }
  ~KernelMount() { unmount(); }
  void unmount() {
    if (!mounted) return;
    if (run_command("umount " + shell_quote(dir) + " 2>&1").exit_code != 0)
      run_command("umount -l " + shell_quote(dir) + " 2>&1");
    mounted = false;
  }
};

// The ACL setfacl builds for "u::rw-,u:1000:rw-,g::r--,m::rw-,o::r--", in
// the VFS format, and the disk bytes the kernel stored for it (read with
// debugfs ea_list from an image the kernel wrote, 6.18 kernel).
std::vector<uint8_t> vfs_acl(const std::vector<std::array<uint32_t, 3>>& entries, uint32_t version = 2) {
  std::vector<uint8_t> v;
  auto add = [&](uint32_t x, int n) {
    for (int i = 0; i < n; ++i) v.push_back(uint8_t(x >> (8 * i)));
  };
  add(version, 4);
  for (auto& e : entries) {
    add(e[0], 2);
    add(e[1], 2);
    add(e[2], 4);
  }
  return v;
}
constexpr uint32_t kNoId = 0xFFFFFFFF;
const std::vector<std::array<uint32_t, 3>> kAclWithUser = {
    {0x01, 6, kNoId}, {0x02, 6, 1000}, {0x04, 4, kNoId}, {0x10, 6, kNoId}, {0x20, 4, kNoId}};
const char* kKernelDiskAclWithUser =
    "01 00 00 00 01 00 06 00 02 00 06 00 e8 03 00 00 04 00 04 00 10 00 06 00 20 00 04 00 ";

}  // namespace

TEST_CASE("xattr codec: entry and block hashes, ACL formats, name split", "[engine][xattr]") {
  using namespace cext3::engine::xattr;
  // Entry hash by hand: name bytes with shift 5, then little-endian value
  // words (zero-padded) with shift 16.
  Entry e{kUser, "ab", {'x', 'y', 'z'}};
  uint32_t h = 0;
  h = (h << 5) ^ (h >> 27) ^ 'a';
  h = (h << 5) ^ (h >> 27) ^ 'b';
  h = (h << 16) ^ (h >> 16) ^ (uint32_t('x') | uint32_t('y') << 8 | uint32_t('z') << 16);
  REQUIRE(entry_hash(e) == h);
  const uint32_t hs[] = {h, 7};
  REQUIRE(block_hash(hs) == ((h << 16) ^ (h >> 16) ^ 7u));
  const uint32_t with_zero[] = {h, 0, 7};
  REQUIRE(block_hash(with_zero) == 0);

  // A block round-trips, sorted by (index, name length, name).
  std::vector<uint8_t> blk(1024);
  encode_block({{kUser, "zz", bytes("1")}, {kTrusted, "a", bytes("2")}, {kUser, "b", bytes("")}}, 3, blk);
  std::vector<Entry> back;
  uint32_t refcount = 0;
  REQUIRE(parse_block(blk, &back, &refcount, "test").ok());
  REQUIRE(refcount == 3);
  REQUIRE(back.size() == 3);
  REQUIRE(back[0].name == "b");
  REQUIRE(back[0].value.empty());
  REQUIRE(back[1].name == "zz");
  REQUIRE(back[2].index == kTrusted);

  uint8_t idx = 0;
  std::string rest;
  REQUIRE(split_name("user.x", &idx, &rest).ok());
  REQUIRE((idx == kUser && rest == "x"));
  REQUIRE(split_name("system.posix_acl_default", &idx, &rest).ok());
  REQUIRE((idx == kPosixAclDefault && rest.empty()));
  REQUIRE(split_name("system.foo", &idx, &rest).errno_value() == EOPNOTSUPP);
  REQUIRE(split_name("os2.x", &idx, &rest).errno_value() == EOPNOTSUPP);
  REQUIRE(split_name("user.", &idx, &rest).errno_value() == EINVAL);
  REQUIRE(split_name("user." + std::string(250, 'a'), &idx, &rest).ok());
  REQUIRE(split_name("user." + std::string(251, 'a'), &idx, &rest).errno_value() == ERANGE);

  // VFS -> disk gives the kernel's bytes; disk -> VFS gives the VFS value back.
  auto acl = acl_from_vfs(vfs_acl(kAclWithUser));
  REQUIRE(acl.ok());
  REQUIRE(acl->has_value());
  auto disk = acl_to_disk(**acl);
  std::string hex;
  char buf[4];
  for (uint8_t b : disk) {
    std::snprintf(buf, sizeof buf, "%02x ", b);
    hex += buf;
  }
  REQUIRE(hex == kKernelDiskAclWithUser);
  auto again = acl_from_disk(disk);
  REQUIRE(again.ok());
  REQUIRE(acl_to_vfs(*again) == vfs_acl(kAclWithUser));
  bool equiv = true;
  REQUIRE(acl_mode_bits(**acl, &equiv) == 0664);
  REQUIRE_FALSE(equiv);
}

TEST_CASE("engine xattr: set, replace and remove in the inode body, errors as the kernel gives them",
          "[engine][xattr]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_fs(dir.path(), "i.img", 1024, 256);
  run_debugfs(dir.path(), img, {"write /dev/null f", "sif /f ctime @946684800"});
  clusterify(*bin, img, 1024);
  const uint64_t f = inode_of(img, "/f");
  {
    auto m = mount_image(img, 0);
    auto before = m.fs->getattr(f);
    REQUIRE(before.ok());
    set_ok(*m.fs, f, "user.a", bytes("1"));
    REQUIRE(m.fs->setxattr(f, "user.a", bytes("x"), XATTR_CREATE).errno_value() == EEXIST);
    REQUIRE(m.fs->setxattr(f, "user.b", bytes("x"), XATTR_REPLACE).errno_value() == ENODATA);
    set_ok(*m.fs, f, "user.a", bytes("22"), XATTR_REPLACE);
    set_ok(*m.fs, f, "user.b", bytes("bee"), XATTR_CREATE);
    set_ok(*m.fs, f, "trusted.t", bytes(""));
    REQUIRE(list_sorted(*m.fs, f) == std::vector<std::string>{"trusted.t", "user.a", "user.b"});
    remove_ok(*m.fs, f, "user.b");
    REQUIRE(m.fs->removexattr(f, "user.b").errno_value() == ENODATA);
    REQUIRE(m.fs->getxattr(f, "user.b").status().errno_value() == ENODATA);
    REQUIRE(get_ok(*m.fs, f, "user.a") == bytes("22"));
    REQUIRE(get_ok(*m.fs, f, "trusted.t").empty());
    // Names the kernel refuses, with its errors.
    REQUIRE(m.fs->setxattr(f, "os2.x", bytes("1"), 0).errno_value() == EOPNOTSUPP);
    REQUIRE(m.fs->setxattr(f, "system.foo", bytes("1"), 0).errno_value() == EOPNOTSUPP);
    REQUIRE(m.fs->setxattr(f, "user.", bytes("1"), 0).errno_value() == EINVAL);
    REQUIRE(m.fs->setxattr(f, "user." + std::string(251, 'n'), bytes("1"), 0).errno_value() == ERANGE);
    REQUIRE(m.fs->setxattr(f, "user.huge", std::vector<uint8_t>(65537, 1), 0).errno_value() == E2BIG);
    auto after = m.fs->getattr(f);
    REQUIRE(after.ok());
    REQUIRE(before->ctime.sec == 946684800);
    REQUIRE(after->ctime.sec > before->ctime.sec);  // moved from 2000 to now
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  // Everything fits in the inode: no xattr block.
  REQUIRE(xattr_block_of(img, "/f") == 0);
  REQUIRE(ea_list(img, "/f") == std::vector<std::string>{"trusted.t (0)", "user.a (2) = \"22\""});
}

TEST_CASE("engine xattr: many attributes overflow to a block, big values, the block is freed with its last entry",
          "[engine][xattr]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_fs(dir.path(), "o.img", 4096, 256);
  run_debugfs(dir.path(), img, {"write /dev/null f", "mkdir d"});
  clusterify(*bin, img, 4096);
  const uint64_t f = inode_of(img, "/f"), d = inode_of(img, "/d");
  const uint64_t dir_blocks = blockcount_of(img, "/d");
  std::vector<std::string> want;
  auto value_of = [](int i) { return "value-" + std::to_string(i) + std::string(size_t(20 + i), 'a' + char(i % 26)); };
  std::vector<uint8_t> big(3000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = uint8_t(i * 7 + 1);
  {
    auto m = mount_image(img, 0);
    for (int i = 0; i < 30; ++i) set_ok(*m.fs, f, "user.attr" + std::to_string(i), bytes(value_of(i)));
    // A value that no longer fits anywhere: ENOSPC, and nothing changed.
    REQUIRE(m.fs->setxattr(f, "user.toolarge", std::vector<uint8_t>(4000, 2), 0).errno_value() == ENOSPC);
    // A big value in the directory's (empty) block.
    set_ok(*m.fs, d, "user.big", big);
    REQUIRE(get_ok(*m.fs, d, "user.big") == big);
    // Replace one of f's in-inode and one of its block attributes with a larger value.
    set_ok(*m.fs, f, "user.attr0", bytes(std::string(200, 'Z')), XATTR_REPLACE);
    set_ok(*m.fs, f, "user.attr29", bytes("short"), XATTR_REPLACE);
    for (int i = 0; i < 30; ++i)
      REQUIRE(get_ok(*m.fs, f, "user.attr" + std::to_string(i)) ==
              bytes(i == 0 ? std::string(200, 'Z') : i == 29 ? "short" : value_of(i)));
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  const uint64_t fblock = xattr_block_of(img, "/f");
  REQUIRE(fblock != 0);
  REQUIRE(blockcount_of(img, "/f") == 8);
  REQUIRE(xattr_block_of(img, "/d") != 0);
  REQUIRE(blockcount_of(img, "/d") == dir_blocks + 8);
  // debugfs prints only short values: names and sizes from ea_list, the
  // bytes through ea_get.
  for (int i = 0; i < 30; ++i) {
    const std::string v = i == 0 ? std::string(200, 'Z') : i == 29 ? "short" : value_of(i);
    want.push_back("user.attr" + std::to_string(i) + " (" + std::to_string(v.size()) + ")");
    REQUIRE(ea_get(img, dir.path(), "/f", "user.attr" + std::to_string(i)) == bytes(v));
  }
  std::sort(want.begin(), want.end());
  std::vector<std::string> listed;
  for (auto& line : ea_list(img, "/f")) listed.push_back(line.substr(0, line.find(" = ")));
  std::sort(listed.begin(), listed.end());
  REQUIRE(listed == want);
  REQUIRE(ea_get(img, dir.path(), "/d", "user.big") == big);
  {
    auto m = mount_image(img, 0);
    for (int i = 0; i < 30; ++i) remove_ok(*m.fs, f, "user.attr" + std::to_string(i));
    remove_ok(*m.fs, d, "user.big");
    REQUIRE(list_sorted(*m.fs, f).empty());
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(xattr_block_of(img, "/f") == 0);
  REQUIRE(blockcount_of(img, "/f") == 0);
  REQUIRE(xattr_block_of(img, "/d") == 0);
  REQUIRE(blockcount_of(img, "/d") == dir_blocks);
  REQUIRE(ea_list(img, "/f").empty());
  // The freed block is free in the bitmap (e2fsck above agrees with it).
  REQUIRE(debugfs_out(img, "testb " + std::to_string(fblock)).find("not in use") != std::string::npos);
}

TEST_CASE("engine xattr: a shared xattr block is copied on write, its refcount drops, the kernel reads the result",
          "[engine][xattr]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  // 128-byte inodes: every attribute lives in a block.
  const uint32_t bs = 1024;
  const std::string img = make_fs(dir.path(), "s.img", bs, 128);
  bool by_kernel = false;
  {
    // Three files with the same attributes: the kernel shares one block.
    KernelMount km(img, dir.path() + "/mnt", /*read_only=*/false);
    if (km.mounted) {
      auto r = run_command("cd " + shell_quote(km.dir) +
                           " && for f in a b c; do touch $f && setfattr -n user.x -v hello $f && "
                           "setfattr -n user.y -v world $f || exit 1; done 2>&1");
      INFO(r.out);
      REQUIRE(r.exit_code == 0);
      by_kernel = true;
    } else {
      WARN("kernel loop mount not permitted (" << km.error << "): the shared block is made with debugfs instead");
    }
  }
  if (!by_kernel) {
    run_debugfs(dir.path(), img,
                {"write /dev/null a", "write /dev/null b", "write /dev/null c", "ea_set /a user.x hello",
                 "ea_set /a user.y world"});
    const uint64_t blk = xattr_block_of(img, "/a");
    // b and c point at a's block; refcount 3, i_blocks counts it.
    run_debugfs(dir.path(), img,
                {"sif /b file_acl " + std::to_string(blk), "sif /b blocks 2", "sif /c file_acl " + std::to_string(blk),
                 "sif /c blocks 2", "zap_block -o 4 -l 1 -p 3 " + std::to_string(blk)});
  }
  REQUIRE(fsck(img) == 0);
  const uint64_t shared = xattr_block_of(img, "/a");
  REQUIRE(shared != 0);
  REQUIRE(xattr_block_of(img, "/b") == shared);
  REQUIRE(xattr_block_of(img, "/c") == shared);
  REQUIRE(le32_at(img, shared * bs + 4) == 3);
  clusterify(*bin, img, bs);
  const uint64_t a = inode_of(img, "/a"), b = inode_of(img, "/b"), c = inode_of(img, "/c");
  {
    auto m = mount_image(img, 0);
    set_ok(*m.fs, a, "user.z", bytes("new"));  // a gets its own copy
    remove_ok(*m.fs, b, "user.x");             // so does b
    REQUIRE(list_sorted(*m.fs, a) == std::vector<std::string>{"user.x", "user.y", "user.z"});
    REQUIRE(list_sorted(*m.fs, b) == std::vector<std::string>{"user.y"});
    REQUIRE(list_sorted(*m.fs, c) == std::vector<std::string>{"user.x", "user.y"});
    REQUIRE(get_ok(*m.fs, c, "user.x") == bytes("hello"));
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  const uint64_t a_blk = xattr_block_of(img, "/a"), b_blk = xattr_block_of(img, "/b");
  REQUIRE(xattr_block_of(img, "/c") == shared);
  REQUIRE(a_blk != shared);
  REQUIRE(b_blk != shared);
  REQUIRE(a_blk != b_blk);
  REQUIRE(le32_at(img, shared * bs + 4) == 1);  // only c refers to it now
  REQUIRE(le32_at(img, a_blk * bs + 4) == 1);
  REQUIRE(blockcount_of(img, "/a") == 2);
  REQUIRE(ea_list(img, "/a") ==
          std::vector<std::string>{"user.x (5) = \"hello\"", "user.y (5) = \"world\"", "user.z (3) = \"new\""});
  REQUIRE(ea_list(img, "/b") == std::vector<std::string>{"user.y (5) = \"world\""});
  REQUIRE(ea_list(img, "/c") == std::vector<std::string>{"user.x (5) = \"hello\"", "user.y (5) = \"world\""});
  {
    // The kernel reads what the engine wrote (it looks entries up in the
    // block's sorted order and checks the block).
    KernelMount km(img, dir.path() + "/ro");
    if (km.mounted) {
      auto r = run_command("getfattr -d --absolute-names " + shell_quote(km.dir + "/a") + " 2>/dev/null");
      INFO(r.out);
      REQUIRE(r.out.find("user.x=\"hello\"") != std::string::npos);
      REQUIRE(r.out.find("user.z=\"new\"") != std::string::npos);
      r = run_command("getfattr --absolute-names --only-values -n user.y " + shell_quote(km.dir + "/b") + " 2>/dev/null");
      REQUIRE(r.out == "world");
    } else {
      WARN("kernel loop mount not permitted (" << km.error << "): kernel read-back skipped");
    }
  }
  {
    // Removing everything: a's own block is freed, c's last reference to
    // the shared block goes with c's attributes.
    auto m = mount_image(img, 0);
    for (auto n : {"user.x", "user.y", "user.z"}) remove_ok(*m.fs, a, n);
    remove_ok(*m.fs, c, "user.x");
    remove_ok(*m.fs, c, "user.y");
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(xattr_block_of(img, "/a") == 0);
  REQUIRE(xattr_block_of(img, "/c") == 0);
  REQUIRE(blockcount_of(img, "/a") == 0);
  REQUIRE(debugfs_out(img, "testb " + std::to_string(shared)).find("not in use") != std::string::npos);
  REQUIRE(debugfs_out(img, "testb " + std::to_string(a_blk)).find("not in use") != std::string::npos);
}

TEST_CASE("engine xattr: POSIX ACLs are stored in ext3's format, read back in the VFS format, mode follows",
          "[engine][xattr]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_fs(dir.path(), "a.img", 1024, 256);
  run_debugfs(dir.path(), img, {"write /dev/null f", "write /dev/null plain", "mkdir d", "sif /f mode 0100644",
                                "sif /plain mode 0100600"});
  clusterify(*bin, img, 1024);
  const uint64_t f = inode_of(img, "/f"), plain = inode_of(img, "/plain"), d = inode_of(img, "/d");
  const auto default_acl = vfs_acl({{0x01, 7, kNoId}, {0x04, 5, kNoId}, {0x08, 5, 4242}, {0x10, 5, kNoId},
                                    {0x20, 0, kNoId}});
  {
    auto m = mount_image(img, 0);
    set_ok(*m.fs, f, "system.posix_acl_access", vfs_acl(kAclWithUser));
    REQUIRE(get_ok(*m.fs, f, "system.posix_acl_access") == vfs_acl(kAclWithUser));
    auto attr = m.fs->getattr(f);
    REQUIRE(attr.ok());
    REQUIRE((attr->mode & 07777) == 0664);  // group bits from the mask (rw-), not GROUP_OBJ (r--)
    // An ACL the mode expresses alone is not stored; the mode takes it.
    set_ok(*m.fs, plain, "system.posix_acl_access", vfs_acl({{0x01, 7, kNoId}, {0x04, 5, kNoId}, {0x20, 1, kNoId}}));
    REQUIRE(m.fs->getxattr(plain, "system.posix_acl_access").status().errno_value() == ENODATA);
    attr = m.fs->getattr(plain);
    REQUIRE(attr.ok());
    REQUIRE((attr->mode & 07777) == 0751);
    set_ok(*m.fs, d, "system.posix_acl_default", default_acl);
    REQUIRE(get_ok(*m.fs, d, "system.posix_acl_default") == default_acl);
    // Refused as the kernel refuses them.
    REQUIRE(m.fs->setxattr(f, "system.posix_acl_default", default_acl, 0).errno_value() == EACCES);
    REQUIRE(m.fs->setxattr(f, "system.posix_acl_access", vfs_acl(kAclWithUser, 3), 0).errno_value() ==
            EOPNOTSUPP);
    // USER entry without a mask; GROUP_OBJ before USER_OBJ; bad permission bits; a torn entry.
    REQUIRE(m.fs->setxattr(f, "system.posix_acl_access",
                           vfs_acl({{0x01, 6, kNoId}, {0x02, 6, 1000}, {0x04, 4, kNoId}, {0x20, 4, kNoId}}), 0)
                .errno_value() == EINVAL);
    REQUIRE(m.fs->setxattr(f, "system.posix_acl_access",
                           vfs_acl({{0x04, 4, kNoId}, {0x01, 6, kNoId}, {0x20, 4, kNoId}}), 0)
                .errno_value() == EINVAL);
    REQUIRE(m.fs->setxattr(f, "system.posix_acl_access",
                           vfs_acl({{0x01, 8, kNoId}, {0x04, 4, kNoId}, {0x20, 4, kNoId}}), 0)
                .errno_value() == EINVAL);
    auto torn = vfs_acl(kAclWithUser);
    torn.pop_back();
    REQUIRE(m.fs->setxattr(f, "system.posix_acl_access", torn, 0).errno_value() == EINVAL);
    REQUIRE(get_ok(*m.fs, f, "system.posix_acl_access") == vfs_acl(kAclWithUser));  // unchanged
    REQUIRE(m.fs->unmount().ok());
  }
  REQUIRE(fsck(img) == 0);
  // The disk bytes are the ones the kernel writes for this ACL.
  REQUIRE(ea_list(img, "/f") == std::vector<std::string>{std::string("system.posix_acl_access (28) = ") +
                                                         kKernelDiskAclWithUser});
  REQUIRE(ea_list(img, "/plain").empty());
  REQUIRE(ea_list(img, "/d").size() == 1);
  KernelMount km(img, dir.path() + "/ro");
  if (!km.mounted) {
    WARN("kernel loop mount not permitted (" << km.error << "): getfacl comparison skipped");
    return;
  }
  auto r = run_command("getfacl -pcn " + shell_quote(km.dir + "/f") + " 2>/dev/null");
  INFO(r.out);
  REQUIRE(r.out == "user::rw-\nuser:1000:rw-\ngroup::r--\nmask::rw-\nother::r--\n\n");
  r = run_command("getfacl -pcnd " + shell_quote(km.dir + "/d") + " 2>/dev/null");
  INFO(r.out);
  REQUIRE(r.out == "user::rwx\ngroup::r-x\ngroup:4242:r-x\nmask::r-x\nother::---\n\n");
  r = run_command("stat -c %a " + shell_quote(km.dir + "/plain"));
  REQUIRE(r.out == "751\n");
}

TEST_CASE("engine xattr: two nodes see each other's attribute changes (xab lock, block copied)", "[engine][xattr]") {
  CEXT3_TEST_NEEDS_BIN(bin);
  ScratchDir dir;
  const std::string img = make_fs(dir.path(), "n.img", 1024, 128);
  run_debugfs(dir.path(), img, {"write /dev/null f"});
  clusterify(*bin, img, 1024);
  const uint64_t f = inode_of(img, "/f");
  LocalLockCluster cluster;
  auto pa = cluster.provider(0), pb = cluster.provider(1);
  {
    // Each node answers callbacks from the moment it is mounted (B's mount
    // already takes locks A may hold).
    auto a = mount_image(img, 0, pa.get());
    Filesystem* fa = a.fs.get();
    cluster.set_leaving_callback(0, [fa](auto& r, auto from, auto to) { fa->on_lock_leaving(r, from, to); });
    auto b = mount_image(img, 1, pb.get());
    Filesystem* fb = b.fs.get();
    cluster.set_leaving_callback(1, [fb](auto& r, auto from, auto to) { fb->on_lock_leaving(r, from, to); });
    set_ok(*fa, f, "user.one", bytes("from-a"));
    REQUIRE(get_ok(*fb, f, "user.one") == bytes("from-a"));
    set_ok(*fb, f, "user.two", bytes("from-b"));
    remove_ok(*fb, f, "user.one");
    REQUIRE(list_sorted(*fa, f) == std::vector<std::string>{"user.two"});
    set_ok(*fa, f, "user.two", bytes("again-a"), XATTR_REPLACE);
    REQUIRE(get_ok(*fb, f, "user.two") == bytes("again-a"));
    REQUIRE(fa->unmount().ok());
    REQUIRE(fb->unmount().ok());
    cluster.set_leaving_callback(0, nullptr);
    cluster.set_leaving_callback(1, nullptr);
  }
  REQUIRE(fsck(img) == 0);
  REQUIRE(ea_list(img, "/f") == std::vector<std::string>{"user.two (7) = \"again-a\""});
}
