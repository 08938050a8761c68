#include "cext3/cluster/ext3_checks.h"

#include <ext2fs/ext2fs.h>
// After ext2fs.h, which declares com_err inside extern "C".
#include <et/com_err.h>

#include "cext3/cluster/preflight.h"
#include "cext3/journal.h"

namespace cext3::cluster {
namespace {

Status check_state(ext2_filsys fs, const std::string& dev, bool allow_mmp) {
  ext2_super_block* sb = fs->super;
  if (!ext2fs_has_feature_journal(sb)) {
    return Status::NotSupported(dev + " has no journal (ext2): clusterify needs ext3's journal for an atomic "
                                "conversion; add a journal with tune2fs -j " + dev + " first");
  }
  if (ext2fs_has_feature_journal_dev(sb) || sb->s_journal_inum == 0) {
    return Status::NotSupported(dev + " uses an external journal device, which a shared disk cannot carry; "
                                "move the journal inside with tune2fs -O ^has_journal then tune2fs -j");
  }
  const uint32_t incompat_ok = kAcceptedIncompat | EXT3_FEATURE_INCOMPAT_RECOVER |
                               (allow_mmp ? EXT4_FEATURE_INCOMPAT_MMP : 0);
  uint32_t bad_c = sb->s_feature_compat & ~kAcceptedCompat;
  uint32_t bad_r = sb->s_feature_ro_compat & ~kAcceptedRoCompat;
  uint32_t bad_i = sb->s_feature_incompat & ~incompat_ok;
  if (bad_c || bad_r || bad_i) {
    std::string names;
    for (auto [kind, bits] : {std::pair{0, bad_c}, std::pair{1, bad_r}, std::pair{2, bad_i}}) {
      if (!bits) continue;
      if (!names.empty()) names += ' ';
      names += feature_names(kind, bits);
    }
    return Status::NotSupported(dev + " uses features outside ext3 (" + names +
                                "); cext3 keeps the filesystem a plain ext3, so only ext3 features are accepted: "
                                "convert an ext3 made by mke2fs -t ext3");
  }
  if (ext2fs_has_feature_journal_needs_recovery(sb)) {
    return Status::Busy(dev + " needs journal recovery (needs_recovery is set): run e2fsck " + dev +
                        " to replay the journal first");
  }
  if (!(sb->s_state & EXT2_VALID_FS) || (sb->s_state & EXT2_ERROR_FS)) {
    return Status::Corruption(dev + " is not marked clean" +
                              std::string((sb->s_state & EXT2_ERROR_FS) ? " (errors were recorded)" : "") +
                              ": run e2fsck -f " + dev + " first");
  }
  if (ext2fs_r_blocks_count(sb) >= ext2fs_blocks_count(sb) ||
      ext2fs_free_blocks_count(sb) > ext2fs_blocks_count(sb) || sb->s_free_inodes_count > sb->s_inodes_count) {
    return Status::Corruption(dev + " has an inconsistent superblock (reserved or free counts exceed the size): "
                              "run e2fsck -f " + dev + " first");
  }
  // libext2fs opens a filesystem whose primary group descriptors point
  // outside their groups (e2fsck then quietly uses a backup copy); editing
  // through them would write bitmaps and inodes over other blocks.
  if (errcode_t err = ext2fs_check_desc(fs); err != 0) {
    return Status::Corruption(dev + " has damaged group descriptors (" + error_message(err) + "): run e2fsck -f " +
                              dev + " first");
  }
  if (sb->s_last_orphan != 0) {
    return Status::Busy(dev + " has an orphan inode list (inode " + std::to_string(sb->s_last_orphan) +
                        "): run e2fsck -f " + dev + " first");
  }
  // The journal itself must be empty: a non-empty log with needs_recovery
  // cleared is inconsistent, and our commit needs a clean log anyway.
  auto map = journal::JournalMap::from_inode(fs, sb->s_journal_inum);
  if (!map.ok()) return map.status().Annotate(dev + ": the ext3 journal is unreadable; run e2fsck -f " + dev);
  return Status::OK();
}

}  // namespace

Status check_plain_ext3_convertible(ext2_filsys fs, const std::string& dev) {
  return check_state(fs, dev, false);
}

Status check_cluster_fs_offline_ready(ext2_filsys fs, const std::string& dev) {
  return check_state(fs, dev, true);
}

}  // namespace cext3::cluster
