#include "cluster/system_files.h"

#include <et/com_err.h>

#include <algorithm>
#include <ctime>
#include <cstring>
#include <vector>

#include "cext3/cluster/layout.h"
#include "cext3/cluster/records.h"
#include "cluster/fs_session.h"

namespace cext3::cluster {

uint64_t indirect_blocks_for(uint64_t n, uint32_t block_size) {
  const uint64_t a = block_size / 4;
  uint64_t meta = 0;
  if (n <= 12) return 0;
  n -= 12;
  meta += 1;  // single indirect
  if (n <= a) return meta;
  n -= a;
  uint64_t in_dind = std::min<uint64_t>(n, a * a);
  meta += 1 + (in_dind + a - 1) / a;
  n -= in_dind;
  if (n == 0) return meta;
  // triple indirect: one tind, ceil(n / a^2) dind, ceil(n / a) ind
  meta += 1 + (n + a * a - 1) / (a * a) + (n + a - 1) / a;
  return meta;
}

uint32_t cluster_copy_size(uint32_t groups, uint32_t block_size) {
  return header_copy_size(3 + kMaxSlots, groups, block_size);
}
uint64_t cluster_file_blocks(uint32_t groups, uint32_t block_size) {
  return 2ull * cluster_copy_size(groups, block_size) / block_size;
}
uint64_t heartbeat_file_blocks(uint32_t block_size) {
  return (uint64_t{kMaxSlots} * kRecordSize + block_size - 1) / block_size;
}
uint64_t locks_file_blocks(uint32_t block_size) {
  return (uint64_t{kMaxSlots + 1} * kRecordSize + block_size - 1) / block_size;
}

namespace {

// One indirect block of `level` (1 = single, 2 = double, 3 = triple) mapping
// logical blocks [start, start + count) to first + logical. Allocated from
// *goal on (parent before children, as libext2fs's own bmap does), written
// once.
Result<blk64_t> build_indirect(ext2_filsys fs, int level, blk64_t first, uint64_t start, uint64_t count,
                               blk64_t* goal, uint64_t* meta) {
  const uint64_t per = fs->blocksize / 4;
  blk64_t blk = 0;
  errcode_t err = ext2fs_new_block2(fs, *goal, nullptr, &blk);
  if (err) return Status::NoSpace(std::string("no free block for an indirect block: ") + error_message(err));
  ext2fs_block_alloc_stats2(fs, blk, +1);
  *goal = blk + 1;
  ++*meta;
  std::vector<uint32_t> entries(per, 0);
  uint64_t span = 1;
  for (int l = 1; l < level; ++l) span *= per;  // logical blocks under one entry
  for (uint64_t e = 0; e < per && e * span < count; ++e) {
    const uint64_t s = start + e * span;
    const uint64_t n = std::min<uint64_t>(span, count - e * span);
    blk64_t target = first + s;
    if (level > 1) {
      auto child = build_indirect(fs, level - 1, first, s, n, goal, meta);
      if (!child.ok()) return child.status();
      target = *child;
    }
    entries[e] = ext2fs_cpu_to_le32(static_cast<uint32_t>(target));
  }
  err = io_channel_write_blk64(fs->io, blk, 1, entries.data());
  if (err) return ext2_status(err, "writing an indirect block");
  return blk;
}

Status map_contiguous(ext2_filsys fs, ext2_inode& inode, blk64_t first, uint64_t nblocks, blk64_t goal,
                      uint64_t* meta) {
  const uint64_t per = fs->blocksize / 4;
  *meta = 0;
  if (first + nblocks > 0xFFFFFFFFull) return Status::InvalidArgument("block numbers beyond 2^32 cannot be mapped in ext3");
  uint64_t done = 0;
  for (int i = 0; i < EXT2_NDIR_BLOCKS && done < nblocks; ++i, ++done)
    inode.i_block[i] = static_cast<uint32_t>(first + done);
  uint64_t cap = per;
  for (int level = 1; level <= 3 && done < nblocks; ++level, cap *= per) {
    const uint64_t n = std::min<uint64_t>(cap, nblocks - done);
    auto b = build_indirect(fs, level, first, done, n, &goal, meta);
    if (!b.ok()) return b.status();
    inode.i_block[EXT2_NDIR_BLOCKS + level - 1] = static_cast<uint32_t>(*b);
    done += n;
  }
  if (done < nblocks) return Status::InvalidArgument("file too large for ext3 block maps");
  return Status::OK();
}

Status link_entry(ext2_filsys fs, ext2_ino_t dir, const std::string& name, ext2_ino_t ino, int type) {
  errcode_t err = ext2fs_link(fs, dir, name.c_str(), ino, type);
  if (err == EXT2_ET_DIR_NO_SPACE) {
    err = ext2fs_expand_dir(fs, dir);
    if (err) return ext2_status(err, "growing directory for " + name);
    err = ext2fs_link(fs, dir, name.c_str(), ino, type);
  }
  if (err) return ext2_status(err, "adding directory entry " + name);
  return Status::OK();
}

}  // namespace

Result<std::optional<ext2_ino_t>> find_system_dir(ext2_filsys fs) {
  ext2_ino_t ino = 0;
  errcode_t err = ext2fs_lookup(fs, EXT2_ROOT_INO, kSystemDirName, static_cast<int>(std::strlen(kSystemDirName)),
                                nullptr, &ino);
  if (err == EXT2_ET_FILE_NOT_FOUND) return std::optional<ext2_ino_t>{};
  if (err) return ext2_status(err, "looking up /" + std::string(kSystemDirName));
  return std::optional<ext2_ino_t>{ino};
}

Result<ext2_ino_t> create_system_dir(ext2_filsys fs) {
  errcode_t err = ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, kSystemDirName);
  if (err == EXT2_ET_DIR_NO_SPACE) {
    err = ext2fs_expand_dir(fs, EXT2_ROOT_INO);
    if (!err) err = ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, kSystemDirName);
  }
  if (err) return ext2_status(err, "creating /" + std::string(kSystemDirName));
  auto found = find_system_dir(fs);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return Status::Corruption("/.cext3 vanished right after it was created");
  ext2_ino_t ino = **found;
  ext2_inode inode;
  err = ext2fs_read_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "reading /.cext3");
  inode.i_mode = LINUX_S_IFDIR | 0700;
  // Immutable: a node that mounts the filesystem with a stock kernel cannot
  // rename, unlink or write the cluster metadata by accident.
  inode.i_flags |= EXT2_IMMUTABLE_FL;
  err = ext2fs_write_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "writing /.cext3");
  return ino;
}

