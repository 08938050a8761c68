// Block and inode allocation in this slot's groups (docs/ENGINE.md,
// "Allocation").
//
// Invariants relied on:
//  * the bitmaps (journaled, under grp:<g> EX) are the truth; the per-group
//    counters are hints plus this node's exact deltas (what it changed in
//    the bitmaps since the last fold);
//  * a block freed by a transaction that is not yet durable is not handed
//    out again (freed_pending_): a crash would otherwise leave the old owner
//    pointing at the new owner's data;
//  * an inode picked by one op is reserved (reserved_inodes_) until that op
//    takes or drops it, so two ops never pick the same inode.
#include <algorithm>
#include <cassert>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
bool bit_set(const uint8_t* bits, uint64_t i) { return bits[i / 8] & (1u << (i % 8)); }
}  // namespace

std::vector<uint32_t> EngineFs::own_groups() const { return own_groups_; }

uint32_t EngineFs::group_of_block(uint64_t blk) const {
  return uint32_t((blk - geo_.first_data_block) / geo_.blocks_per_group);
}

uint64_t EngineFs::group_first_block(uint32_t g) const {
  return geo_.first_data_block + uint64_t(g) * geo_.blocks_per_group;
}

uint64_t EngineFs::group_block_count(uint32_t g) const {
  const uint64_t first = group_first_block(g);
  return std::min<uint64_t>(geo_.blocks_per_group, geo_.blocks_count - first);
}

bool EngineFs::block_reusable(uint64_t blk) const { return freed_pending_.find(blk) == freed_pending_.end(); }

uint64_t EngineFs::goal_for_inode(uint64_t ino) const {
  const uint32_t g = group_of_ino(ino);
  if (g < groups_.size() && groups_[g].slot == opts_.slot) {
    // Past the inode table: where mke2fs's data area of the group starts.
    const uint64_t after_table =
        groups_[g].inode_table + (uint64_t(geo_.inodes_per_group) * geo_.inode_size + geo_.block_size - 1) / geo_.block_size;
    if (group_of_block(after_table) == g) return after_table;
    return group_first_block(g);
  }
  return 0;
}

Result<uint64_t> EngineFs::alloc_in_group(Op& op, uint32_t g, uint64_t start) {
  const uint64_t n = group_block_count(g);
  auto bm = read_meta(op, groups_[g].block_bitmap, grp_key(g));
  if (!bm.ok()) return bm.status();
  const uint8_t* bits = *bm;
  if (start >= n) start = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const uint64_t lo = pass == 0 ? start : 0;
    const uint64_t hi = pass == 0 ? n : start;
    for (uint64_t i = lo; i < hi; ++i) {
      if ((i % 8) == 0 && i + 8 <= hi && bits[i / 8] == 0xFF) {
        i += 7;
        continue;
      }
      if (bit_set(bits, i)) continue;
      const uint64_t blk = group_first_block(g) + i;
      if (!block_reusable(blk)) continue;
      auto wb = write_meta(op, groups_[g].block_bitmap, grp_key(g));
      if (!wb.ok()) return wb.status();
      (*wb)[i / 8] |= uint8_t(1u << (i % 8));
      groups_[g].d_free_blocks -= 1;
      return blk;
    }
  }
  return uint64_t(0);
}

Result<uint64_t> EngineFs::alloc_block(Op& op, uint64_t goal) {
  std::vector<uint32_t> order;
  uint32_t goal_group = 0;
  bool have_goal = goal >= geo_.first_data_block && goal < geo_.blocks_count;
  if (have_goal) goal_group = group_of_block(goal);
  if (have_goal && op.holds(grp_key(goal_group), LockMode::kEX)) order.push_back(goal_group);
  // Own groups, starting after the goal's so a slot fills its region in order.
  if (!own_groups_.empty()) {
    size_t start = 0;
    for (size_t i = 0; i < own_groups_.size(); ++i)
      if (own_groups_[i] >= goal_group) {
        start = i;
        break;
      }
    for (size_t k = 0; k < own_groups_.size(); ++k) {
      const uint32_t g = own_groups_[(start + k) % own_groups_.size()];
      if (op.holds(grp_key(g), LockMode::kEX) && std::find(order.begin(), order.end(), g) == order.end())
        order.push_back(g);
    }
  }
  // Then groups borrowed by this op.
  for (auto& [res, h] : op.held_) {
    if (res_kind(res) != ResKind::kGrp || h.mode != LockMode::kEX) continue;
    const uint32_t g = uint32_t(res_id(res));
    if (std::find(order.begin(), order.end(), g) == order.end()) order.push_back(g);
  }
  for (uint32_t g : order) {
    const uint64_t start = (have_goal && g == goal_group) ? goal - group_first_block(g) : 0;
    auto r = alloc_in_group(op, g, start);
    if (!r.ok()) return r.status();
    if (*r != 0) return *r;
  }
  return Status::NoSpace("no free block in this node's groups or the groups it holds; free space or add slots' groups");
}

