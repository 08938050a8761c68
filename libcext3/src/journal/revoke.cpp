// Revoke blocks and the recovery revoke table.
#include <cstring>

#include "journal/revoke_records.h"

namespace cext3::journal {

using namespace format;

uint64_t revoke_blocks_needed(const Geometry& g, uint64_t count) {
  const uint64_t per = g.revokes_per_block();
  return (count + per - 1) / per;
}

uint64_t encode_revoke_blocks(const Geometry& g, uint32_t tid, std::span<const uint64_t> blocks, uint8_t* out) {
  const size_t per = g.revokes_per_block();
  const size_t rec = g.revoke_record_size();
  uint64_t used = 0;
  for (size_t i = 0; i < blocks.size(); i += per) {
    uint8_t* b = out + used * g.block_size;
    std::memset(b, 0, g.block_size);
    put_header(b, kRevokeBlock, tid);
    size_t off = kRevokeHeaderSize;
    for (size_t j = i; j < blocks.size() && j < i + per; ++j, off += rec) {
      if (rec == 8) {
        put64(b + off, blocks[j]);
      } else {
        put32(b + off, static_cast<uint32_t>(blocks[j]));
      }
    }
    put32(b + kHeaderSize, static_cast<uint32_t>(off));  // r_count: bytes used
    if (g.csum_v2v3()) g.set_tail_checksum(b);
    ++used;
  }
  return used;
}

Result<std::vector<uint64_t>> decode_revoke_block(const Geometry& g, const uint8_t* block) {
  const uint32_t count = get32(block + kHeaderSize);
  const size_t rec = g.revoke_record_size();
  if (count < kRevokeHeaderSize || count > g.block_size - g.tail_size())
    return Status::Corruption("journal revoke block: r_count " + std::to_string(count) +
                              " outside " + std::to_string(kRevokeHeaderSize) + ".." +
                              std::to_string(g.block_size - g.tail_size()));
  std::vector<uint64_t> out;
  for (size_t off = kRevokeHeaderSize; off + rec <= count; off += rec)
    out.push_back(rec == 8 ? get64(block + off) : get32(block + off));
  return out;
}

void RevokeTable::add(uint64_t fs_block, uint32_t tid) {
  auto [it, inserted] = table_.emplace(fs_block, tid);
  if (!inserted && tid_gt(tid, it->second)) it->second = tid;
}

bool RevokeTable::revoked(uint64_t fs_block, uint32_t tid) const {
  auto it = table_.find(fs_block);
  return it != table_.end() && tid_geq(it->second, tid);
}

}  // namespace cext3::journal