Result<SystemFileExtent> create_contiguous_file(ext2_filsys fs, ext2_ino_t dir, const std::string& name,
                                                uint64_t nblocks, blk64_t goal, SystemFileKind kind,
                                                uint32_t index) {
  ext2_ino_t ino = 0;
  errcode_t err = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0600, nullptr, &ino);
  if (err) return Status::NoSpace("no free inode for /.cext3/" + name + ": free some inodes or use fewer slots");
  blk64_t first = 0, got = 0;
  err = ext2fs_new_range(fs, EXT2_NEWRANGE_MIN_LENGTH, goal, nblocks, nullptr, &first, &got);
  if (err || got < nblocks)
    return Status::NoSpace("no run of " + std::to_string(nblocks) + " contiguous free blocks for /.cext3/" + name +
                           ": use a smaller --journal-size or fewer slots");
  ext2fs_block_alloc_stats_range(fs, first, static_cast<blk_t>(nblocks), +1);

  ext2_inode inode;
  std::memset(&inode, 0, sizeof inode);
  inode.i_mode = LINUX_S_IFREG | 0600;
  inode.i_links_count = 1;
  const uint32_t now = static_cast<uint32_t>(std::time(nullptr));
  inode.i_atime = inode.i_ctime = inode.i_mtime = now;
  inode.i_flags = EXT2_IMMUTABLE_FL;
  err = ext2fs_write_new_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "writing inode of /.cext3/" + name);
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);

  // Map logical block i -> first + i. The indirect blocks are built in memory
  // and written once each (ext2fs_bmap2 per block would read and rewrite an
  // indirect block for every data block: 16 million block writes for a
  // 64 GiB set of journals); they land right after the run.
  uint64_t meta = 0;
  CEXT3_RETURN_IF_ERROR(map_contiguous(fs, inode, first, nblocks, first + nblocks, &meta)
                            .Annotate("mapping /.cext3/" + name));
  err = ext2fs_iblk_add_blocks(fs, &inode, nblocks + meta);
  if (!err) err = ext2fs_inode_size_set(fs, &inode, nblocks * fs->blocksize);
  if (!err) err = ext2fs_write_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "finishing inode of /.cext3/" + name);
  CEXT3_RETURN_IF_ERROR(link_entry(fs, dir, name, ino, EXT2_FT_REG_FILE));
  SystemFileExtent e;
  e.kind = kind;
  e.index = index;
  e.inode = ino;
  e.first_block = first;
  e.block_count = nblocks;
  return e;
}

