// Turning an OverlayDevice full of libext2fs edits into an atomic on-disk
// change (docs/DESIGN.md, "Conversion commit protocol").
//
// Every dirty filesystem block of the overlay is one of two kinds:
//  * free in the old filesystem: nothing in the old filesystem points at it,
//    so it is written in place first (and flushed) - harmless if we crash;
//  * in use in the old filesystem (superblock, descriptors, bitmaps, inode
//    tables, directories): logged as one jbd2 transaction in the
//    filesystem's own journal, committed, then checkpointed in place.
// Blocks whose new content equals the old content are dropped.
#pragma once

#include <ext2fs/ext2fs.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/journal.h"
#include "cext3/overlay_device.h"
#include "cext3/status.h"

namespace cext3::cluster {

struct OverlayCommitPlan {
  uint32_t block_size = 0;
  std::vector<uint64_t> direct_blocks;  // ascending
  std::vector<std::vector<uint8_t>> direct_data;
  journal::Transaction txn;
  uint64_t unchanged_blocks = 0;
};

// `was_in_use(block)`: the old filesystem's block bitmap (true also for
// blocks below s_first_data_block).
Result<OverlayCommitPlan> classify_overlay(OverlayDevice& ov, uint32_t block_size,
                                           const std::function<bool(uint64_t)>& was_in_use);

using ProgressFn = std::function<void(const char* phase, uint64_t done, uint64_t total)>;

struct OverlayCommitResult {
  uint64_t direct_blocks = 0;
  uint64_t journaled_blocks = 0;
  uint32_t tid = 0;
};

// Write the plan to `dev`: direct blocks, flush, then the journal
// transaction through commit_and_checkpoint_fs_transaction (which commits,
// checkpoints in place and marks the filesystem clean).
Result<OverlayCommitResult> apply_overlay_commit(BlockDevice& dev, const journal::JournalMap& fs_journal,
                                                 OverlayCommitPlan plan, const ProgressFn& progress);

}  // namespace cext3::cluster
