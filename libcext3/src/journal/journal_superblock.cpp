// The jbd2 superblock: load/validate, store, report, and format a fresh one.
#include "journal/journal_superblock.h"

#include <cstring>
#include <string>

#include "journal/journal_io.h"

namespace cext3::journal {

using namespace format;

namespace {

std::string where(BlockDevice& dev, const JournalMap& map) {
  return "journal at block " + std::to_string(map.fs_block(0)) + " of " + dev.name();
}

}  // namespace

Result<LoadedSuperblock> load_superblock(BlockDevice& dev, const JournalMap& map, SuperblockUse use) {
  if (map.length() < 2) return Status::InvalidArgument("journal: empty journal map");
  LoadedSuperblock sb;
  sb.block = AlignedBuffer(map.block_size());
  CEXT3_RETURN_IF_ERROR(io::read_block(dev, map.block_size(), map.fs_block(0), sb.block.data()));
  const uint8_t* b = sb.block.data();
  if (get32(b) != kMagic)
    return Status::Corruption(where(dev, map) + ": no jbd2 magic in the journal superblock; "
                              "this is not a journal (check the inode / block list)");
  sb.info = decode_superblock(b);
  const JournalInfo& i = sb.info;
  if (i.blocktype != kSuperblockV1 && i.blocktype != kSuperblockV2)
    return Status::Corruption(where(dev, map) + ": journal superblock type " +
                              std::to_string(i.blocktype) + " is neither v1 (3) nor v2 (4)");
  if (i.block_size != map.block_size())
    return Status::Corruption(where(dev, map) + ": journal block size " + std::to_string(i.block_size) +
                              " differs from the filesystem block size " +
                              std::to_string(map.block_size()));
  if (i.maxlen < 2 || i.maxlen > map.length())
    return Status::Corruption(where(dev, map) + ": s_maxlen " + std::to_string(i.maxlen) +
                              " does not fit the journal file of " + std::to_string(map.length()) +
                              " blocks");
  if (i.first < 1 || i.first >= i.maxlen)
    return Status::Corruption(where(dev, map) + ": s_first " + std::to_string(i.first) +
                              " is outside 1.." + std::to_string(i.maxlen - 1));
  if (i.start != 0 && (i.start < i.first || i.start >= i.maxlen))
    return Status::Corruption(where(dev, map) + ": s_start " + std::to_string(i.start) +
                              " is outside the log " + std::to_string(i.first) + ".." +
                              std::to_string(i.maxlen - 1));
  if (use != SuperblockUse::kReport) {
    if (i.feature_compat & kCompatChecksum)
      return Status::NotSupported(where(dev, map) + ": journal uses v1 commit checksums "
                                  "(journal_checksum without v2/v3), which cext3 does not handle; "
                                  "replay it with e2fsck");
    if (i.feature_incompat & ~kSupportedIncompat)
      return Status::NotSupported(where(dev, map) + ": journal features '" + i.features_string() +
                                  "' include one cext3 does not handle; replay it with e2fsck");
    if ((i.feature_incompat & kIncompatCsumV2) && (i.feature_incompat & kIncompatCsumV3))
      return Status::Corruption(where(dev, map) + ": journal claims both csum v2 and v3");
  }
  sb.geometry = make_geometry(i.block_size, i.feature_incompat, i.uuid.data());
  if (sb.geometry.csum_v2v3()) {
    if (i.checksum_type != kChecksumTypeCrc32c)
      return Status::Corruption(where(dev, map) + ": journal checksum type " +
                                std::to_string(i.checksum_type) + " is not crc32c (4)");
    if (get32(b + kSbChecksum) != superblock_checksum(b))
      return Status::Corruption(where(dev, map) + ": journal superblock checksum mismatch");
  }
  return sb;
}

void pack_superblock(LoadedSuperblock& sb) {
  uint8_t* b = sb.block.data();
  put32(b + kSbSequence, sb.info.sequence);
  put32(b + kSbStart, sb.info.start);
  put32(b + kSbErrno, static_cast<uint32_t>(sb.info.errno_value));
  if (sb.info.blocktype == kSuperblockV2) put32(b + kSbIncompat, sb.info.feature_incompat);
  if (sb.geometry.csum_v2v3()) put32(b + kSbChecksum, superblock_checksum(b));
}

Status store_superblock(BlockDevice& dev, const JournalMap& map, LoadedSuperblock& sb) {
  pack_superblock(sb);
  return io::write_block(dev, map.block_size(), map.fs_block(0), sb.block.data());
}

Result<JournalInfo> read_journal_info(BlockDevice& dev, const JournalMap& map) {
  auto sb = load_superblock(dev, map, SuperblockUse::kReport);
  if (!sb.ok()) return sb.status();
  return sb->info;
}

Status format_journal(BlockDevice& dev, const JournalMap& map, const FormatOptions& opts) {
  const uint32_t bs = map.block_size();
  if (map.length() > 0xFFFFFFFFull)
    return Status::InvalidArgument("journal format: " + std::to_string(map.length()) +
                                   " blocks exceed jbd2's 32-bit s_maxlen");
  const uint32_t incompat = opts.feature_incompat | kIncompatRevoke;
  if (incompat & ~(kIncompatRevoke | kIncompat64Bit | kIncompatCsumV3))
    return Status::InvalidArgument("journal format: only revoke, 64bit and csum_v3 may be requested");
  if (opts.zero_log) {
    // Zero in chunks of up to 256 blocks.
    const uint64_t chunk = 256;
    AlignedBuffer zeros(chunk * bs);
    std::vector<io::BlockRef> refs;
    for (uint64_t j = 1; j < map.length(); ++j) {
      refs.push_back({map.fs_block(j), zeros.data() + (refs.size() % chunk) * bs});
      if (refs.size() == chunk || j + 1 == map.length()) {
        CEXT3_RETURN_IF_ERROR(io::write_blocks(dev, bs, refs));
        refs.clear();
      }
    }
  }
  AlignedBuffer block(bs);
  uint8_t* b = block.data();
  put_header(b, kSuperblockV2, 0);
  put32(b + kSbBlocksize, bs);
  put32(b + kSbMaxlen, static_cast<uint32_t>(map.length()));
  put32(b + kSbFirst, 1);
  put32(b + kSbSequence, opts.sequence);
  put32(b + kSbStart, 0);
  put32(b + kSbIncompat, incompat);
  std::memcpy(b + kSbUuid, opts.uuid.data(), kUuidSize);
  put32(b + kSbNrUsers, 1);
  if (incompat & kIncompatCsumV3) {
    b[kSbChecksumType] = kChecksumTypeCrc32c;
    put32(b + kSbChecksum, superblock_checksum(b));
  }
  CEXT3_RETURN_IF_ERROR(io::write_block(dev, bs, map.fs_block(0), b));
  return dev.flush();
}

}  // namespace cext3::journal
