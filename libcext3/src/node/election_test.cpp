#include "cext3/node/election.h"

#include <catch2/catch.hpp>

#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::node;
using namespace cext3::node::testing;

namespace {

// A membership view: liveness per slot; `self` marks the caller's slot.
std::vector<PeerState> view(std::vector<PeerLiveness> l, uint32_t self) {
  std::vector<PeerState> v(l.size());
  for (uint32_t s = 0; s < l.size(); ++s) {
    v[s].slot = s;
    v[s].liveness = l[s];
    v[s].self = (s == self);
    v[s].record_ok = true;
    v[s].record.slot = s;
    v[s].record.sequence = (l[s] == PeerLiveness::kUnknown) ? 0 : 10;
  }
  return v;
}

constexpr auto L = PeerLiveness::kLive;
constexpr auto D = PeerLiveness::kDead;
constexpr auto S = PeerLiveness::kStopped;
constexpr auto U = PeerLiveness::kUnknown;

ElectionOptions fast() {
  ElectionOptions o;
  o.claim_delay_ms = 60;
  return o;
}

}  // namespace

TEST_CASE("run_election: with no coordinator the lowest live slot wins with epoch + 1", "[node][election]") {
  MemoryCluster mc(4);
  auto disk = mc.disk(mc.device());
  auto current = disk->read_global();
  REQUIRE(current.ok());
  REQUIRE(current->coordinator_slot == cluster::kNoSlot);
  // Slot 2 is not the lowest live slot (1 is): it writes nothing.
  auto r2 = run_election(*disk, nullptr, 2, view({D, L, L, U}, 2), *current, fast());
  REQUIRE(r2.ok());
  CHECK_FALSE(r2->changed);
  CHECK(disk->read_global()->coordinator_slot == cluster::kNoSlot);
  // Slot 1 is: it claims.
  auto r1 = run_election(*disk, nullptr, 1, view({D, L, L, U}, 1), *current, fast());
  REQUIRE(r1.ok());
  CHECK(r1->changed);
  CHECK(r1->record.coordinator_slot == 1);
  CHECK(r1->record.coordinator_epoch == current->coordinator_epoch + 1);
  CHECK(r1->record.slot_count == 4);
  CHECK(*disk->read_global() == r1->record);
}

TEST_CASE("run_election: a live coordinator stays, even when a lower slot joins (no churn)", "[node][election]") {
  MemoryCluster mc(3);
  auto disk = mc.disk(mc.device());
  cluster::LocksGlobalRecord g{3, 2, 7};
  REQUIRE(disk->write_global(g).ok());
  auto r = run_election(*disk, nullptr, 0, view({L, L, L}, 0), g, fast());
  REQUIRE(r.ok());
  CHECK_FALSE(r->changed);
  CHECK(r->record == g);
  CHECK(*disk->read_global() == g);
  // Not yet known (we just started watching a used slot): wait, do not elect.
  auto u = view({L, L, U}, 0);
  u[2].record.sequence = 40;
  r = run_election(*disk, nullptr, 0, u, g, fast());
  REQUIRE(r.ok());
  CHECK_FALSE(r->changed);
  CHECK(*disk->read_global() == g);
}

TEST_CASE("run_election: a dead or stopped coordinator is replaced by the lowest live slot", "[node][election]") {
  for (PeerLiveness gone : {D, S}) {
    INFO("coordinator " << to_string(gone));
    MemoryCluster mc(3);
    auto disk = mc.disk(mc.device());
    cluster::LocksGlobalRecord g{3, 0, 41};
    REQUIRE(disk->write_global(g).ok());
    auto v = view({gone, L, L}, 2);
    auto r = run_election(*disk, nullptr, 2, v, g, fast());  // slot 2 is not the lowest live
    REQUIRE(r.ok());
    CHECK_FALSE(r->changed);
    r = run_election(*disk, nullptr, 1, view({gone, L, L}, 1), g, fast());
    REQUIRE(r.ok());
    CHECK(r->changed);
    CHECK(r->record == cluster::LocksGlobalRecord{3, 1, 42});
    CHECK(*disk->read_global() == r->record);
    // Next tick, with the new record: nothing more happens.
    auto again = run_election(*disk, nullptr, 1, view({gone, L, L}, 1), r->record, fast());
    REQUIRE(again.ok());
    CHECK_FALSE(again->changed);
    CHECK(disk->read_global()->coordinator_epoch == 42);
  }
}

TEST_CASE("run_election: a stale view writes nothing and returns the disk's record", "[node][election]") {
  MemoryCluster mc(2);
  auto disk = mc.disk(mc.device());
  cluster::LocksGlobalRecord stale{2, cluster::kNoSlot, 5};
  cluster::LocksGlobalRecord newer{2, 1, 6};  // someone already won
  REQUIRE(disk->write_global(newer).ok());
  auto r = run_election(*disk, nullptr, 0, view({L, L}, 0), stale, fast());
  REQUIRE(r.ok());
  CHECK_FALSE(r->changed);
  CHECK(r->record == newer);
  CHECK(*disk->read_global() == newer);
}

TEST_CASE("run_election: coordinator_gone", "[node][election]") {
  CHECK(coordinator_gone(view({L, L}, 0), {2, cluster::kNoSlot, 0}));
  CHECK(coordinator_gone(view({L, L}, 0), {2, 9, 3}));       // beyond the slot count
  CHECK(coordinator_gone(view({L, U}, 0), {2, 1, 3}));       // never written (sequence 0)
  CHECK_FALSE(coordinator_gone(view({L, L}, 0), {2, 1, 3}));
  CHECK_FALSE(coordinator_gone(view({D, L}, 0), {2, 0, 3}));  // self is never gone to itself
}
