#include "node/peer_tracker.h"

#include <catch2/catch.hpp>

using namespace cext3;
using namespace cext3::node;

namespace {

constexpr uint64_t kMs = 1000000;
constexpr uint64_t kInterval = 50 * kMs;
constexpr uint64_t kDead = 400 * kMs;

// What a 3-slot heartbeat file holds; tests edit it between observations.
struct Disk {
  std::vector<cluster::HeartbeatRecord> recs;
  explicit Disk(uint32_t n) : recs(n) {
    for (uint32_t s = 0; s < n; ++s) recs[s].slot = s;
  }
  void beat(uint32_t s, uint64_t gen = 7) {
    recs[s].sequence++;
    recs[s].generation = gen;
    recs[s].flags = kHeartbeatFlagUsed;
  }
  std::vector<Result<cluster::HeartbeatRecord>> read() const {
    std::vector<Result<cluster::HeartbeatRecord>> out;
    for (auto& r : recs) out.push_back(r);
    return out;
  }
};

std::vector<MembershipEvent::Kind> kinds(const std::vector<MembershipEvent>& ev) {
  std::vector<MembershipEvent::Kind> k;
  for (auto& e : ev) k.push_back(e.kind);
  return k;
}

using K = MembershipEvent::Kind;

}  // namespace

TEST_CASE("PeerTracker: a slot is live after two changes, not after one", "[node][liveness]") {
  Disk d(3);
  PeerTracker t(3, 0, kDead, kInterval);
  uint64_t now = 1000 * kMs;
  d.beat(1);
  CHECK(t.observe(d.read(), now).empty());  // baseline
  CHECK(t.peers()[1].liveness == PeerLiveness::kUnknown);
  d.beat(1);
  now += kInterval;
  CHECK(t.observe(d.read(), now).empty());
  CHECK(t.peers()[1].liveness == PeerLiveness::kUnknown);
  d.beat(1);
  now += kInterval;
  auto ev = t.observe(d.read(), now);
  REQUIRE(kinds(ev) == std::vector<K>{K::kJoined});
  CHECK(ev[0].peer.slot == 1);
  CHECK(t.peers()[1].liveness == PeerLiveness::kLive);
  CHECK(t.peers()[1].changes_seen == 2);
  // Self is live from the start and never produces events; empty slot 2 stays unknown.
  CHECK(t.peers()[0].self);
  CHECK(t.peers()[0].liveness == PeerLiveness::kLive);
  CHECK(t.peers()[2].liveness == PeerLiveness::kUnknown);
}

TEST_CASE("PeerTracker: a live slot dies after dead_after without change, and needs two changes to return",
          "[node][liveness]") {
  Disk d(3);
  PeerTracker t(3, 0, kDead, kInterval);
  uint64_t now = 1000 * kMs;
  for (int i = 0; i < 3; ++i, now += kInterval) {
    d.beat(1);
    t.observe(d.read(), now);
  }
  REQUIRE(t.peers()[1].liveness == PeerLiveness::kLive);
  const uint64_t last_change = t.peers()[1].last_change_mono_ns;
  // Keep observing every interval with no change: live until dead_after.
  std::vector<MembershipEvent> died;
  while (died.empty()) {
    auto ev = t.observe(d.read(), now);
    if (!ev.empty()) died = ev;
    else CHECK(t.peers()[1].liveness == PeerLiveness::kLive);
    now += kInterval;
    REQUIRE(now < last_change + 2 * kDead);
  }
  REQUIRE(kinds(died) == std::vector<K>{K::kDied});
  CHECK(now - kInterval - last_change >= kDead);
  CHECK(now - kInterval - last_change < kDead + kInterval);
  // A new instance: one change is not enough, two are.
  d.beat(1, 99);
  CHECK(t.observe(d.read(), now).empty());
  CHECK(t.peers()[1].liveness == PeerLiveness::kDead);
  d.beat(1, 99);
  now += kInterval;
  CHECK(kinds(t.observe(d.read(), now)) == std::vector<K>{K::kJoined});
}

TEST_CASE("PeerTracker: the stopped flag is a clean leave at once", "[node][liveness]") {
  Disk d(3);
  PeerTracker t(3, 0, kDead, kInterval);
  uint64_t now = 1000 * kMs;
  for (int i = 0; i < 3; ++i, now += kInterval) {
    d.beat(2);
    t.observe(d.read(), now);
  }
  REQUIRE(t.peers()[2].liveness == PeerLiveness::kLive);
  d.beat(2);
  d.recs[2].flags |= kHeartbeatFlagStopped;
  auto ev = t.observe(d.read(), now);
  REQUIRE(kinds(ev) == std::vector<K>{K::kLeft});
  CHECK(t.peers()[2].liveness == PeerLiveness::kStopped);
  // Long silence after a clean leave is not a death.
  now += 3 * kDead;
  CHECK(t.observe(d.read(), now).empty());
  CHECK(t.peers()[2].liveness == PeerLiveness::kStopped);
}

TEST_CASE("PeerTracker: a used record that never changes is a dead node found at start; an empty slot is not",
          "[node][liveness]") {
  Disk d(3);
  d.beat(1);  // written once by a node that then crashed, before we started
  d.recs[2].flags = kHeartbeatFlagUsed | kHeartbeatFlagStopped;
  d.recs[2].sequence = 5;
  PeerTracker t(3, 0, kDead, kInterval);
  uint64_t now = 1000 * kMs;
  std::vector<MembershipEvent> all;
  for (int i = 0; i < 12; ++i, now += kInterval) {
    auto ev = t.observe(d.read(), now);
    all.insert(all.end(), ev.begin(), ev.end());
  }
  REQUIRE(kinds(all) == std::vector<K>{K::kDied});
  CHECK(all[0].peer.slot == 1);
  CHECK(t.peers()[2].liveness == PeerLiveness::kStopped);  // seen stopped at start: no event
}

TEST_CASE("PeerTracker: a gap in our own observations is not evidence against peers", "[node][liveness]") {
  Disk d(2);
  PeerTracker t(2, 0, kDead, kInterval);
  uint64_t now = 1000 * kMs;
  for (int i = 0; i < 3; ++i, now += kInterval) {
    d.beat(1);
    t.observe(d.read(), now);
  }
  REQUIRE(t.peers()[1].liveness == PeerLiveness::kLive);
  // We did not run for 2 s (reads failed, or SIGSTOP); the peer kept beating
  // but happens to show the same sequence again: not dead on that alone.
  now += 2000 * kMs;
  CHECK(t.observe(d.read(), now).empty());
  CHECK(t.peers()[1].liveness == PeerLiveness::kLive);
}

TEST_CASE("PeerTracker: a damaged record counts as a change, then as silence", "[node][liveness]") {
  Disk d(2);
  PeerTracker t(2, 0, kDead, kInterval);
  uint64_t now = 1000 * kMs;
  for (int i = 0; i < 3; ++i, now += kInterval) {
    d.beat(1);
    t.observe(d.read(), now);
  }
  REQUIRE(t.peers()[1].liveness == PeerLiveness::kLive);
  auto recs = d.read();
  recs[1] = Status::Corruption("heartbeat record checksum mismatch");
  std::vector<MembershipEvent> all;
  for (int i = 0; i < 12; ++i, now += kInterval) {
    auto ev = t.observe(recs, now);
    all.insert(all.end(), ev.begin(), ev.end());
  }
  CHECK(kinds(all) == std::vector<K>{K::kDied});
  CHECK_FALSE(t.peers()[1].record_ok);
  CHECK(t.peers()[1].record_error.find("checksum") != std::string::npos);
}
