// Test fixtures for the node units: a cluster laid out in memory (no ext3
// needed, for fast state-machine tests) and real cext3 image files built by
// the real mke2fs and clusterify (for what must hold on a real filesystem).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "cext3/cluster/header.h"
#include "cext3/cluster/records.h"
#include "cext3/memory_device.h"
#include "cext3/node/cluster_disk.h"

namespace cext3::node::testing {

// Small timings that satisfy validate_timing: fence window 300 ms.
inline cluster::Timing fast_timing() {
  cluster::Timing t;
  t.heartbeat_interval_ms = 50;
  t.io_timeout_ms = 100;
  t.dead_after_ms = 400;
  t.fence_margin_ms = 100;
  return t;
}

// heartbeat file at byte 64 KiB, locks file at byte 256 KiB (sized for 255
// slots as clusterify sizes them), every record written the way clusterify
// writes it. Block size 1 KiB, or 4 KiB on a 4096-byte-sector device.
inline constexpr uint64_t kTestHeartbeatByte = 64 * 1024;
inline constexpr uint64_t kTestLocksByte = 256 * 1024;

class MemoryCluster {
 public:
  explicit MemoryCluster(uint32_t slots, uint32_t sector_size = 512, cluster::Timing timing = fast_timing())
      : dev_(2u << 20, sector_size) {
    const uint32_t bs = sector_size > 1024 ? 4096 : 1024;
    header_.slot_count = slots;
    header_.block_size = bs;
    header_.blocks_count = (2u << 20) / bs;
    header_.timing = timing;
    header_.files.push_back({cluster::SystemFileKind::kHeartbeat, 0, 14, kTestHeartbeatByte / bs, 128 * 1024 / bs});
    header_.files.push_back({cluster::SystemFileKind::kLocks, 0, 15, kTestLocksByte / bs, 128 * 1024 / bs});
    for (uint32_t s = 0; s < slots; ++s) {
      cluster::HeartbeatRecord h;
      h.slot = s;
      cluster::encode_heartbeat(h, std::span<uint8_t, 512>(dev_.bytes().data() + kTestHeartbeatByte + s * 512, 512));
      cluster::SlotLeaseRecord l;
      l.slot = s;
      cluster::encode_slot_lease(l, std::span<uint8_t, 512>(dev_.bytes().data() + kTestLocksByte + (s + 1) * 512, 512));
    }
    cluster::LocksGlobalRecord g;
    g.slot_count = slots;
    cluster::encode_locks_global(g, std::span<uint8_t, 512>(dev_.bytes().data() + kTestLocksByte, 512));
  }

  MemoryDevice& device() { return dev_; }
  const cluster::ClusterHeader& header() const { return header_; }
  // A ClusterDisk reading and writing through `through` (the memory device
  // itself or a FencedDevice over it).
  std::unique_ptr<ClusterDisk> disk(BlockDevice& through) {
    auto d = ClusterDisk::attach(through, header_, 0);
    REQUIRE(d.ok());
    return std::move(d).value();
  }

 private:
  MemoryDevice dev_;
  cluster::ClusterHeader header_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command; stdout (and stderr if the command says 2>&1).
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string shell_quote(const std::string& s) { return "'" + s + "'"; }

// A scratch directory under $CEXT3_SCRATCH (or /tmp), removed at the end.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("CEXT3_SCRATCH");
    std::string root = base && *base ? base : "/tmp";
    run_command("mkdir -p " + shell_quote(root));
    std::string tmpl = root + "/node-test.XXXXXX";
    if (mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~ScratchDir() {
    if (!path_.empty()) run_command("rm -rf " + shell_quote(path_));
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// $CEXT3_BIN (the build directory with clusterify), or nullopt with a WARN
// saying why the caller skips.
inline std::optional<std::string> cext3_bin() {
  const char* b = std::getenv("CEXT3_BIN");
  if (!b || !*b) {
    WARN("CEXT3_BIN is not set: skipping the part of this test that needs clusterify (run it through ctest)");
    return std::nullopt;
  }
  return std::string(b);
}

// A real cext3 image: mke2fs -t ext3 (1 KiB blocks, 2048 blocks per group so
// that there are enough groups for many slots), then clusterify convert.
inline std::string make_cluster_image(const std::string& bin, const std::string& dir, uint32_t slots,
                                      const std::string& convert_args = "") {
  const std::string img = dir + "/cluster-" + std::to_string(slots) + ".img";
  auto r = run_command("truncate -s 64M " + shell_quote(img) + " && mke2fs -q -F -t ext3 -b 1024 -g 2048 " +
                       shell_quote(img) + " 2>&1");
  if (r.exit_code != 0) FAIL("mke2fs failed (e2fsprogs is a declared test dependency): " + r.out);
  r = run_command(shell_quote(bin + "/clusterify") + " convert " + shell_quote(img) + " --slots " +
                  std::to_string(slots) + " --journal-size 1 --yes " + convert_args + " 2>&1");
  if (r.exit_code != 0) FAIL("clusterify convert failed: " + r.out);
  return img;
}

}  // namespace cext3::node::testing
