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
  uint32_t descriptors_fixed = 0;    // group descriptors whose counts were rewritten
};

// Whether recovery may rewrite the slot's group-descriptor counts. The
// descriptor blocks are shared by several slots and guarded online by
// `gdt:<block>` locks that the dead node may hold until its recovery is
// done, so online recovery leaves the counts alone (they are advisory while
// the cluster runs; the bitmaps are the truth) and they are recomputed when
// nobody else can be writing: offline, or by a node that is alone
// (docs/ENGINE.md, "Derived counters").
enum class CountRepair { kLeave, kRecount };

// Replays slot `slot`'s journal (a clean journal is left alone) and rewrites
// its lease: journal_dirty = 0, recovery_generation + 1, and, unless
// `keep_owner` (a node recovering the slot it has just claimed), owned = 0,
// after marking the dead node's heartbeat record "stopped". With kRecount,
// the counts of the slot's groups are recomputed from the bitmaps after the
// replay (before the lease is marked clean, so a crash repeats it).
Result<SlotRecoveryResult> recover_slot(node::ClusterDisk& disk, uint32_t slot, bool keep_owner,
                                        CountRepair counts = CountRepair::kLeave);

// Recompute every group's counts and the superblock totals from the bitmaps.
// Only when no other node can be writing: the last node out, offline tools.
// Returns the number of descriptors rewritten.
Result<uint32_t> recount_all_groups(node::ClusterDisk& disk);

}  // namespace cext3::daemon
