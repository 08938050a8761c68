// HeartbeatLoop: the node's disk heartbeat and its view of the other nodes.
//
// Every heartbeat_interval the loop writes this node's sector (sequence + 1,
// time, fence deadline, address) through the FencedDevice and, in the same
// tick, reads every slot's heartbeat sector and the global lock record. A
// write that fails or takes longer than renewal_write_bound_ns() (io_timeout,
// or the fence margin if smaller) does not renew the gate;
// when the gate's deadline passes the node is fenced (FenceGate) and the loop
// reports it through on_fenced so the daemon exits non-zero.
//
// Liveness of a peer, judged on this node's own monotonic clock (clocks of
// different machines are never compared):
//  * a slot becomes live after its sequence has been seen to change twice;
//  * a live slot becomes dead when its record has not changed for dead_after
//    (by then its fence deadline plus the margin has passed, see fence.h);
//  * a record with the "stopped" flag means a clean leave: the slot is free
//    at once, with nothing to recover;
//  * a slot never seen live whose used record (sequence > 0) does not change
//    for dead_after is dead too (its node died before we started watching),
//    and is reported with a kDied event so the daemon can recover it;
//  * this node's own slot is always kLive in the view (no events for it).
// Reads that fail are not evidence: after a gap in successful reads (I/O
// errors, or this process was stopped) the dead_after clock of every peer is
// moved on by the gap, so nobody is declared dead by our own outage.
//
// Each tick also reads this node's lease: if it carries another generation
// the slot was taken over (peers judged us dead), and the loop self-fences.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cext3/cluster/records.h"
#include "cext3/node/cluster_disk.h"
#include "cext3/node/fence.h"
#include "cext3/status.h"

namespace cext3::node {

// Heartbeat record flags (docs/FORMAT.md).
inline constexpr uint32_t kHeartbeatFlagUsed = 1u << 0;
inline constexpr uint32_t kHeartbeatFlagStopped = 1u << 1;

// fence_window = dead_after - fence_margin (fence.h), in ns.
uint64_t fence_window_ns(const cluster::Timing& t);
// A heartbeat write renews the gate only if it completed within
// min(io_timeout, fence_margin): the margin is what covers a write still in
// flight at the deadline, so the gate is extended only while the disk
// completes writes faster than the margin (docs/MEMBERSHIP.md).
uint64_t renewal_write_bound_ns(const cluster::Timing& t);
// The rules the timing equation needs (docs/MEMBERSHIP.md): every value > 0,
// dead_after > fence_margin, fence_window >= interval + the renewal write
// bound (the write after a failed one still renews in time).
// InvalidArgument naming the rule.
Status validate_timing(const cluster::Timing& t);

enum class PeerLiveness { kUnknown, kLive, kDead, kStopped };
const char* to_string(PeerLiveness l);

struct PeerState {
  uint32_t slot = 0;
  PeerLiveness liveness = PeerLiveness::kUnknown;
  bool record_ok = false;            // the last read decoded
  std::string record_error;
  cluster::HeartbeatRecord record;   // the last record read
  uint64_t last_change_mono_ns = 0;  // when this node last saw it change
  uint64_t changes_seen = 0;
  bool self = false;
};

struct MembershipEvent {
  enum class Kind { kJoined, kDied, kLeft } kind;
  PeerState peer;
};

class HeartbeatLoop {
 public:
  struct Options {
    uint32_t slot = 0;
    uint64_t generation = 0;
    std::string node_name;
    std::string address;
    // Called from the loop's thread. Keep them short, and never call stop()
    // from inside one (it joins the thread that is calling).
    std::function<void(const MembershipEvent&)> on_event;
    // Called exactly once, from the loop's thread or from its watchdog thread
    // (which fires at the gate's deadline even while a heartbeat write hangs).
    std::function<void(const std::string& why)> on_fenced;
    // Called once per tick after the reads, with the fresh view.
    std::function<void(const std::vector<PeerState>&, const cluster::LocksGlobalRecord&)> on_tick;
    // Tests only: use these timings instead of the cluster header's (every
    // node of a cluster must use the same ones).
    std::optional<cluster::Timing> timing;
  };
  // `disk` must read and write through a FencedDevice built on `gate`.
  HeartbeatLoop(ClusterDisk& disk, FenceGate& gate, Options opts);
  ~HeartbeatLoop();
  // Starts the loop thread and its watchdog thread. InvalidArgument if the
  // gate was never renewed (claim the slot first) or the timing is invalid.
  Status start();
  // Stops the thread. With `stopped_record`, writes a final record carrying
  // kHeartbeatFlagStopped (a clean leave).
  Status stop(bool stopped_record);

  std::vector<PeerState> peers() const;  // one per slot, a snapshot
  uint64_t sequence() const;
  uint64_t last_write_mono_ns() const;   // completion of our last good write

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cext3::node
