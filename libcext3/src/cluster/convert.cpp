#include "cext3/cluster/convert.h"

#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <random>
#include <sstream>

#include "cext3/cluster/ext3_checks.h"
#include "cext3/cluster/group_map.h"
#include "cext3/cluster/layout.h"
#include "cext3/journal.h"
#include "cext3/overlay_device.h"
#include "cluster/fs_session.h"
#include "cluster/overlay_commit.h"
#include "cluster/system_files.h"

namespace cext3::cluster {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
// jbd2 refuses journals shorter than this (JBD2_MIN_JOURNAL_BLOCKS).
constexpr uint64_t kMinJournalBlocks = 1024;
// Default per-slot journal cap: big enough for jcoord's group commits, small
// enough that 8 slots on a modest disk still fit.
constexpr uint64_t kDefaultJournalCapMiB = 64;

std::array<uint8_t, 16> random_uuid() {
  std::random_device rd;
  std::array<uint8_t, 16> u{};
  for (auto& b : u) b = static_cast<uint8_t>(rd());
  u[6] = static_cast<uint8_t>((u[6] & 0x0F) | 0x40);  // version 4
  u[8] = static_cast<uint8_t>((u[8] & 0x3F) | 0x80);  // RFC 4122 variant
  return u;
}

uint32_t random_sequence() {
  std::random_device rd;
  // Keep clear of 0 and of the wrap-around so tids compare simply.
  return 1 + (rd() % 0x7FFF0000u);
}

std::string mib(uint64_t blocks, uint32_t bs) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(1);
  o << static_cast<double>(blocks) * bs / kMiB << " MiB";
  return o.str();
}

}  // namespace

