#include "cext3/node/slot_claim.h"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <barrier>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "cext3/node/heartbeat.h"
#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::node;
using namespace cext3::node::testing;

namespace {

constexpr uint64_t kMs = 1000000;

// A claimer with its own gate, like one jcoord process.
struct Claimant {
  FenceGate gate;
  FencedDevice fenced;
  std::unique_ptr<ClusterDisk> disk;
  std::unique_ptr<HeartbeatLoop> loop;
  Claimant(MemoryCluster& mc) : fenced(mc.device(), gate), disk(mc.disk(fenced)) {}

  Result<SlotClaimResult> claim(std::optional<uint32_t> slot, const std::string& name, uint32_t delay_ms = 0) {
    SlotClaimOptions o;
    o.slot = slot;
    o.node_name = name;
    o.claim_delay_ms = delay_ms;
    return claim_slot(*disk, gate, o);
  }
  void beat(const SlotClaimResult& c, const std::string& name) {
    HeartbeatLoop::Options o;
    o.slot = c.slot;
    o.generation = c.generation;
    o.node_name = name;
    loop = std::make_unique<HeartbeatLoop>(*disk, gate, o);
    REQUIRE(loop->start().ok());
  }
};

// A node that wrote a lease and one heartbeat, then died.
void plant_dead_owner(ClusterDisk& raw, uint32_t slot, const std::string& name, uint64_t gen) {
  cluster::SlotLeaseRecord l;
  l.slot = slot;
  l.owned = 1;
  l.lease_generation = gen;
  l.owner = name;
  l.recovery_generation = 3;
  REQUIRE(raw.write_lease(l).ok());
  cluster::HeartbeatRecord h;
  h.slot = slot;
  h.flags = kHeartbeatFlagUsed;
  h.sequence = 17;
  h.generation = gen;
  h.node_name = name;
  REQUIRE(raw.write_heartbeat(h).ok());
}

}  // namespace

TEST_CASE("claim_slot: a free slot is claimed; lease and first heartbeat are on disk; the gate is open",
          "[node][claim]") {
  MemoryCluster mc(4);
  Claimant a(mc);
  const uint64_t t0 = monotonic_ns();
  auto c = a.claim(2, "alpha");
  REQUIRE(c.ok());
  CHECK(c->slot == 2);
  CHECK(c->generation != 0);
  CHECK_FALSE(c->previous_owner_dead);
  CHECK_FALSE(c->journal_dirty);
  // It waited the claim delay (io_timeout 100 ms) before reading back, and no
  // dead_after watch was needed.
  CHECK(monotonic_ns() - t0 >= 100 * kMs);
  CHECK(monotonic_ns() - t0 < 400 * kMs);
  auto raw = mc.disk(mc.device());
  auto l = raw->read_lease(2);
  REQUIRE(l.ok());
  CHECK(l->owned == 1);
  CHECK(l->owner == "alpha");
  CHECK(l->lease_generation == c->generation);
  auto h = raw->read_heartbeat(2);
  REQUIRE(h.ok());
  CHECK(h->generation == c->generation);
  CHECK(h->node_name == "alpha");
  CHECK(h->sequence == 1);
  CHECK((h->flags & kHeartbeatFlagUsed) != 0);
  CHECK(a.gate.check().ok());
  CHECK(a.gate.deadline_mono_ns() > monotonic_ns());
  CHECK(mc.device().flush_count() >= 1);  // the lease was made durable
}

TEST_CASE("claim_slot: a slot held by a live node is refused, naming it", "[node][claim]") {
  MemoryCluster mc(3);
  Claimant holder(mc), other(mc);
  auto c = holder.claim(1, "holder");
  REQUIRE(c.ok());
  holder.beat(*c, "holder");
  const uint64_t t0 = monotonic_ns();
  auto r = other.claim(1, "late");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kBusy);
  CHECK(r.status().message().find("slot 1 is held by live node 'holder' (heartbeat ") != std::string::npos);
  // Decided as soon as the heartbeat moved, not after dead_after.
  CHECK(monotonic_ns() - t0 < 400 * kMs);
  // The holder is undisturbed.
  auto raw = mc.disk(mc.device());
  CHECK(raw->read_lease(1)->lease_generation == c->generation);
  CHECK(holder.gate.check().ok());
}

