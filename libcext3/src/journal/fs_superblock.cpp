// Primary ext3 superblock access for the journal code.
#include "journal/fs_superblock.h"

#include "journal/jbd2_format.h"
#include "journal/journal_io.h"

namespace cext3::journal::fs_sb {

Status read(BlockDevice& dev, uint32_t bs, uint8_t* block) {
  CEXT3_RETURN_IF_ERROR(io::read_block(dev, bs, block_of_superblock(bs), block));
  const uint8_t* sb = block + offset_in_block(bs);
  if ((sb[kMagicOff] | (sb[kMagicOff + 1] << 8)) != kMagic)
    return Status::Corruption("filesystem superblock of " + dev.name() +
                              " has no ext2/3/4 magic; is this the right device?");
  return Status::OK();
}

void set_recover(uint32_t bs, uint8_t* block, bool on) {
  uint8_t* p = block + offset_in_block(bs) + kIncompatOff;
  uint32_t v = get_le32(p);
  v = on ? (v | kIncompatRecover) : (v & ~kIncompatRecover);
  put_le32(p, v);
  // metadata_csum filesystems checksum the superblock (crc32c over the
  // bytes before s_checksum at 0x3FC, seeded with ~0): keep it valid.
  uint8_t* sb = block + offset_in_block(bs);
  if (get_le32(sb + kRoCompatOff) & kRoCompatMetadataCsum)
    put_le32(sb + kChecksumOff, format::crc32c_raw(~0u, sb, kChecksumOff));
}

uint32_t compat(uint32_t bs, const uint8_t* block) { return get_le32(block + offset_in_block(bs) + kCompatOff); }
uint32_t incompat(uint32_t bs, const uint8_t* block) {
  return get_le32(block + offset_in_block(bs) + kIncompatOff);
}

}  // namespace cext3::journal::fs_sb
