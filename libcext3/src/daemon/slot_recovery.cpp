#include "cext3/daemon/slot_recovery.h"

namespace cext3::daemon {

Result<SlotRecoveryResult> recover_slot(node::ClusterDisk& disk, uint32_t slot, bool keep_owner) {
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
