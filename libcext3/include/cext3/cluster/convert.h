// clusterify convert: turn a clean ext3 filesystem into the cext3 layout, in
// place and atomically (docs/DESIGN.md, "Conversion commit protocol").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/cluster/header.h"
#include "cext3/status.h"

namespace cext3::cluster {

struct ConvertOptions {
  uint32_t slots = 0;
  uint32_t journal_size_mib = 0;  // per slot; 0 = chosen from the filesystem size
  GroupPolicy policy = GroupPolicy::kContiguous;
  bool mmp = true;
  bool dry_run = false;  // compute and report the plan, write nothing
  Timing timing;         // written to the cluster header; every node uses it
};

struct ConvertReport {
  std::string device;
  uint32_t block_size = 0;
  uint32_t groups = 0;
  uint64_t blocks_count = 0;
  uint64_t free_blocks_before = 0;
  uint64_t reserved_blocks = 0;
  uint64_t blocks_needed = 0;  // system files + their indirect blocks + directory + MMP
  uint64_t free_blocks_after = 0;
  uint64_t journal_blocks_per_slot = 0;
  ClusterHeader header;
  std::vector<uint32_t> groups_per_slot;
  std::vector<uint64_t> free_blocks_per_slot;
  uint64_t mmp_block = 0;  // 0 = no MMP
  // What reached (or, for a dry run, would reach) the disk.
  uint64_t direct_blocks = 0;
  uint64_t journaled_blocks = 0;
  uint32_t tid = 0;
  bool written = false;
};

using ProgressFn = std::function<void(const char* phase, uint64_t done, uint64_t total)>;

// Checks every refusal first (not ext3, features, journal, state, orphans,
// needs_recovery, already converted, groups, space), computes the whole
// change in memory, and - unless dry_run - commits it. Any error before the
// commit phase leaves `dev` byte-identical.
// The caller checks that the device is not mounted (check_not_in_use) and
// opens it exclusively.
Result<ConvertReport> convert_to_cluster(BlockDevice& dev, const ConvertOptions& opts,
                                         const ProgressFn& progress = {});

// Human-readable plan / result, several lines.
std::string describe_convert(const ConvertReport& r);

}  // namespace cext3::cluster
