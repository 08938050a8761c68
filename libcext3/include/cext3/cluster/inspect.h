// Reading a cext3 filesystem's cluster state (clusterify info) and checking
// every cluster invariant (clusterify verify). The invariants are listed in
// docs/FORMAT.md, "Invariants".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/cluster/header.h"
#include "cext3/cluster/records.h"
#include "cext3/status.h"

namespace cext3::cluster {

struct SlotInfo {
  uint32_t slot = 0;
  uint32_t groups = 0;
  uint64_t free_blocks = 0;
  // journal.NN
  uint32_t journal_inode = 0;
  uint64_t journal_first_block = 0, journal_blocks = 0;
  bool journal_ok = false;
  std::string journal_error;
  bool journal_clean = false;
  uint32_t journal_sequence = 0;
  uint32_t journal_start = 0;
  // heartbeat and lease sectors
  bool heartbeat_ok = false;
  std::string heartbeat_error;
  HeartbeatRecord heartbeat;
  bool lease_ok = false;
  std::string lease_error;
  SlotLeaseRecord lease;
};

struct MmpInfo {
  bool enabled = false;
  uint64_t block = 0;
  bool readable = false;
  uint32_t magic = 0;
  uint32_t sequence = 0;
  uint64_t time = 0;
  std::string node, device;
  uint32_t interval = 0;
  bool clean() const;  // sequence == EXT4_MMP_SEQ_CLEAN
};

struct ClusterInfo {
  std::string device;
  bool clusterified = false;
  uint32_t block_size = 0;
  uint32_t groups = 0;
  uint64_t blocks_count = 0;
  uint64_t free_blocks = 0;
  MmpInfo mmp;
  // Only when clusterified:
  uint32_t system_dir_inode = 0;
  HeaderChoice header;
  bool locks_ok = false;
  std::string locks_error;
  LocksGlobalRecord locks;
  std::vector<SlotInfo> slots;
};

// Read-only. A plain ext3 gives clusterified = false, not an error.
Result<ClusterInfo> read_cluster_info(BlockDevice& dev);

// A slot is live when its heartbeat changed within the dead-after time or
// its lease is held; dirty when its journal is not clean or the lease says so.
bool slot_is_live(const ClusterInfo& ci, const SlotInfo& s, uint64_t now_ns);
bool slot_is_dirty(const SlotInfo& s);

struct VerifyOptions {
  bool repair = false;  // replay dirty slot journals, rewrite a damaged header copy
};

struct VerifyReport {
  bool clusterified = false;
  std::vector<std::string> passed;    // invariants that hold
  std::vector<std::string> problems;  // invariants that do not hold (not fixed)
  std::vector<std::string> fixed;     // what repair changed
};

// Check every cluster invariant; with repair, replay dirty slot journals (and
// mark their leases clean) and rewrite a damaged header copy. Does not run
// e2fsck (the CLI does, as a subprocess).
Result<VerifyReport> verify_cluster(BlockDevice& dev, const VerifyOptions& opts);

}  // namespace cext3::cluster
