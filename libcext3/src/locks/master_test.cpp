// The master's rules, driven message by message (no sockets).
#include <catch2/catch.hpp>

#include "locks/master.h"

using namespace cext3::locks;
using wire::Message;
using wire::MsgType;

namespace {

MembershipView view_of(std::vector<uint32_t> live, uint32_t coord, uint64_t epoch,
                       std::vector<uint32_t> unrecovered = {}) {
  MembershipView v;
  for (uint32_t s : live) {
    Member m;
    m.slot = s;
    m.name = std::to_string(s);
    m.address = "127.0.0.1:1";
    m.generation = 1;
    v.live.push_back(std::move(m));
  }
  v.coordinator_slot = coord;
  v.epoch = epoch;
  v.unrecovered = std::move(unrecovered);
  return v;
}

Message hello(uint32_t slot, uint64_t epoch, std::vector<wire::ReportEntry> report = {}) {
  Message m;
  m.type = MsgType::kHello;
  m.slot = slot;
  m.generation = 1;
  m.epoch = epoch;
  m.report = std::move(report);
  return m;
}

Message req(const std::string& r, LockMode mode, bool try_only = false) {
  Message m;
  m.type = MsgType::kRequest;
  m.resource = r;
  m.mode = mode;
  m.try_only = try_only;
  return m;
}

Message down(const std::string& r, LockMode mode, bool release = false) {
  Message m;
  m.type = MsgType::kDowngrade;
  m.resource = r;
  m.mode = mode;
  m.release = release;
  return m;
}

// A downgrade from a node that has seen its latest grant.
Message at_seq(const Master& m, uint32_t slot, Message d) {
  d.generation = m.grant_seq(slot, d.resource);
  return d;
}

// Messages of `type` sent to `slot` in `out`, then `out` is cleared.
std::vector<Message> take(std::vector<Outgoing>& out, uint32_t slot, MsgType type) {
  std::vector<Message> v;
  for (auto& o : out)
    if (o.slot == slot && o.msg.type == type) v.push_back(o.msg);
  return v;
}

}  // namespace

TEST_CASE("master: nothing is granted until every live slot has reported", "[locks]") {
  Master m(view_of({0, 1}, 0, 1));
  std::vector<Outgoing> out;
  REQUIRE(m.on_hello(hello(0, 1), &out).ok());
  m.on_request(0, req("a", LockMode::kEX), &out);
  CHECK(take(out, 0, MsgType::kGrant).empty());
  out.clear();
  REQUIRE(m.on_hello(hello(1, 1), &out).ok());
  auto g = take(out, 0, MsgType::kGrant);
  REQUIRE(g.size() == 1);
  CHECK(g[0].mode == LockMode::kEX);
  CHECK(g[0].epoch == 1);
}

TEST_CASE("master: hello with the wrong epoch or from a non-member is refused", "[locks]") {
  Master m(view_of({0, 1}, 0, 5));
  std::vector<Outgoing> out;
  CHECK_FALSE(m.on_hello(hello(1, 4), &out).ok());
  CHECK_FALSE(m.on_hello(hello(2, 5), &out).ok());
  Message stale = hello(1, 5);
  stale.generation = 9;
  CHECK_FALSE(m.on_hello(stale, &out).ok());
  CHECK(m.on_hello(hello(1, 5), &out).ok());
}