TEST_CASE("claim_slot: a dead owner's slot is taken after dead_after and marked for recovery", "[node][claim]") {
  MemoryCluster mc(2);
  auto raw = mc.disk(mc.device());
  plant_dead_owner(*raw, 0, "crashed", 555);
  plant_dead_owner(*raw, 1, "crashed-too", 556);
  Claimant a(mc);
  const uint64_t t0 = monotonic_ns();
  auto c = a.claim(std::nullopt, "survivor");  // auto: nothing free at sight
  REQUIRE(c.ok());
  CHECK(monotonic_ns() - t0 >= 400 * kMs);
  CHECK(c->previous_owner_dead);
  CHECK(c->previous_owner == (c->slot == 0 ? "crashed" : "crashed-too"));
  CHECK_FALSE(c->journal_dirty);  // the lease did not say so...
  auto l = raw->read_lease(c->slot);
  REQUIRE(l.ok());
  CHECK(l->journal_dirty == 1);  // ...but a dead owner's journal needs recovery: on disk until done
  CHECK(l->recovery_generation == 3);
  CHECK(l->owner == "survivor");
}

TEST_CASE("release_slot: the lease is freed, the heartbeat says stopped, and the next claim is immediate",
          "[node][claim]") {
  MemoryCluster mc(2);
  Claimant a(mc);
  auto c = a.claim(0, "first");
  REQUIRE(c.ok());
  a.beat(*c, "first");
  std::this_thread::sleep_for(std::chrono::milliseconds(120));
  REQUIRE(a.loop->stop(false).ok());
  REQUIRE(release_slot(*a.disk, *c, true).ok());
  auto raw = mc.disk(mc.device());
  auto l = raw->read_lease(0);
  REQUIRE(l.ok());
  CHECK(l->owned == 0);
  CHECK(l->journal_dirty == 1);
  auto h = raw->read_heartbeat(0);
  REQUIRE(h.ok());
  CHECK((h->flags & kHeartbeatFlagStopped) != 0);
  CHECK(h->sequence == a.loop->sequence() + 1);

  Claimant b(mc);
  const uint64_t t0 = monotonic_ns();
  auto c2 = b.claim(0, "second");
  REQUIRE(c2.ok());
  CHECK(monotonic_ns() - t0 < 400 * kMs);  // no dead_after watch
  CHECK_FALSE(c2->previous_owner_dead);
  CHECK(c2->journal_dirty);  // what `first` left behind
  CHECK(raw->read_heartbeat(0)->sequence > h->sequence);
  // The old owner can no longer release what is not its own any more.
  Status s = release_slot(*a.disk, *c, false);
  CHECK(s.code() == Status::Code::kBusy);
  CHECK(s.message().find("now belongs to node 'second'") != std::string::npos);
}

TEST_CASE("claim_slot: argument errors", "[node][claim]") {
  MemoryCluster mc(3);
  Claimant a(mc);
  auto r = a.claim(3, "x");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kInvalidArgument);
  CHECK(r.status().message() ==
        "slot 3 does not exist: the cluster has 3 slots (0..2); choose one of them or `auto`");
  CHECK(a.claim(0, "").status().code() == Status::Code::kInvalidArgument);
  mc.device().bytes()[kTestLocksByte + 2 * 512 + 20] ^= 1;  // slot 1's lease
  auto d = a.claim(1, "x");
  CHECK(d.status().code() == Status::Code::kCorruption);
  CHECK(d.status().message().find("clusterify verify -y") != std::string::npos);
  // With every lease damaged, `auto` has nothing to take and says so.
  mc.device().bytes()[kTestLocksByte + 1 * 512 + 20] ^= 1;
  mc.device().bytes()[kTestLocksByte + 3 * 512 + 20] ^= 1;
  auto e = a.claim(std::nullopt, "x");
  CHECK(e.status().code() == Status::Code::kCorruption);
  CHECK(e.status().message().rfind("no usable slot: the lease records of slots 0, 1, 2 are damaged", 0) == 0);
}

