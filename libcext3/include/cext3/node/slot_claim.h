// Claiming a slot on the shared disk: a delta lease (as sanlock's) over the
// slot's lease sector in the `locks` file and its heartbeat sector.
//
// Algorithm (docs/DESIGN.md, "Slot claim"):
//  1. Read the slot's lease and heartbeat. A lease marked owned whose
//     heartbeat changes while we watch (up to dead_after) belongs to a live
//     node: refuse, naming it. An owned lease whose heartbeat does not change
//     for dead_after is a dead node's: it may be taken (its journal needs
//     recovery before the slot is used; SlotClaimResult says so).
//  2. Write our lease (owned, our node name, a fresh random lease generation),
//     then our heartbeat sector. If more than claim_delay/2 passed between
//     the read that saw the slot free and the completion of that write,
//     start over (a stalled claimer must not overwrite a later winner).
//  3. Wait claim_delay, read the lease back. Still ours: the slot is ours.
//     Someone else's: we lost the race; `auto` tries another slot.
// Two claimers racing for one slot therefore never both win.
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
};

struct SlotClaimResult {
  uint32_t slot = 0;
  uint64_t generation = 0;       // our lease generation (also in our heartbeat)
  bool previous_owner_dead = false;  // taken over from a dead node
  std::string previous_owner;
  bool journal_dirty = false;    // the lease said the slot journal needs recovery
};

// On success the node owns the slot: its lease and first heartbeat are on
// disk and `gate` has been renewed from that heartbeat write. Errors are
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
