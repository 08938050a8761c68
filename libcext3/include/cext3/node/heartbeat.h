// HeartbeatLoop: the node's disk heartbeat and its view of the other nodes.
//
// Every heartbeat_interval the loop writes this node's sector (sequence + 1,
// time, fence deadline, address) through the FencedDevice and, in the same
// tick, reads every slot's heartbeat sector and the global lock record. A
// write that fails or takes longer than io_timeout does not renew the gate;
// when the gate's deadline passes the node is fenced (FenceGate) and the loop
// reports it through on_fenced so the daemon exits non-zero.
//
// Liveness of a peer, judged on this node's own monotonic clock (clocks of
// different machines are never compared):
//  * a slot becomes live after its sequence has been seen to change twice;
//  * a live slot becomes dead when its record has not changed for dead_after
//    (by then its fence deadline plus the margin has passed, see fence.h);
//  * a record with the "stopped" flag means a clean leave: the slot is free
//    at once, with nothing to recover.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
    // Called from the loop's thread. Keep them short.
    std::function<void(const MembershipEvent&)> on_event;
    std::function<void(const std::string& why)> on_fenced;
    // Called once per tick after the reads, with the fresh view.
    std::function<void(const std::vector<PeerState>&, const cluster::LocksGlobalRecord&)> on_tick;
  };
  // `disk` must read and write through a FencedDevice built on `gate`.
  HeartbeatLoop(ClusterDisk& disk, FenceGate& gate, Options opts);
  ~HeartbeatLoop();
  Status start();  // starts the thread
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
