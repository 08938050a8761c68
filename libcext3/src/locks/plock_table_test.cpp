// The master's record-lock rules, driven message by message (no sockets).
#include <catch2/catch.hpp>

#include <fcntl.h>

#include "locks/master.h"

using namespace cext3::locks;
using wire::Message;
using wire::MsgType;
using wire::PlockResult;
using wire::PlockType;

namespace {

MembershipView pview(std::vector<uint32_t> live, uint64_t epoch, std::vector<uint32_t> unrecovered = {}) {
  MembershipView v;
  for (uint32_t s : live) {
    Member m;
    m.slot = s;
    m.address = "127.0.0.1:1";
    m.generation = 1;
    v.live.push_back(m);
  }
  v.coordinator_slot = live.front();
  v.epoch = epoch;
  v.unrecovered = std::move(unrecovered);
  return v;
}

Message phello(uint32_t slot, uint64_t epoch, std::vector<wire::PlockEntry> report = {}) {
  Message m;
  m.type = MsgType::kHello;
  m.slot = slot;
  m.generation = 1;
  m.epoch = epoch;
  m.has_plock = true;
  m.plock_report = std::move(report);
  return m;
}

wire::PlockEntry entry(uint64_t owner, PlockType t, uint64_t s, uint64_t e, uint64_t ino = 5, uint8_t space = 0) {
  wire::PlockEntry p;
  p.ino = ino;
  p.space = space;
  p.type = t;
  p.owner = owner;
  p.pid = static_cast<uint32_t>(1000 + owner);
  p.start = s;
  p.end = e;
  return p;
}

Message set(uint64_t req, wire::PlockEntry e, bool wait = false) {
  Message m;
  m.type = MsgType::kPlockSet;
  m.has_plock = true;
  m.plock_req = req;
  m.plock = e;
  m.plock.wait = wait;
  return m;
}

Message get(uint64_t req, wire::PlockEntry e) {
  Message m = set(req, e);
  m.type = MsgType::kPlockGet;
  return m;
}

Message cancel(uint64_t req) {
  Message m;
  m.type = MsgType::kPlockCancel;
  m.has_plock = true;
  m.plock_req = req;
  return m;
}

// The record-lock replies in `out` for `slot`, consumed.
std::vector<Message> replies(std::vector<Outgoing>& out, uint32_t slot) {
  std::vector<Message> v;
  for (const Outgoing& o : out)
    if (o.slot == slot && o.msg.type == MsgType::kPlockReply) v.push_back(o.msg);
  out.clear();
  return v;
}

// A master of epoch 1 over `live` where every slot has reported.
Master started(std::vector<uint32_t> live) {
  Master m(pview(live, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : live) REQUIRE(m.on_hello(phello(s, 1), &out).ok());
  return m;
}

// One set from `slot`; the single reply's result.
PlockResult set_now(Master& m, uint32_t slot, uint64_t req, wire::PlockEntry e) {
  std::vector<Outgoing> out;
  m.on_plock(slot, set(req, e), &out);
  auto r = replies(out, slot);
  REQUIRE(r.size() == 1);
  CHECK(r[0].plock_req == req);
  return r[0].plock_result;
}

}  // namespace

TEST_CASE("plock table: conflict matrix between owners", "[locks][plock]") {
  struct Case {
    PlockType held, asked;
    uint64_t s, e;
    PlockResult want;
  };
  // Held: [10, 19] by slot 1 owner 1; asked by slot 2 owner 2.
  const Case cases[] = {
      {PlockType::kRead, PlockType::kRead, 15, 30, PlockResult::kGranted},
      {PlockType::kRead, PlockType::kWrite, 15, 30, PlockResult::kConflict},
      {PlockType::kWrite, PlockType::kRead, 19, 19, PlockResult::kConflict},
      {PlockType::kWrite, PlockType::kWrite, 0, 10, PlockResult::kConflict},
      {PlockType::kWrite, PlockType::kWrite, 20, 30, PlockResult::kGranted},
      {PlockType::kWrite, PlockType::kWrite, 0, 9, PlockResult::kGranted},
      {PlockType::kWrite, PlockType::kUnlock, 0, UINT64_MAX, PlockResult::kGranted},
  };
  for (const Case& c : cases) {
    CAPTURE(static_cast<int>(c.held), static_cast<int>(c.asked), c.s, c.e);
    Master m = started({0, 1, 2});
    REQUIRE(set_now(m, 1, 1, entry(1, c.held, 10, 19)) == PlockResult::kGranted);
    CHECK(set_now(m, 2, 1, entry(2, c.asked, c.s, c.e)) == c.want);
    // The same owner never conflicts with itself; the same owner id on
    // another node is another owner.
    CHECK(set_now(m, 1, 2, entry(1, PlockType::kWrite, 0, 30, 5)) ==
          (c.want == PlockResult::kGranted && c.asked != PlockType::kUnlock && c.s <= 30 ? PlockResult::kConflict
                                                                                         : PlockResult::kGranted));
  }
}

TEST_CASE("plock table: a refused conversion leaves the owner's lock as it was", "[locks][plock]") {
  Master m = started({0, 1, 2});
  REQUIRE(set_now(m, 1, 1, entry(1, PlockType::kRead, 0, 99)) == PlockResult::kGranted);
  REQUIRE(set_now(m, 2, 1, entry(2, PlockType::kRead, 50, 59)) == PlockResult::kGranted);
  CHECK(set_now(m, 1, 2, entry(1, PlockType::kWrite, 0, 99)) == PlockResult::kConflict);
  PlockStatus st;
  m.plock_status(&st);
  REQUIRE(st.master_held.size() == 2);
  CHECK(st.master_held[0].lock.slot == 1);
  CHECK(st.master_held[0].lock.start == 0);
  CHECK(st.master_held[0].lock.end == 99);
  // A write outside the other owner's range is a split conversion.
  CHECK(set_now(m, 1, 3, entry(1, PlockType::kWrite, 0, 49)) == PlockResult::kGranted);
  st = {};
  m.plock_status(&st);
  CHECK(st.master_held.size() == 3);
}

TEST_CASE("plock table: F_GETLK names the conflicting holder", "[locks][plock]") {
  Master m = started({0, 1, 2});
  REQUIRE(set_now(m, 1, 1, entry(7, PlockType::kWrite, 10, 19)) == PlockResult::kGranted);
  std::vector<Outgoing> out;
  m.on_plock(2, get(2, entry(3, PlockType::kRead, 15, 30)), &out);
  auto r = replies(out, 2);
  REQUIRE(r.size() == 1);
  CHECK(r[0].plock_result == PlockResult::kConflict);
  CHECK(r[0].plock.slot == 1);
  CHECK(r[0].plock.owner == 7);
  CHECK(r[0].plock.pid == 1007);
  CHECK(r[0].plock.type == PlockType::kWrite);
  CHECK(r[0].plock.start == 10);
  CHECK(r[0].plock.end == 19);
  // The holder itself sees no conflict; nor does a range beside it.
  m.on_plock(1, get(3, entry(7, PlockType::kWrite, 0, 100)), &out);
  r = replies(out, 1);
  REQUIRE(r.size() == 1);
  CHECK(r[0].plock_result == PlockResult::kGranted);
  CHECK(r[0].plock.type == PlockType::kUnlock);
  m.on_plock(2, get(4, entry(3, PlockType::kWrite, 20, 30)), &out);
  CHECK(replies(out, 2).at(0).plock_result == PlockResult::kGranted);
}

TEST_CASE("plock table: waiters in order, a new reader does not pass a waiting writer", "[locks][plock]") {
  Master m = started({0, 1, 2, 3});
  std::vector<Outgoing> out;
  REQUIRE(set_now(m, 1, 1, entry(1, PlockType::kRead, 0, 9)) == PlockResult::kGranted);
  m.on_plock(2, set(1, entry(2, PlockType::kWrite, 0, 9), true), &out);
  CHECK(replies(out, 2).empty());  // queued
  // Owner 3 holds nothing: its read would starve the writer, so it waits too.
  CHECK(set_now(m, 3, 1, entry(3, PlockType::kRead, 5, 5)) == PlockResult::kConflict);
  m.on_plock(3, set(2, entry(3, PlockType::kRead, 5, 5), true), &out);
  CHECK(replies(out, 3).empty());
  // Owner 1 holds a lock (the writer may wait for it): it may pass.
  CHECK(set_now(m, 1, 2, entry(1, PlockType::kRead, 0, 19)) == PlockResult::kGranted);
  // Owner 1 lets go: the writer, then (after it) the reader.
  m.on_plock(1, set(3, entry(1, PlockType::kUnlock, 0, UINT64_MAX)), &out);
  std::vector<Outgoing> all = out;
  auto to2 = replies(out, 2);
  REQUIRE(to2.size() == 1);
  CHECK(to2[0].plock_req == 1);
  CHECK(to2[0].plock_result == PlockResult::kGranted);
  out = all;
  CHECK(replies(out, 3).empty());
  m.on_plock(2, set(2, entry(2, PlockType::kUnlock, 0, UINT64_MAX)), &out);
  all = out;
  auto to3 = replies(out, 3);
  REQUIRE(to3.size() == 1);
  CHECK(to3[0].plock_req == 2);
  CHECK(to3[0].plock_result == PlockResult::kGranted);
}

TEST_CASE("plock table: a wait that would close a cycle is EDEADLK (fcntl only)", "[locks][plock]") {
  Master m = started({0, 1, 2});
  std::vector<Outgoing> out;
  REQUIRE(set_now(m, 1, 1, entry(1, PlockType::kWrite, 0, 0)) == PlockResult::kGranted);
  REQUIRE(set_now(m, 2, 1, entry(2, PlockType::kWrite, 0, 0, /*ino=*/6)) == PlockResult::kGranted);
  m.on_plock(1, set(2, entry(1, PlockType::kWrite, 0, 0, 6), true), &out);  // 1 waits for 2
  CHECK(replies(out, 1).empty());
  m.on_plock(2, set(2, entry(2, PlockType::kWrite, 0, 0, 5), true), &out);  // 2 would wait for 1
  auto r = replies(out, 2);
  REQUIRE(r.size() == 1);
  CHECK(r[0].plock_result == PlockResult::kDeadlock);
  // flock: the same shape waits (flock(2) has no EDEADLK).
  REQUIRE(set_now(m, 1, 3, entry(1, PlockType::kWrite, 0, UINT64_MAX, 7, 1)) == PlockResult::kGranted);
  REQUIRE(set_now(m, 2, 3, entry(2, PlockType::kWrite, 0, UINT64_MAX, 8, 1)) == PlockResult::kGranted);
  m.on_plock(1, set(4, entry(1, PlockType::kWrite, 0, UINT64_MAX, 8, 1), true), &out);
  m.on_plock(2, set(4, entry(2, PlockType::kWrite, 0, UINT64_MAX, 7, 1), true), &out);
  CHECK(replies(out, 2).empty());
}

TEST_CASE("plock table: fcntl and flock locks are separate spaces", "[locks][plock]") {
  Master m = started({0, 1, 2});
  REQUIRE(set_now(m, 1, 1, entry(1, PlockType::kWrite, 0, UINT64_MAX, 5, 0)) == PlockResult::kGranted);
  CHECK(set_now(m, 2, 1, entry(2, PlockType::kWrite, 0, UINT64_MAX, 5, 1)) == PlockResult::kGranted);
  CHECK(set_now(m, 2, 2, entry(3, PlockType::kRead, 0, UINT64_MAX, 5, 1)) == PlockResult::kConflict);
  CHECK(set_now(m, 2, 3, entry(3, PlockType::kRead, 0, 0, 5, 0)) == PlockResult::kConflict);
}

TEST_CASE("plock table: a cancelled waiter is answered and never granted", "[locks][plock]") {
  Master m = started({0, 1, 2});
  std::vector<Outgoing> out;
  REQUIRE(set_now(m, 1, 1, entry(1, PlockType::kWrite, 0, 9)) == PlockResult::kGranted);
  m.on_plock(2, set(9, entry(2, PlockType::kWrite, 0, 9), true), &out);
  CHECK(replies(out, 2).empty());
  m.on_plock(2, cancel(9), &out);
  auto r = replies(out, 2);
  REQUIRE(r.size() == 1);
  CHECK(r[0].plock_req == 9);
  CHECK(r[0].plock_result == PlockResult::kCancelled);
  m.on_plock(1, set(2, entry(1, PlockType::kUnlock, 0, UINT64_MAX)), &out);
  CHECK(replies(out, 2).empty());
  PlockStatus st;
  m.plock_status(&st);
  CHECK(st.master_held.empty());
  CHECK(st.master_waiting == 0);
}

TEST_CASE("plock table: a dead node's locks block until its recovery, a clean leave drops them", "[locks][plock]") {
  Master m = started({0, 1, 2});
  std::vector<Outgoing> out;
  REQUIRE(set_now(m, 2, 1, entry(2, PlockType::kWrite, 0, 99)) == PlockResult::kGranted);
  m.on_plock(1, set(1, entry(1, PlockType::kRead, 50, 50), true), &out);
  CHECK(replies(out, 1).empty());
  m.on_membership(pview({0, 1}, 1, {2}), &out);
  CHECK(replies(out, 1).empty());
  CHECK(set_now(m, 0, 1, entry(3, PlockType::kRead, 0, 0)) == PlockResult::kConflict);
  m.on_recovery_done(2, &out);
  auto r = replies(out, 1);
  REQUIRE(r.size() == 1);
  CHECK(r[0].plock_result == PlockResult::kGranted);
  // Slot 1 leaves cleanly (not listed unrecovered): its lock goes at once.
  m.on_membership(pview({0}, 1), &out);
  CHECK(set_now(m, 0, 2, entry(3, PlockType::kWrite, 0, 99)) == PlockResult::kGranted);
}

TEST_CASE("plock table: a new master answers after all reports, honours them, and fears unknown dead nodes",
          "[locks][plock]") {
  // Epoch 2: slots 1 and 2 live, slot 0 (the old master) dead and unrecovered.
  Master m(pview({1, 2}, 2, {0}));
  std::vector<Outgoing> out;
  REQUIRE(m.on_hello(phello(1, 2, {entry(1, PlockType::kWrite, 0, 9)}), &out).ok());
  m.on_plock(1, set(1, entry(1, PlockType::kRead, 100, 109)), &out);
  CHECK(replies(out, 1).empty());  // slot 2 has not reported: kept
  // Slot 2 reports a waiting request (re-sent after its hello).
  REQUIRE(m.on_hello(phello(2, 2), &out).ok());
  m.on_plock(2, set(1, entry(2, PlockType::kWrite, 5, 5), true), &out);
  // Slot 0's locks are unknown: nothing can be granted, F_GETLK reports it.
  auto r1 = replies(out, 1);
  REQUIRE(r1.size() == 1);
  CHECK(r1[0].plock_result == PlockResult::kConflict);
  m.on_plock(2, get(2, entry(2, PlockType::kRead, 1000, 1000, 6)), &out);
  auto g = replies(out, 2);
  REQUIRE(g.size() == 1);
  CHECK(g[0].plock_result == PlockResult::kConflict);
  CHECK(g[0].plock.slot == UINT32_MAX);
  m.on_recovery_done(0, &out);
  CHECK(replies(out, 2).empty());  // still blocked by slot 1's reported lock
  m.on_plock(2, get(3, entry(2, PlockType::kRead, 0, 0)), &out);
  auto g2 = replies(out, 2);
  REQUIRE(g2.size() == 1);
  CHECK(g2[0].plock.slot == 1);
  m.on_plock(1, set(2, entry(1, PlockType::kUnlock, 0, UINT64_MAX)), &out);
  std::vector<Outgoing> all = out;
  auto to2 = replies(all, 2);
  REQUIRE(to2.size() == 1);
  CHECK(to2[0].plock_req == 1);
  CHECK(to2[0].plock_result == PlockResult::kGranted);
}

TEST_CASE("plock table: random non-waiting requests agree with a byte-by-byte model", "[locks][plock]") {
  // Model: for each owner, the lock type it holds on each of 32 bytes, and
  // on cell 32 standing for [32, EOF] (only requests to EOF reach there). A
  // request is granted iff no other owner holds a conflicting type on a cell
  // of its range; then the owner's cells in the range take the new type.
  constexpr int kBytes = 33;
  struct ModelOwner {
    uint32_t slot;
    uint64_t owner;
    PlockType bytes[kBytes];
  };
  std::vector<ModelOwner> owners = {{1, 1, {}}, {1, 2, {}}, {2, 1, {}}};
  for (auto& o : owners)
    for (auto& b : o.bytes) b = PlockType::kUnlock;
  Master m = started({0, 1, 2});
  uint64_t seed = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  for (uint64_t req = 1; req <= 600; ++req) {
    ModelOwner& o = owners[next() % owners.size()];
    uint64_t a = next() % 32, b = next() % 32;
    if (a > b) std::swap(a, b);
    // One in three requests runs to end of file.
    uint64_t end = next() % 3 == 0 ? UINT64_MAX : b;
    PlockType t = static_cast<PlockType>(next() % 3);
    bool want = true;
    for (const ModelOwner& other : owners) {
      if (&other == &o) continue;
      for (uint64_t i = a; i < kBytes && i <= end; ++i)
        if (other.bytes[i] != PlockType::kUnlock && t != PlockType::kUnlock &&
            (other.bytes[i] == PlockType::kWrite || t == PlockType::kWrite))
          want = false;
    }
    CAPTURE(req, o.slot, o.owner, a, end, static_cast<int>(t));
    wire::PlockEntry e = entry(o.owner, t, a, end);
    PlockResult got = set_now(m, o.slot, req, e);
    REQUIRE(got == (want ? PlockResult::kGranted : PlockResult::kConflict));
    if (want)
      for (uint64_t i = a; i < kBytes && i <= end; ++i) o.bytes[i] = t;
    // The table, expanded to bytes, equals the model; an owner's locks are
    // minimal (never two of one type touching).
    PlockStatus st;
    m.plock_status(&st);
    for (const ModelOwner& mo : owners) {
      PlockType seen[kBytes];
      for (auto& s : seen) s = PlockType::kUnlock;
      uint64_t prev_end = 0;
      int prev_type = -1;
      for (const auto& h : st.master_held) {
        if (h.lock.slot != mo.slot || h.lock.owner != mo.owner) continue;
        PlockType ht = h.lock.type == F_WRLCK ? PlockType::kWrite : PlockType::kRead;
        if (prev_type == static_cast<int>(ht)) CHECK(prev_end + 1 < h.lock.start);
        prev_end = h.lock.end;
        prev_type = static_cast<int>(ht);
        // Only locks to EOF reach past byte 31.
        if (h.lock.end != UINT64_MAX) REQUIRE(h.lock.end < 32);
        REQUIRE(h.lock.start <= 32);
        for (uint64_t i = h.lock.start; i < kBytes && i <= h.lock.end; ++i) {
          CHECK(seen[i] == PlockType::kUnlock);  // an owner's locks are disjoint
          seen[i] = ht;
        }
      }
      for (int i = 0; i < kBytes; ++i) CHECK(seen[i] == mo.bytes[i]);
    }
  }
}
