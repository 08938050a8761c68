// Revoke records: encoding revoke blocks for the writer, decoding them and
// the revoke table for recovery. Internal to src/journal.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "cext3/status.h"
#include "journal/jbd2_format.h"

namespace cext3::journal {

// Blocks needed for `count` revoke records.
uint64_t revoke_blocks_needed(const format::Geometry& g, uint64_t count);

// Encode revoke blocks for transaction `tid` into consecutive blocks at
// `out` (zeroed, block_size each); returns how many were used.
uint64_t encode_revoke_blocks(const format::Geometry& g, uint32_t tid, std::span<const uint64_t> blocks,
                              uint8_t* out);

// Decode one revoke block; Corruption if r_count is out of range.
Result<std::vector<uint64_t>> decode_revoke_block(const format::Geometry& g, const uint8_t* block);

// Recovery's revoke table: for each block, the newest transaction that
// revoked it. A tag of transaction T for block B is skipped when B was
// revoked by a transaction >= T (Linux jbd2_journal_test_revoke).
class RevokeTable {
 public:
  void add(uint64_t fs_block, uint32_t tid);
  bool revoked(uint64_t fs_block, uint32_t tid) const;
  size_t size() const { return table_.size(); }

 private:
  std::unordered_map<uint64_t, uint32_t> table_;
};

}  // namespace cext3::journal
