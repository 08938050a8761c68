// ext3 block maps: 12 direct blocks, then one indirect, one double- and one
// triple-indirect tree (i_block[12..14]). Lookup with allocate-on-write,
// truncate, free everything.
//
// Invariants relied on:
//  * indirect blocks (and directory blocks) are metadata: journaled, cached,
//    covered by the inode's lock itb:<block of the inode>; freeing one
//    revokes it;
//  * file data blocks are not journaled; a fresh one is handed to the
//    caller, who writes it whole before the op ends;
//  * i_blocks counts 512-byte units of every block the inode owns,
//    indirect blocks and the xattr block included (e2fsck checks it).
#include <sys/stat.h>

#include <cassert>
#include <cstring>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
uint32_t get_le32(const uint8_t* p, uint64_t idx) {
  uint32_t v;
  std::memcpy(&v, p + idx * 4, 4);
  return v;
}
void put_le32(uint8_t* p, uint64_t idx, uint32_t v) { std::memcpy(p + idx * 4, &v, 4); }

constexpr uint32_t kXattrMagic = 0xEA020000;
}  // namespace

// Blocks of the inode that are map-addressed (devices and fast symlinks keep
// other things in i_block).
static bool has_block_map(const ext2_inode& in) {
  return S_ISREG(in.i_mode) || S_ISDIR(in.i_mode) || (S_ISLNK(in.i_mode) && !EngineFs::is_fast_symlink(in));
}

uint64_t EngineFs::level_span(int depth) const {
  uint64_t s = 1;
  for (int i = 0; i < depth; ++i) s *= geo_.addr_per_block;
  return s;
}

Result<uint64_t> EngineFs::bmap(Op& op, uint64_t ino, ext2_inode& in, uint64_t lblk, bool alloc, bool* fresh) {
  if (fresh) *fresh = false;
  const ResKey res = inode_res(ino);
  const uint32_t spb = geo_.block_size / 512;
  if (lblk < EXT2_NDIR_BLOCKS) {
    if (in.i_block[lblk] != 0 || !alloc) return uint64_t(in.i_block[lblk]);
    const uint64_t goal = (lblk > 0 && in.i_block[lblk - 1]) ? in.i_block[lblk - 1] + 1 : goal_for_inode(ino);
    auto nb = alloc_block(op, goal);
    if (!nb.ok()) return nb.status();
    in.i_block[lblk] = uint32_t(*nb);
    in.i_blocks += spb;
    if (fresh) *fresh = true;
    return *nb;
  }
  uint64_t rem = lblk - EXT2_NDIR_BLOCKS;
  int depth = 1;
  while (depth <= 3 && rem >= level_span(depth)) {
    rem -= level_span(depth);
    ++depth;
  }
  if (depth > 3)
    return Status::FromErrno(EFBIG, "logical block " + std::to_string(lblk) + " is past ext3's triple-indirect map");
  uint32_t& root = in.i_block[EXT2_NDIR_BLOCKS + depth - 1];
  if (root == 0) {
    if (!alloc) return uint64_t(0);
    uint64_t goal = in.i_block[EXT2_NDIR_BLOCKS - 1] ? in.i_block[EXT2_NDIR_BLOCKS - 1] + 1 : goal_for_inode(ino);
    auto nb = alloc_block(op, goal);
    if (!nb.ok()) return nb.status();
    auto z = new_meta(op, *nb, res);
    if (!z.ok()) return z.status();
    root = uint32_t(*nb);
    in.i_blocks += spb;
  }
  uint64_t blk = root;
  for (int level = depth; level >= 1; --level) {
    const uint64_t span = level_span(level - 1);
    const uint64_t idx = rem / span;
    rem %= span;
    auto data = read_meta(op, blk, res);
    if (!data.ok()) return data.status();
    uint32_t child = get_le32(*data, idx);
    if (child == 0) {
      if (!alloc) return uint64_t(0);
      uint64_t goal = blk + 1;
      for (uint64_t k = idx; k-- > 0;) {
        const uint32_t prev = get_le32(*data, k);
        if (prev) {
          goal = prev + 1;
          break;
        }
      }
      auto nb = alloc_block(op, goal);
      if (!nb.ok()) return nb.status();
      if (level > 1) {
        auto z = new_meta(op, *nb, res);
        if (!z.ok()) return z.status();
      } else if (fresh) {
        *fresh = true;
      }
      auto w = write_meta(op, blk, res);
      if (!w.ok()) return w.status();
      put_le32(*w, idx, uint32_t(*nb));
      in.i_blocks += spb;
      child = uint32_t(*nb);
    }
    blk = child;
  }
  return blk;
}

