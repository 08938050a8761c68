#include "cext3/node/slot_claim.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "cext3/node/heartbeat.h"

namespace cext3::node {
namespace {

constexpr uint64_t kMs = 1000000;
// Bounds on retries, so a claim never spins forever against a cluster that
// keeps changing under it.
constexpr int kMaxAttempts = 200;

uint64_t random_generation() {
  static thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd() ^ monotonic_ns();
  }());
  uint64_t g;
  do g = rng(); while (g == 0);
  return g;
}

void sleep_ns(uint64_t ns) { std::this_thread::sleep_for(std::chrono::nanoseconds(ns)); }

std::string seconds_ago(uint64_t then_realtime_ns) {
  // Display only: the record's wall-clock time against ours (clocks of
  // different machines are never used to decide anything).
  const uint64_t now = realtime_ns();
  const double s = now > then_realtime_ns ? static_cast<double>(now - then_realtime_ns) / 1e9 : 0.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

bool same_heartbeat(const Result<cluster::HeartbeatRecord>& a, const Result<cluster::HeartbeatRecord>& b) {
  if (a.ok() != b.ok()) return false;
  if (!a.ok()) return a.status().message() == b.status().message();
  return a->sequence == b->sequence && a->generation == b->generation && a->flags == b->flags;
}

// A slot is free at first sight only when nothing could be alive in it: the
// lease is not owned and its heartbeat was never written or says "stopped",
// or the heartbeat says "stopped" under the lease's own generation (a clean
// leave that did not release the lease). Everything else needs watching for
// dead_after. A freshly written racing lease always has a new generation, so
// it is never free at first sight (that is what the race argument needs).
bool free_at_sight(const cluster::SlotLeaseRecord& lease, const Result<cluster::HeartbeatRecord>& hb) {
  if (!hb.ok()) return false;
  const bool stopped = (hb->flags & kHeartbeatFlagStopped) != 0;
  if (!lease.owned) return hb->sequence == 0 || stopped;
  return stopped && hb->generation == lease.lease_generation;
}

std::string holder_name(const cluster::SlotLeaseRecord* lease, const Result<cluster::HeartbeatRecord>& hb) {
  if (hb.ok() && !hb->node_name.empty()) return hb->node_name;
  if (lease && !lease->owner.empty()) return lease->owner;
  return "?";
}

struct Claimer {
  ClusterDisk& disk;
  FenceGate& gate;
  const SlotClaimOptions& opts;
  cluster::Timing timing;
  uint64_t claim_delay_ns;

  enum class Outcome { kWon, kLost, kRetry };

  // Steps 2 and 3 for one slot: the fresh read that must still show what we
  // judged free, the lease write (within claim_delay/2 of that read), our
  // heartbeat, the wait, the read-back.
  Result<Outcome> try_take(uint32_t slot, const cluster::SlotLeaseRecord& seen_lease,
                           const Result<cluster::HeartbeatRecord>& seen_hb, bool owner_dead,
                           SlotClaimResult& out) {
    const uint64_t t_read = monotonic_ns();
    auto lease = disk.read_lease(slot);
    if (!lease.ok()) return lease.status();
    auto hb = disk.read_heartbeat(slot);
    if (!(*lease == seen_lease) || !same_heartbeat(hb, seen_hb)) return Outcome::kRetry;  // it moved
    // We hold no slot yet, so no peer can be recovering us: permission to
    // write our own lease and heartbeat sectors is safe to grant here. A
    // stalled claimer still runs into the gate's deadline.
    if (!gate.fenced()) gate.renew(monotonic_ns() + fence_window_ns(timing));
    if (monotonic_ns() - t_read > claim_delay_ns / 2) return Outcome::kRetry;

    cluster::SlotLeaseRecord mine;
    mine.slot = slot;
    mine.owned = 1;
    mine.lease_generation = random_generation();
    mine.lease_expiry_ns = realtime_ns() + uint64_t{timing.dead_after_ms + timing.fence_margin_ms} * kMs;
    mine.owner = opts.node_name;
    mine.recovery_generation = seen_lease.recovery_generation;
    // A dead owner's journal may hold unreplayed transactions whatever its
    // lease said: keep that on disk until recovery clears it.
    mine.journal_dirty = (seen_lease.journal_dirty || owner_dead) ? 1 : 0;
    CEXT3_RETURN_IF_ERROR(disk.write_lease(mine).Annotate("claiming slot " + std::to_string(slot)));
    const uint64_t t_lease_done = monotonic_ns();
    // Too slow since the read that saw the slot free: a later claimer may
    // have read it free after our read and won already. Our lease is not
    // proof of anything; start over (it looks owned to everyone, us included).
    if (t_lease_done - t_read > claim_delay_ns / 2) return Outcome::kRetry;

    cluster::HeartbeatRecord h;
    h.slot = slot;
    h.flags = kHeartbeatFlagUsed;
    h.sequence = (seen_hb.ok() ? seen_hb->sequence : 0) + 1;
    h.generation = mine.lease_generation;
    h.time_ns = realtime_ns();
    h.fence_deadline_ns = h.time_ns + fence_window_ns(timing);
    h.node_name = opts.node_name;
    h.address = opts.address;
    const uint64_t t_hb = monotonic_ns();
    CEXT3_RETURN_IF_ERROR(disk.write_heartbeat(h).Annotate("claiming slot " + std::to_string(slot)));
    const bool hb_in_time = monotonic_ns() - t_hb <= renewal_write_bound_ns(timing);

    const uint64_t wake = t_lease_done + claim_delay_ns;
    if (const uint64_t now = monotonic_ns(); now < wake) sleep_ns(wake - now);
    auto back = disk.read_lease(slot);
    if (!back.ok()) return back.status();
    if (back->lease_generation != mine.lease_generation || back->owner != opts.node_name) return Outcome::kLost;
    uint64_t t_renew = t_hb;
    if (!hb_in_time) {
      // We own the slot, but the gate may only be renewed from a write that
      // completed within the renewal bound: try once more.
      ++h.sequence;
      h.time_ns = realtime_ns();
      t_renew = monotonic_ns();
      CEXT3_RETURN_IF_ERROR(disk.write_heartbeat(h).Annotate("claiming slot " + std::to_string(slot)));
      if (monotonic_ns() - t_renew > renewal_write_bound_ns(timing))
        return Status::IoError("claiming slot " + std::to_string(slot) + ": heartbeat writes take longer than " +
                               std::to_string(renewal_write_bound_ns(timing) / kMs) + " ms (min of io timeout and fence margin); check the shared disk's health");
    }
    CEXT3_RETURN_IF_ERROR(disk.device().flush().Annotate("claiming slot " + std::to_string(slot)));
    // Renew from the heartbeat write, as the loop will (fence.h).
    gate.renew(t_renew + fence_window_ns(timing));
    if (gate.fenced()) return gate.check();
    out.slot = slot;
    out.generation = mine.lease_generation;
    out.previous_owner_dead = owner_dead;
    out.previous_owner = owner_dead ? seen_lease.owner : std::string();
    out.journal_dirty = seen_lease.journal_dirty != 0;
    return Outcome::kWon;
  }

  // Watch the heartbeats of `slots` for up to dead_after; returns, per slot,
  // whether it changed. Stops early once every watched slot has changed.
  Result<std::vector<bool>> watch(const std::vector<uint32_t>& slots,
                                  std::vector<Result<cluster::HeartbeatRecord>>& last) {
    std::vector<bool> changed(disk.slot_count(), false);
    const uint64_t start = monotonic_ns();
    const uint64_t poll = std::max<uint64_t>(uint64_t{timing.heartbeat_interval_ms} * kMs / 2, 5 * kMs);
    const uint64_t dead_after = uint64_t{timing.dead_after_ms} * kMs;
    for (;;) {
      const uint64_t now = monotonic_ns();
      if (now - start >= dead_after) break;
      sleep_ns(std::min(poll, start + dead_after - now));
      auto recs = disk.read_all_heartbeats();
      if (!recs.ok()) return recs.status();
      bool all = true;
      for (uint32_t s : slots) {
        if (!same_heartbeat((*recs)[s], last[s])) changed[s] = true;
        last[s] = (*recs)[s];
        all = all && changed[s];
      }
      if (all) break;
    }
    return changed;
  }

  Result<SlotClaimResult> run() {
    const uint32_t n = disk.slot_count();
    std::mt19937 pick(static_cast<uint32_t>(random_generation()));
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      if (gate.fenced()) return gate.check();
      auto leases = disk.read_all_leases();
      if (!leases.ok()) return leases.status();
      auto hbs = disk.read_all_heartbeats();
      if (!hbs.ok()) return hbs.status();

      std::vector<uint32_t> candidates;
      if (opts.slot) candidates.push_back(*opts.slot);
      else
        for (uint32_t s = 0; s < n; ++s) candidates.push_back(s);
      std::vector<uint32_t> free_now, to_watch, damaged;
      for (uint32_t s : candidates) {
        const auto& l = (*leases)[s];
        if (!l.ok()) {
          damaged.push_back(s);
          continue;
        }
        (free_at_sight(*l, (*hbs)[s]) ? free_now : to_watch).push_back(s);
      }
      if (opts.slot && !damaged.empty())
        return Status::Corruption("slot " + std::to_string(*opts.slot) + ": " + (*leases)[*opts.slot].status().message() +
                                  "; repair it with `clusterify verify -y` while the cluster is down");

      SlotClaimResult out;
      if (!free_now.empty()) {
        // Random choice spreads simultaneous auto claimers over the free slots.
        const uint32_t s = free_now[std::uniform_int_distribution<size_t>(0, free_now.size() - 1)(pick)];
        auto o = try_take(s, *(*leases)[s], (*hbs)[s], false, out);
        if (!o.ok()) return o.status();
        if (*o == Outcome::kWon) return out;
        if (*o == Outcome::kLost && opts.slot) return lost_message(s);
        continue;
      }

      if (to_watch.empty()) {
        std::string list;
        for (uint32_t s : damaged) {
          if (!list.empty()) list += ", ";
          list += std::to_string(s);
        }
        return Status::Corruption("no usable slot: the lease records of slots " + list +
                                  " are damaged; repair them with `clusterify verify -y` while the cluster is down");
      }
      // Nothing free at sight: whoever does not change its heartbeat within
      // dead_after is dead (or was never there).
      std::vector<Result<cluster::HeartbeatRecord>> last = std::move(hbs).value();
      auto changed = watch(to_watch, last);
      if (!changed.ok()) return changed.status();
      std::vector<uint32_t> dead;
      for (uint32_t s : to_watch)
        if (!(*changed)[s]) dead.push_back(s);
      if (dead.empty()) return busy_message(*leases, last, to_watch, damaged);
      const uint32_t s = dead[std::uniform_int_distribution<size_t>(0, dead.size() - 1)(pick)];
      const cluster::SlotLeaseRecord& l = *(*leases)[s];
      auto o = try_take(s, l, last[s], l.owned != 0, out);
      if (!o.ok()) return o.status();
      if (*o == Outcome::kWon) return out;
      if (*o == Outcome::kLost && opts.slot) return lost_message(s);
    }
    return Status::Busy("could not claim a slot after " + std::to_string(kMaxAttempts) +
                        " attempts: other nodes kept winning the race; retry");
  }

  Status lost_message(uint32_t s) {
    auto l = disk.read_lease(s);
    const std::string who = l.ok() ? l->owner : "another node";
    return Status::Busy("slot " + std::to_string(s) + " was claimed by node '" + who +
                        "' at the same moment; choose another slot or `auto`");
  }

  Status busy_message(const std::vector<Result<cluster::SlotLeaseRecord>>& leases,
                      const std::vector<Result<cluster::HeartbeatRecord>>& hbs, const std::vector<uint32_t>& live,
                      const std::vector<uint32_t>& damaged) {
    if (opts.slot) {
      const uint32_t s = *opts.slot;
      const cluster::SlotLeaseRecord* l = leases[s].ok() ? &*leases[s] : nullptr;
      std::string ago = hbs[s].ok() ? " (heartbeat " + seconds_ago(hbs[s]->time_ns) + " ago)" : "";
      return Status::Busy("slot " + std::to_string(s) + " is held by live node '" + holder_name(l, hbs[s]) + "'" + ago +
                          "; choose another slot or `auto`");
    }
    std::string names;
    for (uint32_t s : live) {
      if (!names.empty()) names += ", ";
      names += holder_name(leases[s].ok() ? &*leases[s] : nullptr, hbs[s]);
    }
    std::string msg = "no free slot: all " + std::to_string(live.size()) + " slots are held by live nodes (" + names + ")";
    if (!damaged.empty()) {
      msg += ", and " + std::to_string(damaged.size()) + " slot lease records are damaged (slot";
      for (uint32_t s : damaged) {
        msg.push_back(' ');
        msg.append(std::to_string(s));
      }
      msg += ": repair with `clusterify verify -y` while the cluster is down)";
    }
    return Status::Busy(msg + "; add slots with `clusterify slots " + disk.device().name() + " --set N`");
  }
};

}  // namespace

