// Recovering a slot: replay its journal, then mark its lease clean.
//
// Invariant relied on (BRIEF §2.6): the caller has established that the node
// which owned the slot can no longer write (it was declared dead, which by the
// timing equation in docs/MEMBERSHIP.md means its fence deadline plus the
// margin has passed), or that it is this node's own slot taken over at claim.
// Only then is the replay safe; only after it may the dead node's locks be
// granted again.
#pragma once

#include <cstdint>
#include <string>

#include "cext3/journal.h"
#include "cext3/node/cluster_disk.h"
#include "cext3/status.h"

namespace cext3::daemon {

struct SlotRecoveryResult {
  journal::RecoveryReport replay;
  uint64_t recovery_generation = 0;  // the lease's new recovery generation
};

// Replays slot `slot`'s journal (a clean journal is left alone) and rewrites
// its lease: journal_dirty = 0, recovery_generation + 1, and, unless
// `keep_owner` (a node recovering the slot it has just claimed), owned = 0,
// after marking the dead node's heartbeat record "stopped".
Result<SlotRecoveryResult> recover_slot(node::ClusterDisk& disk, uint32_t slot, bool keep_owner);

}  // namespace cext3::daemon
