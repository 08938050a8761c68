// Coordinator election. The coordinator masters every lock (locks/). It is
// named on disk by the global lock record (coordinator slot + epoch). The
// epoch is the fencing token: the lock master stamps every grant with it,
// and a node accepts a grant only when its stamp equals the epoch it last
// read from disk.
//
// A new coordinator is elected only when there is none or the named one is
// dead or stopped (never because a lower slot joined: no churn). The lowest
// live slot then claims with the same write / wait / read-back as a slot
// claim, writing epoch + 1. Everybody else just reads the record.
#pragma once

#include <cstdint>
#include <vector>

#include "cext3/cluster/records.h"
#include "cext3/node/cluster_disk.h"
#include "cext3/node/heartbeat.h"
#include "cext3/status.h"

namespace cext3::node {

struct ElectionResult {
  bool changed = false;                 // this call wrote a new record and won
  cluster::LocksGlobalRecord record;    // what the disk says now
};

struct ElectionOptions {
  // Wait between the write and the read-back; 0 = the header's io_timeout_ms.
  uint32_t claim_delay_ms = 0;
};

// The named coordinator is gone: no coordinator, a slot beyond the slot
// count, a dead or stopped slot, or a slot never written (sequence 0).
// Unknown (just started watching) is not gone: wait until it is known.
bool coordinator_gone(const std::vector<PeerState>& peers, const cluster::LocksGlobalRecord& current);

// Called by the daemon once per heartbeat tick with the fresh view.
// `my_slot` is this node's slot. Only the lowest live slot ever writes, and
// then it blocks for the claim delay (io_timeout by default): call it from a
// thread that may wait that long, not from inside on_tick if that would delay
// the heartbeat past the fence window.
//
// If the write completed more than claim_delay/2 after the read that saw the
// old record, a later reader may have acted on the old record; a single
// winner can then not be proven, so the node fences itself (Fenced).
// Two racers write the same epoch + 1; the read-back leaves exactly one
// winner, and the loser never masters, so a grant's (epoch, coordinator
// slot) pair always names the one winner.
Result<ElectionResult> run_election(ClusterDisk& disk, uint32_t my_slot,
                                    const std::vector<PeerState>& peers,
                                    const cluster::LocksGlobalRecord& current);
Result<ElectionResult> run_election(ClusterDisk& disk, FenceGate* gate, uint32_t my_slot,
                                    const std::vector<PeerState>& peers,
                                    const cluster::LocksGlobalRecord& current, const ElectionOptions& opts);

}  // namespace cext3::node
