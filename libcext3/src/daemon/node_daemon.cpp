// jcoord's node: wires the membership layer (node/), the lock service
// (locks/) and the control socket together. See node_daemon.h for the
// start-up order and docs/DESIGN.md for the reasons.
#include "cext3/daemon/node_daemon.h"

#include <pthread.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cext3/block_device.h"
#include "cext3/daemon/control.h"
#include "cext3/daemon/fs_requests.h"
#include "cext3/daemon/log.h"
#include "cext3/daemon/slot_recovery.h"
#include "cext3/engine/filesystem.h"
#include "cext3/engine/orphans.h"
#include "cext3/hex.h"
#include "cext3/json.h"
#include "cext3/locks/lock_service.h"
#include "cext3/mount/fuse_mount.h"
#include "cext3/node/cluster_disk.h"
#include "cext3/node/election.h"
#include "cext3/node/fence.h"
#include "cext3/node/heartbeat.h"
#include "cext3/node/mmp.h"
#include "cext3/node/slot_claim.h"
#include "daemon/engine_locks.h"
#include "daemon/mount_locks.h"

namespace cext3::daemon {
namespace {

using cluster::LocksGlobalRecord;
using cluster::SlotLeaseRecord;
using locks::LockMode;

std::string hex(const uint8_t* p, size_t n) { return to_hex(p, n); }

bool unhex(const std::string& s, locks::Lvb* out) {
  std::vector<uint8_t> b;
  if (s.size() > out->size() * 2 || !from_hex(s, &b)) return false;
  out->fill(0);
  std::copy(b.begin(), b.end(), out->begin());
  return true;
}

std::string error_reply(const std::string& msg) {
  return std::string("{\"ok\":false,\"error\":") + json_str(msg) + "}";
}

bool parse_u64(const std::string& s, uint64_t* v) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  *v = std::stoull(s);
  return true;
}

class Node : public ControlHandler {
 public:
  explicit Node(const NodeConfig& cfg) : cfg_(cfg) {}
  int run();

  std::string handle(uint64_t session, const std::vector<std::string>& words) override;
  void session_closed(uint64_t session) override;

 private:
  Status start();
  int shut_down();
  // Unmount (lazily if busy) and wait for the FUSE requests in flight.
  void stop_mount();
  void on_tick(const std::vector<node::PeerState>& peers, const LocksGlobalRecord& g);
  void recovery_worker();
  void request_stop(const std::string& why);
  std::string status_json();
  std::string do_lock(uint64_t session, const std::vector<std::string>& w);
  std::string do_convert(uint64_t session, const std::vector<std::string>& w);
  std::string do_unlock(uint64_t session, const std::vector<std::string>& w);
  // A lock held by `session`, copied to *out (and forgotten with `remove`).
  bool take_handle(uint64_t session, uint64_t id, bool remove, locks::LockHandle* out);
  uint32_t dead_after_ms() const { return disk_->header().timing.dead_after_ms; }

  const NodeConfig& cfg_;
  std::unique_ptr<BlockDevice> raw_;
  node::FenceGate gate_;
  std::unique_ptr<node::FencedDevice> dev_;
  std::unique_ptr<node::ClusterDisk> disk_;
  node::SlotClaimResult claim_;
  std::unique_ptr<locks::LockService> locks_;
  std::unique_ptr<node::HeartbeatLoop> hb_;
  std::unique_ptr<ControlServer> control_;
  // The filesystem engine and the locks it takes through our lock service.
  // fs_hook_ is what the lock service's downgrade hook sees: set once the
  // engine is mounted, cleared before it is unmounted.
  std::unique_ptr<engine::LockProvider> engine_locks_;
  std::unique_ptr<engine::Filesystem> fs_;
  std::atomic<engine::Filesystem*> fs_hook_{nullptr};
  // The FUSE mount (cfg_.mount), if any; mount_hook_ as fs_hook_.
  std::unique_ptr<mount::RecordLocks> record_locks_;
  std::unique_ptr<mount::FuseMount> mount_;
  std::atomic<mount::FuseMount*> mount_hook_{nullptr};
  uint64_t start_mono_ = 0;
  std::string address_;

