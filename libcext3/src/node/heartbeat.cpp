#include "cext3/node/heartbeat.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "node/peer_tracker.h"

namespace cext3::node {
namespace {

constexpr uint64_t kMs = 1000000;

}  // namespace

const char* to_string(PeerLiveness l) {
  switch (l) {
    case PeerLiveness::kUnknown: return "unknown";
    case PeerLiveness::kLive: return "live";
    case PeerLiveness::kDead: return "dead";
    case PeerLiveness::kStopped: return "stopped";
  }
  return "?";
}

uint64_t fence_window_ns(const cluster::Timing& t) {
  return t.dead_after_ms > t.fence_margin_ms ? uint64_t{t.dead_after_ms - t.fence_margin_ms} * kMs : 0;
}

uint64_t renewal_write_bound_ns(const cluster::Timing& t) {
  return uint64_t{std::min(t.io_timeout_ms, t.fence_margin_ms)} * kMs;
}

Status validate_timing(const cluster::Timing& t) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("cluster timing (interval " + std::to_string(t.heartbeat_interval_ms) +
                                   " ms, io timeout " + std::to_string(t.io_timeout_ms) + " ms, dead after " +
                                   std::to_string(t.dead_after_ms) + " ms, fence margin " +
                                   std::to_string(t.fence_margin_ms) + " ms) is unsafe: " + why +
                                   "; set valid timings in the cluster header");
  };
  if (t.heartbeat_interval_ms == 0 || t.io_timeout_ms == 0 || t.dead_after_ms == 0 || t.fence_margin_ms == 0)
    return bad("every value must be above 0");
  if (t.dead_after_ms <= t.fence_margin_ms) return bad("dead-after must be longer than the fence margin");
  if (fence_window_ns(t) < uint64_t{t.heartbeat_interval_ms} * kMs + renewal_write_bound_ns(t))
    return bad("dead-after minus fence margin must be at least one interval plus min(io timeout, fence margin)");
  return Status::OK();
}

struct HeartbeatLoop::Impl {
  Impl(ClusterDisk& d, FenceGate& g, Options o)
      : disk(d), gate(g), opts(std::move(o)), timing(opts.timing.value_or(d.timing())),
        tracker(d.slot_count(), opts.slot, uint64_t{timing.dead_after_ms} * kMs,
                uint64_t{timing.heartbeat_interval_ms} * kMs) {}

  ClusterDisk& disk;
  FenceGate& gate;
  Options opts;
  cluster::Timing timing;

  // Guards everything below it except the atomics.
  mutable std::mutex mu;
  std::condition_variable cv;
  bool running = false;
  bool stopping = false;
  PeerTracker tracker;
  std::vector<PeerState> snapshot;
  uint64_t sequence = 0;
  uint64_t last_write = 0;
  cluster::LocksGlobalRecord last_global;
  std::thread loop_thread, watchdog_thread;
  std::atomic<bool> fenced_reported{false};
  // Serializes our heartbeat writes (loop tick, final stopped record).
  std::mutex write_mu;

  void report_fenced() {
    if (fenced_reported.exchange(true)) return;
    {
      std::lock_guard<std::mutex> lk(mu);
      cv.notify_all();  // wake the loop so it exits
    }
    if (opts.on_fenced) opts.on_fenced(gate.reason());
  }

  cluster::HeartbeatRecord make_record(uint64_t seq, uint32_t flags) const {
    cluster::HeartbeatRecord r;
    r.slot = opts.slot;
    r.flags = flags;
    r.sequence = seq;
    r.generation = opts.generation;
    r.time_ns = realtime_ns();
    // The wall-clock image of the deadline this write would give the gate:
    // for operators and `clusterify info`, never compared across nodes.
    r.fence_deadline_ns = r.time_ns + fence_window_ns(timing);
    r.node_name = opts.node_name;
    r.address = opts.address;
    return r;
  }

  // Write our record; renew the gate if the write completed within the
  // renewal bound (min of io_timeout and fence margin).
  void write_tick() {
    std::lock_guard<std::mutex> wl(write_mu);
    uint64_t seq;
    {
      std::lock_guard<std::mutex> lk(mu);
      seq = ++sequence;
    }
    cluster::HeartbeatRecord rec = make_record(seq, kHeartbeatFlagUsed);
    const uint64_t t_submit = monotonic_ns();
    Status st = disk.write_heartbeat(rec);
    const uint64_t t_done = monotonic_ns();
    if (st.ok() && t_done - t_submit <= renewal_write_bound_ns(timing)) {
      gate.renew(t_submit + fence_window_ns(timing));
      std::lock_guard<std::mutex> lk(mu);
      last_write = t_done;
    }
    // A failed or slow write simply does not renew: the watchdog fences when
    // the deadline passes. (Slow = slower than the fence margin could cover
    // if the same latency hit a write submitted just before the deadline.)
  }

