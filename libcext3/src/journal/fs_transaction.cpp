// clusterify's atomic offline edit through the filesystem's own journal
// (inode 8), and the matching replay that also clears needs_recovery.
// The step order is the crash-safety argument; docs/JOURNAL.md walks
// through every crash point.
#include <string>

#include "journal/fs_superblock.h"
#include "journal/journal_io.h"
#include "journal/journal_state.h"

namespace cext3::journal {

Result<FsTransactionResult> commit_and_checkpoint_fs_transaction(BlockDevice& dev, const JournalMap& journal_map,
                                                                 const Transaction& txn) {
  const uint32_t bs = journal_map.block_size();
  AlignedBuffer sbblock(bs);
  // 1. Checks, all before the first write.
  CEXT3_RETURN_IF_ERROR(fs_sb::read(dev, bs, sbblock.data()));
  if (!(fs_sb::compat(bs, sbblock.data()) & fs_sb::kCompatHasJournal))
    return Status::NotSupported("fs transaction: " + dev.name() +
                                " has no journal (has_journal unset); add one with tune2fs -j first");
  if (fs_sb::incompat(bs, sbblock.data()) & fs_sb::kIncompatRecover)
    return Status::Busy("fs transaction: " + dev.name() +
                        " needs journal recovery; run e2fsck -fy (or clusterify journal replay --main) first");
  JournalOptions jo;
  jo.mode = CommitMode::kTwoFlush;  // e2fsck and the kernel must be able to replay it
  jo.group_commit = false;
  auto j = Journal::open(dev, journal_map, jo);
  if (!j.ok()) return j.status();
  Journal& journal = *j.value();
  const uint64_t need = journal.blocks_needed(txn);
  if (need > journal.free_blocks())
    return Status::NoSpace("fs transaction: " + std::to_string(txn.block_count()) + " blocks need " +
                           std::to_string(need) + " journal blocks, the journal has " +
                           std::to_string(journal.free_blocks()) +
                           "; enlarge the journal (tune2fs -J size=) or split the change");
  for (const auto& b : txn.blocks())
    if (b.data.size() != bs)
      return Status::InvalidArgument("fs transaction: block " + std::to_string(b.fs_block) + " image has " +
                                     std::to_string(b.data.size()) + " bytes, not " + std::to_string(bs));

  // 2. needs_recovery on the current on-disk superblock, in the same flush
  //    epoch as the transaction body (commit() flushes before the commit
  //    block): the bit is durable before any commit record can be.
  fs_sb::set_recover(bs, sbblock.data(), true);
  CEXT3_RETURN_IF_ERROR(io::write_block(dev, bs, fs_sb::block_of_superblock(bs), sbblock.data()));

  // 3. Body, flush, commit block, flush.
  auto tid = journal.commit(txn);
  if (!tid.ok()) return tid.status();

  // 4 + 5. Checkpoint: the logged primary superblock goes in place with
  //    needs_recovery still set (a crash in this epoch must still replay),
  //    flush; then the journal superblock is marked clean, flush.
  Journal::State& st = *journal.s_;
  {
    std::lock_guard<std::mutex> g(st.io_mu);
    auto it = st.dirty.find(fs_sb::block_of_superblock(bs));
    if (it != st.dirty.end()) {
      auto forced = std::make_shared<std::vector<uint8_t>>(*it->second);
      fs_sb::set_recover(bs, forced->data(), true);
      it->second = forced;
    }
    CEXT3_RETURN_IF_ERROR(st.checkpoint_locked());
  }

  // 6. Clear needs_recovery on what is on disk now (the logged image, if the
  //    superblock was logged): never on a stale in-memory copy.
  CEXT3_RETURN_IF_ERROR(fs_sb::read(dev, bs, sbblock.data()));
  fs_sb::set_recover(bs, sbblock.data(), false);
  CEXT3_RETURN_IF_ERROR(io::write_blocks_durable(dev, bs, {{fs_sb::block_of_superblock(bs), sbblock.data()}}));
  FsTransactionResult r;
  r.tid = tid.value();
  r.blocks_logged = txn.block_count();
  return r;
}

Result<RecoveryReport> recover_fs_journal(BlockDevice& dev, const JournalMap& map, const RecoverOptions& opts) {
  const uint32_t bs = map.block_size();
  AlignedBuffer sbblock(bs);
  CEXT3_RETURN_IF_ERROR(fs_sb::read(dev, bs, sbblock.data()));
  const bool flagged = (fs_sb::incompat(bs, sbblock.data()) & fs_sb::kIncompatRecover) != 0;
  auto rep = recover_journal(dev, map, opts);
  if (!rep.ok() || opts.dry_run) return rep;
  if (rep->was_clean && flagged) {
    // e2fsck runs recovery whenever needs_recovery is set; on an empty log
    // that still moves s_sequence on by one. Do the same so both leave the
    // same bytes.
    auto sb = load_superblock(dev, map, SuperblockUse::kReplay);
    if (!sb.ok()) return sb.status();
    sb->info.sequence += 1;
    rep->new_sequence = sb->info.sequence;
    pack_superblock(sb.value());
    CEXT3_RETURN_IF_ERROR(io::write_blocks_durable(dev, bs, {{map.fs_block(0), sb->block.data()}}));
  }
  // The replay may have rewritten the superblock: re-read before clearing.
  CEXT3_RETURN_IF_ERROR(fs_sb::read(dev, bs, sbblock.data()));
  if (fs_sb::incompat(bs, sbblock.data()) & fs_sb::kIncompatRecover) {
    fs_sb::set_recover(bs, sbblock.data(), false);
    CEXT3_RETURN_IF_ERROR(io::write_blocks_durable(dev, bs, {{fs_sb::block_of_superblock(bs), sbblock.data()}}));
  }
  return rep;
}

}  // namespace cext3::journal
