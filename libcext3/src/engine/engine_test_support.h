// What the engine's tests share to judge an image by the real tools:
// where the built programs are, e2fsck -fn, and debugfs requests.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "cext3/engine/filesystem.h"
#include "cext3/file_device.h"
#include "node/test_cluster.h"

namespace cext3::engine::testing {

// The build directory (clusterify), from ctest's CEXT3_BIN; nullopt when
// the test runs outside ctest.
inline std::optional<std::string> bin_dir() {
  const char* b = std::getenv("CEXT3_BIN");
  if (!b || !*b) return std::nullopt;
  return std::string(b);
}

// Opens a test case that needs the built programs: declares `bin`, their
// directory (std::optional<std::string>, always set past this line), or
// skips the case with a warning outside ctest.
#define CEXT3_TEST_NEEDS_BIN(bin)                                         \
  const std::optional<std::string> bin = ::cext3::engine::testing::bin_dir(); \
  if (!bin) WARN("CEXT3_BIN is not set: skipping (run through ctest)");   \
  if (!bin) return

// e2fsck -fn's exit code; its output is shown when it is not 0.
inline int fsck(const std::string& img) {
  auto r = node::testing::run_command("e2fsck -fn " + node::testing::shell_quote(img) + " 2>&1");
  if (r.exit_code != 0) WARN("e2fsck -fn: " << r.out);
  return r.exit_code;
}

// debugfs -R REQUEST's standard output.
inline std::string debugfs_out(const std::string& img, const std::string& request) {
  return node::testing::run_command("debugfs -R " + node::testing::shell_quote(request) + " " +
                                    node::testing::shell_quote(img) + " 2>/dev/null")
      .out;
}

// The first number the regular expression `re` captures in a debugfs answer.
inline uint64_t debugfs_number(const std::string& img, const std::string& request, const std::string& re) {
  const std::string out = debugfs_out(img, request);
  std::smatch m;
  INFO(request << " -> " << out);
  REQUIRE(std::regex_search(out, m, std::regex(re)));
  return std::stoull(m[1].str());
}

inline uint64_t inode_of(const std::string& img, const std::string& path) {
  return debugfs_number(img, "stat " + path, "Inode: ([0-9]+)");
}

// mke2fs -t ext3 (`bs`-byte blocks, `group_blocks` per group) of `size_mb`
// MiB, the debugfs commands (files made before conversion), then
// clusterify convert --slots 2 with 1 MiB (1 KiB blocks) or 4 MiB journals.
inline std::string make_converted_image(const std::string& bin, const std::string& dir, const std::string& name,
                                        uint32_t bs, uint32_t size_mb, uint32_t group_blocks,
                                        const std::vector<std::string>& debugfs_cmds) {
  using node::testing::run_command;
  using node::testing::shell_quote;
  const std::string img = dir + "/" + name;
  auto r = run_command("truncate -s " + std::to_string(size_mb) + "M " + shell_quote(img) +
                       " && mke2fs -q -F -t ext3 -b " + std::to_string(bs) + " -g " + std::to_string(group_blocks) +
                       " " + shell_quote(img) + " 2>&1");
  REQUIRE(r.exit_code == 0);
  if (!debugfs_cmds.empty()) {
    std::string cmds;
    for (auto& c : debugfs_cmds) cmds += c + "\n";
    std::ofstream(dir + "/cmds") << cmds;
    r = run_command("debugfs -w -f " + shell_quote(dir + "/cmds") + " " + shell_quote(img) + " 2>&1");
    REQUIRE(r.exit_code == 0);
  }
  r = run_command(shell_quote(bin + "/clusterify") + " convert " + shell_quote(img) +
                  " --slots 2 --journal-size " + std::to_string(bs == 1024 ? 1 : 4) + " --yes 2>&1");
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return img;
}

// The physical block debugfs names for logical block `lblk` of `path`.
inline uint64_t bmap_of(const std::string& img, const std::string& path, uint64_t lblk) {
  return debugfs_number(img, "bmap " + path + " " + std::to_string(lblk), "^([0-9]+)");
}

// Bytes of the image file itself.
inline std::vector<uint8_t> image_bytes(const std::string& img, uint64_t offset, size_t len) {
  std::ifstream f(img, std::ios::binary);
  f.seekg(std::streamoff(offset));
  std::vector<uint8_t> v(len);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(len));
  REQUIRE(f.gcount() == std::streamsize(len));
  return v;
}

// `path` as debugfs dumps it from the image (dir: scratch space).
inline std::vector<uint8_t> dump_of(const std::string& img, const std::string& dir, const std::string& path) {
  using node::testing::run_command;
  using node::testing::shell_quote;
  const std::string out = dir + "/dump.out";
  auto r = run_command("rm -f " + shell_quote(out) + "; debugfs -R " + shell_quote("dump " + path + " " + out) + " " +
                       shell_quote(img) + " 2>&1");
  REQUIRE(r.exit_code == 0);
  std::ifstream f(out, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// A write through the engine that must succeed whole.
inline void write_ok(Filesystem& fs, uint64_t ino, uint64_t off, const std::vector<uint8_t>& data) {
  auto r = fs.write(ino, off, data);
  INFO("write at " << off << ": " << r.status().ToString());
  REQUIRE(r.ok());
  REQUIRE(*r == data.size());
}

// Up to `len` bytes from `off` through the engine (fewer at end of file).
inline std::vector<uint8_t> read_all(Filesystem& fs, uint64_t ino, uint64_t off, size_t len) {
  std::vector<uint8_t> v(len);
  auto r = fs.read(ino, off, v);
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  v.resize(*r);
  return v;
}

// An engine mounted on an image file, with what it needs kept alive.
struct MountedEngine {
  std::unique_ptr<BlockDevice> dev;
  std::unique_ptr<LockProvider> own_locks;
  std::unique_ptr<Filesystem> fs;
};

// Mount `img` as `slot`. `locks` null: a lock provider of its own (one
// engine alone). `mo` gives every other option; its slot and locks are set here.
inline MountedEngine mount_engine(const std::string& img, uint32_t slot, LockProvider* locks = nullptr,
                                  MountOptions mo = {}) {
  MountedEngine m;
  auto d = open_file_device(img, OpenOptions{});
  REQUIRE(d.ok());
  m.dev = std::move(*d);
  if (!locks) {
    m.own_locks = make_local_lock_provider();
    locks = m.own_locks.get();
  }
  mo.slot = slot;
  mo.locks = locks;
  auto fs = Filesystem::mount(*m.dev, mo);
  INFO(fs.status().ToString());
  REQUIRE(fs.ok());
  m.fs = std::move(*fs);
  return m;
}

}  // namespace cext3::engine::testing
