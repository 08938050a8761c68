// Group -> slot assignment. Every block group belongs to exactly one slot; a
// node allocates from its own slot's groups without cluster traffic.
#pragma once

#include <cstdint>
#include <vector>

#include "cext3/cluster/header.h"
#include "cext3/status.h"

namespace cext3::cluster {

// contiguous: slot i gets groups [i*G/N, (i+1)*G/N) - good locality, each
//   node's data stays in one region of the disk.
// balanced: group g goes to slot g mod N - every slot gets groups from the
//   whole disk, so no slot is stuck with the (fuller) first groups.
// Refuses (InvalidArgument) when there are fewer groups than slots.
Result<std::vector<uint16_t>> make_group_map(GroupPolicy policy, uint32_t groups, uint32_t slots);

// Groups owned by each slot, from a map.
std::vector<std::vector<uint32_t>> groups_by_slot(const std::vector<uint16_t>& map, uint32_t slots);

}  // namespace cext3::cluster