  // Shared between the heartbeat thread (on_tick), the recovery worker, the
  // control sessions and the main thread.
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_requested_ = false;
  std::string stop_reason_;
  bool fenced_ = false;
  std::string fenced_reason_;
  std::vector<node::PeerState> peers_;
  std::vector<std::optional<SlotLeaseRecord>> leases_;
  LocksGlobalRecord global_;
  locks::MembershipView view_;
  uint64_t ticks_ = 0;
  // Recovery: slots queued or in progress here, and the lease generation
  // each recovered slot had (so a stale lease read does not recover twice).
  std::deque<uint32_t> recovery_queue_;
  std::set<uint32_t> recovering_;
  std::map<uint32_t, uint64_t> recovered_generation_;
  bool recovery_stop_ = false;
  std::thread recovery_thread_;

  std::mutex sess_mu_;
  std::map<uint64_t, std::map<uint64_t, locks::LockHandle>> sessions_;
  std::set<uint64_t> fast_sessions_;  // `set durable off`: replies before commit
};

Status Node::start() {
  if (cfg_.coordination == CoordinationBackend::kEtcd)
    return Status::NotSupported(cfg_.source +
                                ": coordination.backend etcd is not implemented in this build; use 'disk'");
  // Checked before anything is claimed or written: a typo in the mount
  // point must not cost a slot claim and a recovery.
  if (!cfg_.mount.empty()) {
    struct stat st {};
    if (::stat(cfg_.mount.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return Status::InvalidArgument("mount point " + cfg_.mount + " is not a directory (create it, or fix `mount` in " +
                                     cfg_.source + ")");
    if (::access("/dev/fuse", R_OK | W_OK) != 0)
      return Status::NotSupported("cannot use /dev/fuse: " + std::string(std::strerror(errno)) +
                                  " (modprobe fuse; install fuse3; containers need the device passed in)");
  }
  OpenOptions oo;
  oo.direct = true;
  auto dev = open_block_device(cfg_.device, oo);
  if (!dev.ok()) return dev.status();
  raw_ = std::move(*dev);
  dev_ = std::make_unique<node::FencedDevice>(*raw_, gate_);
  auto disk = node::ClusterDisk::open(*dev_);
  if (!disk.ok()) return disk.status();
  disk_ = std::move(*disk);
  const cluster::Timing& t = disk_->header().timing;
  if (cfg_.heartbeat_interval_ms && *cfg_.heartbeat_interval_ms != t.heartbeat_interval_ms)
    return Status::InvalidArgument(cfg_.source + ": timing.heartbeat_interval_ms is " +
                                   std::to_string(*cfg_.heartbeat_interval_ms) + " but the disk says " +
                                   std::to_string(t.heartbeat_interval_ms) +
                                   " (every node must agree: remove the key or make it match)");
  if (cfg_.dead_after_ms && *cfg_.dead_after_ms != t.dead_after_ms)
    return Status::InvalidArgument(cfg_.source + ": timing.dead_after_ms is " + std::to_string(*cfg_.dead_after_ms) +
                                   " but the disk says " + std::to_string(t.dead_after_ms) +
                                   " (every node must agree: remove the key or make it match)");

  node::SlotClaimOptions co;
  co.slot = cfg_.slot;
  co.node_name = cfg_.node_name;
  co.address = cfg_.listen;
  auto claim = node::claim_slot(*disk_, gate_, co);
  if (!claim.ok()) return claim.status();
  claim_ = *claim;
  log_info("claimed slot " + std::to_string(claim_.slot) + " of " + std::to_string(disk_->slot_count()) +
           " (lease generation " + std::to_string(claim_.generation) + ")" +
           (claim_.previous_owner_dead ? ", taken over from dead node '" + claim_.previous_owner + "'" : ""));
  locks::LockService::Options lo;
  lo.slot = claim_.slot;
  lo.node_name = cfg_.node_name;
  lo.generation = claim_.generation;
  lo.listen_address = cfg_.listen;
  lo.gate = &gate_;
  // Before a lock leaves this node, the engine commits, writes in place and
  // revokes what it covers (docs/ENGINE.md, "Coherence").
  lo.before_downgrade = [this](const std::string& resource, LockMode from, LockMode to) {
    // The kernel's caches first (queued, never blocking), then the engine.
    if (mount::FuseMount* m = mount_hook_.load()) m->lock_leaving(resource, from, to);
    if (engine::Filesystem* fs = fs_hook_.load()) fs->on_lock_leaving(resource, from, to);
  };
  auto ls = locks::LockService::start(lo);
  if (!ls.ok()) {
    (void)node::release_slot(*disk_, claim_, false);
    return ls.status();
  }
  locks_ = std::move(*ls);
  address_ = locks_->address();

  node::HeartbeatLoop::Options ho;
  ho.slot = claim_.slot;
  ho.generation = claim_.generation;
  ho.node_name = cfg_.node_name;
  ho.address = address_;
  ho.on_event = [](const node::MembershipEvent& e) {
    const auto& p = e.peer;
    std::string who = "slot " + std::to_string(p.slot) + " ('" + p.record.node_name + "' at " + p.record.address + ")";
    switch (e.kind) {
      case node::MembershipEvent::Kind::kJoined: log_info("node joined: " + who); break;
      case node::MembershipEvent::Kind::kDied: log_warn("node dead: " + who); break;
      case node::MembershipEvent::Kind::kLeft: log_info("node left cleanly: " + who); break;
    }
  };
  ho.on_fenced = [this](const std::string& why) {
    std::lock_guard<std::mutex> g(mu_);
    fenced_ = true;
    fenced_reason_ = why;
    cv_.notify_all();
  };
  ho.on_tick = [this](const std::vector<node::PeerState>& peers, const LocksGlobalRecord& g) { on_tick(peers, g); };
  hb_ = std::make_unique<node::HeartbeatLoop>(*disk_, gate_, ho);
  start_mono_ = node::monotonic_ns();
  CEXT3_RETURN_IF_ERROR(hb_->start());
  // Only now, with the heartbeat renewing the gate, may slow work run: the
  // claim opened the gate for one fence window only.
  if (claim_.previous_owner_dead || claim_.journal_dirty) {
    auto r = recover_slot(*disk_, claim_.slot, /*keep_owner=*/true);
    if (!r.ok()) return r.status();
    log_info("recovered own slot " + std::to_string(claim_.slot) + "'s journal: " +
             std::to_string(r->replay.transactions) + " transactions, " + std::to_string(r->replay.blocks_replayed) +
             " blocks replayed");
  }

  CEXT3_RETURN_IF_ERROR(node::mark_mmp_in_use(*disk_, cfg_.node_name));
  recovery_thread_ = std::thread([this] { recovery_worker(); });

  // The engine: this slot's journal is clean now (recovered above).
  engine_locks_ = make_service_lock_provider(*locks_, std::chrono::milliseconds(
      uint64_t{disk_->header().timing.dead_after_ms} * 4 + 10000));
  engine::MountOptions mo;
  mo.slot = claim_.slot;
  mo.locks = engine_locks_.get();
  auto fs = engine::Filesystem::mount(*dev_, mo);
  if (!fs.ok()) return fs.status().Annotate("mounting the filesystem engine");
  fs_ = std::move(*fs);
  fs_hook_.store(fs_.get());

  auto cs = ControlServer::start(cfg_.control_socket, *this);
  if (!cs.ok()) return cs.status();
  control_ = std::move(*cs);
  if (!cfg_.mount.empty()) {
    mount::FuseMountOptions fo;
    fo.mountpoint = cfg_.mount;
    fo.fsname = cfg_.device;
    fo.allow_other = geteuid() == 0;
    record_locks_ = make_mount_record_locks(locks_->plocks(), claim_.slot, std::chrono::milliseconds(
        uint64_t{disk_->header().timing.dead_after_ms} * 4 + 10000));
    fo.record_locks = record_locks_.get();
    fo.on_unmounted = [this](const std::string& why) { request_stop(why); };
    auto m = mount::FuseMount::start(*fs_, fo);
    if (!m.ok()) return m.status().Annotate("mounting " + cfg_.mount);
    mount_ = std::move(*m);
    mount_hook_.store(mount_.get());
    log_info("mounted at " + cfg_.mount);
  }
  log_info("ready: node '" + cfg_.node_name + "' slot " + std::to_string(claim_.slot) + ", locks at " + address_ +
           ", control socket " + cfg_.control_socket + ", device " + cfg_.device);
  return Status::OK();
}

void Node::on_tick(const std::vector<node::PeerState>& peers, const LocksGlobalRecord& g) {
  const uint64_t now = node::monotonic_ns();
  auto leases = disk_->read_all_leases();
  std::vector<std::optional<SlotLeaseRecord>> lease_view(disk_->slot_count());
  if (leases.ok())
    for (size_t i = 0; i < leases->size() && i < lease_view.size(); ++i)
      if ((*leases)[i].ok()) lease_view[i] = *(*leases)[i];

  LocksGlobalRecord cur = g;
  // With the gate: an election that cannot prove a single winner fences
  // this node rather than let two coordinators grant.
  auto er = node::run_election(*disk_, &gate_, claim_.slot, peers, g, node::ElectionOptions{});
  if (er.ok()) {
    cur = er->record;
    if (er->changed)
      log_info("elected coordinator (slot " + std::to_string(cur.coordinator_slot) + ", epoch " +
               std::to_string(cur.coordinator_epoch) + ")");
  } else if (!gate_.fenced()) {
    log_warn("coordinator election: " + er.status().message());
  }

  locks::MembershipView v;
  v.coordinator_slot = cur.coordinator_slot;
  v.epoch = cur.coordinator_epoch;
  const uint64_t dead_ns = uint64_t{dead_after_ms()} * 1000000;
  for (const auto& p : peers) {
    if ((p.self || p.liveness == node::PeerLiveness::kLive) && p.record_ok) {
      v.live.push_back({p.slot, p.record.node_name, p.record.address, p.record.generation});
      continue;
    }
    if (p.self || p.liveness == node::PeerLiveness::kStopped) continue;
    // A slot whose lease is still owned (or whose journal is marked dirty)
    // and whose heartbeat has not changed for dead_after - counted from when
    // this node started watching - belongs to a dead node: it must be
    // recovered before any lock it may have held is granted again. The lock
    // service treats a member that leaves `live` without appearing here as a
    // clean leave and frees its locks at once, so when the lease cannot be
    // read, a used slot that is not live counts as unrecovered.
    const uint64_t since = std::max(p.last_change_mono_ns, start_mono_);
    if (now < since + dead_ns) continue;
    const bool lease_known = p.slot < lease_view.size() && lease_view[p.slot].has_value();
    const bool holds = lease_known ? (lease_view[p.slot]->owned || lease_view[p.slot]->journal_dirty)
                                   : (!p.record_ok || p.record.sequence != 0);
    if (holds) v.unrecovered.push_back(p.slot);
  }
  if (v.live.empty() || std::none_of(v.live.begin(), v.live.end(), [&](const locks::Member& m) {
        return m.slot == claim_.slot;
      })) {
    // Our own record failed to decode this tick: still list ourselves.
    v.live.push_back({claim_.slot, cfg_.node_name, address_, claim_.generation});
  }
  locks_->update_membership(v);

  std::lock_guard<std::mutex> gd(mu_);
  ++ticks_;
  peers_ = peers;
  leases_ = std::move(lease_view);
  global_ = cur;
  view_ = v;
  if (cur.coordinator_slot == claim_.slot) {
    for (uint32_t s : v.unrecovered) {
      if (recovering_.count(s)) continue;
      auto it = recovered_generation_.find(s);
      if (it != recovered_generation_.end() && leases_[s] && it->second == leases_[s]->lease_generation) continue;
      recovering_.insert(s);
      recovery_queue_.push_back(s);
      cv_.notify_all();
    }
  }
  // Re-assert MMP now and then: a node leaving at the same moment as this one
  // joined may have written the clean sequence after our in-use write.
  if (ticks_ % 4 == 0 && !gate_.fenced()) {
    auto m = node::read_mmp(*disk_);
    if (m.ok() && disk_->has_mmp() && m->sequence != node::kMmpSeqFsck) {
      log_warn("MMP block was not marked in use; marking it again");
      (void)node::mark_mmp_in_use(*disk_, cfg_.node_name);
    }
  }
}

void Node::recovery_worker() {
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    cv_.wait(g, [&] { return recovery_stop_ || !recovery_queue_.empty(); });
    if (recovery_stop_) return;
    uint32_t slot = recovery_queue_.front();
    recovery_queue_.pop_front();
    std::string owner;
    uint64_t gen = 0;
    if (slot < leases_.size() && leases_[slot]) {
      owner = leases_[slot]->owner;
      gen = leases_[slot]->lease_generation;
    }
    g.unlock();
    const uint64_t t0 = node::monotonic_ns();
    auto r = recover_slot(*disk_, slot, /*keep_owner=*/false);
    const double ms = (node::monotonic_ns() - t0) / 1e6;
    if (r.ok()) {
      log_info("recovered slot " + std::to_string(slot) + " (node '" + owner + "'): " +
               std::to_string(r->replay.transactions) + " transactions, " +
               std::to_string(r->replay.blocks_replayed) + " blocks replayed in " + std::to_string(ms) +
               " ms; its locks may be granted again");
      locks_->recovery_done(slot);
      // The dead slot's orphans (unlinked while open): freed, or adopted by
      // this node while a live node still has them open (docs/ENGINE.md).
      if (engine::Filesystem* fs = fs_hook_.load()) {
        Status os = engine::adopt_orphans(*fs, slot);
        if (!os.ok()) log_warn("orphans of slot " + std::to_string(slot) + ": " + os.message() + " (jcoord recover frees them offline)");
      }
    } else {
      log_error("recovering slot " + std::to_string(slot) + ": " + r.status().message() + " (will retry)");
    }
    g.lock();
    recovering_.erase(slot);
    if (r.ok()) recovered_generation_[slot] = gen;
  }
}

void Node::stop_mount() {
  if (!mount_) return;
  mount_hook_.store(nullptr);
  mount_->stop();
  mount_.reset();
  log_info("unmounted " + cfg_.mount);
}

void Node::request_stop(const std::string& why) {
  std::lock_guard<std::mutex> g(mu_);
  if (!stop_requested_) stop_reason_ = why;
  stop_requested_ = true;
  cv_.notify_all();
}

int Node::shut_down() {
  log_info("leaving the cluster (" + stop_reason_ + ")");
  if (control_) control_->stop();
  stop_mount();
  // The recovery worker finishes the slot it is on (it uses the engine and
  // the lock service, both still up) and stops before either goes away.
  {
    std::lock_guard<std::mutex> g(mu_);
    recovery_stop_ = true;
    cv_.notify_all();
  }
  if (recovery_thread_.joinable()) recovery_thread_.join();
  bool engine_clean = true;
  if (fs_) {
    // Commit, checkpoint (journal clean), fold counters - while the lock
    // service still runs, since folding takes cluster locks.
    Status us = fs_->unmount();
    if (!us.ok()) {
      engine_clean = false;
      log_error("unmounting the filesystem engine: " + us.message() +
                " (the slot's journal stays dirty; the next node to claim the slot or a peer recovers it)");
    }
    fs_hook_.store(nullptr);
    fs_.reset();
  }
  if (locks_) locks_->shutdown();
  int rc = kExitClean;
  if (hb_) {
    Status s = hb_->stop(/*stopped_record=*/false);
    if (!s.ok()) log_warn("stopping heartbeat: " + s.message());
  }
  Status rs = node::release_slot(*disk_, claim_, /*journal_dirty=*/!engine_clean);
  if (!rs.ok()) {
    log_error("releasing slot " + std::to_string(claim_.slot) + ": " + rs.message() +
              " (peers will treat this node as dead and recover its slot)");
    return kExitStartFailed;
  }
  // The last node out marks MMP clean so stock tools may use the disk again.
  auto leases = disk_->read_all_leases();
  bool any_owned = !leases.ok();
  if (leases.ok())
    for (const auto& l : *leases)
      if (!l.ok() || l->owned || l->journal_dirty) any_owned = true;
  if (!any_owned) {
    // Nobody else can be writing: make every group's derived counts exact
    // (a node that died took its unfolded deltas with it).
    auto n = recount_all_groups(*disk_);
    if (!n.ok()) log_warn(n.status().message() + " (run `clusterify verify -y`)");
    else if (*n) log_info("last node out: " + std::to_string(*n) + " group descriptor counts corrected");
    Status ms = node::mark_mmp_clean(*disk_);
    if (!ms.ok()) log_warn("marking MMP clean: " + ms.message());
    else if (disk_->has_mmp()) log_info("last node out: MMP marked clean");
  }
  Status fs = dev_->flush();
  if (!fs.ok()) log_warn("final flush: " + fs.message());
  log_info("left the cluster cleanly");
  return rc;
}

int Node::run() {
  set_log_identity(cfg_.node_name);
  set_log_level(cfg_.log_level);
  // Signals are taken by sigtimedwait in this thread only.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Status s = start();
  if (!s.ok()) {
    log_error(s.message());
    stop_mount();
    if (fs_) {
      (void)fs_->unmount();
      fs_hook_.store(nullptr);
      fs_.reset();
    }
    if (hb_) (void)hb_->stop(false);
    if (locks_) locks_->shutdown();
    if (disk_ && claim_.generation != 0 && !gate_.fenced()) (void)node::release_slot(*disk_, claim_, false);
    {
      std::lock_guard<std::mutex> g(mu_);
      recovery_stop_ = true;
      cv_.notify_all();
    }
    if (recovery_thread_.joinable()) recovery_thread_.join();
    return kExitStartFailed;
  }
  for (;;) {
    timespec ts{0, 100 * 1000 * 1000};
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) request_stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    std::unique_lock<std::mutex> g(mu_);
    if (fenced_ || gate_.fenced()) {
      std::string why = fenced_ ? fenced_reason_ : gate_.reason();
      g.unlock();
      // Nothing more may reach the disk: no release, no MMP, no clean
      // shutdown of anything that could write. Peers recover this slot.
      log_error("fenced: " + why + "; this node has stopped writing to the shared disk and exits");
      std::fflush(stderr);
      _exit(kExitFenced);
    }
    if (stop_requested_) break;
  }
  return shut_down();
}

std::string Node::status_json() {
  std::vector<node::PeerState> peers;
  std::vector<std::optional<SlotLeaseRecord>> leases;
  LocksGlobalRecord global;
  locks::MembershipView view;
  uint64_t ticks;
  {
    std::lock_guard<std::mutex> g(mu_);
    peers = peers_;
    leases = leases_;
    global = global_;
    view = view_;
    ticks = ticks_;
  }
  const uint64_t now = node::monotonic_ns();
  std::string j = "{\"ok\":true";
  j += ",\"node\":" + json_str(cfg_.node_name);
  j += ",\"slot\":" + std::to_string(claim_.slot);
  j += ",\"generation\":" + std::to_string(claim_.generation);
  j += ",\"device\":" + json_str(cfg_.device);
  j += ",\"address\":" + json_str(address_);
  j += ",\"pid\":" + std::to_string(getpid());
  j += std::string(",\"fenced\":") + json_bool(gate_.fenced());
  j += ",\"ticks\":" + std::to_string(ticks);
  j += ",\"heartbeat_sequence\":" + std::to_string(hb_ ? hb_->sequence() : 0);
  j += ",\"coordinator\":{\"slot\":";
  j += global.coordinator_slot == cluster::kNoSlot ? std::string("null") : std::to_string(global.coordinator_slot);
  j += ",\"epoch\":" + std::to_string(global.coordinator_epoch) + "}";
  j += ",\"unrecovered\":[";
  for (size_t i = 0; i < view.unrecovered.size(); ++i) j += (i ? "," : "") + std::to_string(view.unrecovered[i]);
  j += "],\"slots\":[";
  const uint32_t bs = disk_->block_size();
  for (size_t i = 0; i < peers.size(); ++i) {
    const auto& p = peers[i];
    if (i) j += ",";
    j += "{\"slot\":" + std::to_string(p.slot);
    j += ",\"liveness\":" + json_str(node::to_string(p.liveness));
    j += std::string(",\"self\":") + json_bool(p.self);
    if (p.record_ok) {
      j += ",\"node\":" + json_str(p.record.node_name);
      j += ",\"address\":" + json_str(p.record.address);
      j += ",\"sequence\":" + std::to_string(p.record.sequence);
      j += ",\"generation\":" + std::to_string(p.record.generation);
    } else {
      j += ",\"record_error\":" + json_str(p.record_error);
    }
    if (p.last_change_mono_ns)
      j += ",\"heartbeat_age_ms\":" + std::to_string((now - std::min(now, p.last_change_mono_ns)) / 1000000);
    if (p.slot < leases.size() && leases[p.slot]) {
      const auto& l = *leases[p.slot];
      j += std::string(",\"lease\":{\"owned\":") + json_bool(l.owned != 0) + ",\"owner\":" + json_str(l.owner) +
           ",\"generation\":" + std::to_string(l.lease_generation) +
           ",\"recovery_generation\":" + std::to_string(l.recovery_generation) +
           ",\"journal_dirty\":" + json_bool(l.journal_dirty != 0) + "}";
    }
    // Journal position straight from the slot journal's superblock.
    auto map = journal::JournalMap::contiguous(bs, disk_->journal_offset(p.slot) / bs,
                                               disk_->journal_bytes(p.slot) / bs);
    if (map.ok()) {
      auto ji = journal::read_journal_info(*dev_, *map);
      if (ji.ok())
        j += ",\"journal\":{\"sequence\":" + std::to_string(ji->sequence) + ",\"start\":" + std::to_string(ji->start) +
             ",\"clean\":" + json_bool(ji->clean()) + "}";
      else
        j += ",\"journal\":{\"error\":" + json_str(ji.status().message()) + "}";
    }
    j += "}";
  }
  j += "]";
  const auto ls = locks_->status();
  j += std::string(",\"locks\":{\"is_master\":") + json_bool(ls.is_master);
  j += ",\"epoch\":" + std::to_string(ls.epoch);
  j += std::string(",\"connected_to_master\":") + json_bool(ls.connected_to_master);
  j += ",\"grants\":" + std::to_string(ls.grants) + ",\"cached_grants\":" + std::to_string(ls.cached_grants) +
       ",\"callbacks\":" + std::to_string(ls.callbacks);
  j += ",\"held\":[";
  for (size_t i = 0; i < ls.held.size(); ++i) {
    const auto& h = ls.held[i];
    j += std::string(i ? "," : "") + "{\"resource\":" + json_str(h.resource) + ",\"mode\":" +
         json_str(locks::to_string(h.cached)) + ",\"holders\":" + std::to_string(h.local_holders) +
         ",\"waiters\":" + std::to_string(h.local_waiters) + "}";
  }
  j += "],\"master\":[";
  for (size_t i = 0; i < ls.master.size(); ++i) {
    const auto& m = ls.master[i];
    j += std::string(i ? "," : "") + "{\"resource\":" + json_str(m.resource) + ",\"granted\":[";
    for (size_t k = 0; k < m.granted.size(); ++k)
      j += std::string(k ? "," : "") + "{\"slot\":" + std::to_string(m.granted[k].first) + ",\"mode\":" +
           json_str(locks::to_string(m.granted[k].second)) + "}";
    j += "],\"waiting\":" + std::to_string(m.waiting) + "}";
  }
  j += "]}}";
  return j;
}

std::string Node::do_lock(uint64_t session, const std::vector<std::string>& w) {
  // lock RESOURCE MODE [TIMEOUT_MS] [try]
  if (w.size() < 3 || w.size() > 5) return error_reply("usage: lock RESOURCE NL|PR|EX [TIMEOUT_MS] [try]");
  LockMode mode;
  if (!locks::parse_lock_mode(w[2], &mode)) return error_reply("lock: mode '" + w[2] + "' is not NL, PR or EX");
  uint64_t timeout_ms = 30000;
  bool try_only = false;
  for (size_t i = 3; i < w.size(); ++i) {
    if (w[i] == "try") try_only = true;
    else if (!parse_u64(w[i], &timeout_ms)) return error_reply("lock: '" + w[i] + "' is neither a timeout in ms nor 'try'");
  }
  const uint64_t t0 = node::monotonic_ns();
  auto h = locks_->lock(w[1], mode, std::chrono::milliseconds(timeout_ms), try_only);
  const uint64_t wait_us = (node::monotonic_ns() - t0) / 1000;
  if (!h.ok()) return error_reply(h.status().message());
  std::lock_guard<std::mutex> g(sess_mu_);
  sessions_[session][h->id] = *h;
  return "{\"ok\":true,\"id\":" + std::to_string(h->id) + ",\"resource\":" + json_str(h->resource) + ",\"mode\":" +
         json_str(locks::to_string(h->mode)) + ",\"lvb\":\"" + hex(h->lvb.data(), h->lvb.size()) +
         "\",\"wait_us\":" + std::to_string(wait_us) + "}";
}

std::string Node::do_convert(uint64_t session, const std::vector<std::string>& w) {
  // convert ID MODE [TIMEOUT_MS]
  uint64_t id = 0, timeout_ms = 30000;
  LockMode mode;
  if (w.size() < 3 || w.size() > 4 || !parse_u64(w[1], &id) || !locks::parse_lock_mode(w[2], &mode) ||
      (w.size() == 4 && !parse_u64(w[3], &timeout_ms)))
    return error_reply("usage: convert ID NL|PR|EX [TIMEOUT_MS]");
  locks::LockHandle h;
  if (!take_handle(session, id, /*remove=*/false, &h))
    return error_reply("convert: this session holds no lock with id " + w[1]);
  const uint64_t t0 = node::monotonic_ns();
  Status st = locks_->convert(h, mode, std::chrono::milliseconds(timeout_ms));
  const uint64_t wait_us = (node::monotonic_ns() - t0) / 1000;
  std::lock_guard<std::mutex> g(sess_mu_);
  // Whatever the outcome, keep the handle as the service left it.
  sessions_[session][id] = h;
  if (!st.ok()) return error_reply(st.message());
  return "{\"ok\":true,\"id\":" + std::to_string(id) + ",\"mode\":" + json_str(locks::to_string(h.mode)) +
         ",\"lvb\":\"" + hex(h.lvb.data(), h.lvb.size()) + "\",\"wait_us\":" + std::to_string(wait_us) + "}";
}

std::string Node::do_unlock(uint64_t session, const std::vector<std::string>& w) {
  // unlock ID [LVB_HEX]
  uint64_t id = 0;
  if (w.size() < 2 || w.size() > 3 || !parse_u64(w[1], &id)) return error_reply("usage: unlock ID [LVB_HEX]");
  locks::LockHandle h;
  if (!take_handle(session, id, /*remove=*/true, &h))
    return error_reply("unlock: this session holds no lock with id " + w[1]);
  if (w.size() == 3) {
    if (h.mode != LockMode::kEX) return error_reply("unlock: only an EX holder may set the value block");
    if (!unhex(w[2], &h.lvb))
      return error_reply("unlock: value block '" + w[2] + "' is not hex of at most " +
                         std::to_string(locks::kLvbBytes) + " bytes");
  }
  Status st = locks_->unlock(h);
  if (!st.ok()) return error_reply(st.message());
  return "{\"ok\":true,\"id\":" + std::to_string(id) + "}";
}

bool Node::take_handle(uint64_t session, uint64_t id, bool remove, locks::LockHandle* out) {
  std::lock_guard<std::mutex> g(sess_mu_);
  auto& held = sessions_[session];
  auto it = held.find(id);
  if (it == held.end()) return false;
  *out = it->second;
  if (remove) held.erase(it);
  return true;
}

std::string Node::handle(uint64_t session, const std::vector<std::string>& w) {
  if (w.empty()) return error_reply("empty request (try: status, exec, set, lock, unlock, convert, stop, ping)");
  const std::string& cmd = w[0];
  if (cmd == "ping") return "{\"ok\":true}";
  if (cmd == "status") return status_json();
  if (cmd == "stop") {
    request_stop("stop requested on the control socket");
    return "{\"ok\":true}";
  }
  if (cmd == "lock") return do_lock(session, w);
  if (cmd == "convert") return do_convert(session, w);
  if (cmd == "unlock") return do_unlock(session, w);
  if (cmd == "exec") {
    if (!fs_) return error_reply("exec: the filesystem engine is not mounted");
    bool durable;
    {
      std::lock_guard<std::mutex> g(sess_mu_);
      durable = !fast_sessions_.count(session);
    }
    return handle_fs_request(*fs_, w, durable);
  }
  if (cmd == "set") {
    if (w.size() != 3 || w[1] != "durable" || (w[2] != "on" && w[2] != "off"))
      return error_reply("usage: set durable on|off");
    std::lock_guard<std::mutex> g(sess_mu_);
    if (w[2] == "off") fast_sessions_.insert(session);
    else fast_sessions_.erase(session);
    return "{\"ok\":true}";
  }
  return error_reply("unknown request '" + cmd + "' (try: status, exec, set, lock, unlock, convert, stop, ping)");
}

void Node::session_closed(uint64_t session) {
  std::map<uint64_t, locks::LockHandle> held;
  {
    std::lock_guard<std::mutex> g(sess_mu_);
    fast_sessions_.erase(session);
    auto it = sessions_.find(session);
    if (it == sessions_.end()) return;
    held.swap(it->second);
    sessions_.erase(it);
  }
  // A client that went away never leaves a lock behind.
  for (auto& [id, h] : held) {
    Status s = locks_->unlock(h);
    if (!s.ok()) log_warn("releasing lock " + h.resource + " of a closed session: " + s.message());
  }
}

}  // namespace

int run_node(const NodeConfig& cfg) {
  Node n(cfg);
  return n.run();
}

}  // namespace cext3::daemon