// ------------------------------------------------------------ lock check
Status EngineFs::collect_groups(Op& op, uint64_t ino, uint64_t blk, int depth, uint64_t first_lblk, uint64_t from_lblk,
                                std::set<uint32_t>* groups) {
  if (blk < geo_.first_data_block || blk >= geo_.blocks_count)
    return Status::Corruption("inode " + std::to_string(ino) + " maps block " + std::to_string(blk) +
                              " outside the filesystem; run clusterify verify");
  const bool whole = from_lblk <= first_lblk;
  if (whole) groups->insert(group_of_block(blk));
  if (depth == 0) return Status::OK();
  const uint64_t span = level_span(depth - 1);
  auto data = read_meta(op, blk, inode_res(ino));
  if (!data.ok()) return data.status();
  const uint64_t idx0 = whole ? 0 : (from_lblk - first_lblk) / span;
  for (uint64_t i = idx0; i < geo_.addr_per_block; ++i) {
    const uint32_t child = get_le32(*data, i);
    if (child == 0) continue;
    CEXT3_RETURN_IF_ERROR(collect_groups(op, ino, child, depth - 1, first_lblk + i * span, from_lblk, groups));
  }
  // A partly cleared tree node may become empty and be freed too.
  if (!whole) groups->insert(group_of_block(blk));
  return Status::OK();
}

Status EngineFs::prepare_truncate(Op& op, uint64_t ino, const ext2_inode& in, uint64_t new_size) {
  std::set<uint32_t> groups;
  if (has_block_map(in)) {
    const uint64_t from = (new_size + geo_.block_size - 1) / geo_.block_size;
    for (uint64_t i = from; i < EXT2_NDIR_BLOCKS; ++i)
      if (in.i_block[i]) groups.insert(group_of_block(in.i_block[i]));
    uint64_t base = EXT2_NDIR_BLOCKS;
    for (int d = 1; d <= 3; ++d) {
      const uint32_t root = in.i_block[EXT2_NDIR_BLOCKS + d - 1];
      if (root && from < base + level_span(d))
        CEXT3_RETURN_IF_ERROR(collect_groups(op, ino, root, d, base, from, &groups));
      base += level_span(d);
    }
  }
  bool missing = false;
  if (new_size == 0 && in.i_file_acl != 0) {
    const uint64_t xb = in.i_file_acl;
    if (xb < geo_.first_data_block || xb >= geo_.blocks_count)
      return Status::Corruption("inode " + std::to_string(ino) + " has its xattr block outside the filesystem");
    groups.insert(group_of_block(xb));
    if (!op.holds(xab_key(xb), LockMode::kEX)) {
      op.want(xab_key(xb), LockMode::kEX);
      missing = true;
    }
  }
  for (uint32_t g : groups)
    if (!op.holds(grp_key(g), LockMode::kEX)) {
      op.want_group(g);
      missing = true;
    }
  return missing ? op.retry() : Status::OK();
}

