// ext3's on-disk extended attribute format, both places it lives:
//
//  * the inode body: in a large inode (inode_size > 128), after the
//    128-byte ext3 inode and its i_extra_isize bytes, a 4-byte magic
//    0xEA020000, then the entries; value offsets count from the first entry;
//    values are packed from the end of the inode downwards. Entries are not
//    sorted there (the kernel appends).
//  * the xattr block (i_file_acl): a 32-byte header (magic, h_refcount,
//    h_blocks = 1, h_hash of all entry hashes, checksum 0 without
//    metadata_csum), entries from byte 32 sorted by (name index, name
//    length, name bytes) - the kernel's lookup stops at the first greater
//    entry, so an unsorted block hides attributes - and values packed from
//    the block's end downwards; offsets count from the block start.
//
// An entry is 16 bytes (name length, name index, value offset, value inode
// = 0 on ext3, value size, hash) plus the name, padded to 4 bytes; a zero
// word ends the list. Values are padded to 4 bytes. The entry hash mixes the
// name bytes (shift 5) then the value's little-endian words (shift 16); the
// block hash mixes the entry hashes (shift 16), 0 if any entry hash is 0.
// These are the rules e2fsck checks (lib/ext2fs/ext_attr.c, e2fsck pass 1)
// and the kernel relies on (fs/ext4/xattr.c).
//
// Nothing here touches a device or a lock: pure encoding, so it is tested
// on byte buffers as well as through the engine.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cext3/status.h"

namespace cext3::engine::xattr {

inline constexpr uint32_t kMagic = 0xEA020000;
inline constexpr uint32_t kBlockHeaderBytes = 32;
inline constexpr uint32_t kEntryHeadBytes = 16;  // before the name
inline constexpr uint32_t kMaxNameLen = 255;     // of the full name and of the part after the prefix
// The VFS refuses larger values (XATTR_SIZE_MAX) with E2BIG.
inline constexpr uint32_t kVfsValueMax = 65536;

// Name indexes (e_name_index) as the kernel assigns them.
enum NameIndex : uint8_t {
  kUser = 1,
  kPosixAclAccess = 2,
  kPosixAclDefault = 3,
  kTrusted = 4,
  kSecurity = 6,
  kSystem = 7,
};

struct Entry {
  uint8_t index = 0;
  std::string name;  // after the prefix (empty for the POSIX ACLs)
  std::vector<uint8_t> value;
};

// The full name ("user.color") as the user sees it; empty when the index
// is not one this engine knows (such entries are kept, but not listed).
std::string full_name(uint8_t index, std::string_view name);

// Split a full name for writing. EOPNOTSUPP for a prefix ext3 does not
// store (or "system." other than the two POSIX ACLs), ERANGE when longer
// than 255 bytes, EINVAL for an empty name after the prefix.
Status split_name(std::string_view full, uint8_t* index, std::string* name);

// Bytes an entry takes in the entry table (16 + name, padded to 4) and its
// value in the value area (padded to 4).
uint32_t entry_bytes(const Entry& e);
uint32_t value_bytes(const Entry& e);

// Hashes as e2fsck checks them. Name bytes are taken unsigned (the kernel
// and e2fsprogs agree on that for names with bytes >= 0x80 since 2023;
// e2fsck accepts both for older blocks).
uint32_t entry_hash(const Entry& e);
uint32_t block_hash(std::span<const uint32_t> entry_hashes);

// The kernel's order of entries in a block.
bool block_order_less(const Entry& a, const Entry& b);

// --- the inode body. `area` is the bytes after 128 + i_extra_isize up to
// the inode's end (magic included). Empty when the inode has no such area.
// Parse: no magic -> no entries.
Status parse_ibody(std::span<const uint8_t> area, std::vector<Entry>* out, const std::string& where);
// Whether `entries` fit (magic, entries, end marker, values).
bool ibody_fits(std::span<const Entry> entries, size_t area_bytes);
// Write `entries` into `area` (must fit); no entries -> the area is zeroed
// (no magic), as the kernel leaves an inode without in-inode attributes.
void encode_ibody(std::span<const Entry> entries, std::span<uint8_t> area);

// --- the block. Parse checks the magic and h_blocks, returns the refcount.
Status parse_block(std::span<const uint8_t> block, std::vector<Entry>* out, uint32_t* refcount,
                   const std::string& where);
bool block_fits(std::span<const Entry> entries, size_t block_size);
// Write a whole block image: `entries` sorted into the kernel's order,
// hashes set, refcount as given.
void encode_block(std::vector<Entry> entries, uint32_t refcount, std::span<uint8_t> block);

}  // namespace cext3::engine::xattr
