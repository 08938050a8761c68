#include "cext3/daemon/slot_recovery.h"

#include "cext3/cluster/group_counts.h"
#include "cext3/node/fence.h"
#include "cext3/node/heartbeat.h"

namespace cext3::daemon {
namespace {

// Recount the groups `want(g)` selects and rewrite what differs, then the
// superblock totals.
template <typename Pred>
Result<uint32_t> recount_groups(BlockDevice& dev, Pred want) {
  auto geo = cluster::read_ext3_geometry(dev);
  if (!geo.ok()) return geo.status();
  std::vector<std::pair<uint32_t, cluster::GroupCounts>> counts;
  for (uint32_t g = 0; g < geo->group_count; ++g) {
    if (!want(g)) continue;
    auto c = cluster::count_group(dev, *geo, g);
    if (!c.ok()) return c.status();
    counts.push_back({g, *c});
  }
  auto n = cluster::write_group_counts(dev, *geo, counts);
  if (!n.ok()) return n.status();
  CEXT3_RETURN_IF_ERROR(cluster::write_superblock_totals(dev, *geo));
  return *n;
}

}  // namespace

Result<uint32_t> recount_all_groups(node::ClusterDisk& disk) {
  auto n = recount_groups(disk.device(), [](uint32_t) { return true; });
  if (!n.ok()) return n.status().Annotate("recounting group descriptors");
  return n;
}

Result<SlotRecoveryResult> recover_slot(node::ClusterDisk& disk, uint32_t slot, bool keep_owner,
                                        CountRepair counts) {
  if (slot >= disk.slot_count())
    return Status::InvalidArgument("slot " + std::to_string(slot) + " does not exist (the disk has " +
                                   std::to_string(disk.slot_count()) + " slots)");
  const uint32_t bs = disk.block_size();
  auto map = journal::JournalMap::contiguous(bs, disk.journal_offset(slot) / bs, disk.journal_bytes(slot) / bs);
  if (!map.ok()) return map.status().Annotate("slot " + std::to_string(slot) + " journal");
  SlotRecoveryResult r;
  auto rep = journal::recover_journal(disk.device(), *map);
  if (!rep.ok()) return rep.status().Annotate("replaying slot " + std::to_string(slot) + "'s journal");
  r.replay = *rep;
  if (counts == CountRepair::kRecount) {
    const auto& owner = disk.header().group_slot;
    auto n = recount_groups(disk.device(), [&](uint32_t g) { return g < owner.size() && owner[g] == slot; });
    if (!n.ok()) return n.status().Annotate("recounting slot " + std::to_string(slot) + "'s groups");
    r.descriptors_fixed = *n;
  }
  if (!keep_owner) {
    // The dead node's last heartbeat gets the "stopped" flag, as its clean
    // leave would have written (and as `clusterify verify -y` does): every
    // reader then sees the slot free with nothing left to recover. Written
    // before the lease is freed, so no new claimer's heartbeat can be
    // overwritten: a claimer waits for a free lease.
    auto hb = disk.read_heartbeat(slot);
    cluster::HeartbeatRecord r = hb.ok() ? *hb : cluster::HeartbeatRecord{};
    r.slot = slot;
    r.flags |= node::kHeartbeatFlagUsed | node::kHeartbeatFlagStopped;
    ++r.sequence;
    r.time_ns = node::realtime_ns();
    r.fence_deadline_ns = 0;
    CEXT3_RETURN_IF_ERROR(disk.write_heartbeat(r));
  }
  auto lease = disk.read_lease(slot);
  if (!lease.ok()) return lease.status().Annotate("reading slot " + std::to_string(slot) + "'s lease");
  cluster::SlotLeaseRecord l = *lease;
  l.journal_dirty = 0;
  ++l.recovery_generation;
  if (!keep_owner) {
    l.owned = 0;
    l.lease_expiry_ns = 0;
  }
  CEXT3_RETURN_IF_ERROR(disk.write_lease(l));
  CEXT3_RETURN_IF_ERROR(disk.device().flush());
  r.recovery_generation = l.recovery_generation;
  return r;
}

}  // namespace cext3::daemon
