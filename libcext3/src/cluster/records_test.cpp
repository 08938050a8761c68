#include <catch2/catch.hpp>

#include <array>

#include "cext3/cluster/records.h"

using namespace cext3::cluster;

TEST_CASE("heartbeat records round-trip and detect damage", "[cluster][records]") {
  HeartbeatRecord r;
  r.slot = 3;
  r.flags = 1;
  r.sequence = 123456789012ull;
  r.generation = 42;
  r.time_ns = 1700000000123456789ull;
  r.fence_deadline_ns = 1700000002123456789ull;
  r.node_name = "node-a";
  r.address = "10.0.0.1:7403";
  std::array<uint8_t, 512> buf{};
  encode_heartbeat(r, buf);
  auto d = decode_heartbeat(buf);
  REQUIRE(d.ok());
  CHECK(*d == r);
  buf[20] ^= 4;
  CHECK_FALSE(decode_heartbeat(buf).ok());
  // Names longer than the field are truncated, never overflow.
  r.node_name = std::string(200, 'x');
  encode_heartbeat(r, buf);
  CHECK(decode_heartbeat(buf)->node_name == std::string(63, 'x'));
  // All-zero sectors (never formatted) are not valid records.
  std::array<uint8_t, 512> zero{};
  CHECK_FALSE(decode_heartbeat(zero).ok());
}

TEST_CASE("lock records round-trip", "[cluster][records]") {
  LocksGlobalRecord g{4, kNoSlot, 9};
  SlotLeaseRecord s;
  s.slot = 2;
  s.owned = 1;
  s.lease_generation = 5;
  s.lease_expiry_ns = 99;
  s.owner = "oslet-2";
  s.recovery_generation = 3;
  s.journal_dirty = 1;
  std::array<uint8_t, 512> a{}, b{};
  encode_locks_global(g, a);
  encode_slot_lease(s, b);
  CHECK(*decode_locks_global(a) == g);
  CHECK(*decode_slot_lease(b) == s);
  // A record of one type is not accepted as the other.
  CHECK_FALSE(decode_slot_lease(a).ok());
  CHECK_FALSE(decode_locks_global(b).ok());
}
