#include "cext3/node/election.h"

#include <chrono>
#include <thread>

namespace cext3::node {
namespace {

constexpr uint64_t kMs = 1000000;

bool is_live(const PeerState& p) { return p.self || p.liveness == PeerLiveness::kLive; }

}  // namespace

bool coordinator_gone(const std::vector<PeerState>& peers, const cluster::LocksGlobalRecord& current) {
  const uint32_t c = current.coordinator_slot;
  if (c == cluster::kNoSlot || c >= peers.size()) return true;
  const PeerState& p = peers[c];
  if (p.self) return false;
  switch (p.liveness) {
    case PeerLiveness::kLive: return false;
    case PeerLiveness::kDead:
    case PeerLiveness::kStopped: return true;
    case PeerLiveness::kUnknown: return p.record_ok && p.record.sequence == 0;
  }
  return false;
}

Result<ElectionResult> run_election(ClusterDisk& disk, uint32_t my_slot, const std::vector<PeerState>& peers,
                                    const cluster::LocksGlobalRecord& current) {
  return run_election(disk, nullptr, my_slot, peers, current, ElectionOptions{});
}

Result<ElectionResult> run_election(ClusterDisk& disk, FenceGate* gate, uint32_t my_slot,
                                    const std::vector<PeerState>& peers, const cluster::LocksGlobalRecord& current,
                                    const ElectionOptions& opts) {
  ElectionResult res;
  res.record = current;
  if (my_slot >= peers.size())
    return Status::InvalidArgument("election: slot " + std::to_string(my_slot) + " is not in the membership view");
  // No churn: a live coordinator stays, even when a lower slot joins.
  if (!coordinator_gone(peers, current)) return res;
  uint32_t lowest = cluster::kNoSlot;
  for (const PeerState& p : peers)
    if (is_live(p)) {
      lowest = p.slot;
      break;
    }
  if (lowest != my_slot) return res;  // the lowest live slot will claim; we just read

  const uint64_t delay = uint64_t{opts.claim_delay_ms ? opts.claim_delay_ms : disk.timing().io_timeout_ms} * kMs;
  const uint64_t t_read = monotonic_ns();
  auto fresh = disk.read_global();
  if (!fresh.ok()) return fresh.status().Annotate("election");
  if (!(*fresh == current)) {
    // Someone changed it since the caller's view: re-decide on the next tick.
    res.record = *fresh;
    return res;
  }
  cluster::LocksGlobalRecord mine;
  mine.slot_count = fresh->slot_count ? fresh->slot_count : disk.slot_count();
  mine.coordinator_slot = my_slot;
  mine.coordinator_epoch = fresh->coordinator_epoch + 1;
  if (monotonic_ns() - t_read > delay / 2) return res;  // stale read: retry next tick, nothing written
  CEXT3_RETURN_IF_ERROR(disk.write_global(mine).Annotate("election"));
  const uint64_t t_written = monotonic_ns();
  if (t_written - t_read > delay / 2) {
    const std::string why = "the coordinator election write took " + std::to_string((t_written - t_read) / kMs) +
                            " ms, more than half the " + std::to_string(delay / kMs) +
                            " ms claim delay, so a single winner cannot be proven";
    if (gate) gate->fence(why);
    return Status::Fenced("election: " + why + "; this node stops writing and must restart");
  }
  const uint64_t wake = t_written + delay;
  if (const uint64_t now = monotonic_ns(); now < wake) std::this_thread::sleep_for(std::chrono::nanoseconds(wake - now));
  auto back = disk.read_global();
  if (!back.ok()) return back.status().Annotate("election");
  res.record = *back;
  res.changed = (*back == mine);
  if (res.changed) CEXT3_RETURN_IF_ERROR(disk.device().flush().Annotate("election"));
  return res;
}

}  // namespace cext3::node
