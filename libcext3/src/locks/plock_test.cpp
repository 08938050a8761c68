// Record locks through several LockService instances in one process, over
// 127.0.0.1 (the master's rules are in plock_table_test.cpp).
#include <catch2/catch.hpp>

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "cext3/locks/lock_service.h"

using namespace cext3::locks;
using namespace std::chrono_literals;
using cext3::Status;

namespace {

struct PlockCluster {
  std::vector<std::unique_ptr<LockService>> nodes;

  explicit PlockCluster(int n) {
    for (int i = 0; i < n; ++i) {
      LockService::Options o;
      o.slot = static_cast<uint32_t>(i);
      o.generation = 100 + i;
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
  void start_all() {
    std::vector<uint32_t> all;
    for (uint32_t i = 0; i < nodes.size(); ++i) all.push_back(i);
    publish(view(all, 0, 1), all);
  }
  Plocks& p(size_t i) { return nodes[i]->plocks(); }
};

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 3000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

constexpr uint64_t kIno = 12;
const PlockOwner kA{1, 501}, kB{2, 502}, kC{3, 503};

Status wrlock(Plocks& p, PlockOwner o, uint64_t s, uint64_t e, bool wait = false, std::chrono::milliseconds t = 2000ms) {
  return p.setlk(kIno, PlockSpace::kPosix, F_WRLCK, s, e, o, wait, t);
}
Status rdlock(Plocks& p, PlockOwner o, uint64_t s, uint64_t e, bool wait = false, std::chrono::milliseconds t = 2000ms) {
  return p.setlk(kIno, PlockSpace::kPosix, F_RDLCK, s, e, o, wait, t);
}
Status unlock(Plocks& p, PlockOwner o, uint64_t s, uint64_t e) {
  return p.setlk(kIno, PlockSpace::kPosix, F_UNLCK, s, e, o, false, 2000ms);
}

// A blocking setlk on its own thread; the test reads the outcome after join.
struct Blocked {
  std::atomic<bool> done{false};
  Status st;
  std::thread t;
  Blocked(std::function<Status()> f) {
    t = std::thread([this, f] {
      st = f();
      done = true;
    });
  }
  ~Blocked() {
    if (t.joinable()) t.join();
  }
  void join() { t.join(); }
};

}  // namespace

TEST_CASE("plock service: conflicts across nodes, F_GETLK names the holder, sub-range unlock", "[locks][plock]") {
  PlockCluster c(2);
  c.start_all();
  REQUIRE(wrlock(c.p(0), kA, 0, 99).ok());
  Status st = rdlock(c.p(1), kB, 50, 50);
  CHECK(st.errno_value() == EAGAIN);
  REQUIRE(rdlock(c.p(1), kB, 100, kPlockEof).ok());  // beside it
  auto g = c.p(1).getlk(kIno, PlockSpace::kPosix, F_WRLCK, 0, 10, kB, 2000ms);
  REQUIRE(g.ok());
  CHECK(g->type == F_WRLCK);
  CHECK(g->start == 0);
  CHECK(g->end == 99);
  CHECK(g->slot == 0);
  CHECK(g->pid == 501);
  CHECK(g->owner == 1);
  // The holder does not conflict with itself.
  auto self = c.p(0).getlk(kIno, PlockSpace::kPosix, F_WRLCK, 0, 99, kA, 2000ms);
  REQUIRE(self.ok());
  CHECK(self->type == F_UNLCK);
  // Unlock the middle: [40, 59] becomes free, the rest stays locked.
  REQUIRE(unlock(c.p(0), kA, 40, 59).ok());
  CHECK(wrlock(c.p(1), kB, 40, 59).ok());
  CHECK(rdlock(c.p(1), kB, 39, 39).errno_value() == EAGAIN);
  CHECK(rdlock(c.p(1), kB, 60, 60).errno_value() == EAGAIN);
  auto st0 = c.p(0).status();
  CHECK(st0.held.size() == 2);
  CHECK(st0.master_held.size() == 4);  // A: two pieces; B: [40,59] and [100,EOF]
  // Bad arguments are refused before any message.
  CHECK(c.p(0).setlk(kIno, PlockSpace::kPosix, 77, 0, 1, kA, false, 100ms).errno_value() == EINVAL);
  CHECK(c.p(0).setlk(kIno, PlockSpace::kPosix, F_RDLCK, 5, 4, kA, false, 100ms).errno_value() == EINVAL);
  CHECK(c.p(0).setlk(kIno, PlockSpace::kFlock, F_RDLCK, 5, 9, kA, false, 100ms).errno_value() == EINVAL);
}

TEST_CASE("plock service: F_SETLKW blocks until the holder on another node unlocks", "[locks][plock]") {
  PlockCluster c(3);
  c.start_all();
  REQUIRE(rdlock(c.p(1), kA, 0, 9).ok());
  Blocked writer([&] { return wrlock(c.p(2), kB, 5, 5, true, 5000ms); });
  REQUIRE(eventually([&] { return c.p(0).status().master_waiting == 1; }));
  CHECK_FALSE(writer.done.load());
  // A reader holding nothing would starve the writer: it is refused now.
  CHECK(rdlock(c.p(0), kC, 5, 5).errno_value() == EAGAIN);
  REQUIRE(c.p(1).release_owner(kIno, PlockSpace::kPosix, kA.owner, 2000ms).ok());
  writer.join();
  CHECK(writer.st.ok());
  CHECK(c.p(1).status().held.empty());
  REQUIRE(c.p(2).status().held.size() == 1);
  CHECK(c.p(2).status().held[0].lock.type == F_WRLCK);
}

TEST_CASE("plock service: a blocked wait is cancelled by owner, or times out, nothing is left", "[locks][plock]") {
  PlockCluster c(2);
  c.start_all();
  REQUIRE(wrlock(c.p(0), kA, 0, kPlockEof).ok());
  // "Forever" as the largest timeout there is.
  Blocked waiter([&] { return wrlock(c.p(1), kB, 0, 0, true, std::chrono::milliseconds::max()); });
  REQUIRE(eventually([&] { return c.p(0).status().master_waiting == 1; }));
  CHECK(c.p(1).cancel(kIno, PlockSpace::kPosix, kC.owner) == 0);  // other owner: nothing
  CHECK(c.p(1).cancel(kIno, PlockSpace::kPosix, kB.owner) == 1);
  waiter.join();
  CHECK(waiter.st.errno_value() == EINTR);
  CHECK(c.p(0).status().master_waiting == 0);
  auto t0 = std::chrono::steady_clock::now();
  Status st = wrlock(c.p(1), kB, 0, 0, true, 150ms);
  CHECK(st.errno_value() == ETIMEDOUT);
  CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
  CHECK(c.p(0).status().master_waiting == 0);
  // Neither left a lock behind once the holder is gone.
  REQUIRE(unlock(c.p(0), kA, 0, kPlockEof).ok());
  CHECK(c.p(0).status().master_held.empty());
  CHECK(c.p(1).status().held.empty());
}

TEST_CASE("plock service: flock and fcntl locks do not conflict, flock is whole-file", "[locks][plock]") {
  PlockCluster c(2);
  c.start_all();
  REQUIRE(c.p(0).setlk(kIno, PlockSpace::kFlock, F_WRLCK, 0, kPlockEof, kA, false, 2000ms).ok());
  CHECK(wrlock(c.p(1), kB, 0, kPlockEof).ok());
  CHECK(c.p(1).setlk(kIno, PlockSpace::kFlock, F_RDLCK, 0, kPlockEof, kC, false, 2000ms).errno_value() == EAGAIN);
  auto g = c.p(1).getlk(kIno, PlockSpace::kFlock, F_RDLCK, 0, kPlockEof, kC, 2000ms);
  REQUIRE(g.ok());
  CHECK(g->type == F_WRLCK);
  CHECK(g->slot == 0);
  // Releasing the fcntl locks leaves the flock alone, and the other way round.
  REQUIRE(c.p(1).release_owner(kIno, PlockSpace::kPosix, kB.owner, 2000ms).ok());
  CHECK(c.p(1).setlk(kIno, PlockSpace::kFlock, F_RDLCK, 0, kPlockEof, kC, false, 2000ms).errno_value() == EAGAIN);
  REQUIRE(c.p(0).release_owner(kIno, PlockSpace::kFlock, kA.owner, 2000ms).ok());
  CHECK(c.p(1).setlk(kIno, PlockSpace::kFlock, F_RDLCK, 0, kPlockEof, kC, false, 2000ms).ok());
}

TEST_CASE("plock service: a dead node's locks are released by recovery_done, waking waiters", "[locks][plock]") {
  PlockCluster c(3);
  c.start_all();
  REQUIRE(wrlock(c.p(2), kA, 0, 99).ok());
  Blocked waiter([&] { return rdlock(c.p(1), kB, 10, 10, true, 8000ms); });
  REQUIRE(eventually([&] { return c.p(0).status().master_waiting == 1; }));
  // Slot 2 is declared dead (a crash: a clean shutdown would release them).
  c.publish(c.view({0, 1}, 0, 1, {2}), {0, 1});
  std::this_thread::sleep_for(100ms);
  CHECK_FALSE(waiter.done.load());
  CHECK(rdlock(c.p(0), kC, 50, 50).errno_value() == EAGAIN);
  c.nodes[1]->recovery_done(2);  // forwarded to the master on slot 0
  waiter.join();
  CHECK(waiter.st.ok());
  CHECK(wrlock(c.p(0), kC, 50, 50).ok());
}

TEST_CASE("plock service: a node that shuts down drops its own locks", "[locks][plock]") {
  PlockCluster c(2);
  c.start_all();
  REQUIRE(wrlock(c.p(1), kA, 0, kPlockEof).ok());
  REQUIRE(c.p(1).setlk(kIno, PlockSpace::kFlock, F_WRLCK, 0, kPlockEof, kA, false, 2000ms).ok());
  Blocked waiter([&] { return wrlock(c.p(0), kB, 0, 0, true, 5000ms); });
  REQUIRE(eventually([&] { return c.p(0).status().master_waiting == 1; }));
  c.nodes[1]->shutdown();
  waiter.join();
  CHECK(waiter.st.ok());
  // Its flock's release is a message of its own that may still be on its way.
  CHECK(eventually([&] { return c.p(0).setlk(kIno, PlockSpace::kFlock, F_WRLCK, 0, kPlockEof, kB, false, 2000ms).ok(); }));
  CHECK(c.p(1).setlk(kIno, PlockSpace::kPosix, F_RDLCK, 0, 0, kA, false, 100ms).errno_value() == ENOLCK);
}

TEST_CASE("plock service: master failover keeps granted locks and serves blocked waiters", "[locks][plock]") {
  PlockCluster c(3);
  c.start_all();
  REQUIRE(wrlock(c.p(1), kA, 0, 99).ok());
  REQUIRE(rdlock(c.p(2), kC, 200, 299).ok());
  Blocked waiter([&] { return wrlock(c.p(2), kB, 50, 59, true, 10000ms); });
  REQUIRE(eventually([&] { return c.p(0).status().master_waiting == 1; }));
  // The coordinator (slot 0) dies; slot 1 masters epoch 2 from the reports.
  c.nodes[0]->shutdown();
  c.publish(c.view({1, 2}, 1, 2, {0}), {1, 2});
  REQUIRE(eventually([&] { return c.nodes[1]->status().is_master && c.nodes[2]->status().connected_to_master; }));
  // Slot 0's locks died with it: unknown until its recovery, reported as such.
  auto unknown = c.p(2).getlk(77, PlockSpace::kPosix, F_RDLCK, 0, 0, kC, 2000ms);
  REQUIRE(unknown.ok());
  CHECK(unknown->type == F_WRLCK);
  CHECK(unknown->slot == UINT32_MAX);
  c.nodes[2]->recovery_done(0);
  REQUIRE(eventually([&] {
    auto g = c.p(2).getlk(kIno, PlockSpace::kPosix, F_WRLCK, 0, 0, kC, 2000ms);
    return g.ok() && g->slot == 1;
  }));
  // The reported locks are back at the new master; the waiter was re-sent.
  auto st = c.p(1).status();
  CHECK(st.master_held.size() == 2);
  CHECK(st.master_waiting == 1);
  CHECK(rdlock(c.p(1), kA, 250, 250).errno_value() == 0);  // read beside read
  CHECK(wrlock(c.p(1), kA, 250, 250).errno_value() == EAGAIN);
  CHECK_FALSE(waiter.done.load());
  REQUIRE(unlock(c.p(1), kA, 0, kPlockEof).ok());
  waiter.join();
  CHECK(waiter.st.ok());
  CHECK(c.p(2).status().held.size() == 2);
}

TEST_CASE("plock service: random waiting locks from three nodes never overlap in conflict", "[locks][plock]") {
  // 3 nodes x 2 owners lock random ranges of 16 bytes with F_SETLKW, hold
  // briefly, unlock. Every hold is checked against a shared byte map, marked
  // after the grant and cleared before the unlock (inside the true hold),
  // so any overlap it finds is real. Each owner holds one range at a time:
  // no deadlock is possible, so every wait must end in a grant.
  PlockCluster c(3);
  c.start_all();
  constexpr int kBytes = 16, kOps = 40;
  std::mutex mu;
  int writers[kBytes] = {}, readers[kBytes] = {};
  std::atomic<int> violations{0}, failures{0}, granted{0};
  std::vector<std::thread> threads;
  for (int node = 0; node < 3; ++node)
    for (uint64_t owner = 1; owner <= 2; ++owner)
      threads.emplace_back([&, node, owner] {
        uint64_t seed = 0x2545F4914F6CDD1Dull * (node * 2 + owner);
        auto next = [&] {
          seed ^= seed << 13;
          seed ^= seed >> 7;
          seed ^= seed << 17;
          return seed;
        };
        PlockOwner o{owner, static_cast<uint32_t>(node * 10 + owner)};
        for (int i = 0; i < kOps; ++i) {
          uint64_t a = next() % kBytes, b = next() % kBytes;
          if (a > b) std::swap(a, b);
          bool write = next() % 2 == 0;
          Status st = c.p(node).setlk(kIno, PlockSpace::kPosix, write ? F_WRLCK : F_RDLCK, a, b, o, true, 10000ms);
          if (!st.ok()) {
            ++failures;
            continue;
          }
          ++granted;
          {
            std::lock_guard lk(mu);
            for (uint64_t x = a; x <= b; ++x) {
              if (writers[x] > 0 || (write && readers[x] > 0)) ++violations;
              ++(write ? writers : readers)[x];
            }
          }
          std::this_thread::sleep_for(std::chrono::microseconds(next() % 500));
          {
            std::lock_guard lk(mu);
            for (uint64_t x = a; x <= b; ++x) --(write ? writers : readers)[x];
          }
          if (!c.p(node).release_owner(kIno, PlockSpace::kPosix, owner, 5000ms).ok()) ++failures;
        }
      });
  for (auto& t : threads) t.join();
  CHECK(violations.load() == 0);
  CHECK(failures.load() == 0);
  CHECK(granted.load() == 3 * 2 * kOps);
  CHECK(c.p(0).status().master_held.empty());
  CHECK(c.p(0).status().master_waiting == 0);
}
