// A logdump-style listing of a journal, for `clusterify journal dump`.
#include <cstdio>
#include <string>

#include "journal/journal_io.h"
#include "journal/journal_superblock.h"
#include "journal/revoke_records.h"

namespace cext3::journal {

using namespace format;

namespace {

const char* type_name(uint32_t t) {
  switch (t) {
    case kDescriptorBlock: return "descriptor block";
    case kCommitBlock: return "commit block";
    case kSuperblockV1: return "V1 superblock";
    case kSuperblockV2: return "V2 superblock";
    case kRevokeBlock: return "revoke table";
    case kFastCommitBlock: return "fast commit";
    default: return "unrecognised type";
  }
}

template <typename... A>
void line(std::string& out, const char* fmt, A... a) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, a...);
  out += buf;
  out += '\n';
}

}  // namespace

Result<std::string> dump_journal(BlockDevice& dev, const JournalMap& map, bool all) {
  auto sbr = load_superblock(dev, map, SuperblockUse::kReport);
  if (!sbr.ok()) return sbr.status();
  const JournalInfo& i = sbr->info;
  const Geometry& g = sbr->geometry;
  const uint32_t bs = map.block_size();
  std::string out;
  line(out, "Journal superblock magic number valid (block type %u)", i.blocktype);
  line(out, "Journal features:         %s", i.features_string().c_str());
  line(out, "Total journal size:       %u blocks of %u bytes", i.maxlen, i.block_size);
  line(out, "Journal first block:      %u", i.first);
  line(out, "Journal sequence:         0x%08x", i.sequence);
  line(out, "Journal start:            %u%s", i.start, i.clean() ? " (clean)" : " (needs recovery)");
  if (i.errno_value != 0) line(out, "Journal errno:            %d", i.errno_value);
  uint64_t pos = i.start;
  uint32_t tid = i.sequence;
  if (i.clean()) {
    if (!all) {
      line(out, "Journal is clean: no transactions to replay.");
      return out;
    }
    pos = i.first;
  }
  line(out, "Journal starts at block %llu, transaction %u", static_cast<unsigned long long>(pos), tid);
  const uint64_t first = i.first, logsize = i.maxlen - i.first;
  auto at = [&](uint64_t p, uint64_t n) { return first + (p - first + n) % logsize; };
  AlignedBuffer buf(bs);
  uint64_t walked = 0;
  bool have_tid = !i.clean();
  while (walked < logsize) {
    CEXT3_RETURN_IF_ERROR(io::read_block(dev, bs, map.fs_block(pos), buf.data()));
    const uint8_t* b = buf.data();
    if (get32(b) != kMagic) {
      line(out, "No magic number at block %llu: end of journal.", static_cast<unsigned long long>(pos));
      break;
    }
    const uint32_t type = get32(b + 4), seq = get32(b + 8);
    if (have_tid && seq != tid) {
      line(out, "Found sequence %u (not %u) at block %llu: end of journal.", seq, tid,
           static_cast<unsigned long long>(pos));
      if (!all) break;
    }
    tid = seq;
    have_tid = true;
    line(out, "Found expected sequence %u, type %u (%s) at block %llu", seq, type, type_name(type),
         static_cast<unsigned long long>(pos));
    uint64_t advance = 1;
    if (type == kDescriptorBlock) {
      if (g.csum_v2v3() && !g.verify_tail_checksum(b)) line(out, "  descriptor checksum MISMATCH");
      const uint8_t* p = b + kHeaderSize;
      const uint8_t* end = b + bs - g.tail_size();
      uint64_t n = 0;
      while (p + g.tag_bytes() <= end) {
        Tag t = decode_tag(g, p);
        p += g.tag_bytes();
        if (!(t.flags & kFlagSameUuid)) p += kUuidSize;
        line(out, "  FS block %llu logged at journal block %llu (flags 0x%x)",
             static_cast<unsigned long long>(t.fs_block), static_cast<unsigned long long>(at(pos, 1 + n)),
             t.flags);
        ++n;
        if (t.flags & kFlagLastTag) break;
      }
      advance = 1 + n;
    } else if (type == kCommitBlock) {
      if (g.csum_v2v3() && !g.verify_commit_checksum(b)) line(out, "  commit checksum MISMATCH");
      ++tid;
    } else if (type == kRevokeBlock) {
      auto recs = decode_revoke_block(g, b);
      if (!recs.ok()) {
        line(out, "  %s", recs.status().message().c_str());
      } else {
        line(out, "  Dumping revoke block, sequence %u, at block %llu:", seq, static_cast<unsigned long long>(pos));
        for (uint64_t r : recs.value()) line(out, "    Revoke FS block %llu", static_cast<unsigned long long>(r));
      }
    } else {
      line(out, "Unexpected block type %u at block %llu.", type, static_cast<unsigned long long>(pos));
      break;
    }
    pos = at(pos, advance);
    walked += advance;
  }
  return out;
}

}  // namespace cext3::journal
