#include "cext3/cluster/group_map.h"

#include <string>

#include "cext3/cluster/layout.h"

namespace cext3::cluster {

Result<std::vector<uint16_t>> make_group_map(GroupPolicy policy, uint32_t groups, uint32_t slots) {
  if (slots == 0 || slots > kMaxSlots)
    return Status::InvalidArgument("slot count " + std::to_string(slots) + " is out of range 1.." +
                                   std::to_string(kMaxSlots));
  if (groups < slots)
    return Status::InvalidArgument("the filesystem has " + std::to_string(groups) +
                                   " block groups, fewer than the " + std::to_string(slots) +
                                   " slots asked for; every slot needs at least one group: use fewer slots");
  std::vector<uint16_t> map(groups);
  for (uint32_t g = 0; g < groups; ++g) {
    if (policy == GroupPolicy::kBalanced) {
      map[g] = static_cast<uint16_t>(g % slots);
    } else {
      // Largest slot s with s*G/N <= g, i.e. s = floor((g*N + N - 1) / G)... computed
      // exactly: slot of g is floor(((g + 1) * N - 1) / G).
      map[g] = static_cast<uint16_t>((static_cast<uint64_t>(g + 1) * slots - 1) / groups);
    }
  }
  return map;
}

std::vector<std::vector<uint32_t>> groups_by_slot(const std::vector<uint16_t>& map, uint32_t slots) {
  std::vector<std::vector<uint32_t>> out(slots);
  for (uint32_t g = 0; g < map.size(); ++g)
    if (map[g] < slots) out[map[g]].push_back(g);
  return out;
}

}  // namespace cext3::cluster
