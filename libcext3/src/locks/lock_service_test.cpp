// Several LockService instances in one process, talking over 127.0.0.1.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "cext3/locks/lock_service.h"
#include "cext3/node/fence.h"

using namespace cext3::locks;
using namespace std::chrono_literals;

namespace {

// A sequence of named events, in the order they really happened.
struct EventLog {
  std::mutex mu;
  std::vector<std::string> ev;
  void add(const std::string& e) {
    std::lock_guard lk(mu);
    ev.push_back(e);
  }
  std::vector<std::string> get() {
    std::lock_guard lk(mu);
    return ev;
  }
};

struct Cluster {
  std::vector<std::unique_ptr<LockService>> nodes;
  EventLog log;

  explicit Cluster(int n, std::function<void(uint32_t, const std::string&, LockMode, LockMode)> hook = nullptr) {
    for (int i = 0; i < n; ++i) {
      LockService::Options o;
      o.slot = static_cast<uint32_t>(i);
      o.node_name = std::to_string(i);
      o.generation = 100 + i;
      o.listen_address = "127.0.0.1:0";
      uint32_t slot = o.slot;
      if (hook) o.before_downgrade = [hook, slot](const std::string& r, LockMode f, LockMode t) { hook(slot, r, f, t); };
      auto s = LockService::start(std::move(o));
      REQUIRE(s.ok());
      nodes.push_back(std::move(*s));
    }
  }
  MembershipView view(std::vector<uint32_t> live, uint32_t coord, uint64_t epoch, std::vector<uint32_t> unrec = {}) {
    MembershipView v;
    for (uint32_t s : live) {
      Member m;
      m.slot = s;
      m.name = std::to_string(s);
      m.address = nodes[s]->address();
      m.generation = 100 + s;
      v.live.push_back(std::move(m));
    }
    v.coordinator_slot = coord;
    v.epoch = epoch;
    v.unrecovered = std::move(unrec);
    return v;
  }
  void publish(const MembershipView& v, std::vector<uint32_t> to) {
    for (uint32_t s : to) nodes[s]->update_membership(v);
  }
  void start_all(uint32_t coord = 0) {
    std::vector<uint32_t> all;
    for (uint32_t i = 0; i < nodes.size(); ++i) all.push_back(i);
    publish(view(all, coord, 1), all);
  }
};

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 3000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

uint32_t master_waiting(LockService& master, const std::string& r) {
  for (const auto& e : master.status().master)
    if (e.resource == r) return e.waiting;
  return 0;
}

}  // namespace

TEST_CASE("lock service: lock, unlock, convert between two nodes", "[locks]") {
  Cluster c(2);
  c.start_all();
  auto a = c.nodes[0]->lock("r", LockMode::kPR, 2000ms);
  REQUIRE(a.ok());
  auto b = c.nodes[1]->lock("r", LockMode::kPR, 2000ms);
  REQUIRE(b.ok());  // PR + PR
  // B's upgrade must wait until A's user lets go.
  // Catch2 assertions are not thread-safe: threads record, the test checks.
  std::atomic<bool> upgraded{false}, convert_ok{false};
  std::thread t([&] {
    convert_ok = c.nodes[1]->convert(*b, LockMode::kEX, 3000ms).ok();
    upgraded = true;
  });
  std::this_thread::sleep_for(100ms);
  CHECK_FALSE(upgraded.load());
  REQUIRE(c.nodes[0]->unlock(*a).ok());
  t.join();
  CHECK(upgraded.load());
  CHECK(convert_ok.load());
  CHECK(b->mode == LockMode::kEX);
  CHECK(c.nodes[1]->convert(*b, LockMode::kPR, 100ms).ok());
  CHECK(c.nodes[1]->unlock(*b).ok());
  CHECK_FALSE(c.nodes[1]->unlock(*b).ok());  // twice is an error
}

TEST_CASE("lock service: a cached re-grant needs no network", "[locks]") {
  Cluster c(2);
  c.start_all();
  auto h = c.nodes[1]->lock("cached", LockMode::kEX, 2000ms);
  REQUIRE(h.ok());
  REQUIRE(c.nodes[1]->unlock(*h).ok());
  auto before = c.nodes[1]->status();
  // Take the master away entirely: a re-grant from the cache still works.
  c.nodes[0]->shutdown();
  auto again = c.nodes[1]->lock("cached", LockMode::kPR, 500ms);
  REQUIRE(again.ok());
  auto after = c.nodes[1]->status();
  CHECK(after.cached_grants == before.cached_grants + 1);
  // Something not cached cannot be had without the master.
  CHECK_FALSE(c.nodes[1]->lock("other", LockMode::kPR, 100ms).ok());
  CHECK(c.nodes[1]->unlock(*again).ok());
}