namespace {

// Free every block of inode `ino` (data and indirect) in the bitmaps and
// counts, then clear the inode. The freed blocks are not written: an
// unlinked file's blocks need no scrubbing, and not writing them keeps the
// journal transaction small (only bitmaps, descriptors, the inode table block
// and the directory change).
int collect_block(ext2_filsys, blk64_t* blocknr, e2_blkcnt_t, blk64_t, int, void* priv) {
  static_cast<std::vector<blk64_t>*>(priv)->push_back(*blocknr);
  return 0;
}

Status release_inode(ext2_filsys fs, ext2_ino_t ino, bool is_dir, const std::string& what) {
  std::vector<blk64_t> blocks;
  errcode_t err = ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_READ_ONLY, nullptr, collect_block, &blocks);
  if (err) return ext2_status(err, "listing the blocks of " + what);
  for (blk64_t b : blocks) ext2fs_block_alloc_stats2(fs, b, -1);
  ext2_inode inode;
  err = ext2fs_read_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "reading " + what);
  std::memset(inode.i_block, 0, sizeof inode.i_block);
  inode.i_links_count = 0;
  inode.i_flags &= ~EXT2_IMMUTABLE_FL;
  inode.i_size = 0;
  inode.i_size_high = 0;
  ext2fs_iblk_set(fs, &inode, 0);
  inode.i_dtime = static_cast<uint32_t>(std::time(nullptr));
  err = ext2fs_write_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "writing " + what);
  ext2fs_inode_alloc_stats2(fs, ino, -1, is_dir ? 1 : 0);
  return Status::OK();
}

}  // namespace

Status remove_file(ext2_filsys fs, ext2_ino_t dir, const std::string& name, ext2_ino_t ino) {
  errcode_t err = ext2fs_unlink(fs, dir, name.c_str(), ino, 0);
  if (err) return ext2_status(err, "removing the entry /.cext3/" + name);
  return release_inode(fs, ino, false, "/.cext3/" + name);
}

namespace {
int collect_entry(ext2_dir_entry* d, int, int, char*, void* priv) {
  std::string n(d->name, ext2fs_dirent_name_len(d));
  if (n != "." && n != "..")
    static_cast<std::vector<std::pair<std::string, ext2_ino_t>>*>(priv)->push_back({n, d->inode});
  return 0;
}
}  // namespace

Result<std::vector<std::pair<std::string, ext2_ino_t>>> list_dir(ext2_filsys fs, ext2_ino_t dir) {
  std::vector<std::pair<std::string, ext2_ino_t>> v;
  errcode_t err = ext2fs_dir_iterate(fs, dir, 0, nullptr, collect_entry, &v);
  if (err) return ext2_status(err, "listing directory inode " + std::to_string(dir));
  return v;
}

Status remove_orphan_dir(ext2_filsys fs, ext2_ino_t sysdir, const std::string& name, ext2_ino_t ino) {
  errcode_t err = ext2fs_unlink(fs, sysdir, name.c_str(), ino, 0);
  if (err) return ext2_status(err, "removing the entry /.cext3/" + name);
  CEXT3_RETURN_IF_ERROR(release_inode(fs, ino, true, "/.cext3/" + name));
  // /.cext3 loses the ".." link the directory held.
  ext2_inode sd;
  err = ext2fs_read_inode(fs, sysdir, &sd);
  if (!err) {
    if (sd.i_links_count > 2) --sd.i_links_count;
    err = ext2fs_write_inode(fs, sysdir, &sd);
  }
  if (err) return ext2_status(err, "updating the link count of /.cext3");
  return Status::OK();
}

