// clusterify revert and clusterify slots: offline changes of a cext3
// filesystem, atomic through the ext3 journal like convert.
#include <cstdio>

#include "cext3/cluster/revert.h"
#include "commands.h"
#include "device.h"

namespace clusterify {

cext3::cluster::ProgressFn make_progress();

int run_revert(const RevertArgs& a) {
  auto dev = open_device_for_change(a.device, a.dry_run);
  if (!dev.ok()) return fail("revert", dev.status());
  auto r = cext3::cluster::revert_cluster(**dev, a.dry_run, make_progress());
  if (!r.ok()) return fail("revert", r.status());
  std::fputs(r->summary.c_str(), stdout);
  return 0;
}

int run_slots(const SlotsArgs& a) {
  auto dev = open_device_for_change(a.device, a.dry_run);
  if (!dev.ok()) return fail("slots", dev.status());
  auto r = cext3::cluster::set_slot_count(**dev, a.slots, a.journal_mib, a.dry_run, make_progress());
  if (!r.ok()) return fail("slots", r.status());
  std::fputs(r->summary.c_str(), stdout);
  return 0;
}

}  // namespace clusterify
