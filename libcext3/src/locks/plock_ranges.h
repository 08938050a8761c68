// Byte-range bookkeeping for record locks, shared by the master's table and
// the node's copy of its own granted locks (docs/LOCKS.md, "Record locks").
//
// Invariant kept by set_range: one owner's locks on one inode are disjoint,
// and two of its locks of one type are never adjacent (they are merged), so
// the list is the unique minimal description of what the owner holds.
#pragma once

#include <compare>
#include <cstdint>
#include <vector>

#include "locks/wire.h"

namespace cext3::locks {

// A record lock's owner cluster-wide: FUSE's lock_owner is unique per node only.
struct PlockOwnerKey {
  uint32_t slot = 0;
  uint64_t owner = 0;
  auto operator<=>(const PlockOwnerKey&) const = default;
};

struct RangeLock {
  PlockOwnerKey who;
  uint32_t pid = 0;
  wire::PlockType type = wire::PlockType::kRead;
  uint64_t start = 0, end = 0;  // inclusive
  bool operator==(const RangeLock&) const = default;
};

inline bool ranges_overlap(uint64_t a_start, uint64_t a_end, uint64_t b_start, uint64_t b_end) {
  return a_start <= b_end && b_start <= a_end;
}
// Read locks share; anything with a write conflicts (between different owners).
inline bool types_conflict(wire::PlockType a, wire::PlockType b) {
  return a == wire::PlockType::kWrite || b == wire::PlockType::kWrite;
}
// Does a lock held by another owner block `req`?
inline bool blocks(const RangeLock& held, const RangeLock& req) {
  return held.who != req.who && ranges_overlap(held.start, held.end, req.start, req.end) &&
         types_conflict(held.type, req.type);
}

// Replace `req.who`'s locks on [req.start, req.end] by `req` (type kUnlock:
// remove them): locks of another type are cut (a lock around the range is
// split in two), locks of the same type that overlap or touch are merged.
// Other owners' locks are untouched. The list stays sorted by start.
void set_range(std::vector<RangeLock>* locks, const RangeLock& req);

}  // namespace cext3::locks
