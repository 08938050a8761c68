// The recovery phase, as e2fsck's and the kernel's recovery do it: a scan
// pass finds the committed transactions, a revoke pass collects revoke
// records, a replay pass writes every non-revoked logged block in place,
// then the journal is marked clean with the sequence moved on.
#include <cstring>
#include <string>
#include <unordered_map>

#include "journal/journal_io.h"
#include "journal/journal_superblock.h"
#include "journal/revoke_records.h"

namespace cext3::journal {

using namespace format;

namespace {

struct LoggedBlock {
  Tag tag;
  uint64_t log_pos;  // journal block holding the (escaped) image
  uint32_t tid;
};

struct ScannedTransaction {
  uint32_t tid = 0;
  std::vector<LoggedBlock> blocks;
  std::vector<uint64_t> revokes;
};

struct ScanResult {
  std::vector<ScannedTransaction> committed;
  uint32_t end_tid = 0;
  std::string stop_reason;
};

// The scan pass. Stops at the first block that is not what a committed log
// would hold next; the transaction in progress there is dropped whole.
Result<ScanResult> scan_log(BlockDevice& dev, const JournalMap& map, const LoadedSuperblock& sb,
                            bool strict_checksums) {
  const Geometry& g = sb.geometry;
  const uint32_t bs = map.block_size();
  const uint64_t first = sb.info.first, logsize = sb.info.maxlen - sb.info.first;
  uint64_t pos = sb.info.start;
  uint32_t tid = sb.info.sequence;
  uint64_t walked = 0;
  ScanResult res;
  ScannedTransaction cur;
  cur.tid = tid;
  AlignedBuffer buf(bs);
  auto at = [&](uint64_t p, uint64_t n) { return first + (p - first + n) % logsize; };
  auto stop = [&](std::string why) { res.stop_reason = std::move(why); };

  while (true) {
    if (walked >= logsize) {
      stop("the scan went once around the whole log");
      break;
    }
    CEXT3_RETURN_IF_ERROR(io::read_block(dev, bs, map.fs_block(pos), buf.data()));
    const uint8_t* b = buf.data();
    if (get32(b) != kMagic) {
      stop("no magic number at journal block " + std::to_string(pos));
      break;
    }
    const uint32_t type = get32(b + 4), seq = get32(b + 8);
    if (seq != tid) {
      stop("found sequence " + std::to_string(seq) + " (not " + std::to_string(tid) +
           ") at journal block " + std::to_string(pos));
      break;
    }
    if (type == kDescriptorBlock) {
      if (g.csum_v2v3() && !g.verify_tail_checksum(b)) {
        stop("descriptor checksum mismatch at journal block " + std::to_string(pos));
        break;
      }
      const uint8_t* p = b + kHeaderSize;
      const uint8_t* end = b + bs - g.tail_size();
      uint64_t n = 0;
      while (p + g.tag_bytes() <= end) {
        Tag t = decode_tag(g, p);
        p += g.tag_bytes();
        if (!(t.flags & kFlagSameUuid)) p += kUuidSize;
        cur.blocks.push_back(LoggedBlock{t, at(pos, 1 + n), tid});
        ++n;
        if (t.flags & kFlagLastTag) break;
      }
      if (strict_checksums && g.csum_v2v3()) {
        AlignedBuffer data(bs);
        bool torn = false;
        for (uint64_t i = cur.blocks.size() - n; i < cur.blocks.size() && !torn; ++i) {
          CEXT3_RETURN_IF_ERROR(io::read_block(dev, bs, map.fs_block(cur.blocks[i].log_pos), data.data()));
          if (tag_checksum(g, tid, data.data()) != cur.blocks[i].tag.checksum) torn = true;
        }
        if (torn) {
          stop("transaction " + std::to_string(tid) + " is torn: a logged block fails its checksum");
          break;
        }
      }
      pos = at(pos, 1 + n);
      walked += 1 + n;
    } else if (type == kCommitBlock) {
      if (g.csum_v2v3() && !g.verify_commit_checksum(b)) {
        stop("commit block checksum mismatch at journal block " + std::to_string(pos));
        break;
      }
      res.committed.push_back(std::move(cur));
      cur = ScannedTransaction{};
      cur.tid = ++tid;
      pos = at(pos, 1);
      walked += 1;
    } else if (type == kRevokeBlock) {
      if (g.csum_v2v3() && !g.verify_tail_checksum(b)) {
        stop("revoke block checksum mismatch at journal block " + std::to_string(pos));
        break;
      }
      auto recs = decode_revoke_block(g, b);
      if (!recs.ok()) {
        stop(recs.status().message() + " at journal block " + std::to_string(pos));
        break;
      }
      cur.revokes.insert(cur.revokes.end(), recs->begin(), recs->end());
      pos = at(pos, 1);
      walked += 1;
    } else {
      stop("unknown block type " + std::to_string(type) + " at journal block " + std::to_string(pos));
      break;
    }
  }
  res.end_tid = tid;
  return res;
}

}  // namespace

Result<RecoveryReport> recover_journal(BlockDevice& dev, const JournalMap& map, const RecoverOptions& opts) {
  auto sbr = load_superblock(dev, map, SuperblockUse::kReplay);
  if (!sbr.ok()) return sbr.status();
  LoadedSuperblock& sb = sbr.value();
  RecoveryReport rep;
  rep.first_tid = sb.info.sequence;
  rep.end_tid = sb.info.sequence;
  rep.new_sequence = sb.info.sequence;
  if (sb.info.clean()) {
    rep.was_clean = true;
    rep.stop_reason = "journal is clean";
    return rep;
  }
  if (!opts.dry_run && dev.read_only())
    return Status::InvalidArgument("journal replay: " + dev.name() + " is read-only; open it read-write");
  const uint32_t bs = map.block_size();
  auto scan = scan_log(dev, map, sb, opts.strict_checksums);
  if (!scan.ok()) return scan.status();
  rep.end_tid = scan->end_tid;
  rep.stop_reason = scan->stop_reason;
  rep.transactions = static_cast<uint32_t>(scan->committed.size());

  // Revoke pass.
  RevokeTable revokes;
  for (const auto& t : scan->committed)
    for (uint64_t b : t.revokes) {
      revokes.add(b, t.tid);
      ++rep.revoke_records;
    }

  // Replay pass: newest surviving image of each block.
  const uint64_t dev_blocks = dev.size() / bs;
  const Geometry& g = sb.geometry;
  std::unordered_map<uint64_t, const LoggedBlock*> final_image;
  std::vector<uint64_t> order;  // first-seen order, for deterministic I/O
  for (const auto& t : scan->committed)
    for (const auto& lb : t.blocks) {
      if (revokes.revoked(lb.tag.fs_block, t.tid)) {
        ++rep.blocks_revoked;
        continue;
      }
      if (lb.tag.fs_block >= dev_blocks)
        return Status::Corruption("journal replay: committed transaction " + std::to_string(t.tid) +
                                  " logs block " + std::to_string(lb.tag.fs_block) + " past the end of " +
                                  dev.name() + "; nothing was written; check the journal with debugfs logdump");
      if (!final_image.count(lb.tag.fs_block)) order.push_back(lb.tag.fs_block);
      final_image[lb.tag.fs_block] = &lb;
      ++rep.blocks_replayed;
    }
  if (opts.dry_run) {
    rep.new_sequence = rep.end_tid + 1;
    return rep;
  }
  const size_t chunk = 256;
  for (size_t i = 0; i < order.size(); i += chunk) {
    const size_t n = std::min(chunk, order.size() - i);
    AlignedBuffer buf(n * bs);
    std::vector<io::BlockRef> reads;
    for (size_t k = 0; k < n; ++k)
      reads.push_back({map.fs_block(final_image[order[i + k]]->log_pos), buf.data() + k * bs});
    // Two tags may share a log block only in a corrupt log; read one by one then.
    Status rs = io::read_blocks(dev, bs, reads);
    if (!rs.ok()) {
      for (auto& r : reads) CEXT3_RETURN_IF_ERROR(io::read_block(dev, bs, r.fs_block, r.data));
    }
    std::vector<io::BlockRef> writes;
    for (size_t k = 0; k < n; ++k) {
      const LoggedBlock* lb = final_image[order[i + k]];
      uint8_t* data = buf.data() + k * bs;
      if (g.csum_v2v3() && !opts.strict_checksums &&
          tag_checksum(g, lb->tid, data) != lb->tag.checksum) {
        // Non-strict: skip just the damaged block, as e2fsck does.
        --rep.blocks_replayed;
        continue;
      }
      if (lb->tag.flags & kFlagEscape) put32(data, kMagic);
      writes.push_back({order[i + k], data});
    }
    CEXT3_RETURN_IF_ERROR(io::write_blocks(dev, bs, writes));
  }
  CEXT3_RETURN_IF_ERROR(dev.flush());
  // e2fsck and the kernel skip one tid past the end of the log (it may
  // have blocks of an uncommitted transaction on disk); so do we.
  sb.info.start = 0;
  sb.info.sequence = rep.end_tid + 1;
  rep.new_sequence = sb.info.sequence;
  pack_superblock(sb);
  CEXT3_RETURN_IF_ERROR(io::write_blocks_durable(dev, bs, {{map.fs_block(0), sb.block.data()}}));
  return rep;
}

}  // namespace cext3::journal
