// Mount, unmount and the fold of derived counters (docs/ENGINE.md).
//
// Invariants relied on:
//  * the superblock and group descriptors are read once, as read-only
//    copies; during normal ops the engine never writes them. Only the fold
//    (unmount) changes them, under gdt:<block> / sb EX, through a journal
//    transaction that is committed and checkpointed before the locks go;
//  * the slot journal is clean at mount (a dirty one belongs to recovery);
//  * the filesystem has only the features clusterify accepts (docs/FORMAT.md).
#include <algorithm>
#include <bit>
#include <cstring>

#include "cext3/node/cluster_disk.h"
#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

static_assert(std::endian::native == std::endian::little,
              "the engine reads ext3's little-endian structures by memcpy: little-endian hosts only");

namespace {
constexpr uint32_t kCompatOk = EXT2_FEATURE_COMPAT_DIR_PREALLOC | EXT2_FEATURE_COMPAT_IMAGIC_INODES |
                               EXT3_FEATURE_COMPAT_HAS_JOURNAL | EXT2_FEATURE_COMPAT_EXT_ATTR |
                               EXT2_FEATURE_COMPAT_RESIZE_INODE | EXT2_FEATURE_COMPAT_DIR_INDEX;
constexpr uint32_t kRoCompatOk = EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER | EXT2_FEATURE_RO_COMPAT_LARGE_FILE;
constexpr uint32_t kIncompatOk = EXT2_FEATURE_INCOMPAT_FILETYPE | EXT4_FEATURE_INCOMPAT_MMP;

// ext3's largest file for a block size (the kernel's ext4_max_bitmap_size
// without huge_file): the smaller of what the triple-indirect map
// addresses and what a 32-bit i_blocks (512-byte units) can count,
// indirect blocks included.
uint64_t ext3_max_file_size(uint32_t block_size) {
  const int bits = std::countr_zero(block_size);
  const uint64_t apb = uint64_t(1) << (bits - 2);
  uint64_t upper = (uint64_t(1) << 32) - 1;  // i_blocks
  upper >>= (bits - 9);
  const uint64_t meta = 1 + (1 + apb) + (1 + apb + apb * apb);
  upper -= meta;
  upper <<= bits;
  uint64_t res = EXT2_NDIR_BLOCKS + apb + apb * apb + apb * apb * apb;
  res <<= bits;
  return std::min(res, upper);
}
}  // namespace

EngineFs::EngineFs(BlockDevice& dev, const MountOptions& opts) : dev_(dev), opts_(opts) {}

EngineFs::~EngineFs() {
  // Without unmount() this is a crash as far as the disk is concerned: the
  // running transaction is committed (what was acknowledged stays), the
  // journal stays dirty and a replay finishes the job. Orphans stay in the
  // slot's orphan directory for the recovery (or the next mount) to free.
  stop_orphan_scan();
  stop_commit_thread();
  if (mounted_ && journal_) (void)commit_and_wait();
}

void EngineFs::stop_commit_thread() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_commit_thread_ = true;
  }
  commit_cv_.notify_all();
  if (commit_thread_.joinable()) commit_thread_.join();
}

Result<std::unique_ptr<Filesystem>> Filesystem::mount(BlockDevice& dev, const MountOptions& opts) {
  if (opts.locks == nullptr)
    return Status::InvalidArgument("mount: MountOptions::locks is required (make_local_lock_provider() offline)");
  auto fs = std::make_unique<EngineFs>(dev, opts);
  CEXT3_RETURN_IF_ERROR(fs->load());
  if (!opts.read_only) {
    fs->commit_thread_ = std::thread([p = fs.get()] { p->commit_thread_main(); });
    // The slot's orphan directory, its leftovers freed, the scan started.
    CEXT3_RETURN_IF_ERROR(fs->start_orphans());
  }
  return std::unique_ptr<Filesystem>(fs.release());
}