TEST_CASE("claim_slot: threads racing for one slot: exactly one wins", "[node][claim][race]") {
  MemoryCluster mc(2);
  constexpr int kRacers = 6;
  std::vector<std::unique_ptr<Claimant>> cs;
  for (int i = 0; i < kRacers; ++i) cs.push_back(std::make_unique<Claimant>(mc));
  std::vector<Status> results(kRacers);
  std::barrier sync(kRacers);
  std::vector<std::thread> ts;
  for (int i = 0; i < kRacers; ++i)
    ts.emplace_back([&, i] {
      sync.arrive_and_wait();
      const std::string name = "racer-" + std::to_string(i);
      auto c = cs[i]->claim(0, name, 200);
      results[i] = c.status();
      if (c.ok()) {
        // The winner heartbeats, as a daemon would, so late claimers see it live.
        HeartbeatLoop::Options o;
        o.slot = c->slot;
        o.generation = c->generation;
        o.node_name = name;
        cs[i]->loop = std::make_unique<HeartbeatLoop>(*cs[i]->disk, cs[i]->gate, o);
        results[i] = cs[i]->loop->start();
      }
    });
  for (auto& t : ts) t.join();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // a few ticks: a displaced holder fences itself
  // The safety property: exactly one racer holds the slot with an open gate.
  // (A racer whose claim succeeded but was displaced by a stalled late write
  // would be fenced; on an unloaded machine that never happens.)
  int holders = 0;
  for (int i = 0; i < kRacers; ++i) {
    INFO("racer " << i << ": " << results[i].ToString());
    if (results[i].ok() && !cs[i]->gate.fenced()) ++holders;
    if (!results[i].ok()) CHECK(results[i].code() == Status::Code::kBusy);
  }
  CHECK(holders == 1);
  for (auto& c : cs)
    if (c->loop && !c->gate.fenced()) CHECK(c->loop->stop(true).ok());
}

TEST_CASE("claim_slot: auto claimers in threads get distinct slots; one more is refused naming them",
          "[node][claim][race]") {
  constexpr uint32_t kSlots = 6;
  MemoryCluster mc(kSlots);
  std::vector<std::unique_ptr<Claimant>> cs;
  for (uint32_t i = 0; i < kSlots; ++i) cs.push_back(std::make_unique<Claimant>(mc));
  std::vector<Result<SlotClaimResult>> results(kSlots, Status::Busy("not run"));
  std::barrier sync(kSlots);
  std::vector<std::thread> ts;
  for (uint32_t i = 0; i < kSlots; ++i)
    ts.emplace_back([&, i] {
      sync.arrive_and_wait();
      const std::string name = "auto-" + std::to_string(i);
      results[i] = cs[i]->claim(std::nullopt, name, 200);
      if (results[i].ok()) {
        HeartbeatLoop::Options o;
        o.slot = results[i]->slot;
        o.generation = results[i]->generation;
        o.node_name = name;
        cs[i]->loop = std::make_unique<HeartbeatLoop>(*cs[i]->disk, cs[i]->gate, o);
        (void)cs[i]->loop->start();
      }
    });
  for (auto& t : ts) t.join();
  std::set<uint32_t> slots;
  for (uint32_t i = 0; i < kSlots; ++i) {
    INFO("claimer " << i << ": " << results[i].status().ToString());
    REQUIRE(results[i].ok());
    slots.insert(results[i]->slot);
  }
  CHECK(slots.size() == kSlots);
  Claimant extra(mc);
  auto r = extra.claim(std::nullopt, "one-too-many");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kBusy);
  CHECK(r.status().message().rfind("no free slot: all 6 slots are held by live nodes (", 0) == 0);
  for (uint32_t i = 0; i < kSlots; ++i)
    CHECK(r.status().message().find("auto-" + std::to_string(i)) != std::string::npos);
  for (auto& c : cs) CHECK(c->loop->stop(true).ok());
}

namespace {

// One racing process: claim `auto`, report the slot on `report_fd`, heartbeat
// until `stop_fd` reaches EOF, then stop and release. Never returns.
[[noreturn]] void racer_process(const std::string& img, int idx, int report_fd, int stop_fd,
                                const cluster::Timing& timing) {
  auto say = [&](const std::string& line) {
    const std::string l = line + "\n";
    (void)!write(report_fd, l.data(), l.size());
  };
  auto dev = open_block_device(img);
  if (!dev.ok()) {
    say(std::to_string(idx) + " ERR " + dev.status().message());
    _exit(2);
  }
  FenceGate gate;
  FencedDevice fenced(**dev, gate);
  auto disk = ClusterDisk::open(fenced);
  if (!disk.ok()) {
    say(std::to_string(idx) + " ERR " + disk.status().message());
    _exit(2);
  }
  const std::string name = "racer-" + std::to_string(idx);
  SlotClaimOptions co;
  co.node_name = name;
  co.timing = timing;
  co.claim_delay_ms = 300;
  auto c = claim_slot(**disk, gate, co);
  if (!c.ok()) {
    say(std::to_string(idx) + " ERR " + c.status().message());
    _exit(2);
  }
  std::atomic<bool> fenced_flag{false};
  HeartbeatLoop::Options o;
  o.slot = c->slot;
  o.generation = c->generation;
  o.node_name = name;
  o.timing = timing;
  o.on_fenced = [&](const std::string&) { fenced_flag = true; };
  int code = 0;
  {
    HeartbeatLoop loop(**disk, gate, o);
    if (!loop.start().ok()) code = 3;
    say(std::to_string(idx) + " " + std::to_string(c->slot));
    char ch;
    while (read(stop_fd, &ch, 1) > 0) {
    }
    if (!loop.stop(false).ok()) code = 4;
    if (!release_slot(**disk, *c, false).ok()) code = 5;
  }
  if (fenced_flag) code = 6;
  _exit(code);
}

}  // namespace

