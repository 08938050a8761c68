#include "cext3/cluster/revert.h"

#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <ctime>
#include <random>
#include <sstream>
#include <utility>

#include "cext3/cluster/ext3_checks.h"
#include "cext3/cluster/group_map.h"
#include "cext3/cluster/inspect.h"
#include "cext3/cluster/layout.h"
#include "cext3/journal.h"
#include "cext3/overlay_device.h"
#include "cluster/fs_session.h"
#include "cluster/overlay_commit.h"
#include "cluster/system_files.h"

namespace cext3::cluster {
namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Refuse while the cluster could be running or a slot needs recovery. `ci`
// has been through observe_liveness(), so liveness is what the heartbeats
// did while we watched, not a comparison with other machines' clocks.
Status check_quiet(const ClusterInfo& ci, const std::string& name) {
  const uint64_t now = now_ns();
  for (const SlotInfo& s : ci.slots) {
    if (!s.journal_ok)
      return Status::Corruption(name + ": " + journal_file_name(s.slot) + " is damaged (" + s.journal_error +
                                "): run clusterify verify " + name + " first");
    if (slot_is_live(ci, s, now)) {
      const std::string who = s.heartbeat_ok && !s.heartbeat.node_name.empty() ? s.heartbeat.node_name
                              : s.lease_ok && !s.lease.owner.empty()          ? s.lease.owner
                                                                              : std::string("?");
      return Status::Busy(name + ": slot " + std::to_string(s.slot) + " is live (node '" + who + "', " +
                          (s.observed ? "its heartbeat changed while clusterify watched it"
                                      : s.lease.owned ? "lease held" : "heartbeat is fresh") +
                          "): stop jcoord on every node first");
    }
    if (s.abandoned())
      return Status::Busy(name + ": slot " + std::to_string(s.slot) + " was held by node '" +
                          (s.lease_ok ? s.lease.owner : std::string("?")) +
                          "', which stopped without leaving cleanly: run clusterify verify -y " + name +
                          " to recover it first");
    if (slot_is_dirty(s))
      return Status::Busy(name + ": slot " + std::to_string(s.slot) +
                          "'s journal holds unreplayed transactions: run clusterify verify -y " + name + " first");
  }
  if (ci.mmp.in_use_by_cluster())
    return Status::Busy(name + ": MMP says " + ci.mmp.describe() +
                        " though no slot is live: the cluster did not shut down cleanly; run clusterify verify -y " +
                        name + " to recover and release it");
  if (ci.mmp.enabled && !ci.mmp.clean())
    return Status::Busy(name + " is in use according to its MMP block (" + ci.mmp.describe() +
                        "): stop it there, or run e2fsck " + name + " if that machine crashed");
  return Status::OK();
}

// The shared tail of every offline change: close libext2fs, classify the
// overlay against the old bitmap, and unless dry_run commit it.
Result<OfflineChangeReport> finish(BlockDevice& dev, OverlayDevice& ov, FsSession& session,
                                   ext2fs_block_bitmap old_map, blk64_t first_data, blk64_t nblocks, uint32_t bs,
                                   const journal::JournalMap& fs_journal, bool dry_run, const ProgressFn& progress) {
  CEXT3_RETURN_IF_ERROR(session.close());
  auto plan = classify_overlay(ov, bs, [&](uint64_t blk) {
    if (blk < first_data || blk >= nblocks) return true;
    return ext2fs_test_block_bitmap2(old_map, blk) != 0;
  });
  if (!plan.ok()) return plan.status();
  OfflineChangeReport r;
  r.direct_blocks = plan->direct_blocks.size();
  r.journaled_blocks = plan->txn.block_count();
  if (dry_run) return r;
  auto applied = apply_overlay_commit(dev, fs_journal, std::move(plan).value(), progress);
  if (!applied.ok()) return applied.status();
  r.tid = applied->tid;
  r.written = true;
  return r;
}

// Owns a copied libext2fs bitmap; movable, never copied (a copy would free
// the bitmap twice).
struct BitmapGuard {
  ext2fs_block_bitmap m = nullptr;
  BitmapGuard() = default;
  BitmapGuard(BitmapGuard&& o) noexcept : m(std::exchange(o.m, nullptr)) {}
  BitmapGuard& operator=(BitmapGuard&& o) noexcept {
    std::swap(m, o.m);
    return *this;
  }
  BitmapGuard(const BitmapGuard&) = delete;
  BitmapGuard& operator=(const BitmapGuard&) = delete;
  ~BitmapGuard() {
    if (m) ext2fs_free_block_bitmap(m);
  }
};

struct Opened {
  ClusterInfo info;
  std::unique_ptr<OverlayDevice> ov;
  FsSession session;
  LocatedCluster lc;
  journal::JournalMap fs_journal;
  BitmapGuard old_map;
};

Result<Opened> open_for_change(BlockDevice& dev, const char* verb) {
  Opened o;
  auto ci = read_cluster_info(dev);
  if (!ci.ok()) return ci.status();
  if (!ci->clusterified)
    return Status::InvalidArgument(dev.name() + " is a plain ext3 filesystem (no /.cext3): nothing to " + verb +
                                   "; convert it with clusterify convert");
  CEXT3_RETURN_IF_ERROR(observe_liveness(dev, *ci));
  o.info = std::move(ci).value();
  o.ov = std::make_unique<OverlayDevice>(dev);
  auto s = FsSession::open(*o.ov, true);
  if (!s.ok()) return s.status();
  o.session = std::move(s).value();
  ext2_filsys fs = o.session.fs();
  CEXT3_RETURN_IF_ERROR(check_cluster_fs_offline_ready(fs, dev.name()));
  auto jm = journal::JournalMap::from_inode(fs, fs->super->s_journal_inum);
  if (!jm.ok()) return jm.status();
  o.fs_journal = std::move(jm).value();
  auto ji = journal::read_journal_info(dev, o.fs_journal);
  if (!ji.ok()) return ji.status();
  if (!ji->clean())
    return Status::Busy(dev.name() + ": the ext3 journal holds unreplayed transactions: run e2fsck " + dev.name() +
                        " first");
  auto lc = locate_cluster(fs);
  if (!lc.ok()) return lc.status();
  o.lc = std::move(lc).value();
  errcode_t err = ext2fs_copy_bitmap(fs->block_map, &o.old_map.m);
  if (err) return ext2_status(err, "copying the block bitmap");
  return o;
}

int collect_name(ext2_dir_entry* d, int, int, char*, void* priv) {
  std::string n(d->name, ext2fs_dirent_name_len(d));
  if (n != "." && n != "..") static_cast<std::vector<std::pair<std::string, ext2_ino_t>>*>(priv)->push_back({n, d->inode});
  return 0;
}

uint32_t random_sequence() {
  std::random_device rd;
  return 1 + (rd() % 0x7FFF0000u);
}

}  // namespace