  // The lease is the proof of ownership: one more sector read per tick. A
  // heartbeat record with a foreign generation alone proves nothing (a
  // claimer that lost a race may write our heartbeat sector once).
  void check_ownership() {
    auto lease = disk.read_lease(opts.slot);
    if (!lease.ok() || lease->lease_generation == opts.generation) return;
    gate.fence("slot " + std::to_string(opts.slot) + " was taken over by node '" + lease->owner +
               "' (lease generation " + std::to_string(lease->lease_generation) + ")");
  }

  void tick() {
    if (gate.fenced()) return report_fenced();
    write_tick();
    if (gate.fenced()) return report_fenced();

    auto recs = disk.read_all_heartbeats();
    auto global = disk.read_global();
    if (!recs.ok()) return;  // no evidence this tick; PeerTracker bridges the gap
    check_ownership();
    if (gate.fenced()) return report_fenced();
    std::vector<MembershipEvent> events;
    std::vector<PeerState> view;
    cluster::LocksGlobalRecord g;
    {
      std::lock_guard<std::mutex> lk(mu);
      events = tracker.observe(*recs, monotonic_ns());
      snapshot = tracker.peers();
      view = snapshot;
      if (global.ok()) last_global = *global;
      g = last_global;
    }
    for (const MembershipEvent& e : events)
      if (opts.on_event) opts.on_event(e);
    if (opts.on_tick) opts.on_tick(view, g);
  }

  void loop() {
    const auto interval = std::chrono::milliseconds(timing.heartbeat_interval_ms);
    auto next = std::chrono::steady_clock::now();
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        cv.wait_until(lk, next, [&] { return stopping || fenced_reported.load(); });
        if (stopping || fenced_reported.load()) return;
      }
      tick();
      if (fenced_reported.load()) return;
      next += interval;
      const auto now = std::chrono::steady_clock::now();
      if (next < now) next = now + interval;  // fell behind: do not burst
    }
  }

  // Fences at the gate's deadline even when the loop thread is stuck in a
  // write that does not return.
  void watchdog() {
    const uint64_t poll_ns = uint64_t{timing.heartbeat_interval_ms} * kMs;
    for (;;) {
      const uint64_t now = monotonic_ns();
      const uint64_t deadline = gate.deadline_mono_ns();
      if (gate.fenced() || now >= deadline) {
        gate.check();  // fences with the reason if the deadline passed
        report_fenced();
        return;
      }
      const uint64_t wait_ns = std::min(deadline - now, poll_ns);
      std::unique_lock<std::mutex> lk(mu);
      cv.wait_for(lk, std::chrono::nanoseconds(wait_ns), [&] { return stopping; });
      if (stopping) return;
    }
  }
};

HeartbeatLoop::HeartbeatLoop(ClusterDisk& disk, FenceGate& gate, Options opts)
    : impl_(std::make_unique<Impl>(disk, gate, std::move(opts))) {
  impl_->snapshot = impl_->tracker.peers();
}

HeartbeatLoop::~HeartbeatLoop() { (void)stop(false); }

Status HeartbeatLoop::start() {
  Impl& m = *impl_;
  CEXT3_RETURN_IF_ERROR(validate_timing(m.timing));
  if (m.opts.slot >= m.disk.slot_count())
    return Status::InvalidArgument("heartbeat: slot " + std::to_string(m.opts.slot) + " does not exist");
  if (m.gate.deadline_mono_ns() == 0)
    return Status::InvalidArgument("heartbeat: the fence gate was never renewed; claim the slot first");
  if (m.gate.fenced()) return m.gate.check();
  // Continue the slot's sequence: it only ever grows, across instances too.
  uint64_t seq = 0;
  if (auto r = m.disk.read_heartbeat(m.opts.slot); r.ok()) seq = r->sequence;
  std::lock_guard<std::mutex> lk(m.mu);
  if (m.running) return Status::InvalidArgument("heartbeat: already running");
  m.sequence = seq;
  m.stopping = false;
  m.running = true;
  m.loop_thread = std::thread([&m] { m.loop(); });
  m.watchdog_thread = std::thread([&m] { m.watchdog(); });
  return Status::OK();
}

Status HeartbeatLoop::stop(bool stopped_record) {
  Impl& m = *impl_;
  bool was_running;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    was_running = m.running;
    m.stopping = true;
    m.running = false;
    m.cv.notify_all();
  }
  if (was_running) {
    if (m.loop_thread.joinable()) m.loop_thread.join();
    if (m.watchdog_thread.joinable()) m.watchdog_thread.join();
  }
  if (!stopped_record) return Status::OK();
  std::lock_guard<std::mutex> wl(m.write_mu);
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    seq = ++m.sequence;
  }
  // Through the FencedDevice: a node whose permission expired must not write
  // even its goodbye.
  return m.disk.write_heartbeat(m.make_record(seq, kHeartbeatFlagUsed | kHeartbeatFlagStopped));
}

std::vector<PeerState> HeartbeatLoop::peers() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->snapshot;
}

uint64_t HeartbeatLoop::sequence() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->sequence;
}

uint64_t HeartbeatLoop::last_write_mono_ns() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->last_write;
}

}  // namespace cext3::node