Status EngineFs::free_blocks(Op& op, uint64_t first, uint64_t count, bool metadata) {
  for (uint64_t b = first; b < first + count; ++b) {
    if (b < geo_.first_data_block || b >= geo_.blocks_count)
      return Status::Corruption("freeing block " + std::to_string(b) + " outside the filesystem");
    const uint32_t g = group_of_block(b);
    if (!op.holds(grp_key(g), LockMode::kEX))
      return Status::InvalidArgument("freeing block " + std::to_string(b) + " without grp:" + std::to_string(g) +
                                     " (call prepare_truncate first)");
    auto bm = write_meta(op, groups_[g].block_bitmap, grp_key(g));
    if (!bm.ok()) return bm.status();
    const uint64_t i = b - group_first_block(g);
    if (!bit_set(*bm, i))
      return Status::Corruption("freeing block " + std::to_string(b) + " that the bitmap says is free");
    (*bm)[i / 8] &= uint8_t(~(1u << (i % 8)));
    groups_[g].d_free_blocks += 1;
    if (metadata) {
      // No replay of this journal may bring the old image back over the
      // block's next user.
      running_revokes_.push_back(b);
      forget_block(b);
    } else {
      drop_buffered_data(b);
    }
    freed_pending_[b] = running_seq_;
  }
  return Status::OK();
}

bool EngineFs::inode_still_free(Op& op, uint32_t ino) {
  const uint32_t g = group_of_ino(ino);
  if (!op.holds(grp_key(g), LockMode::kEX)) return false;
  auto bm = read_meta(op, groups_[g].inode_bitmap, grp_key(g));
  if (!bm.ok()) return false;
  const uint32_t bit = (ino - 1) % geo_.inodes_per_group;
  return !bit_set(*bm, bit);
}

Result<uint32_t> EngineFs::pick_inode(Op& op, uint64_t parent, bool is_dir) {
  std::vector<uint32_t> cand;
  for (auto& [res, h] : op.held_)
    if (res_kind(res) == ResKind::kGrp && h.mode == LockMode::kEX) cand.push_back(uint32_t(res_id(res)));
  auto free_inodes = [&](uint32_t g) { return groups_[g].base_free_inodes + groups_[g].d_free_inodes; };
  const uint32_t pg = valid_ino(parent) ? group_of_ino(parent) : 0;
  std::stable_sort(cand.begin(), cand.end(), [&](uint32_t a, uint32_t b) {
    if (!is_dir) {
      // Files: the parent's group first, then the emptiest.
      if ((a == pg) != (b == pg)) return a == pg;
    } else {
      // Directories spread: most free inodes, then fewest directories.
      const int64_t fa = free_inodes(a), fb = free_inodes(b);
      if (fa != fb) return fa > fb;
      return groups_[a].base_used_dirs + groups_[a].d_used_dirs < groups_[b].base_used_dirs + groups_[b].d_used_dirs;
    }
    return free_inodes(a) > free_inodes(b);
  });
  for (uint32_t g : cand) {
    auto bm = read_meta(op, groups_[g].inode_bitmap, grp_key(g));
    if (!bm.ok()) return bm.status();
    const uint32_t lo = g == 0 ? geo_.first_ino - 1 : 0;
    for (uint32_t i = lo; i < geo_.inodes_per_group; ++i) {
      if ((i % 8) == 0 && i + 8 <= geo_.inodes_per_group && (*bm)[i / 8] == 0xFF) {
        i += 7;
        continue;
      }
      if (bit_set(*bm, i)) continue;
      const uint32_t ino = g * geo_.inodes_per_group + i + 1;
      if (reserved_inodes_.count(ino)) continue;
      return ino;
    }
  }
  // Nothing in the groups held: borrow other slots' groups that the
  // counters say have inodes (once; the bitmaps then decide).
  if (!op.borrowed_for_inode_) {
    int64_t best = 0;
    uint32_t best_g = 0;
    for (uint32_t g = 0; g < geo_.groups; ++g) {
      if (op.holds(grp_key(g), LockMode::kEX)) continue;
      if (free_inodes(g) > best) {
        best = free_inodes(g);
        best_g = g;
      }
    }
    op.borrowed_for_inode_ = true;
    if (best > 0) {
      op.want_group(best_g);
      return uint32_t(0);
    }
  }
  return Status::NoSpace("no free inode in this node's groups nor in any other group; delete files or add inodes");
}

}  // namespace cext3::engine