Result<OfflineChangeReport> revert_cluster(BlockDevice& dev, bool dry_run, const ProgressFn& progress) {
  auto op = open_for_change(dev, "revert");
  if (!op.ok()) return op.status();
  Opened& o = *op;
  CEXT3_RETURN_IF_ERROR(check_quiet(o.info, dev.name()));
  ext2_filsys fs = o.session.fs();
  ext2_super_block* sb = fs->super;
  const uint64_t free_before = ext2fs_free_blocks_count(sb);

  // Everything in /.cext3, whatever the header lists.
  std::vector<std::pair<std::string, ext2_ino_t>> entries;
  errcode_t err = ext2fs_dir_iterate(fs, o.lc.dir, 0, nullptr, collect_name, &entries);
  if (err) return ext2_status(err, "listing /.cext3");
  // Orphan directories (made by the engine) first: a non-empty one holds
  // files unlinked while open that no node has freed yet; removing it would
  // lose them from e2fsck's view, so revert refuses (nothing written yet).
  for (auto& [n, ino] : entries) {
    if (orphan_dir_slot(n) < 0) continue;
    auto in = list_dir(fs, ino);
    if (!in.ok()) return in.status();
    if (!in->empty())
      return Status::Busy(dev.name() + ": /.cext3/" + n + " holds " + std::to_string(in->size()) +
                          " unlinked files not yet freed (a node stopped uncleanly); run `jcoord recover` on the "
                          "stopped cluster to free them, then revert again");
  }
  for (auto& [n, ino] : entries) {
    ext2_inode inode;
    err = ext2fs_read_inode(fs, ino, &inode);
    if (err) return ext2_status(err, "reading /.cext3/" + n);
    if (LINUX_S_ISDIR(inode.i_mode) && orphan_dir_slot(n) >= 0) {
      CEXT3_RETURN_IF_ERROR(remove_orphan_dir(fs, o.lc.dir, n, ino));
      continue;
    }
    if (!LINUX_S_ISREG(inode.i_mode))
      return Status::Corruption(dev.name() + ": /.cext3/" + n + " is not a regular file; run clusterify verify");
    CEXT3_RETURN_IF_ERROR(remove_file(fs, o.lc.dir, n, ino));
  }
  CEXT3_RETURN_IF_ERROR(remove_system_dir(fs, o.lc.dir));
  bool had_mmp = ext2fs_has_feature_mmp(sb);
  if (had_mmp) {
    if (sb->s_mmp_block >= sb->s_first_data_block && sb->s_mmp_block < ext2fs_blocks_count(sb))
      ext2fs_block_alloc_stats2(fs, sb->s_mmp_block, -1);
    ext2fs_clear_feature_mmp(sb);
    sb->s_mmp_block = 0;
    sb->s_mmp_update_interval = 0;
    ext2fs_mark_super_dirty(fs);
  }
  const uint64_t freed = ext2fs_free_blocks_count(sb) - free_before;
  const uint32_t bs = fs->blocksize;
  auto r = finish(dev, *o.ov, o.session, o.old_map.m, sb->s_first_data_block, ext2fs_blocks_count(sb), bs,
                  o.fs_journal, dry_run, progress);
  if (!r.ok()) return r;
  std::ostringstream s;
  s << (r->written ? "reverted " : "plan to revert ") << dev.name() << " to plain ext3:\n"
    << "  removed /.cext3 and " << entries.size() << " system files, " << freed << " blocks ("
    << freed * bs / 1024 << " KiB) freed\n"
    << "  multi-mount protection: " << (had_mmp ? "removed (mount with -t ext3 again)" : "was off") << "\n"
    << "  writes: " << r->journaled_blocks << " metadata blocks through one ext3 journal transaction";
  if (r->written) s << " (tid " << r->tid << ")";
  s << "\n";
  if (!r->written) s << "  dry run: nothing was written\n";
  r->summary = s.str();
  return r;
}