Result<ConvertReport> convert_to_cluster(BlockDevice& dev, const ConvertOptions& opts, const ProgressFn& progress) {
  const std::string name = dev.name();
  OverlayDevice ov(dev);
  auto session = FsSession::open(ov, true);
  if (!session.ok()) return session.status();
  ext2_filsys fs = session->fs();
  ext2_super_block* sb = fs->super;

  // Already converted comes first: a cext3 filesystem carries mmp, which the
  // feature check would otherwise name as unsupported.
  auto sysdir = find_system_dir(fs);
  if (!sysdir.ok()) return sysdir.status();
  if (sysdir->has_value())
    return Status::InvalidArgument(name + " is already clusterified (/.cext3 exists); use clusterify slots " + name +
                                   " --set N to change the slot count, or clusterify revert first");
  CEXT3_RETURN_IF_ERROR(check_plain_ext3_convertible(fs, name));
  auto fs_journal = journal::JournalMap::from_inode(fs, sb->s_journal_inum);
  if (!fs_journal.ok()) return fs_journal.status();
  {
    auto ji = journal::read_journal_info(dev, *fs_journal);
    if (!ji.ok()) return ji.status().Annotate(name + ": the ext3 journal is unreadable; run e2fsck -f " + name);
    if (!ji->clean())
      return Status::Busy(name + ": the ext3 journal holds unreplayed transactions: run e2fsck " + name +
                          " to replay the journal first");
  }

  ConvertReport r;
  r.device = name;
  r.block_size = fs->blocksize;
  r.groups = fs->group_desc_count;
  r.blocks_count = ext2fs_blocks_count(sb);
  r.free_blocks_before = ext2fs_free_blocks_count(sb);
  r.reserved_blocks = ext2fs_r_blocks_count(sb);
  const uint32_t bs = fs->blocksize;

  if (opts.slots == 0 || opts.slots > kMaxSlots)
    return Status::InvalidArgument("--slots " + std::to_string(opts.slots) + " is out of range: give 1.." +
                                   std::to_string(kMaxSlots));
  auto map = make_group_map(opts.policy, r.groups, opts.slots);
  if (!map.ok()) return Status::InvalidArgument(name + ": " + map.status().message());

  // Journal size per slot.
  uint64_t jblocks;
  if (opts.journal_size_mib) {
    jblocks = uint64_t{opts.journal_size_mib} * kMiB / bs;
    if (jblocks < kMinJournalBlocks)
      return Status::InvalidArgument("--journal-size " + std::to_string(opts.journal_size_mib) +
                                     " MiB is below jbd2's minimum of " + std::to_string(kMinJournalBlocks) +
                                     " blocks (" + mib(kMinJournalBlocks, bs) + "); give a larger size");
  } else {
    int d = ext2fs_default_journal_size(r.blocks_count / opts.slots);
    jblocks = std::max<uint64_t>(kMinJournalBlocks, d > 0 ? static_cast<uint64_t>(d) : 0);
    jblocks = std::min<uint64_t>(jblocks, std::max<uint64_t>(kMinJournalBlocks, kDefaultJournalCapMiB * kMiB / bs));
  }
  r.journal_blocks_per_slot = jblocks;

  const uint64_t cl_blocks = cluster_file_blocks(r.groups, bs);
  const uint64_t hb_blocks = heartbeat_file_blocks(bs);
  const uint64_t lk_blocks = locks_file_blocks(bs);
  uint64_t needed = 1 /* directory block */ + (opts.mmp ? 1 : 0);
  for (uint64_t n : {cl_blocks, hb_blocks, lk_blocks}) needed += n + indirect_blocks_for(n, bs);
  needed += opts.slots * (jblocks + indirect_blocks_for(jblocks, bs));
  r.blocks_needed = needed;
  const uint64_t usable = r.free_blocks_before > r.reserved_blocks ? r.free_blocks_before - r.reserved_blocks : 0;
  // Leave every slot something to allocate from: at least one block per group
  // beyond what the system files take.
  if (needed + r.groups > usable)
    return Status::NoSpace(name + " has too little free space: the cluster metadata needs " + mib(needed, bs) +
                           " (" + std::to_string(opts.slots) + " journals of " + mib(jblocks, bs) + ") but only " +
                           mib(usable, bs) + " is free outside the reserved blocks; free space, use fewer slots "
                           "or a smaller --journal-size");

  // What the old filesystem uses: every block not free here is written only
  // through the journal.
  ext2fs_block_bitmap old_map = nullptr;
  errcode_t err = ext2fs_copy_bitmap(fs->block_map, &old_map);
  if (err) return ext2_status(err, "copying the block bitmap");
  struct BitmapGuard {
    ext2fs_block_bitmap m;
    ~BitmapGuard() { ext2fs_free_block_bitmap(m); }
  } guard{old_map};
  const blk64_t first_data = sb->s_first_data_block;
  const blk64_t nblocks = ext2fs_blocks_count(sb);

  if (progress) progress("laying out the cluster metadata", 0, 1);
  ClusterHeader h;
  h.uuid = random_uuid();
  h.slot_count = opts.slots;
  h.timing = opts.timing;
  h.block_size = bs;
  h.blocks_count = r.blocks_count;
  h.policy = opts.policy;
  h.group_slot = *map;

  auto dir = create_system_dir(fs);
  if (!dir.ok()) return dir.status();
  h.system_dir_inode = *dir;
  // The small files go near the directory; each journal starts in its own
  // slot's first group so that a slot's journal and its data share a region
  // of the disk under the contiguous policy.
  const blk64_t small_goal = ext2fs_group_first_block2(fs, 0);
  auto cl = create_contiguous_file(fs, *dir, kClusterFileName, cl_blocks, small_goal, SystemFileKind::kCluster, 0);
  if (!cl.ok()) return cl.status();
  auto hb = create_contiguous_file(fs, *dir, kHeartbeatFileName, hb_blocks, small_goal, SystemFileKind::kHeartbeat, 0);
  if (!hb.ok()) return hb.status();
  auto lk = create_contiguous_file(fs, *dir, kLocksFileName, lk_blocks, small_goal, SystemFileKind::kLocks, 0);
  if (!lk.ok()) return lk.status();
  h.files = {*cl, *hb, *lk};
  auto by_slot = groups_by_slot(h.group_slot, opts.slots);
  for (uint32_t s = 0; s < opts.slots; ++s) {
    const blk64_t goal = ext2fs_group_first_block2(fs, by_slot[s].front());
    auto j = create_contiguous_file(fs, *dir, journal_file_name(s), jblocks, goal, SystemFileKind::kJournal, s);
    if (!j.ok()) return j.status();
    h.files.push_back(*j);
    journal::FormatOptions fo;
    fo.sequence = random_sequence();
    std::copy(std::begin(sb->s_uuid), std::end(sb->s_uuid), fo.uuid.begin());
    fo.feature_incompat = journal::kIncompatRevoke | journal::kIncompatCsumV3;
    // No need to zero the log: the journal is formatted clean (s_start = 0),
    // and a replay only accepts blocks that carry the jbd2 magic, the
    // expected (random) sequence number and a valid csum_v3 checksum.
    fo.zero_log = false;
    auto jm = journal::JournalMap::contiguous(bs, j->first_block, jblocks);
    if (!jm.ok()) return jm.status();
    CEXT3_RETURN_IF_ERROR(journal::format_journal(ov, *jm, fo).Annotate("formatting " + journal_file_name(s)));
    if (progress) progress("laying out the cluster metadata", s + 1, opts.slots);
  }
  CEXT3_RETURN_IF_ERROR(write_header_copy(fs, *cl, h, 0));
  CEXT3_RETURN_IF_ERROR(write_header_copy(fs, *cl, h, 1));
  CEXT3_RETURN_IF_ERROR(write_empty_heartbeats(fs, *hb));
  CEXT3_RETURN_IF_ERROR(write_initial_locks(fs, *lk, opts.slots));

  if (opts.mmp) {
    ext2fs_set_feature_mmp(sb);
    sb->s_mmp_update_interval = EXT4_MMP_UPDATE_INTERVAL;
    err = ext2fs_mmp_init(fs);
    if (err) return ext2_status(err, "setting up multi-mount protection");
    r.mmp_block = sb->s_mmp_block;
    ext2fs_mark_super_dirty(fs);
  }

  r.free_blocks_per_slot = free_blocks_per_slot(fs, h.group_slot, opts.slots);
  for (uint32_t s = 0; s < opts.slots; ++s) {
    r.groups_per_slot.push_back(static_cast<uint32_t>(by_slot[s].size()));
    if (r.free_blocks_per_slot[s] == 0)
      return Status::NoSpace(name + ": slot " + std::to_string(s) + " would have no free block in its " +
                             std::to_string(by_slot[s].size()) +
                             " groups after the conversion; use --group-policy balanced, fewer slots or a smaller "
                             "--journal-size");
  }
  r.free_blocks_after = ext2fs_free_blocks_count(sb);
  r.header = h;
  CEXT3_RETURN_IF_ERROR(session->close());

  auto plan = classify_overlay(ov, bs, [&](uint64_t blk) {
    if (blk < first_data || blk >= nblocks) return true;
    return ext2fs_test_block_bitmap2(old_map, blk) != 0;
  });
  if (!plan.ok()) return plan.status();
  r.direct_blocks = plan->direct_blocks.size();
  r.journaled_blocks = plan->txn.block_count();
  if (opts.dry_run) return r;

  auto applied = apply_overlay_commit(dev, *fs_journal, std::move(plan).value(), progress);
  if (!applied.ok()) return applied.status();
  r.tid = applied->tid;
  r.written = true;
  return r;
}

