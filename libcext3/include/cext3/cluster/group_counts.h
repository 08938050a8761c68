// Derived per-group counters, recomputed from the bitmaps and inode tables.
//
// Online, nodes keep their allocation counts as in-memory deltas and fold
// them into the group descriptors now and then (docs/ENGINE.md, "Derived
// counters"). A node that dies takes its unfolded deltas with it, so the
// recovery of its slot recomputes the counts of its groups from what is on
// disk (after its journal is replayed) and writes them back. The bitmaps are
// the truth; the counters are derived from them, as e2fsck derives them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/status.h"

namespace cext3::cluster {

// What of the superblock the counting needs (ext3: 32-byte descriptors,
// no flex_bg, no uninit_bg: clusterify refuses those).
struct Ext3Geometry {
  uint32_t block_size = 0;
  uint64_t blocks_count = 0;
  uint32_t first_data_block = 0;
  uint32_t blocks_per_group = 0;
  uint32_t inodes_per_group = 0;
  uint32_t inodes_count = 0;
  uint32_t inode_size = 0;
  uint32_t group_count = 0;
  uint64_t descriptor_table_block = 0;  // first block of the primary descriptor table
};
Result<Ext3Geometry> read_ext3_geometry(BlockDevice& dev);

struct GroupCounts {
  uint32_t free_blocks = 0;
  uint32_t free_inodes = 0;
  uint32_t used_dirs = 0;
  bool operator==(const GroupCounts&) const = default;
};

// Counts of group `g` from its block bitmap, inode bitmap and (for used
// directories) the mode of every inode its bitmap marks in use.
Result<GroupCounts> count_group(BlockDevice& dev, const Ext3Geometry& geo, uint32_t g);
// The counts group `g`'s primary descriptor holds now.
Result<GroupCounts> read_group_counts(BlockDevice& dev, const Ext3Geometry& geo, uint32_t g);

// The descriptor-table block holding group g's descriptor (the unit a lock
// "gdt:<block>" covers).
uint64_t descriptor_block_of(const Ext3Geometry& geo, uint32_t g);

// Rewrite the count fields of the given groups' primary descriptors (one
// read-modify-write per descriptor block; only the three count fields
// change, so a torn write leaves each sector either old or new, never
// inconsistent in anything but counts) and flush. Returns how many
// descriptors actually changed.
Result<uint32_t> write_group_counts(BlockDevice& dev, const Ext3Geometry& geo,
                                    std::span<const std::pair<uint32_t, GroupCounts>> counts);

// Set the superblock's free block and free inode counts to the sums of the
// primary descriptors, then flush.
Status write_superblock_totals(BlockDevice& dev, const Ext3Geometry& geo);

}  // namespace cext3::cluster