TEST_CASE("lock service: a callback runs before_downgrade before the other node's grant", "[locks]") {
  EventLog log;
  Cluster c(2, [&](uint32_t slot, const std::string& r, LockMode f, LockMode t) {
    log.add("downgrade " + std::to_string(slot) + " " + r + " " + to_string(f) + "->" + to_string(t));
  });
  c.start_all();
  auto h = c.nodes[0]->lock("r", LockMode::kEX, 2000ms);
  REQUIRE(h.ok());
  h->lvb[0] = 1;
  std::atomic<int> seen_lvb{-1};
  std::thread t([&] {
    auto g = c.nodes[1]->lock("r", LockMode::kPR, 3000ms);
    log.add(g.ok() ? "grant 1" : "failed 1");
    if (g.ok()) {
      seen_lvb = g->lvb[0];
      c.nodes[1]->unlock(*g);
    }
  });
  std::this_thread::sleep_for(100ms);
  log.add("unlock 0");
  REQUIRE(c.nodes[0]->unlock(*h).ok());  // cached: released only by the callback
  t.join();
  auto ev = log.get();
  REQUIRE(ev.size() == 3);
  CHECK(ev[0] == "unlock 0");
  CHECK(ev[1] == "downgrade 0 r EX->PR");  // PR wanted: EX comes down to PR only
  CHECK(ev[2] == "grant 1");
  CHECK(seen_lvb.load() == 1);
  CHECK(c.nodes[0]->status().callbacks == 1);
}

TEST_CASE("lock service: the LVB travels with EX release to the next holder", "[locks]") {
  Cluster c(3);
  c.start_all();
  auto h = c.nodes[1]->lock("lvb", LockMode::kEX, 2000ms);
  REQUIRE(h.ok());
  for (size_t i = 0; i < kLvbBytes; ++i) h->lvb[i] = static_cast<uint8_t>(0xA0 + i);
  REQUIRE(c.nodes[1]->unlock(*h).ok());
  auto g = c.nodes[2]->lock("lvb", LockMode::kEX, 2000ms);
  REQUIRE(g.ok());
  CHECK(g->lvb == h->lvb);
  g->lvb[0] = 0x55;
  REQUIRE(c.nodes[2]->unlock(*g).ok());
  auto r = c.nodes[0]->lock("lvb", LockMode::kPR, 2000ms);
  REQUIRE(r.ok());
  CHECK(r->lvb[0] == 0x55);
  CHECK(r->lvb[1] == 0xA1);
  c.nodes[0]->unlock(*r);
}

TEST_CASE("lock service: FIFO: a later PR does not overtake an earlier EX waiter", "[locks]") {
  Cluster c(3);
  c.start_all();
  EventLog log;
  auto h = c.nodes[0]->lock("fifo", LockMode::kPR, 2000ms);
  REQUIRE(h.ok());
  std::thread ex([&] {
    auto g = c.nodes[1]->lock("fifo", LockMode::kEX, 5000ms);
    if (!g.ok()) return log.add("EX 1 failed");
    log.add("EX 1");
    std::this_thread::sleep_for(50ms);
    log.add("EX 1 done");
    c.nodes[1]->unlock(*g);
  });
  REQUIRE(eventually([&] { return master_waiting(*c.nodes[0], "fifo") == 1; }));
  std::thread pr([&] {
    auto g = c.nodes[2]->lock("fifo", LockMode::kPR, 5000ms);
    if (!g.ok()) return log.add("PR 2 failed");
    log.add("PR 2");
    c.nodes[2]->unlock(*g);
  });
  REQUIRE(eventually([&] { return master_waiting(*c.nodes[0], "fifo") == 2; }));
  log.add("unlock 0");
  c.nodes[0]->unlock(*h);
  ex.join();
  pr.join();
  CHECK(log.get() == std::vector<std::string>{"unlock 0", "EX 1", "EX 1 done", "PR 2"});
}

TEST_CASE("lock service: try_only fails at once, a timeout fails after the timeout", "[locks]") {
  Cluster c(2);
  c.start_all();
  auto h = c.nodes[0]->lock("t", LockMode::kEX, 2000ms);
  REQUIRE(h.ok());
  auto t0 = std::chrono::steady_clock::now();
  auto tr = c.nodes[1]->lock("t", LockMode::kPR, 5000ms, true);
  CHECK_FALSE(tr.ok());
  CHECK(tr.status().code() == cext3::Status::Code::kBusy);
  CHECK(std::chrono::steady_clock::now() - t0 < 2000ms);
  // A local conflict is also refused at once.
  CHECK_FALSE(c.nodes[0]->lock("t", LockMode::kPR, 5000ms, true).ok());
  // try_only of a free resource succeeds.
  auto free = c.nodes[1]->lock("free", LockMode::kEX, 2000ms, true);
  REQUIRE(free.ok());
  c.nodes[1]->unlock(*free);
  t0 = std::chrono::steady_clock::now();
  auto to = c.nodes[1]->lock("t", LockMode::kEX, 150ms);
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK_FALSE(to.ok());
  CHECK(waited >= 150ms);
  CHECK(waited < 2000ms);
  // After a timeout the lock is still obtainable once released.
  c.nodes[0]->unlock(*h);
  auto later = c.nodes[1]->lock("t", LockMode::kEX, 2000ms);
  CHECK(later.ok());
}