std::string describe_convert(const ConvertReport& r) {
  std::ostringstream o;
  const uint32_t bs = r.block_size;
  o << (r.written ? "converted " : "plan for ") << r.device << ":\n";
  o << "  filesystem: " << r.blocks_count << " blocks of " << bs << " bytes, " << r.groups << " groups, "
    << mib(r.free_blocks_before, bs) << " free\n";
  o << "  slots: " << r.header.slot_count << ", group policy " << to_string(r.header.policy) << "\n";
  for (uint32_t s = 0; s < r.groups_per_slot.size(); ++s)
    o << "    slot " << s << ": " << r.groups_per_slot[s] << " groups, " << mib(r.free_blocks_per_slot[s], bs)
      << " free after conversion\n";
  o << "  /.cext3 (inode " << r.header.system_dir_inode << "):\n";
  for (const auto& f : r.header.files) {
    std::string fname = f.kind == SystemFileKind::kJournal ? journal_file_name(f.index) : to_string(f.kind);
    o << "    " << fname << ": inode " << f.inode << ", blocks " << f.first_block << ".."
      << f.first_block + f.block_count - 1 << " (" << mib(f.block_count, bs) << ")\n";
  }
  o << "  space: " << mib(r.free_blocks_before - r.free_blocks_after, bs) << " used by cluster metadata, "
    << mib(r.free_blocks_after, bs) << " free afterwards\n";
  if (r.mmp_block)
    o << "  multi-mount protection: MMP block " << r.mmp_block << " (mount with -t ext4 on a single node)\n";
  else
    o << "  multi-mount protection: off (--no-mmp)\n";
  o << "  writes: " << r.direct_blocks << " blocks into free space, " << r.journaled_blocks
    << " metadata blocks through one ext3 journal transaction";
  if (r.written) o << " (tid " << r.tid << ")";
  o << "\n";
  if (!r.written) o << "  dry run: nothing was written\n";
  return o.str();
}

}  // namespace cext3::cluster
