// Splitting and merging one owner's byte-range locks (plock_ranges.h).
#include "locks/plock_ranges.h"

#include <algorithm>

namespace cext3::locks {
namespace {

// [a_start, a_end] and [b_start, b_end] overlap or are next to each other.
bool touch(uint64_t a_start, uint64_t a_end, uint64_t b_start, uint64_t b_end) {
  if (ranges_overlap(a_start, a_end, b_start, b_end)) return true;
  return (a_end != UINT64_MAX && a_end + 1 == b_start) || (b_end != UINT64_MAX && b_end + 1 == a_start);
}

}  // namespace

void set_range(std::vector<RangeLock>* locks, const RangeLock& req) {
  std::vector<RangeLock> kept;
  kept.reserve(locks->size() + 2);
  uint64_t start = req.start, end = req.end;
  for (const RangeLock& l : *locks) {
    if (l.who != req.who) {
      kept.push_back(l);
      continue;
    }
    if (req.type != wire::PlockType::kUnlock && l.type == req.type && touch(l.start, l.end, req.start, req.end)) {
      // Same type: absorbed into the new lock. The owner's locks are disjoint,
      // so widening over them never covers a lock of the other type.
      start = std::min(start, l.start);
      end = std::max(end, l.end);
      continue;
    }
    if (!ranges_overlap(l.start, l.end, req.start, req.end)) {
      kept.push_back(l);
      continue;
    }
    // Another type (or an unlock) over part of it: keep what lies outside.
    if (l.start < req.start) {
      RangeLock left = l;
      left.end = req.start - 1;
      kept.push_back(left);
    }
    if (l.end > req.end) {
      RangeLock right = l;
      right.start = req.end + 1;
      kept.push_back(right);
    }
  }
  if (req.type != wire::PlockType::kUnlock) {
    RangeLock n = req;
    n.start = start;
    n.end = end;
    kept.push_back(n);
  }
  std::sort(kept.begin(), kept.end(), [](const RangeLock& a, const RangeLock& b) {
    return a.start != b.start ? a.start < b.start : a.who < b.who;
  });
  *locks = std::move(kept);
}

}  // namespace cext3::locks
