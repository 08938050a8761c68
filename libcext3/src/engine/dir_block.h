// One ext3 directory block, as bytes: the linear entry format
// (ext2_dir_entry_2, feature "filetype"), pure functions only.
//
// Layout of an entry (little-endian): inode u32, rec_len u16, name_len u8,
// file_type u8, then name_len bytes of name, padded so that every entry
// starts on a 4-byte boundary. The entries of a block chain by rec_len and
// the last one's rec_len reaches exactly the end of the block; the bytes
// between an entry's name and its rec_len end are slack a later insert may
// use. An entry with inode 0 is unused (only the first entry of a block is
// ever left like that: removing any other entry merges it into the one
// before, as the kernel does).
//
// htree (EXT2_INDEX_FL) index blocks are valid linear blocks on purpose: the
// dx root's ".." entry covers the rest of block 0, and every dx node block
// is one unused entry covering the whole block. So these functions read
// every block of an indexed directory correctly, and after the index flag
// is cleared (docs/ENGINE.md, "htree directories") they may change them.
//
// Block sizes 1 KiB .. 64 KiB, power of two. No metadata_csum tails (ext3
// has none).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cext3/status.h"

namespace cext3::engine {

// ext2 directory file types (the entry's file_type byte).
enum : uint8_t {
  kFtUnknown = 0,
  kFtRegular = 1,
  kFtDir = 2,
  kFtChrdev = 3,
  kFtBlkdev = 4,
  kFtFifo = 5,
  kFtSocket = 6,
  kFtSymlink = 7,
};
// The file_type byte for an inode's i_mode (S_IF* bits); kFtUnknown when the
// type bits name nothing ext3 knows.
uint8_t file_type_for_mode(uint32_t mode);

inline constexpr uint32_t kDirentHeaderSize = 8;
inline constexpr uint32_t kMaxNameLen = 255;
// Bytes an entry with a name of `name_len` bytes needs (header + name,
// rounded up to 4).
constexpr uint32_t dirent_size(uint32_t name_len) { return (kDirentHeaderSize + name_len + 3) & ~3u; }

struct DirBlockEntry {
  uint32_t offset = 0;   // where the entry starts in the block
  uint32_t inode = 0;    // 0: unused entry
  uint32_t rec_len = 0;  // decoded (the 64 KiB block encoding undone)
  uint8_t file_type = 0;
  std::string_view name;  // points into the block the entry was read from
};

namespace dir_block {

// Checks every entry of `block` the way e2fsck's pass 2 does for one block:
// rec_len at least 12, a multiple of 4, large enough for the name and
// inside the block; the chain ends exactly at the block end; a used entry
// has a non-empty name without '/' or NUL and an inode number in
// [1, max_inode]. The error is one kCorruption line that starts with
// `where` (e.g. "directory inode 12, block 3").
Status validate(std::span<const uint8_t> block, uint32_t max_inode, std::string_view where);

// Every entry of a validated block, in on-disk order, unused ones included.
std::vector<DirBlockEntry> entries(std::span<const uint8_t> block);

// The used entry named `name` in a validated block.
std::optional<DirBlockEntry> find(std::span<const uint8_t> block, std::string_view name);

// Adds an entry to a validated block: into an unused entry that is large
// enough, or into the slack after a used entry (which then shrinks to its
// own size). Returns the new entry's offset, or nullopt when no entry has
// room (the caller then uses another block). `name` must be 1..255 bytes.
std::optional<uint32_t> insert(std::span<uint8_t> block, std::string_view name, uint32_t inode,
                               uint8_t file_type);

// True when insert() of a name of `name_len` bytes would find room, without
// changing the block (callers decide before they dirty anything).
bool has_room(std::span<const uint8_t> block, size_t name_len);

// Removes the used entry at `offset` of a validated block: merged into the
// previous entry's rec_len, or, when it is the block's first entry, marked
// unused (inode 0) with its rec_len kept. The name bytes are zeroed.
// Returns false (and changes nothing) when no entry starts at `offset`.
bool remove(std::span<uint8_t> block, uint32_t offset);

// Points the entry at `offset` at another inode (rename over an existing
// name, "..": a moved directory's new parent). False when no entry starts
// there.
bool set_target(std::span<uint8_t> block, uint32_t offset, uint32_t inode, uint8_t file_type);

// A block with one unused entry covering it (a directory's later blocks).
void init_empty(std::span<uint8_t> block);

// The first block of a new directory: "." (self) and ".." (parent, covering
// the rest of the block), as mke2fs and the kernel write it.
void init_first(std::span<uint8_t> block, uint32_t self_inode, uint32_t parent_inode);

// True when a validated block holds no used entry other than "." and "..".
// (For a directory's first block these two must be there; for later blocks
// they never are, so "only dots" means empty for every block.)
bool only_dot_entries(std::span<const uint8_t> block);

}  // namespace dir_block
}  // namespace cext3::engine
