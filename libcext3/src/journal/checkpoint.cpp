// The checkpoint phase: write committed blocks in place, then advance the
// tail (cext3 always checkpoints the whole log, so the tail jumps to the
// head and the journal is marked empty), plus the forced checkpoint of
// chosen blocks that the lock-release path needs.
#include <string>

#include "journal/journal_io.h"
#include "journal/journal_state.h"

namespace cext3::journal {

Status Journal::State::checkpoint_locked() {
  if (!aborted.ok()) return aborted;
  if (!dirty.empty()) {
    std::vector<io::BlockRef> refs;
    refs.reserve(dirty.size());
    for (auto& [b, data] : dirty) refs.push_back({b, const_cast<uint8_t*>(data->data())});
    // In-place images must be durable before the log that could restore
    // them is forgotten.
    CEXT3_RETURN_IF_ERROR(write_durable_locked(std::move(refs)));
  }
  if (sb.info.start != 0) {
    // Empty log: s_start 0, s_sequence = the next tid, never used in the log.
    sb.info.start = 0;
    sb.info.sequence = next_tid;
    CEXT3_RETURN_IF_ERROR(write_durable_locked({superblock_ref()}));
  }
  // The head stays where it is (as in jbd2): the next transaction starts
  // there and the log wraps past s_maxlen back to s_first.
  dirty.clear();
  logged.clear();
  used = 0;
  ++stats.checkpoints;
  return Status::OK();
}

Status Journal::checkpoint() {
  std::lock_guard<std::mutex> g(s_->io_mu);
  return s_->checkpoint_locked();
}

Status Journal::checkpoint_blocks(Transaction txn, std::span<const uint64_t> blocks) {
  if (!txn.empty()) {
    auto r = commit(std::move(txn));
    if (!r.ok()) return r.status();
  }
  State& st = *s_;
  std::lock_guard<std::mutex> g(st.io_mu);
  if (!st.aborted.ok()) return st.aborted;
  std::vector<io::BlockRef> refs;
  for (uint64_t b : blocks) {
    auto it = st.dirty.find(b);
    if (it != st.dirty.end()) refs.push_back({b, const_cast<uint8_t*>(it->second->data())});
  }
  if (!refs.empty()) {
    // Durable in place before the revoke (or the empty log) that follows.
    CEXT3_RETURN_IF_ERROR(st.write_durable_locked(std::move(refs)));
    for (uint64_t b : blocks) st.dirty.erase(b);
  }
  // Nothing else waits in the log: emptying it is cheaper than a revoke
  // and has the same effect (no old image can come back).
  if (st.dirty.empty()) return st.checkpoint_locked();
  MergedTransaction revokes;
  for (uint64_t b : blocks)
    if (st.logged.count(b)) revokes.revokes.insert(b);
  if (revokes.revokes.empty()) return Status::OK();
  auto r = st.write_transaction_locked(revokes);
  return r.ok() ? Status::OK() : r.status();
}

}  // namespace cext3::journal
