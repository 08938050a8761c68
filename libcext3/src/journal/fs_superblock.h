// The few ext2/3/4 superblock fields the journal code needs: where the
// primary superblock is, its magic, has_journal and needs_recovery.
// Internal to src/journal.
#pragma once

#include <cstdint>

#include "cext3/block_device.h"

namespace cext3::journal::fs_sb {

inline constexpr uint32_t kCompatHasJournal = 0x4;
inline constexpr uint32_t kIncompatRecover = 0x4;  // needs_recovery
inline constexpr uint16_t kMagic = 0xEF53;
inline constexpr uint32_t kRoCompatMetadataCsum = 0x400;
inline constexpr size_t kRoCompatOff = 0x64, kChecksumOff = 0x3FC;
inline constexpr size_t kMagicOff = 0x38, kCompatOff = 0x5C, kIncompatOff = 0x60, kJournalInumOff = 0xE0;

// The fs block holding the primary superblock (byte 1024) and its offset.
inline uint64_t block_of_superblock(uint32_t bs) { return bs == 1024 ? 1 : 0; }
inline size_t offset_in_block(uint32_t bs) { return bs == 1024 ? 0 : 1024; }

inline uint32_t get_le32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
inline void put_le32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

// Read the block holding the primary superblock; Corruption without magic.
Status read(BlockDevice& dev, uint32_t bs, uint8_t* block);
// Set or clear needs_recovery in the superblock inside `block` (a block
// read by read()).
void set_recover(uint32_t bs, uint8_t* block, bool on);
uint32_t compat(uint32_t bs, const uint8_t* block);
uint32_t incompat(uint32_t bs, const uint8_t* block);

}  // namespace cext3::journal::fs_sb
