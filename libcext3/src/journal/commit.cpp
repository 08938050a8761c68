// The commit phase: open a journal for writing, merge concurrent
// transactions (group commit), and write descriptor, data, revoke and commit
// blocks with the flush ordering of the chosen CommitMode.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>

#include "journal/journal_io.h"
#include "journal/journal_state.h"
#include "journal/revoke_records.h"
#include "journal/segment_writer.h"

namespace cext3::journal {

using namespace format;

namespace {

// Transactions whose log image is at least this large are written while
// they are built (SegmentWriter); smaller ones in one batch after it. Below
// it, starting and waking the writer threads cost more than the overlap
// gains on a loaded machine (measured at load 5, alternating with the
// unsegmented path: 4 MiB two-flush commits ran at 0.67-0.68 of its rate;
// 32 MiB commits at 0.85-1.33 of it, median 1.05 over five pairs).
constexpr uint64_t kSegmentedCommitBytes = 16u << 20;
// Segment sizes handed to the writer: the first small, so the device
// starts early; then as large as what was already handed over, up to the
// maximum, so that each batch keeps several 1 MiB requests in flight.
constexpr uint64_t kMinSegmentBytes = 1u << 20;
constexpr uint64_t kMaxSegmentBytes = 8u << 20;
// Writer threads: with two, the next batch is in flight while one drains.
constexpr unsigned kSegmentWriters = 2;

// Nanoseconds since the previous lap (or construction): per-stage commit
// timings for JournalStats.
class Lap {
 public:
  uint64_t next() {
    const auto now = std::chrono::steady_clock::now();
    const auto d = std::chrono::duration_cast<std::chrono::nanoseconds>(now - t_).count();
    t_ = now;
    return static_cast<uint64_t>(d);
  }

