#include <catch2/catch.hpp>

#include <array>
#include <cstring>

#include "cext3/cluster/crc32c.h"

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

namespace {
void put32(std::array<uint8_t, 512>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(std::array<uint8_t, 512>& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
}  // namespace

TEST_CASE("records decode the byte layout of docs/FORMAT.md", "[cluster][records]") {
  // Built by hand at the documented offsets, sealed with the CRC the
  // document specifies: the codec's field tables must agree.
  std::array<uint8_t, 512> hb{};
  std::memcpy(hb.data(), "CX3HBEAT", 8);
  put32(hb, 8, 7);                          // slot
  put32(hb, 12, 3);                         // flags: used | stopped
  put64(hb, 16, 11);                        // sequence
  put64(hb, 24, 0x1122334455667788ull);     // generation
  put64(hb, 32, 5);                         // time
  put64(hb, 40, 6);                         // fence deadline
  std::memcpy(hb.data() + 48, "n7", 2);     // node name
  std::memcpy(hb.data() + 112, "h:1", 3);   // address
  put32(hb, 508, crc32c(hb.data(), 508));
  auto r = decode_heartbeat(hb);
  REQUIRE(r.ok());
  CHECK(r->slot == 7);
  CHECK(r->flags == (kHeartbeatFlagUsed | kHeartbeatFlagStopped));
  CHECK(r->stopped());
  CHECK(r->sequence == 11);
  CHECK(r->generation == 0x1122334455667788ull);
  CHECK(r->time_ns == 5);
  CHECK(r->fence_deadline_ns == 6);
  CHECK(r->node_name == "n7");
  CHECK(r->address == "h:1");
  std::array<uint8_t, 512> again{};
  encode_heartbeat(*r, again);
  CHECK(again == hb);

  std::array<uint8_t, 512> ls{};
  std::memcpy(ls.data(), "CX3LEASE", 8);
  put32(ls, 8, 2);
  put32(ls, 12, 1);
  put64(ls, 16, 9);
  put64(ls, 24, 10);
  std::memcpy(ls.data() + 32, "owner", 5);
  put64(ls, 96, 4);
  put32(ls, 104, 1);
  put32(ls, 508, crc32c(ls.data(), 508));
  auto l = decode_slot_lease(ls);
  REQUIRE(l.ok());
  CHECK((l->slot == 2 && l->owned == 1 && l->lease_generation == 9 && l->lease_expiry_ns == 10));
  CHECK((l->owner == "owner" && l->recovery_generation == 4 && l->journal_dirty == 1));
  encode_slot_lease(*l, again);
  CHECK(again == ls);
}