Status remove_system_dir(ext2_filsys fs, ext2_ino_t dir) {
  errcode_t err = ext2fs_unlink(fs, EXT2_ROOT_INO, kSystemDirName, dir, 0);
  if (err) return ext2_status(err, "removing the entry /.cext3");
  CEXT3_RETURN_IF_ERROR(release_inode(fs, dir, true, "/.cext3"));
  // The root loses the ".." link the directory held.
  ext2_inode root;
  err = ext2fs_read_inode(fs, EXT2_ROOT_INO, &root);
  if (!err) {
    if (root.i_links_count > 2) --root.i_links_count;
    err = ext2fs_write_inode(fs, EXT2_ROOT_INO, &root);
  }
  if (err) return ext2_status(err, "updating the root directory link count");
  return Status::OK();
}

namespace {

struct ContiguityWalk {
  uint64_t first = 0;
  uint64_t count = 0;
  uint64_t seen = 0;
  std::string error;
};

// One pass over the block map (each indirect block read once).
int check_block(ext2_filsys, blk64_t* blocknr, e2_blkcnt_t blockcnt, blk64_t, int, void* priv) {
  auto* w = static_cast<ContiguityWalk*>(priv);
  if (blockcnt < 0) return 0;
  const uint64_t i = static_cast<uint64_t>(blockcnt);
  if (i >= w->count || *blocknr != w->first + i) {
    w->error = "block " + std::to_string(i) + " is at " + std::to_string(*blocknr) +
               (i >= w->count ? ", past the header's length"
                              : ", not at " + std::to_string(w->first + i) + " as the cluster header says (not contiguous)");
    return BLOCK_ABORT;
  }
  ++w->seen;
  return 0;
}

}  // namespace

Status check_contiguous(ext2_filsys fs, ext2_ino_t ino, uint64_t first, uint64_t count) {
  ext2_inode inode;
  errcode_t err = ext2fs_read_inode(fs, ino, &inode);
  if (err) return ext2_status(err, "reading inode " + std::to_string(ino));
  if (!LINUX_S_ISREG(inode.i_mode) || inode.i_links_count == 0)
    return Status::Corruption("inode " + std::to_string(ino) + " is not a linked regular file");
  if (EXT2_I_SIZE(&inode) != count * fs->blocksize)
    return Status::Corruption("inode " + std::to_string(ino) + " has size " + std::to_string(EXT2_I_SIZE(&inode)) +
                              ", the header says " + std::to_string(count * fs->blocksize));
  ContiguityWalk w;
  w.first = first;
  w.count = count;
  err = ext2fs_block_iterate3(fs, ino, BLOCK_FLAG_READ_ONLY | BLOCK_FLAG_DATA_ONLY, nullptr, check_block, &w);
  if (err) return ext2_status(err, "mapping inode " + std::to_string(ino));
  if (!w.error.empty()) return Status::Corruption("inode " + std::to_string(ino) + " " + w.error);
  if (w.seen != count)
    return Status::Corruption("inode " + std::to_string(ino) + " maps " + std::to_string(w.seen) + " of its " +
                              std::to_string(count) + " blocks (holes)");
  return Status::OK();
}

Result<HeaderChoice> read_cluster_header(ext2_filsys fs, const SystemFileExtent& f) {
  if (f.block_count == 0 || f.block_count > (64u << 20) / fs->blocksize)
    return Status::Corruption("cluster file has an impossible length of " + std::to_string(f.block_count) + " blocks");
  std::vector<uint8_t> data(f.block_count * fs->blocksize);
  errcode_t err = io_channel_read_blk64(fs->io, f.first_block, static_cast<int>(f.block_count), data.data());
  if (err) return ext2_status(err, "reading the cluster header");
  return choose_header(data);
}

