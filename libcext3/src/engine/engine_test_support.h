// What the engine's tests share to judge an image by the real tools:
// where the built programs are, e2fsck -fn, and debugfs requests.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <regex>
#include <memory>
#include <string>

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