Result<OfflineChangeReport> set_slot_count(BlockDevice& dev, uint32_t slots, uint32_t journal_size_mib, bool dry_run,
                                           const ProgressFn& progress) {
  auto op = open_for_change(dev, "change");
  if (!op.ok()) return op.status();
  Opened& o = *op;
  ext2_filsys fs = o.session.fs();
  ext2_super_block* sb = fs->super;
  ClusterHeader h = o.lc.choice.header;
  const uint32_t old_slots = h.slot_count;
  const uint32_t bs = fs->blocksize;
  if (slots == old_slots)
    return Status::InvalidArgument(dev.name() + " already has " + std::to_string(slots) + " slots; nothing to change");
  // Every slot must be quiet: the group map changes under all of them.
  CEXT3_RETURN_IF_ERROR(check_quiet(o.info, dev.name()));
  auto map = make_group_map(h.policy, fs->group_desc_count, slots);
  if (!map.ok()) return Status::InvalidArgument(dev.name() + ": " + map.status().message());

  uint64_t jblocks = 0;
  if (journal_size_mib) {
    jblocks = uint64_t{journal_size_mib} * 1024 * 1024 / bs;
    if (jblocks < 1024)
      return Status::InvalidArgument("--journal-size " + std::to_string(journal_size_mib) +
                                     " MiB is below jbd2's minimum of 1024 blocks; give a larger size");
  } else if (const SystemFileExtent* j0 = h.find(SystemFileKind::kJournal, 0)) {
    jblocks = j0->block_count;
  } else {
    jblocks = 1024;
  }
  std::ostringstream s;
  s << "slot count of " << dev.name() << ": " << old_slots << " -> " << slots << "\n";
  if (slots > old_slots) {
    const uint64_t need = (slots - old_slots) * (jblocks + indirect_blocks_for(jblocks, bs));
    const uint64_t free = ext2fs_free_blocks_count(sb), reserved = ext2fs_r_blocks_count(sb);
    if (need + fs->group_desc_count > (free > reserved ? free - reserved : 0))
      return Status::NoSpace(dev.name() + " has too little free space for " + std::to_string(slots - old_slots) +
                             " more journals of " + std::to_string(jblocks * bs / 1024) +
                             " KiB: free space or give a smaller --journal-size");
    auto by_slot = groups_by_slot(*map, slots);
    for (uint32_t k = old_slots; k < slots; ++k) {
      const blk64_t goal = ext2fs_group_first_block2(fs, by_slot[k].front());
      auto j = create_contiguous_file(fs, o.lc.dir, journal_file_name(k), jblocks, goal, SystemFileKind::kJournal, k);
      if (!j.ok()) return j.status();
      journal::FormatOptions fo;
      fo.sequence = random_sequence();
      std::copy(std::begin(sb->s_uuid), std::end(sb->s_uuid), fo.uuid.begin());
      fo.feature_incompat = journal::kIncompatRevoke | journal::kIncompatCsumV3;
      fo.zero_log = false;  // see convert: a clean journal with a random sequence
      auto jm = journal::JournalMap::contiguous(bs, j->first_block, jblocks);
      if (!jm.ok()) return jm.status();
      CEXT3_RETURN_IF_ERROR(journal::format_journal(*o.ov, *jm, fo));
      h.files.push_back(*j);
      s << "  added " << journal_file_name(k) << ": inode " << j->inode << ", blocks " << j->first_block << ".."
        << j->first_block + jblocks - 1 << "\n";
    }
  } else {
    // The orphan directories of the slots that go: empty ones are removed,
    // a non-empty one refuses the change (before anything is written).
    for (uint32_t k = slots; k < old_slots; ++k) {
      ext2_ino_t oino = 0;
      const std::string on = orphan_dir_name(k);
      if (ext2fs_lookup(fs, o.lc.dir, on.c_str(), int(on.size()), nullptr, &oino) != 0) continue;
      auto in = list_dir(fs, oino);
      if (!in.ok()) return in.status();
      if (!in->empty())
        return Status::Busy(dev.name() + ": /.cext3/" + on + " holds " + std::to_string(in->size()) +
                            " unlinked files not yet freed (a node stopped uncleanly); run `jcoord recover` on the "
                            "stopped cluster to free them, then change the slot count again");
    }
    for (uint32_t k = slots; k < old_slots; ++k) {
      ext2_ino_t oino = 0;
      const std::string on = orphan_dir_name(k);
      if (ext2fs_lookup(fs, o.lc.dir, on.c_str(), int(on.size()), nullptr, &oino) != 0) continue;
      CEXT3_RETURN_IF_ERROR(remove_orphan_dir(fs, o.lc.dir, on, oino));
      s << "  removed " << on << " (inode " << oino << ")\n";
    }
    for (uint32_t k = slots; k < old_slots; ++k) {
      const SystemFileExtent* j = h.find(SystemFileKind::kJournal, k);
      if (!j) continue;
      CEXT3_RETURN_IF_ERROR(remove_file(fs, o.lc.dir, journal_file_name(k), j->inode));
      s << "  removed " << journal_file_name(k) << " (inode " << j->inode << ")\n";
    }
    h.files.erase(std::remove_if(h.files.begin(), h.files.end(),
                                 [&](const SystemFileExtent& f) {
                                   return f.kind == SystemFileKind::kJournal && f.index >= slots;
                                 }),
                  h.files.end());
  }
  h.slot_count = slots;
  h.group_slot = *map;
  ++h.generation;
  auto free_by = free_blocks_per_slot(fs, h.group_slot, slots);
  for (uint32_t k = 0; k < slots; ++k)
    if (free_by[k] == 0)
      return Status::NoSpace(dev.name() + ": slot " + std::to_string(k) +
                             " would have no free block; use fewer slots or a smaller --journal-size");
  const SystemFileExtent* cl = h.find(SystemFileKind::kCluster);
  const SystemFileExtent* lk = h.find(SystemFileKind::kLocks);
  const SystemFileExtent* hb = h.find(SystemFileKind::kHeartbeat);
  if (!cl || !lk || !hb) return Status::Corruption(dev.name() + ": the cluster header lacks a system file; run clusterify verify");
  // Both copies carry the new header: the whole update is one journal
  // transaction, so A/B alternation is not needed for atomicity here.
  CEXT3_RETURN_IF_ERROR(write_header_copy(fs, *cl, h, 0));
  CEXT3_RETURN_IF_ERROR(write_header_copy(fs, *cl, h, 1));
  // Fresh lock and heartbeat areas (all slots are quiet, nothing is lost).
  CEXT3_RETURN_IF_ERROR(write_initial_locks(fs, *lk, slots));
  CEXT3_RETURN_IF_ERROR(write_empty_heartbeats(fs, *hb));
  auto by = groups_by_slot(h.group_slot, slots);
  for (uint32_t k = 0; k < slots; ++k)
    s << "  slot " << k << ": " << by[k].size() << " groups, " << free_by[k] * bs / 1024 << " KiB free\n";
  auto r = finish(dev, *o.ov, o.session, o.old_map.m, sb->s_first_data_block, ext2fs_blocks_count(sb), bs,
                  o.fs_journal, dry_run, progress);
  if (!r.ok()) return r;
  s << "  writes: " << r->direct_blocks << " blocks into free space, " << r->journaled_blocks
    << " metadata blocks through one ext3 journal transaction";
  if (r->written) s << " (tid " << r->tid << ")";
  s << "\n";
  if (!r->written) s << "  dry run: nothing was written\n";
  r->summary = s.str();
  return r;
}

}  // namespace cext3::cluster