TEST_CASE("lock service: a dead member's EX is not re-granted until recovery_done", "[locks]") {
  Cluster c(3);
  c.start_all();
  auto h = c.nodes[2]->lock("dirty", LockMode::kEX, 2000ms);
  REQUIRE(h.ok());
  // Slot 2 is declared dead: the master cuts it off, as if it had crashed
  // (a clean shutdown would release its locks).
  c.publish(c.view({0, 1}, 0, 1, {2}), {0, 1});
  CHECK_FALSE(c.nodes[1]->lock("dirty", LockMode::kPR, 300ms).ok());
  std::atomic<bool> got{false}, granted{false};
  std::thread t([&] {
    granted = c.nodes[1]->lock("dirty", LockMode::kEX, 5000ms).ok();
    got = true;
  });
  std::this_thread::sleep_for(100ms);
  CHECK_FALSE(got.load());
  c.nodes[1]->recovery_done(2);  // from a non-master node: forwarded
  t.join();
  CHECK(got.load());
  CHECK(granted.load());
}

TEST_CASE("lock service: coordinator change keeps held locks and holds back unknown ones", "[locks]") {
  Cluster c(3);
  c.start_all(0);
  auto ex = c.nodes[1]->lock("held-ex", LockMode::kEX, 2000ms);
  REQUIRE(ex.ok());
  ex->lvb[0] = 42;
  auto pr = c.nodes[1]->lock("held-pr", LockMode::kPR, 2000ms);
  REQUIRE(pr.ok());
  auto dead = c.nodes[0]->lock("dead-ex", LockMode::kEX, 2000ms);
  REQUIRE(dead.ok());
  // The coordinator (slot 0) dies; slot 1 becomes coordinator at epoch 2.
  c.nodes[0]->shutdown();
  auto v = c.view({1, 2}, 1, 2, {0});
  c.publish(v, {1, 2});
  REQUIRE(eventually([&] { return c.nodes[2]->status().connected_to_master && c.nodes[1]->status().is_master; }));
  // Slot 1's report says PR on held-pr: the dead node held at most PR there.
  auto p2 = c.nodes[2]->lock("held-pr", LockMode::kPR, 2000ms);
  CHECK(p2.ok());
  // held-ex: slot 1 still holds EX (and its user still has it).
  CHECK_FALSE(c.nodes[2]->lock("held-ex", LockMode::kPR, 200ms).ok());
  REQUIRE(c.nodes[1]->unlock(*ex).ok());
  auto e2 = c.nodes[2]->lock("held-ex", LockMode::kPR, 2000ms);
  REQUIRE(e2.ok());
  CHECK(e2->lvb[0] == 42);  // came back through the callback to the new master
  // dead-ex: nobody alive reported it; the dead coordinator may hold EX.
  CHECK_FALSE(c.nodes[2]->lock("dead-ex", LockMode::kPR, 200ms).ok());
  c.nodes[1]->recovery_done(0);
  CHECK(c.nodes[2]->lock("dead-ex", LockMode::kPR, 2000ms).ok());
  auto st = c.nodes[1]->status();
  CHECK(st.epoch == 2);
}

TEST_CASE("lock service: a fenced node does not give up its EX on a callback", "[locks]") {
  cext3::node::FenceGate gate;
  gate.renew(cext3::node::monotonic_ns() + 3600ull * 1000000000ull);
  std::vector<std::unique_ptr<LockService>> nodes;
  for (uint32_t i = 0; i < 2; ++i) {
    LockService::Options o;
    o.slot = i;
    o.generation = 1;
    if (i == 1) o.gate = &gate;
    auto s = LockService::start(std::move(o));
    REQUIRE(s.ok());
    nodes.push_back(std::move(*s));
  }
  MembershipView v;
  v.coordinator_slot = 0;
  v.epoch = 1;
  for (uint32_t i = 0; i < 2; ++i) {
    Member m;
    m.slot = i;
    m.address = nodes[i]->address();
    m.generation = 1;
    v.live.push_back(m);
  }
  for (auto& n : nodes) n->update_membership(v);
  // While the lease holds, a callback takes the lock away as usual.
  auto h = nodes[1]->lock("a", LockMode::kEX, 2000ms);
  REQUIRE(h.ok());
  REQUIRE(nodes[1]->unlock(*h).ok());
  auto g = nodes[0]->lock("a", LockMode::kEX, 2000ms);
  REQUIRE(g.ok());
  REQUIRE(nodes[0]->unlock(*g).ok());
  // Once fenced, node 1 keeps what it holds: only recovery may free it.
  auto h2 = nodes[1]->lock("b", LockMode::kEX, 2000ms);
  REQUIRE(h2.ok());
  REQUIRE(nodes[1]->unlock(*h2).ok());
  gate.fence("lease lost (test)");
  CHECK_FALSE(nodes[0]->lock("b", LockMode::kPR, 300ms).ok());
}
