// One owner's byte ranges: splitting, merging, other owners untouched.
#include <catch2/catch.hpp>

#include "locks/plock_ranges.h"

using namespace cext3::locks;
using wire::PlockType;

namespace {

RangeLock lk(uint64_t owner, PlockType t, uint64_t s, uint64_t e, uint32_t slot = 0) {
  RangeLock l;
  l.who = PlockOwnerKey{slot, owner};
  l.type = t;
  l.start = s;
  l.end = e;
  return l;
}

}  // namespace

TEST_CASE("plock ranges: unlocking the middle splits, relocking merges back", "[locks][plock]") {
  std::vector<RangeLock> v;
  set_range(&v, lk(1, PlockType::kWrite, 0, 99));
  set_range(&v, lk(1, PlockType::kUnlock, 40, 59));
  REQUIRE(v.size() == 2);
  CHECK(v[0] == lk(1, PlockType::kWrite, 0, 39));
  CHECK(v[1] == lk(1, PlockType::kWrite, 60, 99));
  set_range(&v, lk(1, PlockType::kWrite, 40, 59));
  REQUIRE(v.size() == 1);
  CHECK(v[0] == lk(1, PlockType::kWrite, 0, 99));
}

TEST_CASE("plock ranges: a type change in the middle makes three locks", "[locks][plock]") {
  std::vector<RangeLock> v;
  set_range(&v, lk(1, PlockType::kWrite, 10, 19));
  set_range(&v, lk(1, PlockType::kRead, 12, 15));
  REQUIRE(v.size() == 3);
  CHECK(v[0] == lk(1, PlockType::kWrite, 10, 11));
  CHECK(v[1] == lk(1, PlockType::kRead, 12, 15));
  CHECK(v[2] == lk(1, PlockType::kWrite, 16, 19));
  // Read over all of it (and beyond) absorbs the middle read lock.
  set_range(&v, lk(1, PlockType::kRead, 5, 25));
  REQUIRE(v.size() == 1);
  CHECK(v[0] == lk(1, PlockType::kRead, 5, 25));
}

TEST_CASE("plock ranges: adjacent same-type locks merge, other types only touch", "[locks][plock]") {
  std::vector<RangeLock> v;
  set_range(&v, lk(1, PlockType::kRead, 0, 9));
  set_range(&v, lk(1, PlockType::kRead, 10, 19));
  REQUIRE(v.size() == 1);
  CHECK(v[0] == lk(1, PlockType::kRead, 0, 19));
  set_range(&v, lk(1, PlockType::kWrite, 20, 29));
  REQUIRE(v.size() == 2);
  CHECK(v[1] == lk(1, PlockType::kWrite, 20, 29));
  // To end of file, and a range ending at the last byte: no overflow.
  set_range(&v, lk(1, PlockType::kWrite, 30, UINT64_MAX));
  REQUIRE(v.size() == 2);
  CHECK(v[1] == lk(1, PlockType::kWrite, 20, UINT64_MAX));
  set_range(&v, lk(1, PlockType::kUnlock, 0, UINT64_MAX));
  CHECK(v.empty());
}

TEST_CASE("plock ranges: another owner's locks are never changed", "[locks][plock]") {
  std::vector<RangeLock> v;
  set_range(&v, lk(1, PlockType::kRead, 0, 99));
  set_range(&v, lk(2, PlockType::kRead, 50, 149));
  set_range(&v, lk(1, PlockType::kRead, 0, 99, /*slot=*/1));  // same owner id, other node
  REQUIRE(v.size() == 3);
  set_range(&v, lk(2, PlockType::kUnlock, 0, UINT64_MAX));
  REQUIRE(v.size() == 2);
  CHECK(v[0] == lk(1, PlockType::kRead, 0, 99));
  CHECK(v[1] == lk(1, PlockType::kRead, 0, 99, 1));
  CHECK(blocks(lk(1, PlockType::kRead, 0, 99), lk(2, PlockType::kWrite, 99, 99)));
  CHECK_FALSE(blocks(lk(1, PlockType::kRead, 0, 99), lk(2, PlockType::kRead, 0, 99)));
  CHECK_FALSE(blocks(lk(1, PlockType::kWrite, 0, 99), lk(1, PlockType::kWrite, 0, 99)));  // same owner
  CHECK_FALSE(blocks(lk(1, PlockType::kWrite, 0, 99), lk(2, PlockType::kWrite, 100, 200)));
  CHECK(blocks(lk(1, PlockType::kWrite, 0, 99), lk(1, PlockType::kRead, 0, 0, 1)));  // other node
}
