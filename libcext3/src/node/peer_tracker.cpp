#include "node/peer_tracker.h"

namespace cext3::node {
namespace {

// What counts as "the record changed": anything a writer changes on every
// write (sequence), on a new instance (generation) or on a clean leave (flags).
bool same_record(const cluster::HeartbeatRecord& a, const cluster::HeartbeatRecord& b) {
  return a.sequence == b.sequence && a.generation == b.generation && a.flags == b.flags;
}

}  // namespace

PeerTracker::PeerTracker(uint32_t slot_count, uint32_t self_slot, uint64_t dead_after_ns, uint64_t interval_ns)
    : self_slot_(self_slot), dead_after_ns_(dead_after_ns), interval_ns_(interval_ns), peers_(slot_count),
      tracks_(slot_count) {
  for (uint32_t s = 0; s < slot_count; ++s) {
    peers_[s].slot = s;
    peers_[s].self = (s == self_slot);
  }
}

std::vector<MembershipEvent> PeerTracker::observe(const std::vector<Result<cluster::HeartbeatRecord>>& records,
                                                  uint64_t now_ns) {
  // A gap between successful reads longer than two intervals (our reads
  // failed, or this process did not run) is not evidence against anyone:
  // move every dead_after clock on by the part of the gap beyond one interval.
  if (last_observe_ns_ != 0 && now_ns > last_observe_ns_ + 2 * interval_ns_) {
    const uint64_t shift = now_ns - last_observe_ns_ - interval_ns_;
    for (PeerState& p : peers_)
      if (p.last_change_mono_ns != 0) p.last_change_mono_ns += shift;
  }
  last_observe_ns_ = now_ns;

  std::vector<MembershipEvent> events;
  for (uint32_t s = 0; s < peers_.size() && s < records.size(); ++s) {
    PeerState& p = peers_[s];
    Track& t = tracks_[s];
    const Result<cluster::HeartbeatRecord>& r = records[s];
    const bool baseline = !t.seen;
    bool changed = false;
    if (r.ok()) {
      if (baseline || !p.record_ok || !same_record(p.record, *r)) changed = !baseline;
      p.record = *r;
      p.record_ok = true;
      p.record_error.clear();
    } else {
      if (!baseline && p.record_ok) changed = true;  // a good record turned bad
      p.record_ok = false;
      p.record_error = r.status().message();
    }
    if (baseline) {
      t.seen = true;
      p.last_change_mono_ns = now_ns;
    }
    if (changed) {
      p.last_change_mono_ns = now_ns;
      ++p.changes_seen;
      ++t.used_changes;
    }

    const PeerLiveness prev = p.liveness;
    PeerLiveness next = prev;
    const bool quiet = now_ns - p.last_change_mono_ns >= dead_after_ns_;
    if (p.self) {
      next = PeerLiveness::kLive;
    } else if (p.record_ok && (p.record.flags & kHeartbeatFlagStopped)) {
      next = PeerLiveness::kStopped;
    } else {
      if (prev == PeerLiveness::kStopped) next = PeerLiveness::kUnknown;  // a new instance began writing
      if (t.used_changes >= 2 && !quiet) {
        next = PeerLiveness::kLive;
      } else if (quiet && (prev == PeerLiveness::kLive || next == PeerLiveness::kUnknown)) {
        // Live and silent for dead_after: dead. Never seen live but holding a
        // used record (or a damaged one) that stays put: its node died
        // before we looked. A never-written record (sequence 0) is an empty slot.
        const bool used = !p.record_ok || p.record.sequence != 0;
        if (prev == PeerLiveness::kLive || used) next = PeerLiveness::kDead;
      }
    }
    if (next == PeerLiveness::kDead || next == PeerLiveness::kStopped) {
      if (prev != next) t.used_changes = 0;
    }
    p.liveness = next;
    if (p.self || prev == next) continue;
    if (next == PeerLiveness::kLive) {
      events.push_back({MembershipEvent::Kind::kJoined, p});
    } else if (next == PeerLiveness::kDead) {
      events.push_back({MembershipEvent::Kind::kDied, p});
    } else if (next == PeerLiveness::kStopped && !baseline) {
      events.push_back({MembershipEvent::Kind::kLeft, p});
    }
  }
  return events;
}

}  // namespace cext3::node
