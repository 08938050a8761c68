// Reading, validating and rewriting the jbd2 superblock (journal block 0).
// Internal to src/journal.
#pragma once

#include <cstdint>

#include "cext3/journal.h"
#include "journal/jbd2_format.h"

namespace cext3::journal {

// The superblock's whole block, decoded and validated against the map.
struct LoadedSuperblock {
  AlignedBuffer block;  // map.block_size() bytes: journal block 0
  JournalInfo info;
  format::Geometry geometry;
};

enum class SuperblockUse { kReport, kReplay, kWrite };

// Read block 0 and check: magic, v1/v2 type, block size equal to the map's,
// s_maxlen within the map, s_first sane, checksum (v2/v3), and for kReplay /
// kWrite that every feature is one this code handles.
Result<LoadedSuperblock> load_superblock(BlockDevice& dev, const JournalMap& map, SuperblockUse use);

// Store info's mutable fields (sequence, start, errno, incompat) into the
// block and recompute the checksum if the journal has one (no I/O).
void pack_superblock(LoadedSuperblock& sb);
// pack_superblock, then write block 0. No flush.
Status store_superblock(BlockDevice& dev, const JournalMap& map, LoadedSuperblock& sb);

}  // namespace cext3::journal