TEST_CASE("master: FIFO: a PR request waits behind an earlier EX waiter", "[locks]") {
  Master m(view_of({0, 1, 2}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u, 2u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  out.clear();
  m.on_request(0, req("r", LockMode::kPR), &out);
  REQUIRE(take(out, 0, MsgType::kGrant).size() == 1);
  out.clear();
  m.on_request(1, req("r", LockMode::kEX), &out);
  // Slot 0's PR blocks the head: slot 0 is called back for EX.
  auto cb = take(out, 0, MsgType::kCallback);
  REQUIRE(cb.size() == 1);
  CHECK(cb[0].mode == LockMode::kEX);
  out.clear();
  // PR is compatible with slot 0's PR, but must not overtake slot 1.
  m.on_request(2, req("r", LockMode::kPR), &out);
  CHECK(take(out, 2, MsgType::kGrant).empty());
  CHECK(take(out, 0, MsgType::kCallback).empty());  // not sent twice
  out.clear();
  m.on_downgrade(0, at_seq(m, 0, down("r", LockMode::kNL, true)), &out);
  CHECK(take(out, 1, MsgType::kGrant).size() == 1);
  CHECK(take(out, 2, MsgType::kGrant).empty());
  auto cb1 = take(out, 1, MsgType::kCallback);
  REQUIRE(cb1.size() == 1);
  CHECK(cb1[0].mode == LockMode::kPR);  // slot 1 may keep PR for slot 2
  out.clear();
  m.on_downgrade(1, at_seq(m, 1, down("r", LockMode::kPR)), &out);
  CHECK(take(out, 2, MsgType::kGrant).size() == 1);
}

TEST_CASE("master: try_only is denied behind a conflict and not queued", "[locks]") {
  Master m(view_of({0, 1}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  m.on_request(0, req("r", LockMode::kEX), &out);
  out.clear();
  m.on_request(1, req("r", LockMode::kPR, true), &out);
  CHECK(take(out, 1, MsgType::kDeny).size() == 1);
  CHECK(take(out, 0, MsgType::kCallback).empty());
  out.clear();
  m.on_downgrade(0, at_seq(m, 0, down("r", LockMode::kNL, true)), &out);
  CHECK(take(out, 1, MsgType::kGrant).empty());  // the denied request is gone
}

TEST_CASE("master: LVB is replaced on EX downgrade and returned with grants", "[locks]") {
  Master m(view_of({0, 1}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  m.on_request(0, req("r", LockMode::kEX), &out);
  out.clear();
  Message d = down("r", LockMode::kNL, true);
  d.has_lvb = true;
  d.lvb[0] = 7;
  d.lvb[63] = 8;
  m.on_downgrade(0, at_seq(m, 0, d), &out);
  m.on_request(1, req("r", LockMode::kPR), &out);
  auto g = take(out, 1, MsgType::kGrant);
  REQUIRE(g.size() == 1);
  CHECK(g[0].lvb == d.lvb);
}

TEST_CASE("master: a dead member's EX is held until recovery_done; a clean leave frees at once", "[locks]") {
  Master m(view_of({0, 1, 2}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u, 2u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  m.on_request(1, req("crashed", LockMode::kEX), &out);
  m.on_request(2, req("left", LockMode::kEX), &out);
  out.clear();
  m.on_request(0, req("crashed", LockMode::kPR), &out);
  m.on_request(0, req("left", LockMode::kPR), &out);
  out.clear();
  // Slot 1 dies (unrecovered), slot 2 leaves cleanly.
  m.on_membership(view_of({0}, 0, 1, {1}), &out);
  auto g = take(out, 0, MsgType::kGrant);
  REQUIRE(g.size() == 1);
  CHECK(g[0].resource == "left");
  CHECK(take(out, 1, MsgType::kCallback).empty());
  out.clear();
  // A late release from the dead node does not free what its journal covers.
  m.on_downgrade(1, at_seq(m, 1, down("crashed", LockMode::kNL, true)), &out);
  CHECK(take(out, 0, MsgType::kGrant).empty());
  m.on_recovery_done(1, &out);
  g = take(out, 0, MsgType::kGrant);
  REQUIRE(g.size() == 1);
  CHECK(g[0].resource == "crashed");
  // The dead EX holder never returned its value block: its version is
  // bumped so a copy cached under the old one is not trusted.
  CHECK(g[0].lvb[0] == 1);
}

TEST_CASE("master: the view dropping a slot from unrecovered also releases it", "[locks]") {
  Master m(view_of({0, 1}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  m.on_request(1, req("r", LockMode::kEX), &out);
  m.on_membership(view_of({0}, 0, 1, {1}), &out);
  out.clear();
  m.on_request(0, req("r", LockMode::kEX), &out);
  CHECK(take(out, 0, MsgType::kGrant).empty());
  m.on_membership(view_of({0}, 0, 1, {}), &out);
  CHECK(take(out, 0, MsgType::kGrant).size() == 1);
}

TEST_CASE("master: a new master bounds what unknown dead nodes may hold by the reports", "[locks]") {
  // Epoch 2 starts after slot 0 (old master) died unrecovered. Survivors
  // report: slot 1 holds EX on "ex", slot 2 holds PR on "pr"; "free" is
  // reported by nobody, so slot 0 may have held it in EX.
  Master m(view_of({1, 2}, 1, 2, {0}));
  std::vector<Outgoing> out;
  wire::ReportEntry ex{"ex", true, LockMode::kEX, {}, false, LockMode::kNL, false};
  wire::ReportEntry pr{"pr", true, LockMode::kPR, {}, false, LockMode::kNL, false};
  wire::ReportEntry want_free{"free", false, LockMode::kNL, {}, true, LockMode::kPR, false};
  REQUIRE(m.on_hello(hello(1, 2, {ex}), &out).ok());
  REQUIRE(m.on_hello(hello(2, 2, {pr, want_free}), &out).ok());
  CHECK(take(out, 2, MsgType::kGrant).empty());  // "free" PR: may conflict with a dead EX
  out.clear();
  m.on_request(1, req("pr", LockMode::kPR), &out);
  CHECK(take(out, 1, MsgType::kGrant).size() == 1);  // PR with a possible dead PR: fine
  out.clear();
  m.on_request(1, req("pr", LockMode::kEX), &out);
  CHECK(take(out, 1, MsgType::kGrant).empty());  // EX could meet a dead PR
  out.clear();
  m.on_downgrade(1, at_seq(m, 1, down("ex", LockMode::kNL, true)), &out);
  m.on_request(2, req("ex", LockMode::kEX), &out);
  CHECK(take(out, 2, MsgType::kGrant).size() == 1);  // slot 1's EX proved nobody else held it
  out.clear();
  m.on_recovery_done(0, &out);
  auto g = take(out, 2, MsgType::kGrant);
  REQUIRE(g.size() == 1);
  CHECK(g[0].resource == "free");
}

TEST_CASE("master: a conversion goes ahead of new requests", "[locks]") {
  Master m(view_of({0, 1, 2}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u, 2u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  m.on_request(0, req("r", LockMode::kPR), &out);
  m.on_request(1, req("r", LockMode::kPR), &out);
  out.clear();
  m.on_request(2, req("r", LockMode::kEX), &out);  // waits for both PRs
  m.on_request(0, req("r", LockMode::kEX), &out);  // conversion: ahead of slot 2
  out.clear();
  m.on_downgrade(1, at_seq(m, 1, down("r", LockMode::kNL, true)), &out);
  CHECK(take(out, 0, MsgType::kGrant).size() == 1);
  CHECK(take(out, 2, MsgType::kGrant).empty());
}

TEST_CASE("master: a downgrade that crossed a newer grant is ignored", "[locks]") {
  Master m(view_of({0, 1}, 0, 1));
  std::vector<Outgoing> out;
  for (uint32_t s : {0u, 1u}) REQUIRE(m.on_hello(hello(s, 1), &out).ok());
  m.on_request(0, req("r", LockMode::kPR), &out);
  uint64_t pr_seq = m.grant_seq(0, "r");
  m.on_request(0, req("r", LockMode::kEX), &out);  // granted: nobody else holds it
  REQUIRE(m.grant_seq(0, "r") != pr_seq);
  out.clear();
  // Slot 0 came down from PR before it saw the EX grant: that is old news.
  Message stale = down("r", LockMode::kNL, true);
  stale.generation = pr_seq;
  m.on_downgrade(0, stale, &out);
  m.on_request(1, req("r", LockMode::kPR), &out);
  CHECK(take(out, 1, MsgType::kGrant).empty());
  CHECK(take(out, 0, MsgType::kCallback).size() == 1);
}