Result<SlotClaimResult> claim_slot(ClusterDisk& disk, FenceGate& gate, const SlotClaimOptions& opts) {
  if (opts.node_name.empty()) return Status::InvalidArgument("claim: a node name is required");
  if (opts.slot && *opts.slot >= disk.slot_count())
    return Status::InvalidArgument("slot " + std::to_string(*opts.slot) + " does not exist: the cluster has " +
                                   std::to_string(disk.slot_count()) + " slots (0.." +
                                   std::to_string(disk.slot_count() - 1) + "); choose one of them or `auto`");
  cluster::Timing t = opts.timing.value_or(disk.timing());
  CEXT3_RETURN_IF_ERROR(validate_timing(t));
  const uint64_t delay = uint64_t{opts.claim_delay_ms ? opts.claim_delay_ms : t.io_timeout_ms} * kMs;
  if (delay + uint64_t{t.heartbeat_interval_ms} * kMs >= uint64_t{t.dead_after_ms} * kMs)
    return Status::InvalidArgument("claim delay " + std::to_string(delay / kMs) + " ms plus the heartbeat interval must stay below dead-after (" +
                                   std::to_string(t.dead_after_ms) + " ms), else a fresh winner could be judged dead");
  Claimer c{disk, gate, opts, t, delay};
  return c.run();
}

