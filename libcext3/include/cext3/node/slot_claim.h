// Claiming a slot on the shared disk: a delta lease (as sanlock's) over the
// slot's lease sector in the `locks` file and its heartbeat sector.
//
// Algorithm (docs/MEMBERSHIP.md, "Slot claim"):
//  1. Read every lease and heartbeat. A slot is free at sight when its lease
//     is not owned and its heartbeat was never written or says "stopped", or
//     its heartbeat says "stopped" under the lease's own generation. Any other
//     slot is watched for up to dead_after: a heartbeat that changes belongs
//     to a live node (refuse, naming it); one that does not change is a dead
//     node's slot and may be taken (its journal needs recovery before the
//     slot is used: SlotClaimResult says so, and the new lease keeps
//     journal_dirty set until recovery clears it). `auto` prefers free slots
//     and picks at random among them, which spreads simultaneous claimers.
//  2. Re-read the chosen slot's lease and heartbeat (they must still be what
//     was judged free), then write our lease (owned, our node name, a fresh
//     random lease generation), then our heartbeat sector. If more than
//     claim_delay/2 passed between that re-read and the completion of the
//     lease write, start over (a stalled claimer must not count a late write
//     as a win).
//  3. Wait claim_delay from the lease write, read the lease back. Still ours:
//     the slot is ours. Someone else's: we lost the race; `auto` starts over.
// Two claimers racing for one slot therefore never both win: the earlier
// writer can only read its own lease back if the later write lands after that
// read-back, i.e. more than claim_delay after the earlier write, so the later
// claimer's re-read (at most claim_delay/2 before its write) came after the
// earlier write and saw an owned lease with a fresh generation, which is
// never free at sight. claim_delay + heartbeat_interval must stay below
// dead_after, so a fresh winner's heartbeat moves before a watcher gives up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "cext3/node/cluster_disk.h"
#include "cext3/node/fence.h"
#include "cext3/status.h"

namespace cext3::node {

struct SlotClaimOptions {
  std::optional<uint32_t> slot;  // nullopt = auto: any free slot
  std::string node_name;
  std::string address;           // host:port published in the heartbeat
  uint32_t claim_delay_ms = 0;   // 0 = the header's io_timeout_ms
  // Tests only: use these timings instead of the cluster header's.
  std::optional<cluster::Timing> timing;
};

struct SlotClaimResult {
  uint32_t slot = 0;
  uint64_t generation = 0;       // our lease generation (also in our heartbeat)
  bool previous_owner_dead = false;  // taken over from a dead node
  std::string previous_owner;
  bool journal_dirty = false;    // the lease said the slot journal needs recovery
};

// On success the node owns the slot: its lease and first heartbeat are on
// disk and `gate` has been renewed from that heartbeat write. `disk` may
// write through a FencedDevice on `gate`: before each attempt's writes the
// claim opens the gate for one fence window (a node holding no slot cannot be
// recovered by anyone, so its claim writes are safe); a claimer that stalls
// past it is fenced. Start the HeartbeatLoop within the fence window. Errors are
// one line: Busy("slot 3 is held by live node 'n3' (heartbeat 0.4 s ago)"),
// Busy("no free slot: all 10 slots are held by live nodes (n0, n1, ...); add
// slots with `clusterify slots DEVICE --set N`"), InvalidArgument for a slot
// number beyond the slot count.
Result<SlotClaimResult> claim_slot(ClusterDisk& disk, FenceGate& gate, const SlotClaimOptions& opts);

// Clean release at shutdown: lease owned = 0 (journal_dirty as given), then
// the heartbeat sector with the "stopped" flag, so peers see a clean leave at
// once instead of waiting dead_after.
Status release_slot(ClusterDisk& disk, const SlotClaimResult& claim, bool journal_dirty);

}  // namespace cext3::node
