#include "cext3/cluster/group_counts.h"

#include <ext2fs/ext2_fs.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <map>

#include "cluster/le_bytes.h"

namespace cext3::cluster {
namespace {

constexpr uint64_t kSuperblockOffset = 1024;
constexpr uint32_t kDescBytes = 32;  // ext3 (no 64bit feature)

// Bytes [off, off+len) through whole sectors (the device contract).
struct SectorSpan {
  uint64_t first = 0;
  AlignedBuffer buf;
  size_t skip = 0;
};
Result<SectorSpan> read_span(BlockDevice& dev, uint64_t off, size_t len) {
  const uint32_t ss = dev.sector_size();
  SectorSpan s;
  s.first = off / ss * ss;
  const uint64_t end = (off + len + ss - 1) / ss * ss;
  if (end > dev.size())
    return Status::Corruption(dev.name() + ": metadata at byte " + std::to_string(off) +
                              " lies beyond the device; run e2fsck");
  s.buf = AlignedBuffer(end - s.first);
  s.skip = off - s.first;
  CEXT3_RETURN_IF_ERROR(dev.read(s.first, s.buf.data(), s.buf.size()));
  return s;
}

uint32_t zero_bits(const uint8_t* bitmap, uint32_t nbits) {
  uint32_t used = 0;
  uint32_t i = 0;
  for (; i + 64 <= nbits; i += 64) {
    uint64_t w;
    std::memcpy(&w, bitmap + i / 8, 8);
    used += std::popcount(w);
  }
  for (; i < nbits; ++i) used += (bitmap[i / 8] >> (i % 8)) & 1;
  return nbits - used;
}

struct DescLocation {
  uint64_t block_bitmap = 0, inode_bitmap = 0, inode_table = 0;
};
Result<DescLocation> read_desc(BlockDevice& dev, const Ext3Geometry& geo, uint32_t g) {
  const uint64_t off = geo.descriptor_table_block * geo.block_size + uint64_t{g} * kDescBytes;
  auto s = read_span(dev, off, kDescBytes);
  if (!s.ok()) return s.status();
  const uint8_t* d = s->buf.data() + s->skip;
  DescLocation l;
  l.block_bitmap = get_le32(d + offsetof(ext2_group_desc, bg_block_bitmap));
  l.inode_bitmap = get_le32(d + offsetof(ext2_group_desc, bg_inode_bitmap));
  l.inode_table = get_le32(d + offsetof(ext2_group_desc, bg_inode_table));
  if (l.block_bitmap >= geo.blocks_count || l.inode_bitmap >= geo.blocks_count || l.inode_table >= geo.blocks_count)
    return Status::Corruption(dev.name() + ": group " + std::to_string(g) +
                              "'s descriptor points outside the filesystem; run e2fsck");
  return l;
}

}  // namespace

Result<Ext3Geometry> read_ext3_geometry(BlockDevice& dev) {
  auto s = read_span(dev, kSuperblockOffset, sizeof(ext2_super_block));
  if (!s.ok()) return s.status();
  const uint8_t* sb = s->buf.data() + s->skip;
  if (get_le16(sb + offsetof(ext2_super_block, s_magic)) != EXT2_SUPER_MAGIC)
    return Status::NotSupported(dev.name() + ": not an ext3 filesystem (no superblock magic)");
  Ext3Geometry g;
  const uint32_t log = get_le32(sb + offsetof(ext2_super_block, s_log_block_size));
  if (log > 2) return Status::Corruption(dev.name() + ": superblock block size field is out of range; run e2fsck");
  g.block_size = 1024u << log;
  g.blocks_count = get_le32(sb + offsetof(ext2_super_block, s_blocks_count));
  g.first_data_block = get_le32(sb + offsetof(ext2_super_block, s_first_data_block));
  g.blocks_per_group = get_le32(sb + offsetof(ext2_super_block, s_blocks_per_group));
  g.inodes_per_group = get_le32(sb + offsetof(ext2_super_block, s_inodes_per_group));
  g.inodes_count = get_le32(sb + offsetof(ext2_super_block, s_inodes_count));
  const uint32_t rev = get_le32(sb + offsetof(ext2_super_block, s_rev_level));
  g.inode_size = rev == 0 ? 128 : get_le16(sb + offsetof(ext2_super_block, s_inode_size));
  if (g.blocks_per_group == 0 || g.blocks_per_group > 8 * g.block_size || g.inodes_per_group == 0 ||
      g.inodes_per_group > 8 * g.block_size || g.inode_size < 128 || g.inode_size > g.block_size ||
      g.blocks_count <= g.first_data_block)
    return Status::Corruption(dev.name() + ": superblock geometry is inconsistent; run e2fsck");
  g.group_count = static_cast<uint32_t>((g.blocks_count - g.first_data_block + g.blocks_per_group - 1) /
                                        g.blocks_per_group);
  g.descriptor_table_block = g.first_data_block + 1;
  return g;
}

uint64_t descriptor_block_of(const Ext3Geometry& geo, uint32_t g) {
  return geo.descriptor_table_block + uint64_t{g} * kDescBytes / geo.block_size;
}

Result<GroupCounts> count_group(BlockDevice& dev, const Ext3Geometry& geo, uint32_t g) {
  if (g >= geo.group_count) return Status::InvalidArgument("group " + std::to_string(g) + " does not exist");
  auto d = read_desc(dev, geo, g);
  if (!d.ok()) return d.status();
  GroupCounts c;
  // The last group may be short: only its real blocks count (mke2fs sets
  // the padding bits, but a count must not depend on that).
  const uint64_t first_block = geo.first_data_block + uint64_t{g} * geo.blocks_per_group;
  const uint32_t nblocks = static_cast<uint32_t>(std::min<uint64_t>(geo.blocks_per_group, geo.blocks_count - first_block));
  auto bb = read_span(dev, d->block_bitmap * geo.block_size, geo.block_size);
  if (!bb.ok()) return bb.status();
  c.free_blocks = zero_bits(bb->buf.data() + bb->skip, nblocks);
  auto ib = read_span(dev, d->inode_bitmap * geo.block_size, geo.block_size);
  if (!ib.ok()) return ib.status();
  const uint8_t* ibits = ib->buf.data() + ib->skip;
  c.free_inodes = zero_bits(ibits, geo.inodes_per_group);
  // Directories among the used inodes: read only the inode-table blocks
  // that hold a used inode.
  const uint32_t per_block = geo.block_size / geo.inode_size;
  const uint32_t table_blocks = (geo.inodes_per_group + per_block - 1) / per_block;
  for (uint32_t tb = 0; tb < table_blocks; ++tb) {
    const uint32_t lo = tb * per_block, hi = std::min(lo + per_block, geo.inodes_per_group);
    bool any = false;
    for (uint32_t i = lo; i < hi && !any; ++i) any = (ibits[i / 8] >> (i % 8)) & 1;
    if (!any) continue;
    auto t = read_span(dev, (d->inode_table + tb) * geo.block_size, geo.block_size);
    if (!t.ok()) return t.status();
    for (uint32_t i = lo; i < hi; ++i) {
      if (!((ibits[i / 8] >> (i % 8)) & 1)) continue;
      const uint16_t mode = get_le16(t->buf.data() + t->skip + (i - lo) * geo.inode_size);
      if ((mode & 0xF000) == 0x4000) ++c.used_dirs;
    }
  }
  return c;
}

Result<GroupCounts> read_group_counts(BlockDevice& dev, const Ext3Geometry& geo, uint32_t g) {
  if (g >= geo.group_count) return Status::InvalidArgument("group " + std::to_string(g) + " does not exist");
  auto s = read_span(dev, geo.descriptor_table_block * geo.block_size + uint64_t{g} * kDescBytes, kDescBytes);
  if (!s.ok()) return s.status();
  const uint8_t* d = s->buf.data() + s->skip;
  GroupCounts c;
  c.free_blocks = get_le16(d + offsetof(ext2_group_desc, bg_free_blocks_count));
  c.free_inodes = get_le16(d + offsetof(ext2_group_desc, bg_free_inodes_count));
  c.used_dirs = get_le16(d + offsetof(ext2_group_desc, bg_used_dirs_count));
  return c;
}

Result<uint32_t> write_group_counts(BlockDevice& dev, const Ext3Geometry& geo,
                                    std::span<const std::pair<uint32_t, GroupCounts>> counts) {
  std::map<uint64_t, std::vector<std::pair<uint32_t, GroupCounts>>> by_block;
  for (const auto& gc : counts) {
    if (gc.first >= geo.group_count)
      return Status::InvalidArgument("group " + std::to_string(gc.first) + " does not exist");
    by_block[descriptor_block_of(geo, gc.first)].push_back(gc);
  }
  uint32_t changed = 0;
  for (auto& [blk, list] : by_block) {
    auto s = read_span(dev, blk * geo.block_size, geo.block_size);
    if (!s.ok()) return s.status();
    uint8_t* base = s->buf.data() + s->skip;
    bool dirty = false;
    for (const auto& [g, c] : list) {
      uint8_t* d = base + (uint64_t{g} * kDescBytes) % geo.block_size;
      const GroupCounts old{get_le16(d + offsetof(ext2_group_desc, bg_free_blocks_count)),
                            get_le16(d + offsetof(ext2_group_desc, bg_free_inodes_count)),
                            get_le16(d + offsetof(ext2_group_desc, bg_used_dirs_count))};
      if (old == c) continue;
      put_le16(d + offsetof(ext2_group_desc, bg_free_blocks_count), static_cast<uint16_t>(c.free_blocks));
      put_le16(d + offsetof(ext2_group_desc, bg_free_inodes_count), static_cast<uint16_t>(c.free_inodes));
      put_le16(d + offsetof(ext2_group_desc, bg_used_dirs_count), static_cast<uint16_t>(c.used_dirs));
      dirty = true;
      ++changed;
    }
    if (dirty) CEXT3_RETURN_IF_ERROR(dev.write(s->first, s->buf.data(), s->buf.size()));
  }
  if (changed) CEXT3_RETURN_IF_ERROR(dev.flush());
  return changed;
}

Status write_superblock_totals(BlockDevice& dev, const Ext3Geometry& geo) {
  uint64_t free_blocks = 0, free_inodes = 0;
  const uint64_t table_bytes = uint64_t{geo.group_count} * kDescBytes;
  auto t = read_span(dev, geo.descriptor_table_block * geo.block_size, table_bytes);
  if (!t.ok()) return t.status();
  for (uint32_t g = 0; g < geo.group_count; ++g) {
    const uint8_t* d = t->buf.data() + t->skip + uint64_t{g} * kDescBytes;
    free_blocks += get_le16(d + offsetof(ext2_group_desc, bg_free_blocks_count));
    free_inodes += get_le16(d + offsetof(ext2_group_desc, bg_free_inodes_count));
  }
  auto s = read_span(dev, kSuperblockOffset, sizeof(ext2_super_block));
  if (!s.ok()) return s.status();
  uint8_t* sb = s->buf.data() + s->skip;
  if (get_le32(sb + offsetof(ext2_super_block, s_free_blocks_count)) == free_blocks &&
      get_le32(sb + offsetof(ext2_super_block, s_free_inodes_count)) == free_inodes)
    return Status::OK();
  put_le32(sb + offsetof(ext2_super_block, s_free_blocks_count), static_cast<uint32_t>(free_blocks));
  put_le32(sb + offsetof(ext2_super_block, s_free_inodes_count), static_cast<uint32_t>(free_inodes));
  CEXT3_RETURN_IF_ERROR(dev.write(s->first, s->buf.data(), s->buf.size()));
  return dev.flush();
}

}  // namespace cext3::cluster