Status release_slot(ClusterDisk& disk, const SlotClaimResult& claim, bool journal_dirty) {
  auto lease = disk.read_lease(claim.slot);
  if (!lease.ok()) return lease.status().Annotate("releasing slot " + std::to_string(claim.slot));
  if (lease->lease_generation != claim.generation)
    return Status::Busy("slot " + std::to_string(claim.slot) + " now belongs to node '" + lease->owner +
                        "' (this node was presumed dead); not releasing it");
  cluster::SlotLeaseRecord l = *lease;
  l.owned = 0;
  l.lease_expiry_ns = 0;
  l.journal_dirty = journal_dirty ? 1 : 0;
  CEXT3_RETURN_IF_ERROR(disk.write_lease(l).Annotate("releasing slot " + std::to_string(claim.slot)));
  auto hb = disk.read_heartbeat(claim.slot);
  cluster::HeartbeatRecord h;
  if (hb.ok()) h = *hb;
  h.slot = claim.slot;
  h.flags = kHeartbeatFlagUsed | kHeartbeatFlagStopped;
  h.sequence = (hb.ok() ? hb->sequence : 0) + 1;
  h.generation = claim.generation;
  h.time_ns = realtime_ns();
  h.fence_deadline_ns = 0;
  if (h.node_name.empty()) h.node_name = lease->owner;
  CEXT3_RETURN_IF_ERROR(disk.write_heartbeat(h).Annotate("releasing slot " + std::to_string(claim.slot)));
  return disk.device().flush().Annotate("releasing slot " + std::to_string(claim.slot));
}

}  // namespace cext3::node
