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

// Called by the daemon once per heartbeat tick with the fresh view.
// `my_slot` is this node's slot.
Result<ElectionResult> run_election(ClusterDisk& disk, uint32_t my_slot,
                                    const std::vector<PeerState>& peers,
                                    const cluster::LocksGlobalRecord& current);

}  // namespace cext3::node