Status EngineFs::load() {
  const std::string what = "mounting " + dev_.name();
  if (dev_.size() < 4096) return Status::InvalidArgument(what + ": the device is too small to hold ext3");
  std::vector<uint8_t> head(4096);
  CEXT3_RETURN_IF_ERROR(dev_.read(0, head.data(), head.size()));
  ext2_super_block sb;
  std::memcpy(&sb, head.data() + 1024, sizeof sb);
  if (sb.s_magic != EXT2_SUPER_MAGIC)
    return Status::NotSupported(what + ": no ext3 superblock (bad magic); is this a cext3 filesystem?");
  if (sb.s_feature_compat & ~kCompatOk)
    return Status::NotSupported(what + ": unsupported compat features 0x" + std::to_string(sb.s_feature_compat & ~kCompatOk) +
                                "; the engine handles what clusterify accepts only");
  if (sb.s_feature_ro_compat & ~kRoCompatOk)
    return Status::NotSupported(what + ": unsupported ro_compat features " +
                                std::to_string(sb.s_feature_ro_compat & ~kRoCompatOk) +
                                "; the engine handles what clusterify accepts only");
  if (sb.s_feature_incompat & EXT3_FEATURE_INCOMPAT_RECOVER)
    return Status::Busy(what + ": the filesystem journal (inode 8) needs recovery; run clusterify verify -p first");
  if (sb.s_feature_incompat & ~kIncompatOk)
    return Status::NotSupported(what + ": unsupported incompat features " +
                                std::to_string(sb.s_feature_incompat & ~kIncompatOk) +
                                "; the engine handles what clusterify accepts only");
  if (sb.s_log_block_size > 2)
    return Status::NotSupported(what + ": block size above 4096 bytes is not supported");
  Geometry& g = geo_;
  g.log_block_size = sb.s_log_block_size;
  g.block_size = 1024u << sb.s_log_block_size;
  if (g.block_size < dev_.sector_size())
    return Status::NotSupported(what + ": block size " + std::to_string(g.block_size) +
                                " is smaller than the device sector " + std::to_string(dev_.sector_size()) +
                                "; use a filesystem with blocks at least one sector large");
  g.blocks_count = sb.s_blocks_count;
  g.first_data_block = sb.s_first_data_block;
  g.blocks_per_group = sb.s_blocks_per_group;
  g.inodes_per_group = sb.s_inodes_per_group;
  g.inodes_count = sb.s_inodes_count;
  g.inode_size = sb.s_rev_level >= EXT2_DYNAMIC_REV ? sb.s_inode_size : EXT2_GOOD_OLD_INODE_SIZE;
  g.first_ino = sb.s_rev_level >= EXT2_DYNAMIC_REV ? sb.s_first_ino : EXT2_GOOD_OLD_FIRST_INO;
  g.reserved_blocks = sb.s_r_blocks_count;
  if (g.blocks_per_group == 0 || g.inodes_per_group == 0 || g.inode_size < EXT2_GOOD_OLD_INODE_SIZE ||
      g.inode_size > g.block_size || (g.inode_size & (g.inode_size - 1)) != 0)
    return Status::Corruption(what + ": the superblock's geometry is invalid; run e2fsck");
  if (uint64_t(g.blocks_count) * g.block_size > dev_.size())
    return Status::InvalidArgument(what + ": the filesystem is larger than the device");
  g.groups = uint32_t((g.blocks_count - g.first_data_block + g.blocks_per_group - 1) / g.blocks_per_group);
  g.addr_per_block = g.block_size / 4;
  g.desc_per_block = g.block_size / sizeof(ext2_group_desc);
  g.gdt_first_block = g.first_data_block + 1;
  g.sb_block = g.block_size == 1024 ? 1 : 0;
  g.sb_offset_in_block = g.block_size == 1024 ? 0 : 1024;
  g.large_file = sb.s_feature_ro_compat & EXT2_FEATURE_RO_COMPAT_LARGE_FILE;
  g.max_file_size = ext3_max_file_size(g.block_size);
  std::memcpy(g.hash_seed, sb.s_hash_seed, sizeof g.hash_seed);
  g.def_hash_version = sb.s_def_hash_version;
  g.unsigned_hash = sb.s_flags & EXT2_FLAGS_UNSIGNED_HASH;
  g.dir_index = sb.s_feature_compat & EXT2_FEATURE_COMPAT_DIR_INDEX;

  // Group descriptors (read-only copy: the bitmap/table locations and the
  // folded counts at mount).
  const uint64_t gdt_blocks = (uint64_t(g.groups) + g.desc_per_block - 1) / g.desc_per_block;
  std::vector<uint8_t> gdt(gdt_blocks * g.block_size);
  CEXT3_RETURN_IF_ERROR(dev_.read(g.gdt_first_block * g.block_size, gdt.data(), gdt.size()));
  groups_.resize(g.groups);
  for (uint32_t i = 0; i < g.groups; ++i) {
    ext2_group_desc d;
    std::memcpy(&d, gdt.data() + uint64_t(i) * sizeof d, sizeof d);
    GroupInfo& gi = groups_[i];
    gi.block_bitmap = d.bg_block_bitmap;
    gi.inode_bitmap = d.bg_inode_bitmap;
    gi.inode_table = d.bg_inode_table;
    gi.base_free_blocks = d.bg_free_blocks_count;
    gi.base_free_inodes = d.bg_free_inodes_count;
    gi.base_used_dirs = d.bg_used_dirs_count;
    if (gi.block_bitmap >= g.blocks_count || gi.inode_bitmap >= g.blocks_count || gi.inode_table >= g.blocks_count)
      return Status::Corruption(what + ": group " + std::to_string(i) + "'s descriptor points outside the filesystem; run e2fsck");
  }

  // The cluster header: which groups are ours, where our journal is.
  auto disk = node::ClusterDisk::open(dev_);
  if (!disk.ok()) return disk.status().Annotate(what);
  header_ = (*disk)->header();
  if (header_.block_size != g.block_size || header_.group_slot.size() != g.groups)
    return Status::Corruption(what + ": the cluster header disagrees with the superblock (block size or group count); run clusterify verify");
  if (opts_.slot >= header_.slot_count)
    return Status::InvalidArgument(what + ": slot " + std::to_string(opts_.slot) + " does not exist (the cluster has " +
                                   std::to_string(header_.slot_count) + " slots)");
  for (uint32_t i = 0; i < g.groups; ++i) {
    groups_[i].slot = header_.group_slot[i];
    if (groups_[i].slot == opts_.slot) own_groups_.push_back(i);
  }
  if (own_groups_.empty()) return Status::Corruption(what + ": slot " + std::to_string(opts_.slot) + " owns no group");

  const uint64_t joff = (*disk)->journal_offset(opts_.slot), jbytes = (*disk)->journal_bytes(opts_.slot);
  auto map = journal::JournalMap::contiguous(g.block_size, joff / g.block_size, jbytes / g.block_size);
  if (!map.ok()) return map.status().Annotate(what);
  if (!opts_.read_only) {
    auto j = journal::Journal::open(dev_, *map);
    if (!j.ok()) {
      if (j.status().code() == Status::Code::kBusy)
        return Status::Busy(what + ": slot " + std::to_string(opts_.slot) +
                            "'s journal is dirty; replay it first (jcoord recover or clusterify verify -p)");
      return j.status().Annotate(what + ": opening slot " + std::to_string(opts_.slot) + "'s journal");
    }
    journal_ = std::move(*j);
    commit_threshold_ = std::max<uint64_t>(16, (journal_->map().length() - 1) / 4);
  } else {
    // Read-only: the journal must still be clean (its newer images would be
    // invisible to us otherwise).
    auto info = journal::read_journal_info(dev_, *map);
    if (!info.ok()) return info.status().Annotate(what);
    if (!info->clean()) return Status::Busy(what + ": slot journal is dirty; replay it first");
  }
  mounted_ = true;
  return Status::OK();
}

