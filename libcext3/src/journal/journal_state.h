// Journal::State: the in-memory state of an open journal, shared by the
// commit (commit.cpp) and checkpoint (checkpoint.cpp) phases.
//
// Invariants (all guarded by io_mu):
//  * the on-disk log holds the transactions committed since the last
//    checkpoint in the `used` log blocks before `head` (wrapping from maxlen
//    to first); the first of them is sb.info.start;
//    used == 0 iff the log is empty, and then sb.info.start == 0 on disk
//    once the last checkpoint's flush returned;
//  * `dirty` holds, for every block logged by a committed transaction and
//    not yet written in place, the newest committed image; a block revoked
//    by a later transaction is removed from it;
//  * `logged` holds every block that has an image somewhere in the current
//    log (a forced checkpoint must revoke those before another node may
//    own them);
//  * next_tid was never used by any block in the log: a commit that fails
//    half-way still consumes its tid, and the journal is then aborted.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "cext3/journal.h"
#include "journal/jbd2_format.h"
#include "journal/journal_io.h"
#include "journal/journal_superblock.h"
#include "journal/staging_buffer.h"

namespace cext3::journal {

// Several Transactions merged into one jbd2 transaction.
struct MergedTransaction {
  std::map<uint64_t, std::shared_ptr<const std::vector<uint8_t>>> blocks;
  std::set<uint64_t> revokes;
  std::map<uint64_t, std::shared_ptr<const std::vector<uint8_t>>> ordered;
  size_t handles = 0;

  // Apply `t` after everything merged so far (later images and revokes win).
  void merge(Transaction&& t);
  bool has_log_records() const { return !blocks.empty() || !revokes.empty(); }
};

struct Journal::State {
  State(BlockDevice& d, JournalMap m) : dev(d), map(std::move(m)) {}

  BlockDevice& dev;
  JournalMap map;
  JournalOptions opts;
  CommitMode mode = CommitMode::kTwoFlush;

  // ---- guarded by io_mu
  std::mutex io_mu;
  LoadedSuperblock sb;
  uint32_t first = 0, maxlen = 0;
  uint64_t head = 0;  // next log block to write
  uint64_t used = 0;  // log blocks in use
  uint32_t next_tid = 0;
  std::map<uint64_t, std::shared_ptr<const std::vector<uint8_t>>> dirty;
  std::set<uint64_t> logged;
  Status aborted;  // first I/O failure; every later commit returns it
  StagingBuffer staging;  // log image of the transaction being written
  JournalStats stats;

  uint64_t log_size() const { return maxlen - first; }
  uint64_t log_pos(uint64_t k) const { return first + (head - first + k) % log_size(); }

  // Write `m` as one jbd2 transaction (forcing a checkpoint first if it
  // does not fit). io_mu held.
  Result<uint32_t> write_transaction_locked(MergedTransaction& m);
  // Write every dirty block in place, flush, mark the log empty. io_mu held.
  Status checkpoint_locked();
  // Write `images` in place and make them durable (through the staging
  // buffer, a stretch at a time); a failure aborts the journal. io_mu held.
  Status write_in_place_locked(const std::map<uint64_t, std::shared_ptr<const std::vector<uint8_t>>>& images);
  Status flush_locked();
  // Write `refs` (every write of a flush epoch) and make them durable
  // (io::write_blocks_durable); a failure aborts the journal. io_mu held.
  Status write_durable_locked(std::vector<io::BlockRef> refs);
  // Pack sb.info into sb.block; the block-0 write for it. io_mu held.
  io::BlockRef superblock_ref();

  // ---- group commit queue, guarded by mu
  struct Waiter {
    Transaction txn;
    bool done = false;
    Status status;
    uint32_t tid = 0;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Waiter*> queue;
  bool leader_active = false;
};

}  // namespace cext3::journal
