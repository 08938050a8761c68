// The jbd2 journal: locate, format, write (group commit), checkpoint, replay.
//
// libcext3 reads and writes the jbd2 on-disk format that ext3/ext4, the Linux
// kernel and e2fsprogs 1.47 use (Linux include/linux/jbd2.h), in two places:
//
//  * the filesystem's own journal (inode 8): clusterify logs its in-place
//    metadata edits as one jbd2 transaction there, so that after a crash
//    e2fsck or the kernel replays it (commit_and_checkpoint_fs_transaction);
//  * per-slot journals: regular files of the filesystem, one per slot, that
//    jcoord nodes write (Journal::open + commit + checkpoint) and survivors
//    replay (recover_journal).
//
// Every byte goes through a cext3::BlockDevice. A journal is addressed through
// a JournalMap (journal block index -> filesystem block), so any journal whose
// block list is known works, contiguous or not.
//
// docs/JOURNAL.md explains the format choices, the flush ordering and the
// crash analysis.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/status.h"

// libext2fs handle, forward-declared so users of this header need not include
// <ext2fs/ext2fs.h> (the typedef is identical to the one there).
typedef struct struct_ext2_filsys* ext2_filsys;

namespace cext3::journal {

// ------------------------------------------------------------ on-disk flags
// jbd2 feature bits (Linux include/linux/jbd2.h).
inline constexpr uint32_t kCompatChecksum = 0x1;       // v1 commit checksum: refused
inline constexpr uint32_t kIncompatRevoke = 0x1;
inline constexpr uint32_t kIncompat64Bit = 0x2;
inline constexpr uint32_t kIncompatAsyncCommit = 0x4;  // refused
inline constexpr uint32_t kIncompatCsumV2 = 0x8;
inline constexpr uint32_t kIncompatCsumV3 = 0x10;
inline constexpr uint32_t kIncompatFastCommit = 0x20;  // refused

// ------------------------------------------------------------ location
// Where a journal lives: journal block i is filesystem block fs_block(i).
// Block 0 is the journal superblock. Immutable once built.
class JournalMap {
 public:
  JournalMap() = default;
  // From an explicit list (one entry per journal block, in journal order).
  // Every entry must be non-zero and inside the device (checked at open).
  static Result<JournalMap> from_blocks(uint32_t block_size, std::vector<uint64_t> fs_blocks);
  // A contiguous run: journal block i is first_fs_block + i.
  static Result<JournalMap> contiguous(uint32_t block_size, uint64_t first_fs_block, uint64_t nblocks);
  // The data blocks of inode `ino` of an open filesystem, in logical order
  // (ext2fs_bmap2 per logical block); a hole is Corruption.
  static Result<JournalMap> from_inode(ext2_filsys fs, uint32_t ino);
  // Convenience: open the filesystem image at `path` read-only with
  // libext2fs (unix_io_manager), map inode `ino` (0 = the superblock's
  // s_journal_inum), close it.
  static Result<JournalMap> from_image_inode(const std::string& path, uint32_t ino = 0);

  uint32_t block_size() const { return block_size_; }
  uint64_t length() const { return blocks_.size(); }
  uint64_t fs_block(uint64_t journal_block) const { return blocks_[journal_block]; }
  uint64_t byte_offset(uint64_t journal_block) const {
    return blocks_[journal_block] * static_cast<uint64_t>(block_size_);
  }
  // True when the journal is one contiguous run (lets writers merge I/O).
  bool is_contiguous() const;

 private:
  uint32_t block_size_ = 0;
  std::vector<uint64_t> blocks_;
};

// ------------------------------------------------------------ superblock
// The decoded jbd2 superblock (the fields cext3 uses or reports).
struct JournalInfo {
  uint32_t blocktype = 0;  // 3 = v1, 4 = v2
  uint32_t block_size = 0;
  uint32_t maxlen = 0;    // s_maxlen: blocks in the journal, superblock included
  uint32_t first = 0;     // s_first: first log block
  uint32_t sequence = 0;  // s_sequence: first transaction expected in the log
  uint32_t start = 0;     // s_start: first log block of the log; 0 = clean
  int32_t errno_value = 0;  // s_errno
  uint32_t feature_compat = 0;
  uint32_t feature_incompat = 0;
  uint32_t feature_ro_compat = 0;
  std::array<uint8_t, 16> uuid{};
  uint32_t nr_users = 0;
  uint8_t checksum_type = 0;
  uint32_t max_transaction = 0;

