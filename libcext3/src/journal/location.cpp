// JournalMap: journal block index -> filesystem block, from a list, a run,
// or an inode's block map read with libext2fs.
#include <ext2fs/ext2fs.h>

#include <memory>
#include <string>

#include "cext3/journal.h"

namespace cext3::journal {

namespace {

bool valid_block_size(uint32_t bs) { return bs >= 1024 && bs <= 65536 && (bs & (bs - 1)) == 0; }

std::string ext2_err(errcode_t e) { return error_message(e); }

struct IterateCtx {
  std::vector<uint64_t>* blocks;
};

int collect_block(ext2_filsys, blk64_t* blocknr, e2_blkcnt_t blockcnt, blk64_t, int, void* priv) {
  auto* ctx = static_cast<IterateCtx*>(priv);
  if (blockcnt < 0) return 0;  // indirect blocks: not part of the journal's data
  auto idx = static_cast<uint64_t>(blockcnt);
  if (idx >= ctx->blocks->size()) ctx->blocks->resize(idx + 1, 0);
  (*ctx->blocks)[idx] = *blocknr;
  return 0;
}

}  // namespace

Result<JournalMap> JournalMap::from_blocks(uint32_t block_size, std::vector<uint64_t> fs_blocks) {
  if (!valid_block_size(block_size))
    return Status::InvalidArgument("journal map: block size " + std::to_string(block_size) +
                                   " is not a power of two in 1024..65536; pass the filesystem's block size");
  if (fs_blocks.size() < 2)
    return Status::InvalidArgument("journal map: a journal needs at least 2 blocks (superblock and one log block)");
  for (size_t i = 0; i < fs_blocks.size(); ++i)
    if (fs_blocks[i] == 0)
      return Status::Corruption("journal map: journal block " + std::to_string(i) +
                                " maps to filesystem block 0 (a hole); the journal file must be fully allocated");
  JournalMap m;
  m.block_size_ = block_size;
  m.blocks_ = std::move(fs_blocks);
  return m;
}

Result<JournalMap> JournalMap::contiguous(uint32_t block_size, uint64_t first_fs_block, uint64_t nblocks) {
  std::vector<uint64_t> v(nblocks);
  for (uint64_t i = 0; i < nblocks; ++i) v[i] = first_fs_block + i;
  return from_blocks(block_size, std::move(v));
}

Result<JournalMap> JournalMap::from_inode(ext2_filsys fs, uint32_t ino) {
  ext2_inode inode;
  errcode_t e = ext2fs_read_inode(fs, ino, &inode);
  if (e)
    return Status::IoError("journal map: cannot read inode " + std::to_string(ino) + ": " + ext2_err(e));
  if (!LINUX_S_ISREG(inode.i_mode))
    return Status::InvalidArgument("journal map: inode " + std::to_string(ino) +
                                   " is not a regular file; give the journal's inode");
  const uint64_t bs = fs->blocksize;
  const uint64_t size = EXT2_I_SIZE(&inode);
  const uint64_t nblocks = size / bs;
  std::vector<uint64_t> blocks(nblocks, 0);
  IterateCtx ctx{&blocks};
  std::unique_ptr<char[]> scratch(new char[fs->blocksize * 3]);
  e = ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_READ_ONLY | BLOCK_FLAG_DATA_ONLY, scratch.get(),
                            collect_block, &ctx);
  if (e)
    return Status::IoError("journal map: cannot walk the block map of inode " + std::to_string(ino) +
                           ": " + ext2_err(e));
  blocks.resize(nblocks);
  return from_blocks(fs->blocksize, std::move(blocks));
}

Result<JournalMap> JournalMap::from_image_inode(const std::string& path, uint32_t ino) {
  ext2_filsys fs = nullptr;
  errcode_t e = ext2fs_open2(path.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
  if (e)
    return Status::IoError("journal map: cannot open " + path + " as ext2/3/4: " + ext2_err(e) +
                           "; check the device path");
  if (ino == 0) {
    if (!ext2fs_has_feature_journal(fs->super) || fs->super->s_journal_inum == 0) {
      ext2fs_close_free(&fs);
      return Status::NotFound("journal map: " + path +
                              " has no internal journal (has_journal unset or s_journal_inum 0)");
    }
    ino = fs->super->s_journal_inum;
  }
  auto m = from_inode(fs, ino);
  ext2fs_close_free(&fs);
  return m;
}

bool JournalMap::is_contiguous() const {
  for (size_t i = 1; i < blocks_.size(); ++i)
    if (blocks_[i] != blocks_[i - 1] + 1) return false;
  return true;
}

}  // namespace cext3::journal
