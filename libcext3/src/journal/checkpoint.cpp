// The checkpoint phase: write committed blocks in place, then advance the
// tail (cext3 always checkpoints the whole log, so the tail jumps to the
// head and the journal is marked empty), plus the forced checkpoint of
// chosen blocks that the lock-release path needs.
#include <algorithm>
#include <cstring>
#include <string>

#include "journal/journal_io.h"
#include "journal/journal_state.h"

namespace cext3::journal {

namespace {
// The least staging memory a checkpoint copies through at a time.
constexpr uint64_t kCheckpointChunkBytes = 8u << 20;
}  // namespace

Status Journal::State::checkpoint_locked() {
  if (!aborted.ok()) return aborted;
  if (!dirty.empty()) {
    // In-place images must be durable before the log that could restore
    // them is forgotten.
    CEXT3_RETURN_IF_ERROR(write_in_place_locked(dirty));
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

Status Journal::State::write_in_place_locked(
    const std::map<uint64_t, std::shared_ptr<const std::vector<uint8_t>>>& images) {
  const uint32_t bs = map.block_size();
  // The images are separate allocations; runs of adjacent blocks are copied
  // into the staging buffer (reused, unlike a fresh bounce buffer per
  // request, which costs a page fault per page) a stretch at a time, so
  // that each run goes out as large requests.
  const uint64_t total = images.size() * uint64_t{bs};
  const uint64_t chunk = std::min<uint64_t>(total, std::max<uint64_t>(staging.size(), kCheckpointChunkBytes));
  uint8_t* const buf = staging.reserve(chunk);
  if (!buf) {
    // No memory for a copy: write from the images (journal_io bounces).
    std::vector<io::BlockRef> refs;
    for (auto& [b, data] : images) refs.push_back({b, const_cast<uint8_t*>(data->data())});
    return write_durable_locked(std::move(refs));
  }
  const uint64_t per_chunk = chunk / bs;
  if (images.size() <= per_chunk) {
    std::vector<io::BlockRef> refs;
    uint64_t i = 0;
    for (auto& [b, data] : images) {
      std::memcpy(buf + i * bs, data->data(), bs);
      refs.push_back({b, buf + i++ * bs});
    }
    return write_durable_locked(std::move(refs));
  }
  auto it = images.begin();
  while (it != images.end()) {
    std::vector<io::BlockRef> refs;
    for (uint64_t i = 0; i < per_chunk && it != images.end(); ++i, ++it) {
      std::memcpy(buf + i * bs, it->second->data(), bs);
      refs.push_back({it->first, buf + i * bs});
    }
    Status s = io::write_blocks(dev, bs, std::move(refs));
    if (!s.ok()) {
      if (aborted.ok()) aborted = s.Annotate("journal aborted after a failed checkpoint write");
      return s;
    }
  }
  return flush_locked();
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
