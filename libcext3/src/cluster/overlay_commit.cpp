#include "cluster/overlay_commit.h"

#include <cstring>

namespace cext3::cluster {

Result<OverlayCommitPlan> classify_overlay(OverlayDevice& ov, uint32_t bs,
                                           const std::function<bool(uint64_t)>& was_in_use) {
  OverlayCommitPlan plan;
  plan.block_size = bs;
  std::vector<uint8_t> now(bs), old(bs);
  for (uint64_t off : ov.dirty_units(bs)) {
    CEXT3_RETURN_IF_ERROR(ov.read(off, now.data(), bs));
    CEXT3_RETURN_IF_ERROR(ov.base().read(off, old.data(), bs));
    if (now == old) {
      ++plan.unchanged_blocks;
      continue;
    }
    const uint64_t blk = off / bs;
    if (was_in_use(blk)) {
      CEXT3_RETURN_IF_ERROR(plan.txn.add_block(blk, now));
    } else {
      plan.direct_blocks.push_back(blk);
      plan.direct_data.push_back(now);
    }
  }
  return plan;
}

Result<OverlayCommitResult> apply_overlay_commit(BlockDevice& dev, const journal::JournalMap& fs_journal,
                                                 OverlayCommitPlan plan, const ProgressFn& progress) {
  OverlayCommitResult r;
  const uint32_t bs = plan.block_size;
  const uint64_t n = plan.direct_blocks.size();
  // Phase 1: blocks nothing in the old filesystem references. Runs of
  // consecutive blocks go out as one request.
  std::vector<uint8_t> run;
  for (uint64_t i = 0; i < n;) {
    uint64_t j = i + 1;
    while (j < n && plan.direct_blocks[j] == plan.direct_blocks[j - 1] + 1 && j - i < 256) ++j;
    run.resize((j - i) * bs);
    for (uint64_t k = i; k < j; ++k) std::memcpy(run.data() + (k - i) * bs, plan.direct_data[k].data(), bs);
    CEXT3_RETURN_IF_ERROR(dev.write(plan.direct_blocks[i] * bs, run.data(), run.size()));
    i = j;
    if (progress) progress("writing new blocks", i, n);
  }
  // They must be durable before the commit record that makes the new
  // metadata point at them. No flush of our own: the fs transaction writes
  // needs_recovery and the journal body next and flushes before the commit
  // block (docs/JOURNAL.md), and that flush covers these writes too. When
  // there is no transaction at all nothing references them; flush anyway.
  r.direct_blocks = n;
  r.journaled_blocks = plan.txn.block_count();
  if (progress) progress("committing metadata through the ext3 journal", 0, 1);
  if (!plan.txn.empty()) {
    auto t = journal::commit_and_checkpoint_fs_transaction(dev, fs_journal, plan.txn);
    if (!t.ok()) return t.status().Annotate("committing the metadata transaction");
    r.tid = t->tid;
  } else {
    CEXT3_RETURN_IF_ERROR(dev.flush());
  }
  if (progress) progress("committing metadata through the ext3 journal", 1, 1);
  return r;
}

}  // namespace cext3::cluster