  bool clean() const { return start == 0; }
  // "revoke 64bit csum_v3" etc., for reports.
  std::string features_string() const;
};

// Read and validate the journal superblock (magic, type, block size).
Result<JournalInfo> read_journal_info(BlockDevice& dev, const JournalMap& map);

struct FormatOptions {
  uint32_t sequence = 1;          // s_sequence of the empty journal
  std::array<uint8_t, 16> uuid{};  // usually the filesystem's UUID
  // kIncompatRevoke is always set. Add kIncompatCsumV3 for checksummed
  // blocks (lets Journal commit with one flush instead of two) and
  // kIncompat64Bit for filesystems past 2^32 blocks.
  uint32_t feature_incompat = kIncompatRevoke;
  // Zero every log block first, so nothing left in the file from an earlier
  // life can ever look like a transaction. Recommended; costs one write of
  // the whole journal.
  bool zero_log = true;
};

// Write a fresh, clean v2 superblock covering the whole map (s_maxlen =
// map.length(), s_first = 1), then flush. For per-slot journals.
Status format_journal(BlockDevice& dev, const JournalMap& map, const FormatOptions& opts);

// ------------------------------------------------------------ transactions
// A set of changes that commit atomically. Plain value; build it, then hand
// it to Journal::commit. Not thread-safe; one per thread.
class Transaction {
 public:
  // Log a full metadata block (copied). Logging the same block again in the
  // same transaction replaces the earlier image; logging a block cancels an
  // earlier revoke of it in this transaction.
  Status add_block(uint64_t fs_block, std::span<const uint8_t> data);
  // Revoke: no transaction up to and including this one may replay
  // `fs_block` any more (use when a metadata block is freed, or after it was
  // written in place and handed to another node). Drops a logged image of
  // the same block from this transaction.
  void revoke(uint64_t fs_block);
  // Ordered data: written in place (not logged) and made durable before the
  // commit record, as ext3's data=ordered does.
  Status add_ordered_data(uint64_t fs_block, std::span<const uint8_t> data);

  bool empty() const { return blocks_.empty() && revokes_.empty() && ordered_.empty(); }
  size_t block_count() const { return blocks_.size(); }

  struct Block {
    uint64_t fs_block;
    std::vector<uint8_t> data;
  };
  const std::vector<Block>& blocks() const { return blocks_; }
  const std::vector<uint64_t>& revokes() const { return revokes_; }
  const std::vector<Block>& ordered_data() const { return ordered_; }
  // Move the images out (the journal takes them without copying); the
  // transaction is empty afterwards.
  std::vector<Block> take_blocks();
  std::vector<Block> take_ordered_data();

 private:
  std::vector<Block> blocks_;
  std::vector<uint64_t> revokes_;
  std::vector<Block> ordered_;
  std::unordered_map<uint64_t, size_t> block_index_;    // fs_block -> index in blocks_
  std::unordered_map<uint64_t, size_t> ordered_index_;  // fs_block -> index in ordered_
  std::unordered_set<uint64_t> revoked_;
};

// ------------------------------------------------------------ the writer
// What commit_and_checkpoint_fs_transaction (below) did.
struct FsTransactionResult {
  uint32_t tid = 0;
  uint64_t blocks_logged = 0;
};

enum class CommitMode {
  // Choose from the journal: kOneFlush if it has csum_v3, else kTwoFlush.
  kAuto,
  // body, flush, commit block, flush: a commit record is never durable
  // without its body. Works with every jbd2 reader (e2fsck, the kernel).
  kTwoFlush,
  // body + commit block, one flush. Needs csum_v3: a commit whose body did
  // not reach the disk is recognized by block checksums. recover_journal
  // then drops the whole transaction (e2fsck/the kernel would replay the
  // intact blocks only), so this mode is for per-slot journals that only
  // cext3 replays.
  kOneFlush,
};

struct JournalOptions {
  CommitMode mode = CommitMode::kAuto;
  // Group commit: concurrent commit() calls that arrive while a commit is
  // in flight are merged into the next jbd2 transaction (one flush for all).
  bool group_commit = true;
};

struct JournalStats {
  uint64_t commits = 0;       // jbd2 transactions written
  uint64_t handles = 0;       // Transaction objects committed (>= commits)
  uint64_t flushes = 0;       // device flushes issued by the journal
  uint64_t durable_writes = 0;  // epochs ended by one durable write instead of a flush
  uint64_t checkpoints = 0;
  uint64_t log_blocks_written = 0;
  // Where commit() spends its time, summed over commits (nanoseconds), for
  // benchmarks and tuning: merging queued transactions, building the log
  // image (copies, escapes, checksums, descriptors), writing the body
  // (ordered data, log blocks, superblock), the flushes inside commits,
  // writing the commit block, the bookkeeping after the writes, and
  // checkpoints that commits had to force because the log was full.
  uint64_t merge_ns = 0;
  uint64_t stage_ns = 0;
  uint64_t body_write_ns = 0;
  uint64_t flush_ns = 0;
  uint64_t commit_write_ns = 0;
  uint64_t finish_ns = 0;
  uint64_t forced_checkpoint_ns = 0;
};

// An open journal. Thread-safe: commit() may be called from many threads at
// once (group commit); checkpoint calls serialize with commits.
class Journal {
 public:
  // Open a clean journal for writing. A dirty one (s_start != 0) is refused
  // with Busy: replay it first (recover_journal). `dev` must outlive this.
  static Result<std::unique_ptr<Journal>> open(BlockDevice& dev, JournalMap map,
                                               const JournalOptions& opts = {});
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Commit atomically and durably: when it returns OK, the transaction
  // survives any crash (replay reproduces it) and its ordered data is on
  // disk. Returns the jbd2 transaction id (tid) it went into. A transaction
  // that does not fit in the free log space first forces a checkpoint; one
  // bigger than the whole log is NoSpace. Empty transactions are a no-op
  // returning the last tid.
  Result<uint32_t> commit(Transaction txn);

