// The running transaction, its commit, the commit thread and the
// lock-leaving path (jbd2's model: ops dirty cached blocks under mu_ and
// return; a commit snapshots the dirty images into a journal::Transaction
// under mu_, then writes it outside mu_).
//
// Invariants relied on:
//  * commits are serialized by commit_mu_, so transaction sequence order is
//    journal order: a later image of a block never goes to the log before an
//    earlier one;
//  * the snapshot is taken under mu_, so it contains whole ops only;
//  * the data blocks the transaction's ops wrote (data_writeback.cpp) go to
//    the journal commit as ordered data: in place and durable before its
//    commit block;
//  * before an EX lock leaves, everything this node logged for it is
//    committed, written in place and revoked (Journal::checkpoint_blocks).
#include <chrono>
#include <cstdio>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

bool EngineFs::running_too_big() const {
  return running_dirty_.size() + running_revokes_.size() / 64 >= commit_threshold_ || running_data_too_big();
}

Status EngineFs::commit_locked() {
  journal::Transaction txn;
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> d(dur_mu_);
    // After a failed commit nothing more is written: the node must be
    // recovered (its buffered data stays readable here meanwhile).
    if (!journal_error_.ok()) return journal_error_;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    if (running_dirty_.empty() && running_revokes_.empty() && running_data_.empty()) return Status::OK();
    // Revokes first: a block freed and then logged again in the same
    // transaction keeps its new image (Transaction::add_block cancels the
    // revoke); a block freed after being logged was removed from
    // running_dirty_ when it was freed.
    for (uint64_t b : running_revokes_) txn.revoke(b);
    for (uint64_t b : running_dirty_) {
      CachedBlock& cb = cache_.at(b);
      Status s = txn.add_block(b, cb.data);
      if (!s.ok()) return s;
      cb.dirty = false;
    }
    for (const auto& [b, image] : running_data_) {
      Status s = txn.add_ordered_data(b, image);
      if (!s.ok()) return s;
    }
    running_dirty_.clear();
    running_revokes_.clear();
    // committing_data_ is empty here: the previous commit cleared it, or
    // failed and set journal_error_. Reads use it until the commit is done.
    committing_data_.swap(running_data_);
    seq = running_seq_++;
  }
  Status s;
  if (!txn.empty()) {
    auto r = journal_->commit(std::move(txn));
    if (!r.ok()) s = r.status().Annotate("committing to the slot journal");
  }
  if (!s.ok()) {
    std::lock_guard<std::mutex> d(dur_mu_);
    if (journal_error_.ok()) journal_error_ = s;
    dur_cv_.notify_all();
    return s;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    committing_data_.clear();
    for (auto it = freed_pending_.begin(); it != freed_pending_.end();)
      it = it->second <= seq ? freed_pending_.erase(it) : std::next(it);
  }
  {
    std::lock_guard<std::mutex> d(dur_mu_);
    durable_seq_ = seq;
    dur_cv_.notify_all();
  }
  // A log more than half full of images that are all ours to write: write
  // them in place now (cheaper than the forced checkpoint inside a commit).
  if (journal_->free_blocks() < journal_->map().length() / 2) {
    CEXT3_RETURN_IF_ERROR(journal_->checkpoint());
    std::lock_guard<std::mutex> g(mu_);
    journaled_by_res_.clear();
    journaled_blocks_.clear();
    for (uint64_t b : running_dirty_) {
      const CachedBlock& cb = cache_.at(b);
      journaled_by_res_[cb.res].insert(b);
      journaled_blocks_.insert(b);
    }
    maybe_evict();
  }
  return Status::OK();
}

Status EngineFs::commit_and_wait() {
  if (!journal_) return Status::OK();  // read-only mount: nothing to commit
  if (opts_.commit_delay.count() > 0) std::this_thread::sleep_for(opts_.commit_delay);
  uint64_t target;
  {
    std::lock_guard<std::mutex> g(mu_);
    target = running_seq_;
  }
  std::lock_guard<std::mutex> cg(commit_mu_);
  {
    std::lock_guard<std::mutex> d(dur_mu_);
    if (!journal_error_.ok()) return journal_error_;
    // Another caller committed our transaction while we queued (group commit).
    if (durable_seq_ >= target) return Status::OK();
  }
  return commit_locked();
}

void EngineFs::commit_thread_main() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_commit_thread_) {
    commit_cv_.wait_for(l, opts_.commit_interval);
    if (stop_commit_thread_) break;
    const bool work = !running_dirty_.empty() || !running_revokes_.empty() || !running_data_.empty();
    if (!work) continue;
    l.unlock();
    (void)commit_and_wait();  // a failure is kept in journal_error_ and refuses later writes
    l.lock();
  }
}

Status EngineFs::fsync(uint64_t ino) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "fsync: inode " + std::to_string(ino) + " out of range");
  // The running transaction holds every op not yet durable, this inode's
  // among them (one transaction at a time: jbd2's model).
  return commit_and_wait();
}

Status EngineFs::sync() { return commit_and_wait(); }

void EngineFs::on_lock_leaving(const std::string& resource, LockMode from, LockMode to) {
  ResKey res;
  if (!parse_resource_name(resource, &res)) return;
  if (from == LockMode::kEX && journal_) {
    std::lock_guard<std::mutex> cg(commit_mu_);
    Status s = commit_locked();
    std::vector<uint64_t> blocks;
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = journaled_by_res_.find(res);
      if (it != journaled_by_res_.end()) {
        blocks.assign(it->second.begin(), it->second.end());
        journaled_by_res_.erase(it);
      }
    }
    if (s.ok() && !blocks.empty()) s = journal_->checkpoint_blocks({}, blocks);
    if (s.ok()) {
      std::lock_guard<std::mutex> g(mu_);
      for (uint64_t b : blocks) journaled_blocks_.erase(b);
    } else {
      // The lock leaves anyway (the service cannot wait forever); the
      // engine refuses further writes and the node must be recovered,
      // whose replay restores what was committed.
      std::lock_guard<std::mutex> d(dur_mu_);
      if (journal_error_.ok()) journal_error_ = s.Annotate("releasing " + resource);
      std::fprintf(stderr, "cext3 engine: %s\n", journal_error_.ToString().c_str());
    }
  }
  if (to == LockMode::kNL) {
    std::lock_guard<std::mutex> g(mu_);
    drop_resource_cache(res);
    res_version_.erase(res);
  }
}

}  // namespace cext3::engine
