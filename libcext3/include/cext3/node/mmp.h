// MMP (ext4 multi-mount protection) while the cluster is live.
//
// A stock kernel or e2fsck must refuse the disk while any node is live or any
// slot journal is dirty (BRIEF invariant 7). The only MMP sequence value that
// both refuse unconditionally, without a wait after which they would proceed,
// is EXT4_MMP_SEQ_FSCK (0xE24D4D50). So a live cluster keeps that value in the
// MMP block, with "cext3:<node>" as the node name; the last node to leave
// cleanly (every lease released, every journal clean) writes
// EXT4_MMP_SEQ_CLEAN. After a crash of every node the sequence stays FSCK,
// which is right: slot journals may be dirty. `clusterify verify -p|-y` and
// `jcoord recover` write CLEAN once nothing is live or dirty.
#pragma once

#include <cstdint>
#include <string>

#include "cext3/node/cluster_disk.h"
#include "cext3/status.h"

namespace cext3::node {

inline constexpr uint32_t kMmpMagic = 0x004D4D50;
inline constexpr uint32_t kMmpSeqClean = 0xFF4D4D50;
inline constexpr uint32_t kMmpSeqFsck = 0xE24D4D50;

struct MmpState {
  uint32_t magic = 0;
  uint32_t sequence = 0;
  uint64_t time = 0;
  std::string node_name;
  std::string device_name;
};

// No-ops returning OK when the filesystem has no MMP (`--no-mmp`).
Result<MmpState> read_mmp(ClusterDisk& disk);
// Write "in use by the cluster" unless the block already says so.
Status mark_mmp_in_use(ClusterDisk& disk, const std::string& node_name);
Status mark_mmp_clean(ClusterDisk& disk);

}  // namespace cext3::node