Result<LocatedCluster> locate_cluster(ext2_filsys fs) {
  auto dir = find_system_dir(fs);
  if (!dir.ok()) return dir.status();
  if (!dir->has_value()) return Status::NotFound("no /.cext3 directory: this is a plain ext3 filesystem");
  LocatedCluster lc;
  lc.dir = **dir;
  errcode_t err = ext2fs_lookup(fs, lc.dir, kClusterFileName, static_cast<int>(std::strlen(kClusterFileName)),
                                nullptr, &lc.cluster_ino);
  if (err) return Status::Corruption("/.cext3/cluster is missing (" + std::string(error_message(err)) +
                                     "); run clusterify verify");
  ext2_inode inode;
  err = ext2fs_read_inode(fs, lc.cluster_ino, &inode);
  if (err) return ext2_status(err, "reading /.cext3/cluster");
  blk64_t first = 0;
  err = ext2fs_bmap2(fs, lc.cluster_ino, &inode, nullptr, 0, 0, nullptr, &first);
  if (err || first == 0) return Status::Corruption("/.cext3/cluster has no data blocks; run clusterify verify");
  lc.cluster_file.kind = SystemFileKind::kCluster;
  lc.cluster_file.inode = lc.cluster_ino;
  lc.cluster_file.first_block = first;
  lc.cluster_file.block_count = EXT2_I_SIZE(&inode) / fs->blocksize;
  auto c = read_cluster_header(fs, lc.cluster_file);
  if (!c.ok()) return c.status();
  lc.choice = std::move(c).value();
  return lc;
}

Status write_header_copy(ext2_filsys fs, const SystemFileExtent& f, const ClusterHeader& h, int which) {
  const uint32_t copy = static_cast<uint32_t>(f.block_count * fs->blocksize / 2);
  auto enc = encode_header(h, copy);
  if (!enc.ok()) return enc.status();
  const uint64_t blocks = copy / fs->blocksize;
  errcode_t err = io_channel_write_blk64(fs->io, f.first_block + which * blocks, static_cast<int>(blocks),
                                         enc->data());
  if (err) return ext2_status(err, "writing the cluster header");
  return Status::OK();
}

Status write_empty_heartbeats(ext2_filsys fs, const SystemFileExtent& f) {
  std::vector<uint8_t> data(f.block_count * fs->blocksize, 0);
  for (uint32_t s = 0; s < kMaxSlots; ++s) {
    HeartbeatRecord r;
    r.slot = s;
    encode_heartbeat(r, std::span<uint8_t, 512>(data.data() + s * kRecordSize, 512));
  }
  errcode_t err = io_channel_write_blk64(fs->io, f.first_block, static_cast<int>(f.block_count), data.data());
  if (err) return ext2_status(err, "writing the heartbeat area");
  return Status::OK();
}

Status write_initial_locks(ext2_filsys fs, const SystemFileExtent& f, uint32_t slot_count) {
  std::vector<uint8_t> data(f.block_count * fs->blocksize, 0);
  LocksGlobalRecord g;
  g.slot_count = slot_count;
  encode_locks_global(g, std::span<uint8_t, 512>(data.data(), 512));
  for (uint32_t s = 0; s < kMaxSlots; ++s) {
    SlotLeaseRecord r;
    r.slot = s;
    encode_slot_lease(r, std::span<uint8_t, 512>(data.data() + (s + 1) * kRecordSize, 512));
  }
  errcode_t err = io_channel_write_blk64(fs->io, f.first_block, static_cast<int>(f.block_count), data.data());
  if (err) return ext2_status(err, "writing the lock area");
  return Status::OK();
}

std::vector<uint64_t> free_blocks_per_slot(ext2_filsys fs, const std::vector<uint16_t>& group_slot, uint32_t slots) {
  std::vector<uint64_t> out(slots, 0);
  for (dgrp_t g = 0; g < fs->group_desc_count && g < group_slot.size(); ++g)
    if (group_slot[g] < slots) out[group_slot[g]] += ext2fs_bg_free_blocks_count(fs, g);
  return out;
}

}  // namespace cext3::cluster