TEST_CASE("claim_slot: 10 processes claim `auto` on one image: 10 distinct slots; an 11th is refused",
          "[node][claim][race][process]") {
  auto bin = cext3_bin();
  if (!bin) return;
  ScratchDir dir;
  REQUIRE_FALSE(dir.path().empty());
  const std::string img = make_cluster_image(*bin, dir.path(), 10);
  cluster::Timing t;
  t.heartbeat_interval_ms = 100;
  t.io_timeout_ms = 300;
  t.dead_after_ms = 1500;
  t.fence_margin_ms = 300;

  int report[2], stop[2];
  REQUIRE(pipe(report) == 0);
  REQUIRE(pipe(stop) == 0);
  std::vector<pid_t> pids;
  const uint64_t t0 = monotonic_ns();
  for (int i = 0; i < 10; ++i) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(report[0]);
      close(stop[1]);
      racer_process(img, i, report[1], stop[0], t);
    }
    pids.push_back(pid);
  }
  close(report[1]);
  close(stop[0]);

  // Collect the 10 reports (each one short line, written atomically).
  std::string got;
  std::map<int, std::string> by_racer;
  while (by_racer.size() < 10 && monotonic_ns() - t0 < 15000 * kMs) {
    pollfd p{report[0], POLLIN, 0};
    if (poll(&p, 1, 500) <= 0) continue;
    char buf[512];
    ssize_t n = read(report[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = got.find('\n')) != std::string::npos) {
      std::istringstream line(got.substr(0, nl));
      got.erase(0, nl + 1);
      int idx;
      std::string rest;
      line >> idx;
      std::getline(line >> std::ws, rest);
      by_racer[idx] = rest;
    }
  }
  const double claim_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
  std::set<std::string> slots;
  for (auto& [idx, what] : by_racer) {
    INFO("racer " << idx << ": " << what);
    CHECK(what.find("ERR") == std::string::npos);
    slots.insert(what);
  }
  CHECK(by_racer.size() == 10);
  CHECK(slots.size() == 10);
  WARN("10 racing processes held 10 distinct slots after " << claim_s << " s");

  // The 11th: refused while the 10 heartbeat, naming every holder.
  {
    auto dev = open_block_device(img);
    REQUIRE(dev.ok());
    FenceGate gate;
    FencedDevice fenced(**dev, gate);
    auto disk = ClusterDisk::open(fenced);
    REQUIRE(disk.ok());
    SlotClaimOptions co;
    co.node_name = "eleventh";
    co.timing = t;
    co.claim_delay_ms = 300;
    auto r = claim_slot(**disk, gate, co);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kBusy);
    INFO(r.status().message());
    CHECK(r.status().message().rfind("no free slot: all 10 slots are held by live nodes (", 0) == 0);
    for (int i = 0; i < 10; ++i) CHECK(r.status().message().find("racer-" + std::to_string(i)) != std::string::npos);
    CHECK(r.status().message().find("clusterify slots") != std::string::npos);
  }

  close(stop[1]);  // EOF: every racer stops, releases and exits
  for (pid_t pid : pids) {
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
  }
  close(report[0]);

  // All released cleanly: the next claim needs no dead_after watch, and the
  // filesystem is still a clean ext3.
  {
    auto dev = open_block_device(img);
    REQUIRE(dev.ok());
    FenceGate gate;
    FencedDevice fenced(**dev, gate);
    auto disk = ClusterDisk::open(fenced);
    REQUIRE(disk.ok());
    SlotClaimOptions co;
    co.node_name = "after";
    co.timing = t;
    co.claim_delay_ms = 300;
    const uint64_t t1 = monotonic_ns();
    auto r = claim_slot(**disk, gate, co);
    REQUIRE(r.ok());
    CHECK(monotonic_ns() - t1 < 1500 * kMs);
    CHECK_FALSE(r->previous_owner_dead);
    REQUIRE(release_slot(**disk, *r, false).ok());
  }
  auto fsck = run_command("e2fsck -fn " + shell_quote(img) + " 2>&1");
  INFO(fsck.out);
  CHECK(fsck.exit_code == 0);
}