Status EngineFs::fold_counters() {
  // Descriptor blocks with a delta of ours, and the superblock.
  std::map<uint64_t, std::vector<uint32_t>> by_block;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint32_t i = 0; i < geo_.groups; ++i) {
      const GroupInfo& gi = groups_[i];
      if (gi.d_free_blocks || gi.d_free_inodes || gi.d_used_dirs)
        by_block[geo_.gdt_first_block + i / geo_.desc_per_block].push_back(i);
    }
  }
  if (by_block.empty()) return Status::OK();
  Op op(*this);
  for (auto& [blk, gs] : by_block) op.want(gdt_key(blk), LockMode::kEX);
  op.want(sb_key(), LockMode::kEX);
  return run_op(op, [&]() -> Status {
    int64_t total_blocks = 0, total_inodes = 0;
    for (auto& [blk, gs] : by_block) {
      auto w = write_meta(op, blk, gdt_key(blk));
      if (!w.ok()) return w.status();
      for (uint32_t i : gs) {
        GroupInfo& gi = groups_[i];
        ext2_group_desc d;
        uint8_t* p = *w + uint64_t(i % geo_.desc_per_block) * sizeof d;
        std::memcpy(&d, p, sizeof d);
        // Each node folds only its own deltas, and another node's deltas for
        // the same group may not be folded yet: a node that allocated,
        // watched another node free, and allocated again folds more than
        // the group ever held. The sum lies outside [0, group size] then,
        // legitimately. The counts are advisory while the cluster runs and
        // exact once the last node out recounts them from the bitmaps
        // (docs/DESIGN.md, "Derived counters after a crash"), so a value
        // outside its range is clamped, never refused.
        const int64_t max_blocks = std::min<int64_t>(geo_.blocks_per_group, 0xFFFF);
        const int64_t max_inodes = std::min<int64_t>(geo_.inodes_per_group, 0xFFFF);
        const int64_t fb = std::clamp<int64_t>(int64_t(d.bg_free_blocks_count) + gi.d_free_blocks, 0, max_blocks);
        const int64_t fi = std::clamp<int64_t>(int64_t(d.bg_free_inodes_count) + gi.d_free_inodes, 0, max_inodes);
        const int64_t ud = std::clamp<int64_t>(int64_t(d.bg_used_dirs_count) + gi.d_used_dirs, 0, max_inodes);
        d.bg_free_blocks_count = uint16_t(fb);
        d.bg_free_inodes_count = uint16_t(fi);
        d.bg_used_dirs_count = uint16_t(ud);
        std::memcpy(p, &d, sizeof d);
        total_blocks += gi.d_free_blocks;
        total_inodes += gi.d_free_inodes;
        gi.base_free_blocks = fb;
        gi.base_free_inodes = fi;
        gi.base_used_dirs = ud;
        gi.d_free_blocks = gi.d_free_inodes = gi.d_used_dirs = 0;
      }
    }
    auto w = write_meta(op, geo_.sb_block, sb_key());
    if (!w.ok()) return w.status();
    ext2_super_block sb;
    uint8_t* p = *w + geo_.sb_offset_in_block;
    std::memcpy(&sb, p, sizeof sb);
    // Advisory too, as the group counts above.
    sb.s_free_blocks_count = uint32_t(
        std::clamp<int64_t>(int64_t(sb.s_free_blocks_count) + total_blocks, 0, int64_t(geo_.blocks_count)));
    sb.s_free_inodes_count = uint32_t(
        std::clamp<int64_t>(int64_t(sb.s_free_inodes_count) + total_inodes, 0, int64_t(geo_.inodes_count)));
    std::memcpy(p, &sb, sizeof sb);
    return Status::OK();
  });
}