// ------------------------------------------------------------ freeing
Status EngineFs::free_tree(Op& op, uint64_t ino, uint64_t blk, int depth, uint64_t first_lblk, uint64_t from_lblk,
                           bool leaf_meta, bool* now_empty, uint64_t* freed) {
  const ResKey res = inode_res(ino);
  const bool whole = from_lblk <= first_lblk;
  if (depth == 0) {
    // A leaf: whole by construction (its index was chosen past from_lblk).
    CEXT3_RETURN_IF_ERROR(free_blocks(op, blk, 1, leaf_meta));
    ++*freed;
    *now_empty = true;
    return Status::OK();
  }
  const uint64_t span = level_span(depth - 1);
  auto data = read_meta(op, blk, res);
  if (!data.ok()) return data.status();
  // Copy the pointers: freeing children may drop cache entries.
  std::vector<uint32_t> ptrs(geo_.addr_per_block);
  std::memcpy(ptrs.data(), *data, geo_.block_size);
  const uint64_t idx0 = whole ? 0 : (from_lblk - first_lblk) / span;
  bool changed = false;
  for (uint64_t i = idx0; i < geo_.addr_per_block; ++i) {
    if (ptrs[i] == 0) continue;
    bool child_empty = false;
    CEXT3_RETURN_IF_ERROR(
        free_tree(op, ino, ptrs[i], depth - 1, first_lblk + i * span, from_lblk, leaf_meta, &child_empty, freed));
    if (child_empty) {
      ptrs[i] = 0;
      changed = true;
    }
  }
  bool empty = true;
  for (uint32_t p : ptrs)
    if (p) {
      empty = false;
      break;
    }
  if (empty) {
    CEXT3_RETURN_IF_ERROR(free_blocks(op, blk, 1, /*metadata=*/true));
    ++*freed;
    *now_empty = true;
    return Status::OK();
  }
  *now_empty = false;
  if (changed) {
    auto w = write_meta(op, blk, res);
    if (!w.ok()) return w.status();
    std::memcpy(*w, ptrs.data(), geo_.block_size);
  }
  return Status::OK();
}

Status EngineFs::free_map_from(Op& op, uint64_t ino, ext2_inode& in, uint64_t from) {
  if (!has_block_map(in)) return Status::OK();
  const bool leaf_meta = S_ISDIR(in.i_mode);
  uint64_t freed = 0;
  for (uint64_t i = from; i < EXT2_NDIR_BLOCKS; ++i) {
    if (!in.i_block[i]) continue;
    CEXT3_RETURN_IF_ERROR(free_blocks(op, in.i_block[i], 1, leaf_meta));
    in.i_block[i] = 0;
    ++freed;
  }
  uint64_t base = EXT2_NDIR_BLOCKS;
  for (int d = 1; d <= 3; ++d) {
    uint32_t& root = in.i_block[EXT2_NDIR_BLOCKS + d - 1];
    if (root && from < base + level_span(d)) {
      bool empty = false;
      CEXT3_RETURN_IF_ERROR(free_tree(op, ino, root, d, base, from, leaf_meta, &empty, &freed));
      if (empty) root = 0;
    }
    base += level_span(d);
  }
  const uint64_t units = freed * (geo_.block_size / 512);
  in.i_blocks = in.i_blocks >= units ? uint32_t(in.i_blocks - units) : 0;
  return Status::OK();
}

Status EngineFs::zero_block_tail(Op& op, uint64_t ino, ext2_inode& in, uint64_t size) {
  const uint32_t off = uint32_t(size % geo_.block_size);
  if (off == 0 || !S_ISREG(in.i_mode)) return Status::OK();
  auto phys = bmap(op, ino, in, size / geo_.block_size, false);
  if (!phys.ok()) return phys.status();
  if (*phys == 0) return Status::OK();
  if (latest_data_image(*phys) == nullptr) {
    // Usually the tail is already zero on the disk: then nothing to write.
    std::vector<uint8_t> buf(geo_.block_size);
    CEXT3_RETURN_IF_ERROR(dev_.read(*phys * geo_.block_size, buf.data(), buf.size()));
    bool nonzero = false;
    for (uint32_t i = off; i < geo_.block_size && !nonzero; ++i) nonzero = buf[i] != 0;
    if (!nonzero) return Status::OK();
  }
  auto img = data_block_for_write(op, *phys, false, false);
  if (!img.ok()) return img.status();
  std::memset(*img + off, 0, geo_.block_size - off);
  return Status::OK();
}

