#include "cext3/node/heartbeat.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "cext3/node/slot_claim.h"
#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::node;
using namespace cext3::node::testing;

namespace {

constexpr uint64_t kMs = 1000000;

// One node of a test cluster: its own gate, FencedDevice and ClusterDisk over
// the shared memory device, a claimed slot and a heartbeat loop.
struct Node {
  FenceGate gate;
  FencedDevice fenced;
  std::unique_ptr<ClusterDisk> disk;
  SlotClaimResult claim;
  std::unique_ptr<HeartbeatLoop> loop;
  std::mutex mu;
  std::vector<MembershipEvent> events;
  std::vector<uint64_t> event_times;  // monotonic, when each event arrived
  std::atomic<int> fenced_calls{0};
  std::string fenced_why;
  uint64_t fenced_at = 0;

  Node(MemoryCluster& mc, BlockDevice& dev) : fenced(dev, gate), disk(mc.disk(fenced)) {}

  void claim_and_start(uint32_t slot, const std::string& name) {
    SlotClaimOptions co;
    co.slot = slot;
    co.node_name = name;
    co.address = "127.0.0.1:" + std::to_string(7000 + slot);
    auto c = claim_slot(*disk, gate, co);
    REQUIRE(c.ok());
    claim = *c;
    start(name);
  }
  void start(const std::string& name) {
    HeartbeatLoop::Options o;
    o.slot = claim.slot;
    o.generation = claim.generation;
    o.node_name = name;
    o.address = "127.0.0.1:" + std::to_string(7000 + claim.slot);
    o.on_event = [this](const MembershipEvent& e) {
      std::lock_guard<std::mutex> lk(mu);
      events.push_back(e);
      event_times.push_back(monotonic_ns());
    };
    o.on_fenced = [this](const std::string& why) {
      std::lock_guard<std::mutex> lk(mu);
      fenced_why = why;
      fenced_at = monotonic_ns();
      ++fenced_calls;
    };
    loop = std::make_unique<HeartbeatLoop>(*disk, gate, o);
    REQUIRE(loop->start().ok());
  }
  bool saw(MembershipEvent::Kind k, uint32_t slot) { return when(k, slot) != 0; }
  // When the first such event arrived (monotonic ns), 0 if none.
  uint64_t when(MembershipEvent::Kind k, uint32_t slot) {
    std::lock_guard<std::mutex> lk(mu);
    for (size_t i = 0; i < events.size(); ++i)
      if (events[i].kind == k && events[i].peer.slot == slot) return event_times[i];
    return 0;
  }
};

// Polls `pred` every 10 ms for up to `ms`.
template <typename Pred>
bool eventually(Pred pred, int ms) {
  for (int waited = 0; waited < ms; waited += 10) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// A device whose writes can be made to hang until released: a heartbeat
// write that never returns.
class StallingDevice : public BlockDevice {
 public:
  explicit StallingDevice(BlockDevice& inner) : inner_(inner) {}
  uint64_t size() const override { return inner_.size(); }
  uint32_t sector_size() const override { return inner_.sector_size(); }
  bool read_only() const override { return false; }
  std::string name() const override { return "stalling"; }
  Status read(uint64_t o, void* b, size_t n) override { return inner_.read(o, b, n); }
  Status write(uint64_t o, const void* b, size_t n) override {
    std::unique_lock<std::mutex> lk(mu_);
    if (stall_) {
      ++stalled_;
      cv_.notify_all();
      cv_.wait(lk, [&] { return !stall_; });
    }
    lk.unlock();
    return inner_.write(o, b, n);
  }
  Status flush() override { return inner_.flush(); }
  void set_stall(bool s) {
    std::lock_guard<std::mutex> lk(mu_);
    stall_ = s;
    cv_.notify_all();
  }
  int stalled() {
    std::lock_guard<std::mutex> lk(mu_);
    return stalled_;
  }

 private:
  BlockDevice& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stall_ = false;
  int stalled_ = 0;
};

}  // namespace

TEST_CASE("HeartbeatLoop: peers join, leave cleanly at once, and die after dead_after", "[node][heartbeat]") {
  MemoryCluster mc(3);
  Node a(mc, mc.device()), b(mc, mc.device());
  a.claim_and_start(0, "node-a");
  b.claim_and_start(2, "node-b");
  REQUIRE(eventually([&] { return a.saw(MembershipEvent::Kind::kJoined, 2); }, 2000));
  REQUIRE(eventually([&] { return b.saw(MembershipEvent::Kind::kJoined, 0); }, 2000));
  auto view = a.loop->peers();
  REQUIRE(view.size() == 3);
  CHECK(view[0].self);
  CHECK(view[0].liveness == PeerLiveness::kLive);
  CHECK(view[2].liveness == PeerLiveness::kLive);
  CHECK(view[2].record.node_name == "node-b");
  CHECK(view[2].record.address == "127.0.0.1:7002");
  CHECK(view[1].liveness == PeerLiveness::kUnknown);  // never used
  // The sequence moves and each good write renewed the gate to about
  // submit + fence window (400 - 100 ms).
  const uint64_t seq = a.loop->sequence();
  REQUIRE(eventually([&] { return a.loop->sequence() >= seq + 2; }, 1000));
  const uint64_t deadline = a.gate.deadline_mono_ns();
  CHECK(deadline > monotonic_ns());
  CHECK(deadline <= monotonic_ns() + 300 * kMs);
  CHECK(a.loop->last_write_mono_ns() > 0);

  // Clean leave: the stopped record is seen as kLeft well before dead_after.
  const uint64_t t0 = monotonic_ns();
  REQUIRE(b.loop->stop(true).ok());
  REQUIRE(eventually([&] { return a.saw(MembershipEvent::Kind::kLeft, 2); }, 2000));
  CHECK(monotonic_ns() - t0 < 400 * kMs);
  CHECK(a.loop->peers()[2].liveness == PeerLiveness::kStopped);
  CHECK_FALSE(a.saw(MembershipEvent::Kind::kDied, 2));

  // A new node in slot 1 that then goes silent (no stopped record): it joins,
  // then dies no sooner than dead_after after its last write.
  Node c(mc, mc.device());
  c.claim_and_start(1, "node-c");
  REQUIRE(eventually([&] { return a.saw(MembershipEvent::Kind::kJoined, 1); }, 2000));
  REQUIRE(c.loop->stop(false).ok());
  const uint64_t last_write = c.loop->last_write_mono_ns();  // completion of c's last write
  REQUIRE(eventually([&] { return a.saw(MembershipEvent::Kind::kDied, 1); }, 3000));
  // A saw that write no earlier than it was submitted and waits dead_after
  // from there. Slack: the time between the write landing and c reading its
  // clock after it, which a loaded machine can stretch (kept under one interval).
  CHECK(a.when(MembershipEvent::Kind::kDied, 1) + 50 * kMs >= last_write + 400 * kMs);
  CHECK(a.loop->peers()[1].liveness == PeerLiveness::kDead);
  CHECK(a.fenced_calls == 0);
  REQUIRE(a.loop->stop(true).ok());
}

TEST_CASE("HeartbeatLoop: a hanging write fences the node at the deadline and on_fenced runs once",
          "[node][heartbeat][fence]") {
  MemoryCluster mc(2);
  StallingDevice stall(mc.device());
  Node a(mc, stall);
  a.claim_and_start(0, "node-a");
  REQUIRE(eventually([&] { return a.loop->sequence() >= 3; }, 2000));
  stall.set_stall(true);
  REQUIRE(eventually([&] { return stall.stalled() >= 1; }, 2000));
  const uint64_t deadline = a.gate.deadline_mono_ns();
  // The write never returns, yet the watchdog fences once the deadline passes.
  REQUIRE(eventually([&] { return a.fenced_calls.load() == 1; }, 2000));
  CHECK(a.gate.fenced());
  {
    std::lock_guard<std::mutex> lk(a.mu);
    CHECK(a.fenced_why.find("expired") != std::string::npos);
    // Not before the deadline, and promptly after it (generous for a loaded machine).
    CHECK(a.fenced_at >= deadline);
    CHECK(a.fenced_at < deadline + 500 * kMs);
  }
  // Every later write is refused before it reaches the device.
  cluster::HeartbeatRecord h;
  h.slot = 0;
  stall.set_stall(false);
  CHECK(a.disk->write_heartbeat(h).code() == Status::Code::kFenced);
  CHECK(a.disk->device().flush().code() == Status::Code::kFenced);
  // Reads still work (the node may still look at the disk to report).
  CHECK(a.disk->read_heartbeat(0).ok());
  // stop() with a stopped record is refused: a fenced node writes nothing.
  CHECK(a.loop->stop(true).code() == Status::Code::kFenced);
  CHECK(a.fenced_calls.load() == 1);
}

TEST_CASE("HeartbeatLoop: a node whose slot was taken over fences itself", "[node][heartbeat][fence]") {
  MemoryCluster mc(2);
  Node a(mc, mc.device());
  a.claim_and_start(1, "node-a");
  REQUIRE(eventually([&] { return a.loop->sequence() >= 3; }, 2000));
  // Another node's lease and heartbeat in slot 1 (as after a takeover).
  auto raw = mc.disk(mc.device());
  cluster::SlotLeaseRecord l;
  l.slot = 1;
  l.owned = 1;
  l.lease_generation = a.claim.generation + 1;
  l.owner = "usurper";
  REQUIRE(raw->write_lease(l).ok());
  cluster::HeartbeatRecord h;
  h.slot = 1;
  h.sequence = 1000;
  h.generation = l.lease_generation;
  h.node_name = "usurper";
  // Keep writing it so the loop's own writes cannot hide it for a whole tick.
  bool fenced = eventually(
      [&] {
        ++h.sequence;
        REQUIRE(raw->write_heartbeat(h).ok());
        return a.fenced_calls.load() == 1;
      },
      2000);
  REQUIRE(fenced);
  std::lock_guard<std::mutex> lk(a.mu);
  CHECK(a.fenced_why.find("taken over by node 'usurper'") != std::string::npos);
}

TEST_CASE("HeartbeatLoop: start needs a renewed gate and valid timings", "[node][heartbeat]") {
  MemoryCluster mc(2);
  FenceGate gate;
  FencedDevice fd(mc.device(), gate);
  auto disk = mc.disk(fd);
  HeartbeatLoop::Options o;
  o.slot = 0;
  o.node_name = "x";
  {
    HeartbeatLoop loop(*disk, gate, o);
    Status s = loop.start();
    CHECK(s.code() == Status::Code::kInvalidArgument);
    CHECK(s.message().find("claim the slot first") != std::string::npos);
  }
  gate.renew(monotonic_ns() + 1000 * kMs);
  cluster::Timing bad = fast_timing();
  bad.dead_after_ms = 240;  // fence window 140 ms < interval 50 + write bound 100
  o.timing = bad;
  HeartbeatLoop loop(*disk, gate, o);
  Status s = loop.start();
  CHECK(s.code() == Status::Code::kInvalidArgument);
  CHECK(s.message().find("dead-after minus fence margin must be at least one interval plus") != std::string::npos);
  bad.dead_after_ms = 100;  // not above the margin
  CHECK(validate_timing(bad).message().find("dead-after must be longer than the fence margin") != std::string::npos);
  // The header defaults are valid; the window is dead_after - margin and a
  // write renews only if faster than min(io_timeout, margin).
  const cluster::Timing d{};
  CHECK(validate_timing(d).ok());
  CHECK(fence_window_ns(d) == uint64_t{d.dead_after_ms - d.fence_margin_ms} * kMs);
  CHECK(renewal_write_bound_ns(d) == uint64_t{std::min(d.io_timeout_ms, d.fence_margin_ms)} * kMs);
}
