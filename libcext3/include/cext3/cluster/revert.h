// clusterify revert and clusterify slots: the other offline changes, made
// atomic the same way as convert (docs/DESIGN.md, "Conversion commit protocol").
#pragma once

#include <cstdint>
#include <string>

#include "cext3/block_device.h"
#include "cext3/cluster/convert.h"
#include "cext3/status.h"

namespace cext3::cluster {

struct OfflineChangeReport {
  std::string summary;  // several lines for the operator
  uint64_t direct_blocks = 0;
  uint64_t journaled_blocks = 0;
  uint32_t tid = 0;
  bool written = false;
};

// Remove /.cext3 with every system file and MMP: the result is the plain
// ext3 it was before convert. Refused (before any write) while any slot is
// live (lease held, heartbeat fresh, MMP in use) or dirty (journal not
// replayed).
Result<OfflineChangeReport> revert_cluster(BlockDevice& dev, bool dry_run, const ProgressFn& progress = {});

// Change the slot count offline: new slots get journals, removed slots (which
// must be clean) lose theirs, groups are reassigned with the same policy.
Result<OfflineChangeReport> set_slot_count(BlockDevice& dev, uint32_t slots, uint32_t journal_size_mib, bool dry_run,
                                           const ProgressFn& progress = {});

}  // namespace cext3::cluster
