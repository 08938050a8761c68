// Choosing a block before taking it: an xattr block is covered by its own
// lock xab:<block>, which must be held EX from the moment the block is
// written (so the journal image is forced out before another node reads it,
// and its LVB version moves). The lock can only be taken before the op
// changes anything, so the op peeks at a free block, locks it, retries, and
// takes exactly that block if it is still free (engine_impl.h).
#include <algorithm>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

Result<uint64_t> EngineFs::peek_free_block(Op& op, uint64_t goal) {
  std::vector<std::pair<uint32_t, uint64_t>> order;  // group, first index to look at
  const bool have_goal = goal >= geo_.first_data_block && goal < geo_.blocks_count;
  if (have_goal && op.holds(grp_key(group_of_block(goal)), LockMode::kEX))
    order.push_back({group_of_block(goal), goal - group_first_block(group_of_block(goal))});
  for (auto& [res, h] : op.held_) {
    if (res_kind(res) != ResKind::kGrp || h.mode != LockMode::kEX) continue;
    const uint32_t g = uint32_t(res_id(res));
    if (std::none_of(order.begin(), order.end(), [&](auto& o) { return o.first == g; })) order.push_back({g, 0});
  }
  for (auto [g, start] : order) {
    auto bm = read_meta(op, groups_[g].block_bitmap, grp_key(g));
    if (!bm.ok()) return bm.status();
    const uint64_t n = group_block_count(g);
    for (uint64_t i = start; i < n; ++i) {
      if ((i % 8) == 0 && i + 8 <= n && (*bm)[i / 8] == 0xFF) {
        i += 7;
        continue;
      }
      if ((*bm)[i / 8] & (1u << (i % 8))) continue;
      const uint64_t blk = group_first_block(g) + i;
      if (block_reusable(blk)) return blk;
    }
  }
  return uint64_t(0);
}

}  // namespace cext3::engine