Status EngineFs::zero_committed_tail(uint64_t blk, uint32_t offset) {
  if (blk == 0 || offset == 0 || offset >= geo_.block_size) return Status::OK();
  {
    // The caller still holds the inode, so no op can buffer this block now;
    // an image left from before the shrink's commit would have been written
    // by it. Checked anyway: the disk must never be written under an image.
    std::lock_guard<std::mutex> g(mu_);
    if (latest_data_image(blk) != nullptr)
      return Status::Corruption("engine bug: data block " + std::to_string(blk) +
                                " still has a buffered image after its truncate committed");
  }
  std::vector<uint8_t> buf(geo_.block_size);
  CEXT3_RETURN_IF_ERROR(dev_.read(blk * geo_.block_size, buf.data(), buf.size()));
  bool nonzero = false;
  for (uint32_t i = offset; i < geo_.block_size && !nonzero; ++i) nonzero = buf[i] != 0;
  if (!nonzero) return Status::OK();
  std::memset(buf.data() + offset, 0, geo_.block_size - offset);
  return dev_.write(blk * geo_.block_size, buf.data(), buf.size());
}

Status EngineFs::truncate(Op& op, uint64_t ino, ext2_inode& in, uint64_t new_size) {
  const uint64_t old = inode_size(in);
  const uint64_t from = (new_size + geo_.block_size - 1) / geo_.block_size;
  if (new_size < old) {
    CEXT3_RETURN_IF_ERROR(free_map_from(op, ino, in, from));
    // Bytes past the new end in the last block must read as zeros if the
    // file grows again (the kernel relies on that too), but they are still
    // the file's data until the shrink commits: Op::end zeroes them after
    // the commit, before the inode's lock is released.
    if (S_ISREG(in.i_mode) && new_size % geo_.block_size != 0) {
      auto phys = bmap(op, ino, in, new_size / geo_.block_size, false);
      if (!phys.ok()) return phys.status();
      op.tail_block_ = *phys;
      op.tail_offset_ = uint32_t(new_size % geo_.block_size);
    }
  } else if (new_size > old) {
    CEXT3_RETURN_IF_ERROR(zero_block_tail(op, ino, in, old));
  }
  set_inode_size(in, new_size);
  return write_inode(op, ino, in);
}

Status EngineFs::free_inode_blocks(Op& op, uint64_t ino, ext2_inode& in) {
  CEXT3_RETURN_IF_ERROR(free_map_from(op, ino, in, 0));
  if (in.i_file_acl != 0) {
    const uint64_t xb = in.i_file_acl;
    const ResKey xr = xab_key(xb);
    if (!op.holds(xr, LockMode::kEX))
      return Status::InvalidArgument("freeing an xattr block without its lock (call prepare_truncate first)");
    auto w = write_meta(op, xb, xr);
    if (!w.ok()) return w.status();
    uint32_t magic = get_le32(*w, 0), refcount = get_le32(*w, 1);
    if (magic == kXattrMagic && refcount > 1) {
      put_le32(*w, 1, refcount - 1);  // shared with other inodes: drop our reference
    } else {
      CEXT3_RETURN_IF_ERROR(free_blocks(op, xb, 1, /*metadata=*/true));
    }
    in.i_file_acl = 0;
    const uint32_t spb = geo_.block_size / 512;
    in.i_blocks = in.i_blocks >= spb ? in.i_blocks - spb : 0;
  }
  return write_inode(op, ino, in);
}

}  // namespace cext3::engine
