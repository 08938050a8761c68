// PeerTracker: the liveness rules of heartbeat.h as a pure state machine over
// (records read, this node's monotonic time), so they can be tested with
// made-up clocks. HeartbeatLoop feeds it once per tick. Not thread-safe: the
// loop guards it with its own mutex.
#pragma once

#include <cstdint>
#include <vector>

#include "cext3/cluster/records.h"
#include "cext3/node/heartbeat.h"
#include "cext3/status.h"

namespace cext3::node {

class PeerTracker {
 public:
  PeerTracker(uint32_t slot_count, uint32_t self_slot, uint64_t dead_after_ns, uint64_t interval_ns);

  // One successful read of every slot's record (entry i = slot i) at
  // monotonic time `now_ns`. Returns the transitions it caused, in slot order.
  std::vector<MembershipEvent> observe(const std::vector<Result<cluster::HeartbeatRecord>>& records,
                                       uint64_t now_ns);

  const std::vector<PeerState>& peers() const { return peers_; }

 private:
  struct Track {
    bool seen = false;      // observed at least once
    uint64_t used_changes = 0;  // changes since the slot last became dead/stopped
  };
  uint32_t self_slot_;
  uint64_t dead_after_ns_;
  uint64_t interval_ns_;
  uint64_t last_observe_ns_ = 0;
  std::vector<PeerState> peers_;
  std::vector<Track> tracks_;
};

}  // namespace cext3::node
