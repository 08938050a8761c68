// jbd2 on-disk format: constants, big-endian field access, the raw CRC-32C
// jbd2 checksums use, and the descriptor-tag / revoke-record geometry that
// depends on the journal's features. Internal to src/journal.
//
// Layouts follow Linux include/linux/jbd2.h (all fields big-endian):
//   block header   0 magic 0xC03B3998, 4 blocktype, 8 sequence
//   superblock     12 blocksize, 16 maxlen, 20 first, 24 sequence, 28 start,
//                  32 errno, 36 compat, 40 incompat, 44 ro_compat, 48 uuid[16],
//                  64 nr_users, 72 max_transaction, 80 checksum_type (u8),
//                  252 checksum, 256 users[16*48]
//   descriptor     header, then tags; a 4-byte checksum tail with csum v2/v3
//   tag (no csum3) 0 blocknr, 4 checksum16, 6 flags16, [8 blocknr_high if 64bit]
//   tag3 (csum3)   0 blocknr, 4 flags32, 8 blocknr_high, 12 checksum32
//   commit         header, 12 chksum_type, 13 chksum_size, 16 chksum[8],
//                  48 commit_sec (be64), 56 commit_nsec
//   revoke         header, 12 r_count (bytes used incl. the 16-byte head),
//                  then 4- or 8-byte block numbers
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "cext3/journal.h"

namespace cext3::journal::format {

inline constexpr uint32_t kMagic = 0xC03B3998u;
inline constexpr uint32_t kDescriptorBlock = 1;
inline constexpr uint32_t kCommitBlock = 2;
inline constexpr uint32_t kSuperblockV1 = 3;
inline constexpr uint32_t kSuperblockV2 = 4;
inline constexpr uint32_t kRevokeBlock = 5;
inline constexpr uint32_t kFastCommitBlock = 6;

inline constexpr uint32_t kFlagEscape = 1;
inline constexpr uint32_t kFlagSameUuid = 2;
inline constexpr uint32_t kFlagDeleted = 4;
inline constexpr uint32_t kFlagLastTag = 8;

inline constexpr uint8_t kChecksumTypeCrc32c = 4;
inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kRevokeHeaderSize = 16;
inline constexpr size_t kTailSize = 4;
inline constexpr size_t kUuidSize = 16;
inline constexpr size_t kSuperblockSize = 1024;

// Superblock field offsets.
inline constexpr size_t kSbBlocksize = 12, kSbMaxlen = 16, kSbFirst = 20, kSbSequence = 24,
                        kSbStart = 28, kSbErrno = 32, kSbCompat = 36, kSbIncompat = 40,
                        kSbRoCompat = 44, kSbUuid = 48, kSbNrUsers = 64, kSbMaxTransaction = 72,
                        kSbChecksumType = 80, kSbChecksum = 252;
// Commit block field offsets.
inline constexpr size_t kCommitChksumType = 12, kCommitChksumSize = 13, kCommitChksum = 16,
                        kCommitSec = 48, kCommitNsec = 56;

// Incompat features this code can read and write.
inline constexpr uint32_t kSupportedIncompat =
    kIncompatRevoke | kIncompat64Bit | kIncompatCsumV2 | kIncompatCsumV3;

inline uint32_t get32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline void put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline uint64_t get64(const uint8_t* p) { return (uint64_t{get32(p)} << 32) | get32(p + 4); }
inline void put64(uint8_t* p, uint64_t v) {
  put32(p, static_cast<uint32_t>(v >> 32));
  put32(p + 4, static_cast<uint32_t>(v));
}

// jbd2's checksum primitive: CRC-32C over `data`, continuing from `crc`,
// with no pre- or post-inversion (Linux crc32c(), e2fsprogs ext2fs_crc32c_le).
uint32_t crc32c_raw(uint32_t crc, const void* data, size_t len);
// The portable table implementation (crc32c_raw uses SSE4.2 when present).
uint32_t crc32c_table(uint32_t crc, const void* data, size_t len);

// Transaction ids wrap; compare them as the kernel does (tid_gt / tid_geq).
inline bool tid_gt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; }
inline bool tid_geq(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) >= 0; }

// Everything about the block formats that follows from the features.
struct Geometry {
  uint32_t block_size = 0;
  uint32_t incompat = 0;
  uint32_t csum_seed = 0;  // crc32c_raw(~0, uuid, 16), when checksummed

  bool csum_v2v3() const { return (incompat & (kIncompatCsumV2 | kIncompatCsumV3)) != 0; }
  bool csum_v3() const { return (incompat & kIncompatCsumV3) != 0; }
  bool is64() const { return (incompat & kIncompat64Bit) != 0; }
  size_t tail_size() const { return csum_v2v3() ? kTailSize : 0; }
  // Linux journal_tag_bytes().
  size_t tag_bytes() const;
  // Tags that fit in one descriptor block (first tag carries the UUID).
  size_t tags_per_descriptor() const;
  size_t revoke_record_size() const { return is64() ? 8 : 4; }
  size_t revokes_per_block() const {
    return (block_size - kRevokeHeaderSize - tail_size()) / revoke_record_size();
  }
  // Log blocks a transaction of `nblocks` tagged blocks and `nrevokes`
  // revoke records occupies, commit block included.
  uint64_t blocks_needed(uint64_t nblocks, uint64_t nrevokes) const;

  // Block checksums (csum v2/v3).
  uint32_t block_checksum(uint32_t sequence, const uint8_t* block) const;
  void set_tail_checksum(uint8_t* block) const;
  bool verify_tail_checksum(const uint8_t* block) const;
  void set_commit_checksum(uint8_t* block) const;
  bool verify_commit_checksum(const uint8_t* block) const;
};

Geometry make_geometry(uint32_t block_size, uint32_t incompat, const uint8_t* uuid);

// One descriptor tag, decoded.
struct Tag {
  uint64_t fs_block = 0;
  uint32_t flags = 0;
  uint32_t checksum = 0;  // 16 bits used with csum v2
};

// Encode/decode a tag at p (tag_bytes() bytes).
void encode_tag(const Geometry& g, uint8_t* p, const Tag& t);
Tag decode_tag(const Geometry& g, const uint8_t* p);
// Tag checksum field as stored for this block's content.
uint32_t tag_checksum(const Geometry& g, uint32_t sequence, const uint8_t* block);

// Copy one data block into the log image at `dst` (block_size bytes, not
// overlapping `src`), escaping it if it begins with the jbd2 magic, and
// return its tag checksum as tag_checksum(g, sequence, dst) would (0
// without checksums). One pass over the block: on large transactions the
// staging copy and the checksum are bound by memory bandwidth, and reading
// the block once instead of twice halves that cost.
uint32_t copy_data_block(const Geometry& g, uint32_t sequence, uint8_t* dst, const uint8_t* src, bool* escaped);

// Block header.
inline void put_header(uint8_t* b, uint32_t type, uint32_t seq) {
  put32(b, kMagic);
  put32(b + 4, type);
  put32(b + 8, seq);
}

// Superblock checksum (v2/v3: crc32c_raw(~0, sb with s_checksum zeroed, 1024)).
uint32_t superblock_checksum(const uint8_t* sb);
// Decode the fields of JournalInfo from a superblock's bytes.
JournalInfo decode_superblock(const uint8_t* sb);

}  // namespace cext3::journal::format