 private:
  std::chrono::steady_clock::time_point t_ = std::chrono::steady_clock::now();
};

}  // namespace

void MergedTransaction::merge(Transaction&& t) {
  ++handles;
  for (uint64_t b : t.revokes()) {
    blocks.erase(b);
    revokes.insert(b);
  }
  for (auto& b : t.take_blocks()) {
    revokes.erase(b.fs_block);
    blocks[b.fs_block] = std::make_shared<const std::vector<uint8_t>>(std::move(b.data));
  }
  for (auto& b : t.take_ordered_data())
    ordered[b.fs_block] = std::make_shared<const std::vector<uint8_t>>(std::move(b.data));
}

Journal::Journal(std::unique_ptr<State> s) : s_(std::move(s)) {}
Journal::~Journal() = default;

Result<std::unique_ptr<Journal>> Journal::open(BlockDevice& dev, JournalMap map, const JournalOptions& opts) {
  if (map.block_size() % dev.sector_size() != 0)
    return Status::InvalidArgument("journal: block size " + std::to_string(map.block_size()) +
                                   " is smaller than or not a multiple of the sector size of " + dev.name());
  if (dev.read_only())
    return Status::InvalidArgument("journal: " + dev.name() + " is read-only; open it read-write to commit");
  auto sb = load_superblock(dev, map, SuperblockUse::kWrite);
  if (!sb.ok()) return sb.status();
  if (sb->info.blocktype != kSuperblockV2)
    return Status::NotSupported("journal: v1 journal superblock at block " + std::to_string(map.fs_block(0)) +
                                "; cext3 writes only v2 journals (tune2fs -O ^has_journal,has_journal recreates it)");
  if (!sb->info.clean())
    return Status::Busy("journal at block " + std::to_string(map.fs_block(0)) + " of " + dev.name() +
                        " needs recovery (s_start " + std::to_string(sb->info.start) +
                        "); replay it first (clusterify journal replay)");
  auto st = std::make_unique<State>(dev, std::move(map));
  st->opts = opts;
  const bool csum3 = sb->geometry.csum_v3();
  switch (opts.mode) {
    case CommitMode::kAuto: st->mode = csum3 ? CommitMode::kOneFlush : CommitMode::kTwoFlush; break;
    case CommitMode::kTwoFlush: st->mode = CommitMode::kTwoFlush; break;
    case CommitMode::kOneFlush:
      if (!csum3)
        return Status::InvalidArgument("journal: one-flush commits need a csum_v3 journal (a commit block "
                                       "durable without its body must be detectable); use kTwoFlush");
      st->mode = CommitMode::kOneFlush;
      break;
  }
  st->first = sb->info.first;
  st->maxlen = sb->info.maxlen;
  st->head = st->first;
  st->used = 0;
  st->next_tid = sb->info.sequence;
  st->sb = std::move(sb.value());
  return std::unique_ptr<Journal>(new Journal(std::move(st)));
}

JournalInfo Journal::info() const {
  std::lock_guard<std::mutex> g(s_->io_mu);
  return s_->sb.info;
}

JournalStats Journal::stats() const {
  std::lock_guard<std::mutex> g(s_->io_mu);
  return s_->stats;
}

const JournalMap& Journal::map() const { return s_->map; }
CommitMode Journal::mode() const { return s_->mode; }

uint64_t Journal::free_blocks() const {
  std::lock_guard<std::mutex> g(s_->io_mu);
  return s_->log_size() - s_->used;
}

uint64_t Journal::blocks_needed(const Transaction& txn) const {
  if (txn.blocks().empty() && txn.revokes().empty()) return 0;
  return s_->sb.geometry.blocks_needed(txn.blocks().size(), txn.revokes().size());
}

Status Journal::State::flush_locked() {
  Status st = dev.flush();
  ++stats.flushes;
  if (!st.ok() && aborted.ok()) aborted = st.Annotate("journal aborted after a failed flush");
  return st;
}

Status Journal::State::write_durable_locked(std::vector<io::BlockRef> refs) {
  bool flushed = false;
  Status st = io::write_blocks_durable(dev, map.block_size(), std::move(refs), &flushed);
  if (flushed) {
    ++stats.flushes;
  } else {
    ++stats.durable_writes;
  }
  if (!st.ok() && aborted.ok()) aborted = st.Annotate("journal aborted after a failed durable write");
  return st;
}

io::BlockRef Journal::State::superblock_ref() {
  pack_superblock(sb);
  return {map.fs_block(0), sb.block.data()};
}

Status Journal::set_errno(int32_t err) {
  std::lock_guard<std::mutex> g(s_->io_mu);
  if (!s_->aborted.ok()) return s_->aborted;
  s_->sb.info.errno_value = err;
  return s_->write_durable_locked({s_->superblock_ref()});
}

Result<uint32_t> Journal::State::write_transaction_locked(MergedTransaction& m) {
  if (!aborted.ok()) return aborted;
  const uint32_t bs = map.block_size();
  const Geometry& g = sb.geometry;
  for (const auto& [blk, data] : m.blocks)
    if (data->size() != bs)
      return Status::InvalidArgument("journal commit: block " + std::to_string(blk) + " image has " +
                                     std::to_string(data->size()) + " bytes, the journal block size is " +
                                     std::to_string(bs));
  for (const auto& [blk, data] : m.ordered)
    if (data->size() != bs)
      return Status::InvalidArgument("journal commit: ordered data block " + std::to_string(blk) +
                                     " has " + std::to_string(data->size()) + " bytes, not " +
                                     std::to_string(bs));
  auto fail = [&](const Status& s) -> Status {
    if (aborted.ok()) aborted = s.Annotate("journal aborted after a failed commit");
    return s;
  };

  // Ordered data only: no log records, just make it durable.
  if (!m.has_log_records()) {
    if (m.ordered.empty()) return next_tid - 1;
    std::vector<io::BlockRef> refs;
    for (auto& [blk, data] : m.ordered) refs.push_back({blk, const_cast<uint8_t*>(data->data())});
    CEXT3_RETURN_IF_ERROR(write_durable_locked(std::move(refs)));
    return next_tid - 1;
  }

  const uint64_t need = g.blocks_needed(m.blocks.size(), m.revokes.size());
  if (need > log_size())
    return Status::NoSpace("journal commit: the transaction needs " + std::to_string(need) +
                           " log blocks but the whole journal log has " + std::to_string(log_size()) +
                           "; split it into smaller transactions or use a larger journal");
  Lap lap;
  if (need > log_size() - used) {
    CEXT3_RETURN_IF_ERROR(checkpoint_locked());
    stats.forced_checkpoint_ns += lap.next();
  }

  const uint32_t tid = next_tid++;  // consumed even if the writes below fail

  // The superblock must point at this transaction if the log was empty, and
  // must carry the revoke feature before any revoke record can be replayed.
  bool sb_dirty = false;
  if (sb.info.start == 0) {
    sb.info.start = static_cast<uint32_t>(head);
    sb.info.sequence = tid;
    sb_dirty = true;
  }
  if (!m.revokes.empty() && !(sb.info.feature_incompat & kIncompatRevoke)) {
    sb.info.feature_incompat |= kIncompatRevoke;
    sb.geometry.incompat |= kIncompatRevoke;
    sb_dirty = true;
  }
  std::vector<io::BlockRef> ordered;
  for (auto& [b, data] : m.ordered) ordered.push_back({b, const_cast<uint8_t*>(data->data())});

  // The log image is staged in the journal's StagingBuffer (reused for the
  // journal's life: fresh memory costs a page fault per page).
  uint8_t* const image = staging.reserve(need * bs);
  if (!image)
    return fail(Status::IoError("journal commit: cannot allocate " + std::to_string(need * bs >> 20) +
                                " MiB to stage the transaction; free memory or commit smaller transactions"));
  uint64_t k = 0;  // next block of `image`
  auto blk = [&](uint64_t i) { return image + i * bs; };
  // The log blocks go in log order; contiguous stretches merge into large
  // requests (journal_io), so a stretch that does not wrap is one request
  // per MiB.
  auto log_refs = [&](uint64_t from, uint64_t to) {
    std::vector<io::BlockRef> refs;
    refs.reserve(to - from + 1);
    for (uint64_t i = from; i < to; ++i) refs.push_back({map.fs_block(log_pos(i)), blk(i)});
    return refs;
  };

  // A large transaction is written while it is being built: each finished
  // stretch of the image goes to a SegmentWriter, which writes it while the
  // next one is built. The superblock, when it changes, joins the body's
  // epoch: it points at the body, and like the body it must be durable
  // before the commit block (two flushes) or by the time commit() returns
  // (one flush, where a superblock pointing at a torn transaction is
  // harmless: the scan drops it).
  std::optional<SegmentWriter> writer;
  uint64_t pushed = 0;  // log blocks [0, pushed) handed to the writer
  if (need * bs >= kSegmentedCommitBytes) {
    if (mode == CommitMode::kOneFlush && !ordered.empty()) {
      // Ordered data is not covered by the log checksums: its own epoch.
      Status s = io::write_blocks(dev, bs, std::move(ordered));
      if (!s.ok()) return fail(s);
      stats.body_write_ns += lap.next();
      CEXT3_RETURN_IF_ERROR(flush_locked());
      stats.flush_ns += lap.next();
      ordered.clear();
    }
    writer.emplace(dev, bs, kSegmentWriters);
    std::vector<io::BlockRef> first = std::move(ordered);  // two-flush: ordered data joins epoch 1
    ordered.clear();
    if (sb_dirty) first.push_back(superblock_ref());
    writer->push(std::move(first));
  }
  // Hand [pushed, upto) to the writer once it is worth a batch: the first
  // segments are small so the device starts early, later ones grow (up to
  // kMaxSegmentBytes) so that each batch keeps several requests in flight.
  auto push_staged = [&](uint64_t upto, bool last) {
    if (!writer || upto <= pushed) return;
    const uint64_t target =
        std::min<uint64_t>(kMaxSegmentBytes / bs, std::max<uint64_t>(kMinSegmentBytes / bs, pushed));
    if (!last && upto - pushed < target) return;
    writer->push(log_refs(pushed, upto));
    pushed = upto;
  };

  // Revoke blocks first, as jbd2 does.
  if (!m.revokes.empty()) {
    std::vector<uint64_t> rv(m.revokes.begin(), m.revokes.end());
    k += encode_revoke_blocks(g, tid, rv, blk(k));
  }
  // Descriptor blocks, each followed by the data blocks it tags.
  const size_t per_desc = g.tags_per_descriptor();
  const size_t tag_bytes = g.tag_bytes();
  auto it = m.blocks.begin();
  while (it != m.blocks.end()) {
    if (writer && writer->failed()) break;  // the commit fails; stop building
    uint8_t* desc = blk(k++);
    std::memset(desc, 0, bs);
    put_header(desc, kDescriptorBlock, tid);
    uint8_t* tagp = desc + kHeaderSize;
    for (size_t n = 0; n < per_desc && it != m.blocks.end(); ++n, ++it) {
      Tag t;
      t.fs_block = it->first;
      bool escaped = false;  // began with the magic: would look like a journal block
      t.checksum = copy_data_block(g, tid, blk(k++), it->second->data(), &escaped);
      if (escaped) t.flags |= kFlagEscape;
      if (n > 0) t.flags |= kFlagSameUuid;
      auto next = std::next(it);
      if (n + 1 == per_desc || next == m.blocks.end()) t.flags |= kFlagLastTag;
      encode_tag(g, tagp, t);
      tagp += tag_bytes;
      if (n == 0) {
        std::memcpy(tagp, sb.info.uuid.data(), kUuidSize);
        tagp += kUuidSize;
      }
    }
    if (g.csum_v2v3()) g.set_tail_checksum(desc);
    push_staged(k, false);  // a descriptor and all its blocks are final
  }
  // Commit block.
  uint8_t* commit = blk(k++);
  std::memset(commit, 0, bs);
  put_header(commit, kCommitBlock, tid);
  {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto sec = std::chrono::duration_cast<std::chrono::seconds>(now);
    auto nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(now - sec);
    put64(commit + kCommitSec, static_cast<uint64_t>(sec.count()));
    put32(commit + kCommitNsec, static_cast<uint32_t>(nsec.count()));
  }
  if (g.csum_v2v3()) g.set_commit_checksum(commit);
  if (writer && writer->failed()) return fail(writer->finish());
  if (k != need) return fail(Status::Corruption("journal commit: internal block count mismatch"));
  io::BlockRef commit_ref{map.fs_block(log_pos(need - 1)), commit};

  if (writer) {
    // Two flushes: the commit block stays out of this epoch. One flush: it
    // joins it (the checksums catch a commit block durable without its
    // body, and this commit() has not returned then).
    push_staged(mode == CommitMode::kTwoFlush ? need - 1 : need, true);
    stats.stage_ns += lap.next();
    Status s = writer->finish();
    if (!s.ok()) return fail(s);
    stats.body_write_ns += lap.next();
    CEXT3_RETURN_IF_ERROR(flush_locked());
    stats.flush_ns += lap.next();
    if (mode == CommitMode::kTwoFlush) {
      // Issued only after the flush of the body returned (see below).
      CEXT3_RETURN_IF_ERROR(write_durable_locked({commit_ref}));
      stats.commit_write_ns += lap.next();
    }
  } else {
    std::vector<io::BlockRef> body = log_refs(0, need - 1);
    if (sb_dirty) body.push_back(superblock_ref());
    stats.stage_ns += lap.next();
    if (mode == CommitMode::kTwoFlush) {
      // Epoch 1: ordered data, log body, superblock; flush. Epoch 2: the
      // commit block alone, written durable (a FUA/RWF_DSYNC write where
      // the device has one, else write + flush). It is issued only after
      // the flush of epoch 1 returned, so it can never be durable before
      // its body.
      body.insert(body.end(), ordered.begin(), ordered.end());
      Status s = io::write_blocks(dev, bs, std::move(body));
      if (!s.ok()) return fail(s);
      stats.body_write_ns += lap.next();
      CEXT3_RETURN_IF_ERROR(flush_locked());
      stats.flush_ns += lap.next();
      CEXT3_RETURN_IF_ERROR(write_durable_locked({commit_ref}));
      stats.commit_write_ns += lap.next();
    } else {
      // Ordered data is not covered by the log checksums: it gets its own
      // epoch. Then body, commit and superblock in one epoch, made durable
      // at once: a single durable request when the log does not wrap and
      // the transaction fits one request (every single-block commit), else
      // writes + one flush. A crash can leave the commit block durable
      // without its body; the checksums catch that at replay, and that
      // commit() had not returned.
      if (!ordered.empty()) {
        Status s = io::write_blocks(dev, bs, std::move(ordered));
        if (!s.ok()) return fail(s);
        stats.body_write_ns += lap.next();
        CEXT3_RETURN_IF_ERROR(flush_locked());
        stats.flush_ns += lap.next();
      }
      body.push_back(commit_ref);
      if (io::one_request(bs, body) && dev.native_durable_writes()) {
        CEXT3_RETURN_IF_ERROR(write_durable_locked(std::move(body)));
        stats.commit_write_ns += lap.next();
      } else {
        Status s = io::write_blocks(dev, bs, std::move(body));
        if (!s.ok()) return fail(s);
        stats.body_write_ns += lap.next();
        CEXT3_RETURN_IF_ERROR(flush_locked());
        stats.flush_ns += lap.next();
      }
    }
  }

  head = log_pos(need);
  used += need;
  for (uint64_t b : m.revokes) {
    // Older images of b in the log can no longer be replayed.
    dirty.erase(b);
    logged.erase(b);
  }
  for (auto& [b, data] : m.blocks) {
    dirty[b] = data;
    logged.insert(b);
  }
  ++stats.commits;
  stats.handles += m.handles;
  stats.log_blocks_written += need;
  stats.finish_ns += lap.next();
  return tid;
}

Result<uint32_t> Journal::commit(Transaction txn) {
  State& st = *s_;
  State::Waiter me;
  me.txn = std::move(txn);
  std::unique_lock<std::mutex> lk(st.mu);
  st.queue.push_back(&me);
  while (!me.done) {
    if (st.leader_active) {
      st.cv.wait(lk);
      continue;
    }
    // Become the leader: take the waiting transactions (all of them with
    // group commit, as many as fit in the log), write them as one.
    st.leader_active = true;
    std::vector<State::Waiter*> batch;
    MergedTransaction merged;
    Lap merge_lap;
    const Geometry& g = st.sb.geometry;
    size_t nblocks = 0, nrevokes = 0;
    while (!st.queue.empty()) {
      State::Waiter* w = st.queue.front();
      if (!batch.empty()) {
        if (!st.opts.group_commit) break;
        // Stop before a merge would outgrow the log.
        if (g.blocks_needed(nblocks + w->txn.blocks().size(), nrevokes + w->txn.revokes().size()) >
            st.log_size())
          break;
      }
      st.queue.pop_front();
      nblocks += w->txn.blocks().size();
      nrevokes += w->txn.revokes().size();
      merged.merge(std::move(w->txn));
      batch.push_back(w);
    }
    const uint64_t merge_ns = merge_lap.next();
    lk.unlock();
    Result<uint32_t> r(0u);
    {
      std::lock_guard<std::mutex> io(st.io_mu);
      st.stats.merge_ns += merge_ns;
      r = st.write_transaction_locked(merged);
    }
    lk.lock();
    for (State::Waiter* w : batch) {
      w->done = true;
      if (r.ok()) {
        w->tid = r.value();
      } else {
        w->status = r.status();
      }
    }
    st.leader_active = false;
    st.cv.notify_all();
  }
  if (!me.status.ok()) return me.status;
  return me.tid;
}

}  // namespace cext3::journal