Status EngineFs::unmount() {
  if (!mounted_) return Status::OK();
  stop_orphan_scan();
  // Open files the caller did not release: nothing is open after unmount.
  std::unordered_map<uint64_t, OpenFile> still_open;
  {
    std::lock_guard<std::mutex> g(open_mu_);
    still_open.swap(open_files_);
  }
  for (auto& [ino, f] : still_open)
    if (f.count > 0) (void)opts_.locks->unlock(open_resource(ino), f.held);
  // A last try at the orphans; what another node still has open stays in
  // the orphan directory for this slot's next mount (docs/ENGINE.md).
  if (journal_ && orphan_dir() != 0) CEXT3_RETURN_IF_ERROR(scan_orphans(std::chrono::milliseconds(200)).status());
  stop_commit_thread();
  if (!journal_) {
    mounted_ = false;
    return Status::OK();
  }
  CEXT3_RETURN_IF_ERROR(commit_and_wait());
  CEXT3_RETURN_IF_ERROR(fold_counters());
  CEXT3_RETURN_IF_ERROR(commit_and_wait());
  {
    std::lock_guard<std::mutex> cg(commit_mu_);
    CEXT3_RETURN_IF_ERROR(journal_->checkpoint());
    std::lock_guard<std::mutex> g(mu_);
    journaled_by_res_.clear();
    journaled_blocks_.clear();
  }
  mounted_ = false;
  return Status::OK();
}

}  // namespace cext3::engine