  // Write every committed block in place (latest image), flush, then mark
  // the journal empty (s_start = 0, s_sequence = next tid) and flush.
  Status checkpoint();

  // Forced checkpoint of chosen blocks (the lock-release path): commit
  // `txn` (may be empty), write the latest logged images of `blocks` in
  // place, flush, then commit a revoke of `blocks` so no replay can bring
  // the old images back once another node owns them.
  Status checkpoint_blocks(Transaction txn, std::span<const uint64_t> blocks);

  // Set s_errno in the journal superblock (durable on return).
  Status set_errno(int32_t err);

  JournalInfo info() const;
  JournalStats stats() const;
  const JournalMap& map() const;
  CommitMode mode() const;
  // Free log blocks right now (excluding the superblock).
  uint64_t free_blocks() const;

  // Number of log blocks `txn` will occupy (descriptors, data, revoke
  // blocks, commit block) in this journal.
  uint64_t blocks_needed(const Transaction& txn) const;

  struct State;  // defined in src/journal/journal_state.h

 private:
  friend Result<FsTransactionResult> commit_and_checkpoint_fs_transaction(BlockDevice&, const JournalMap&,
                                                                          const Transaction&);
  explicit Journal(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// ------------------------------------------------------------ recovery
struct RecoverOptions {
  // Only scan and report; write nothing.
  bool dry_run = false;
  // Drop a committed transaction any of whose blocks (or descriptor or
  // revoke blocks) fails its checksum, and everything after it. e2fsck and
  // the kernel instead skip just the bad block; cext3 never replays part
  // of a transaction. Only meaningful for csum_v2/v3 journals.
  bool strict_checksums = true;
};

struct RecoveryReport {
  bool was_clean = false;
  uint32_t first_tid = 0;       // s_sequence found
  uint32_t end_tid = 0;         // first tid not found committed
  uint32_t transactions = 0;    // committed transactions replayed
  uint64_t blocks_replayed = 0;
  uint64_t blocks_revoked = 0;  // tags skipped because revoked
  uint64_t revoke_records = 0;
  uint32_t new_sequence = 0;    // s_sequence written to the clean superblock
  std::string stop_reason;      // why the scan ended, for reports
};

// Replay a journal like e2fsck's recovery: scan (find the committed
// transactions from s_start/s_sequence, stopping at the first block that is
// not the next expected one: bad magic, wrong sequence, unknown type, bad
// checksum, torn transaction), revoke (collect revoke records), replay
// (write each non-revoked tagged block in place, newest wins), flush, then
// mark the journal clean with s_sequence = end_tid + 1 (what e2fsck writes),
// flush. A clean journal is left untouched.
Result<RecoveryReport> recover_journal(BlockDevice& dev, const JournalMap& map,
                                       const RecoverOptions& opts = {});

// Replay the filesystem's own journal and clear needs_recovery in the primary
// superblock (after the replay, re-reading it, since the replay may have
// rewritten it), then flush. `map` is inode 8's map.
Result<RecoveryReport> recover_fs_journal(BlockDevice& dev, const JournalMap& map,
                                          const RecoverOptions& opts = {});

// ------------------------------------------------------------ dump
// A logdump-style listing of the journal (superblock, then every descriptor,
// tag, revoke and commit block found from s_start, or from s_first with
// `all`), one line each. For `clusterify journal dump`.
Result<std::string> dump_journal(BlockDevice& dev, const JournalMap& map, bool all = false);

// ------------------------------------------------------------ fs transaction
// clusterify's offline edit, atomic through the filesystem's own journal.
//
// `journal_map` is inode 8's map (JournalMap::from_inode / from_image_inode).
// Steps, each ending in a flush:
//  1. check: the journal is clean, the filesystem has has_journal and not
//     needs_recovery, the transaction fits;
//  2. set needs_recovery in the on-disk primary superblock (only that bit,
//     on the current on-disk bytes), write the transaction body and the
//     journal superblock (s_start, s_sequence); flush;
//  3. write the commit block; flush  -> from here a crash replays it;
//  4. write every logged block in place (the logged primary superblock with
//     needs_recovery forced on, so a crash here still replays); flush;
//  5. mark the journal clean (s_start = 0, s_sequence = tid + 1); flush;
//  6. re-read the primary superblock (now the logged image), clear
//     needs_recovery; flush.
// At every crash point e2fsck and the kernel see either no committed
// transaction (old filesystem) or a complete committed one (new filesystem).
// See docs/JOURNAL.md for the full analysis.
Result<FsTransactionResult> commit_and_checkpoint_fs_transaction(BlockDevice& dev,
                                                                 const JournalMap& journal_map,
                                                                 const Transaction& txn);

}  // namespace cext3::journal
