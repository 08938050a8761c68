// LockService: the cluster lock manager, one per node (docs/LOCKS.md).
//
// Every node runs a lock client; the node that the disk names coordinator also
// runs the master for every resource. Nodes talk over TCP (one connection from
// each node to the master, TCP_NODELAY, length-prefixed binary messages).
//
// Guarantees (what cext3-lock-check verifies in tests/integration/locks_stress.sh):
//  * never two incompatible grants of one resource at once, cluster-wide,
//    including across a coordinator change: a grant carries the master's
//    epoch, a node ignores grants whose epoch is not the current disk epoch,
//    and a new master first collects every live node's held locks;
//  * FIFO per resource at the master: no request starves;
//  * node-level caching: a node keeps a granted lock after its local users
//    release it; a later compatible local request is granted with no network
//    round trip. When another node needs it, the master sends a blocking
//    callback; the node waits until its local users are done, runs the
//    downgrade hook (the engine commits, writes back and revokes what the lock
//    covers), and then downgrades or releases, sending the LVB back with an EX;
//  * a dead node's locks are not re-granted until recovery_done(slot). When
//    the master died too, a new master does not know what the dead nodes
//    held: while a slot of `unrecovered` remains, it grants on a resource only
//    modes compatible with what the survivors' reports prove a dead node could
//    hold there (docs/LOCKS.md, "Dead nodes and the recovery hold").
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cext3/locks/lock_types.h"
#include "cext3/locks/plock.h"
#include "cext3/status.h"

namespace cext3::node { class FenceGate; }

namespace cext3::locks {

// A local user's hold on a lock. Release with LockService::unlock.
struct LockHandle {
  uint64_t id = 0;
  std::string resource;
  LockMode mode = LockMode::kNL;
  Lvb lvb{};
};

struct LockStatusEntry {
  std::string resource;
  LockMode cached = LockMode::kNL;  // what this node holds from the master
  uint32_t local_holders = 0;
  uint32_t local_waiters = 0;
};
struct MasterStatusEntry {
  std::string resource;
  std::vector<std::pair<uint32_t, LockMode>> granted;  // slot, mode
  uint32_t waiting = 0;
};
struct LockServiceStatus {
  bool is_master = false;
  uint64_t epoch = 0;
  uint32_t coordinator_slot = 0xFFFFFFFFu;
  bool connected_to_master = false;
  std::vector<LockStatusEntry> held;     // this node's lock cache
  std::vector<MasterStatusEntry> master; // only when is_master
  uint64_t grants = 0, cached_grants = 0, callbacks = 0;
};

class LockService {
 public:
  struct Options {
    uint32_t slot = 0;
    std::string node_name;
    uint64_t generation = 0;
    std::string listen_address = "127.0.0.1:0";  // port 0: choose a free one
    // Checked before a node sends anything that would let the master grant a
    // conflicting lock (release or downgrade of an EX, also at shutdown); a
    // fenced node keeps its EX locks until its peers recover it. May be null.
    node::FenceGate* gate = nullptr;
    // Called before this node gives up or downgrades an EX or PR it holds
    // (blocking callback or explicit downgrade). Runs on a service thread;
    // the lock is not released until it returns.
    std::function<void(const std::string& resource, LockMode from, LockMode to)> before_downgrade;
  };

  static Result<std::unique_ptr<LockService>> start(Options opts);
  virtual ~LockService() = default;

  // The host:port actually bound (to publish in the heartbeat record).
  virtual std::string address() const = 0;
  // From the daemon after every heartbeat tick; cheap when nothing changed.
  // A slot that leaves `live` must be listed in `unrecovered` in that same
  // view if its journal needs replay: otherwise it is a clean leave and its
  // locks are dropped at once. A view that no longer lists a dead slot in
  // `unrecovered` counts as recovery_done(slot).
  virtual void update_membership(const MembershipView& view) = 0;
  // The dead slot's journal has been replayed: its locks may be re-granted.
  // May be called on any node (a non-master forwards it to the master).
  virtual void recovery_done(uint32_t slot) = 0;

  // Blocks until granted, the timeout passes (Busy), or the service stops.
  // try_only: fail at once (Busy) instead of queueing behind a conflict,
  // including another node's cached lock (no callback is sent for it); at
  // most one round trip to the master.
  virtual Result<LockHandle> lock(const std::string& resource, LockMode mode,
                                  std::chrono::milliseconds timeout, bool try_only = false) = 0;
  // Change a held handle's mode (up or down). An upgrade may wait like lock();
  // two nodes converting PR->EX at once wait for each other until a timeout
  // (no deadlock detection yet). A downgrade is local: the cluster mode stays
  // cached; from EX, `h.lvb` becomes the resource's value block.
  virtual Status convert(LockHandle& h, LockMode mode, std::chrono::milliseconds timeout) = 0;
  // Release a handle. For EX, `h.lvb` becomes the resource's value block.
  virtual Status unlock(const LockHandle& h) = 0;

  // Cluster-wide record locks (fcntl and flock) for the FUSE mount
  // (cext3/locks/plock.h). Valid as long as the service; after shutdown()
  // every call fails with ENOLCK.
  virtual Plocks& plocks() = 0;

  virtual LockServiceStatus status() const = 0;
  // Release everything (record locks too) and close connections (clean leave).
  virtual void shutdown() = 0;
};

}  // namespace cext3::locks
