// Reading a cext3 filesystem's cluster state (clusterify info) and checking
// every cluster invariant (clusterify verify). The invariants are listed in
// docs/FORMAT.md, "Invariants".
#pragma once

#include <cstdint>
#include <functional>
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
  // Set by observe_liveness(): the heartbeat was watched for dead_after +
  // fence_margin and did (observed_live) or did not change.
  bool observed = false;
  bool observed_live = false;

  // Nothing can be alive in the slot, judged from one read (the rule a
  // claiming node uses): the lease is free and the heartbeat was never
  // written or says "stopped", or the heartbeat says "stopped" under the
  // lease's own generation (a clean leave).
  bool free_at_sight() const;
  // A node held the slot and was seen dead (observed, no heartbeat change)
  // without a clean leave: its journal must be recovered and its lease freed.
  bool abandoned() const { return observed && !observed_live && !free_at_sight(); }
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
  // A live cext3 cluster keeps sequence EXT4_MMP_SEQ_FSCK with node name
  // "cext3:<node>" in the block (jcoord, cext3/node/mmp.h).
  bool in_use_by_cluster() const;
  // One phrase for operators: "clean", "in use by the cluster (node n1)",
  // "in use by e2fsck on host h", "in use by a kernel mount on host h", ...
  std::string describe() const;
};
inline constexpr const char* kMmpClusterNodePrefix = "cext3:";

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

// A slot is live when it is not free at sight (SlotInfo::free_at_sight) and
// either observe_liveness() saw its heartbeat change, or - not observed -
// its heartbeat is younger than dead_after + fence_margin by this machine's
// clock or its lease is held. A "stopped" record (a clean leave) is never
// live. Dirty: the journal is not clean, the lease says so, or the slot was
// abandoned by a dead node.
bool slot_is_live(const ClusterInfo& ci, const SlotInfo& s, uint64_t now_ns);
bool slot_is_dirty(const SlotInfo& s);

// Watch every slot that is not free at sight: read its heartbeat again after
// dead_after + fence_margin (clamped to kMaxObserveMs) and record whether it
// changed, as a node claiming a slot does; clocks of other machines are never
// compared. Returns at once when every slot is free at sight (a converted or
// cleanly stopped cluster). `sleep_ms` is for tests (default: nanosleep).
inline constexpr uint64_t kMaxObserveMs = 120000;
Status observe_liveness(BlockDevice& dev, ClusterInfo& ci, const std::function<void(uint64_t)>& sleep_ms = {});

struct VerifyOptions {
  // Replay dirty slot journals, free abandoned leases, rewrite a damaged
  // header copy, and when nothing is live or dirty afterwards write the
  // clean MMP sequence. Refused (nothing written) while any slot is live.
  bool repair = false;
  // Watch heartbeats (observe_liveness) before judging liveness; repair
  // always does.
  bool observe = false;
};

struct VerifyReport {
  bool clusterified = false;
  std::vector<uint32_t> live_slots;   // the cluster is running: e2fsck must not repair
  bool mmp_in_use_by_cluster = false;  // after repair: still marked in use
  std::vector<std::string> passed;    // invariants that hold
  std::vector<std::string> problems;  // invariants that do not hold (not fixed)
  std::vector<std::string> fixed;     // what repair changed
};

// Check every cluster invariant; with repair, replay dirty slot journals (and
// mark their leases clean) and rewrite a damaged header copy. Does not run
// e2fsck (the CLI does, as a subprocess).
Result<VerifyReport> verify_cluster(BlockDevice& dev, const VerifyOptions& opts);

}  // namespace cext3::cluster
