#include "cext3/cluster/inspect.h"

#include <ext2fs/ext2fs.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <set>
#include <cerrno>

#include "cext3/cluster/group_map.h"
#include "cext3/cluster/layout.h"
#include "cext3/journal.h"
#include "cluster/fs_session.h"
#include "cluster/system_files.h"

namespace cext3::cluster {
namespace {

std::string fixed_string(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != 0) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

uint64_t wall_clock_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Replace `len` bytes at byte offset `off` (read-modify-write of the covering
// sectors), then flush.
Status patch_bytes(BlockDevice& dev, uint64_t off, const uint8_t* data, size_t len) {
  const uint32_t ss = dev.sector_size();
  const uint64_t a = off / ss * ss;
  const uint64_t e = (off + len + ss - 1) / ss * ss;
  std::vector<uint8_t> buf(e - a);
  CEXT3_RETURN_IF_ERROR(dev.read(a, buf.data(), buf.size()));
  std::memcpy(buf.data() + (off - a), data, len);
  CEXT3_RETURN_IF_ERROR(dev.write(a, buf.data(), buf.size()));
  return dev.flush();
}

MmpInfo read_mmp(ext2_filsys fs) {
  MmpInfo m;
  m.enabled = ext2fs_has_feature_mmp(fs->super);
  if (!m.enabled) return m;
  m.block = fs->super->s_mmp_block;
  m.interval = fs->super->s_mmp_update_interval;
  if (m.block < fs->super->s_first_data_block || m.block >= ext2fs_blocks_count(fs->super)) return m;
  std::vector<uint8_t> buf(fs->blocksize);
  if (io_channel_read_blk64(fs->io, m.block, 1, buf.data()) != 0) return m;
  mmp_struct mmp;
  std::memcpy(&mmp, buf.data(), sizeof mmp);
  m.readable = true;
  m.magic = mmp.mmp_magic;
  m.sequence = mmp.mmp_seq;
  m.time = mmp.mmp_time;
  m.node = fixed_string(mmp.mmp_nodename, sizeof mmp.mmp_nodename);
  m.device = fixed_string(mmp.mmp_bdevname, sizeof mmp.mmp_bdevname);
  return m;
}

Result<std::vector<uint8_t>> read_file_blocks(ext2_filsys fs, const SystemFileExtent& f, uint64_t max_blocks) {
  // The header is checksummed, but it is still input: never trust a range
  // outside the filesystem or larger than the file can be.
  const uint64_t fs_blocks = ext2fs_blocks_count(fs->super);
  if (f.block_count == 0 || f.block_count > max_blocks || f.first_block >= fs_blocks ||
      f.block_count > fs_blocks - f.first_block)
    return Status::Corruption(std::string("the ") + to_string(f.kind) + " file's range in the cluster header (" +
                              std::to_string(f.first_block) + "+" + std::to_string(f.block_count) +
                              ") is impossible");
  std::vector<uint8_t> data(f.block_count * fs->blocksize);
  errcode_t err = io_channel_read_blk64(fs->io, f.first_block, static_cast<int>(f.block_count), data.data());
  if (err) return ext2_status(err, std::string("reading the ") + to_string(f.kind) + " file");
  return data;
}

struct Loaded {
  ClusterInfo info;
  LocatedCluster located;
};

Result<Loaded> load(BlockDevice& dev, FsSession& session) {
  ext2_filsys fs = session.fs();
  Loaded L;
  ClusterInfo& ci = L.info;
  ci.device = dev.name();
  ci.block_size = fs->blocksize;
  ci.groups = fs->group_desc_count;
  ci.blocks_count = ext2fs_blocks_count(fs->super);
  ci.free_blocks = ext2fs_free_blocks_count(fs->super);
  ci.mmp = read_mmp(fs);
  auto dir = find_system_dir(fs);
  if (!dir.ok()) return dir.status();
  if (!dir->has_value()) return L;
  ci.clusterified = true;
  auto lc = locate_cluster(fs);
  if (!lc.ok()) return lc.status();
  L.located = *lc;
  ci.system_dir_inode = lc->dir;
  ci.header = lc->choice;
  const ClusterHeader& h = ci.header.header;
  const uint32_t bs = fs->blocksize;

  const SystemFileExtent* hbf = h.find(SystemFileKind::kHeartbeat);
  const SystemFileExtent* lkf = h.find(SystemFileKind::kLocks);
  std::vector<uint8_t> hb, lk;
  if (hbf) {
    auto d = read_file_blocks(fs, *hbf, heartbeat_file_blocks(bs));
    if (d.ok()) hb = std::move(d).value();
  }
  if (lkf) {
    auto d = read_file_blocks(fs, *lkf, locks_file_blocks(bs));
    if (d.ok()) lk = std::move(d).value();
  }
  if (lk.size() >= kRecordSize) {
    auto g = decode_locks_global(std::span<const uint8_t, 512>(lk.data(), 512));
    ci.locks_ok = g.ok();
    if (g.ok()) ci.locks = *g;
    else ci.locks_error = g.status().message();
  } else {
    ci.locks_error = "locks file missing or unreadable";
  }
  auto by_slot = groups_by_slot(h.group_slot, h.slot_count);
  auto free_by = free_blocks_per_slot(fs, h.group_slot, h.slot_count);
  for (uint32_t s = 0; s < h.slot_count && s < kMaxSlots; ++s) {
    SlotInfo si;
    si.slot = s;
    si.groups = static_cast<uint32_t>(by_slot[s].size());
    si.free_blocks = free_by[s];
    if (const SystemFileExtent* jf = h.find(SystemFileKind::kJournal, s)) {
      si.journal_inode = jf->inode;
      si.journal_first_block = jf->first_block;
      si.journal_blocks = jf->block_count;
      auto jm = journal::JournalMap::contiguous(bs, jf->first_block, jf->block_count);
      if (!jm.ok()) {
        si.journal_error = jm.status().message();
      } else {
        auto ji = journal::read_journal_info(dev, *jm);
        if (!ji.ok()) {
          si.journal_error = ji.status().message();
        } else {
          si.journal_ok = true;
          si.journal_clean = ji->clean();
          si.journal_sequence = ji->sequence;
          si.journal_start = ji->start;
          if (ji->maxlen != jf->block_count) {
            si.journal_ok = false;
            si.journal_error = "journal superblock covers " + std::to_string(ji->maxlen) + " blocks, the file has " +
                               std::to_string(jf->block_count);
          }
        }
      }
    } else {
      si.journal_error = "the header lists no journal for this slot";
    }
    if (hb.size() >= (s + 1) * kRecordSize) {
      auto r = decode_heartbeat(std::span<const uint8_t, 512>(hb.data() + s * kRecordSize, 512));
      si.heartbeat_ok = r.ok();
      if (r.ok()) si.heartbeat = *r;
      else si.heartbeat_error = r.status().message();
      if (r.ok() && r->slot != s) {
        si.heartbeat_ok = false;
        si.heartbeat_error = "record names slot " + std::to_string(r->slot);
      }
    } else {
      si.heartbeat_error = "heartbeat file missing or short";
    }
    if (lk.size() >= (s + 2) * kRecordSize) {
      auto r = decode_slot_lease(std::span<const uint8_t, 512>(lk.data() + (s + 1) * kRecordSize, 512));
      si.lease_ok = r.ok();
      if (r.ok()) si.lease = *r;
      else si.lease_error = r.status().message();
      if (r.ok() && r->slot != s) {
        si.lease_ok = false;
        si.lease_error = "record names slot " + std::to_string(r->slot);
      }
    } else {
      si.lease_error = "locks file missing or short";
    }
    ci.slots.push_back(std::move(si));
  }
  return L;
}

}  // namespace

bool MmpInfo::clean() const { return readable && magic == EXT4_MMP_MAGIC && sequence == EXT4_MMP_SEQ_CLEAN; }

bool MmpInfo::in_use_by_cluster() const {
  return readable && magic == EXT4_MMP_MAGIC && sequence == EXT4_MMP_SEQ_FSCK &&
         node.rfind(kMmpClusterNodePrefix, 0) == 0;
}

std::string MmpInfo::describe() const {
  if (!enabled) return "off";
  if (!readable) return "unreadable (block " + std::to_string(block) + " is outside the filesystem or cannot be read)";
  if (magic != EXT4_MMP_MAGIC) return "damaged (no MMP magic)";
  if (clean()) return "clean";
  if (in_use_by_cluster())
    return "in use by the cluster (last written by node '" + node.substr(std::strlen(kMmpClusterNodePrefix)) + "')";
  if (sequence == EXT4_MMP_SEQ_FSCK) return "in use by e2fsck on host '" + node + "'";
  if (sequence > EXT4_MMP_SEQ_MAX) return "in an unknown state";
  return "in use by a kernel mount on host '" + node + "'";
}

bool SlotInfo::free_at_sight() const {
  if (!heartbeat_ok) return false;
  const bool owned = lease_ok ? lease.owned != 0 : true;
  if (!owned) return heartbeat.sequence == 0 || heartbeat.stopped();
  return lease_ok && heartbeat.stopped() && heartbeat.generation == lease.lease_generation;
}

Result<ClusterInfo> read_cluster_info(BlockDevice& dev) {
  auto session = FsSession::open(dev, false);
  if (!session.ok()) return session.status();
  auto L = load(dev, *session);
  if (!L.ok()) return L.status();
  return std::move(L)->info;
}

bool slot_is_live(const ClusterInfo& ci, const SlotInfo& s, uint64_t now_ns) {
  if (s.free_at_sight()) return false;
  if (s.observed) return s.observed_live;
  if (s.lease_ok && s.lease.owned) return true;
  if (!s.heartbeat_ok || s.heartbeat.sequence == 0 || s.heartbeat.stopped()) return false;
  const Timing& t = ci.header.header.timing;
  const uint64_t dead_ns = (uint64_t{t.dead_after_ms} + t.fence_margin_ms) * 1000000;
  return s.heartbeat.time_ns > now_ns - std::min(now_ns, dead_ns);
}

bool slot_is_dirty(const SlotInfo& s) {
  return (s.journal_ok && !s.journal_clean) || (s.lease_ok && s.lease.journal_dirty) || s.abandoned();
}

Status observe_liveness(BlockDevice& dev, ClusterInfo& ci, const std::function<void(uint64_t)>& sleep_ms) {
  if (!ci.clusterified) return Status::OK();
  bool any = false;
  for (const SlotInfo& s : ci.slots) any |= !s.free_at_sight();
  if (!any) return Status::OK();
  const ClusterHeader& h = ci.header.header;
  const SystemFileExtent* hbf = h.find(SystemFileKind::kHeartbeat);
  const uint32_t bs = ci.block_size;
  const uint64_t bytes = uint64_t{kMaxSlots} * kRecordSize;
  if (!hbf || hbf->block_count * bs < bytes || hbf->first_block >= ci.blocks_count ||
      hbf->block_count > ci.blocks_count - hbf->first_block)
    return Status::Corruption(dev.name() + ": the cluster header has no usable heartbeat file; run clusterify verify");
  const uint64_t wait = std::min<uint64_t>(uint64_t{h.timing.dead_after_ms} + h.timing.fence_margin_ms, kMaxObserveMs);
  // Only the records, never the whole range the header names.
  const uint32_t ss = dev.sector_size();
  auto read_all = [&]() -> Result<std::vector<uint8_t>> {
    std::vector<uint8_t> buf((bytes + ss - 1) / ss * ss);
    CEXT3_RETURN_IF_ERROR(dev.read(hbf->first_block * bs, buf.data(), buf.size()));
    return buf;
  };
  auto first = read_all();
  if (!first.ok()) return first.status();
  if (sleep_ms) {
    sleep_ms(wait);
  } else {
    timespec ts{static_cast<time_t>(wait / 1000), static_cast<long>(wait % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
  }
  auto second = read_all();
  if (!second.ok()) return second.status();
  for (SlotInfo& s : ci.slots) {
    if (s.free_at_sight()) continue;
    const size_t off = size_t{s.slot} * kRecordSize;
    s.observed = true;
    s.observed_live = std::memcmp(first->data() + off, second->data() + off, kRecordSize) != 0;
    // Keep the newest view of the record.
    auto r = decode_heartbeat(std::span<const uint8_t, 512>(second->data() + off, 512));
    if (r.ok() && r->slot == s.slot) {
      s.heartbeat = *r;
      s.heartbeat_ok = true;
    }
  }
  return Status::OK();
}

Result<VerifyReport> verify_cluster(BlockDevice& dev, const VerifyOptions& opts) {
  VerifyReport rep;
  auto session = FsSession::open(dev, false);
  if (!session.ok()) return session.status();
  ext2_filsys fs = session->fs();
  auto Lr = load(dev, *session);
  if (!Lr.ok()) {
    // The header could not even be read: that is a finding, not an error of
    // the tool.
    if (Lr.status().code() == Status::Code::kCorruption) {
      rep.clusterified = true;
      rep.problems.push_back(Lr.status().message());
      return rep;
    }
    return Lr.status();
  }
  Loaded& L = *Lr;
  ClusterInfo& ci = L.info;
  rep.clusterified = ci.clusterified;
  if (!ci.clusterified) return rep;
  const ClusterHeader& h = ci.header.header;
  const uint32_t bs = fs->blocksize;
  auto check = [&](bool ok, const std::string& what, const std::string& why) {
    if (ok) rep.passed.push_back(what);
    else rep.problems.push_back(what + ": " + why);
  };

  // 1. Header copies.
  check(ci.header.a_valid, "cluster header copy A is valid", ci.header.a_error);
  check(ci.header.b_valid, "cluster header copy B is valid", ci.header.b_error);
  bool rewrite_copy = !(ci.header.a_valid && ci.header.b_valid);
  // 2. Header matches the filesystem.
  check(h.block_size == bs, "header block size matches the filesystem", "header says " + std::to_string(h.block_size));
  check(h.group_slot.size() == ci.groups, "group map covers every block group",
        "map has " + std::to_string(h.group_slot.size()) + " entries, filesystem has " + std::to_string(ci.groups) + " groups");
  check(h.slot_count >= 1 && h.slot_count <= kMaxSlots, "slot count is within 1..255", std::to_string(h.slot_count));
  {
    bool in_range = std::all_of(h.group_slot.begin(), h.group_slot.end(), [&](uint16_t s) { return s < h.slot_count; });
    check(in_range, "each group belongs to exactly one existing slot", "a group names a slot >= the slot count");
    auto by = groups_by_slot(h.group_slot, h.slot_count);
    bool every = std::all_of(by.begin(), by.end(), [](const auto& v) { return !v.empty(); });
    check(every, "every slot owns at least one group", "a slot owns no group");
    bool space = std::all_of(ci.slots.begin(), ci.slots.end(), [](const SlotInfo& s) { return s.free_blocks > 0; });
    check(space, "every slot has free blocks in its groups", "a slot's groups are full");
  }
  check(h.system_dir_inode == L.located.dir, "header names the /.cext3 inode", "header says inode " + std::to_string(h.system_dir_inode));
  {
    ext2_inode di;
    bool ok = ext2fs_read_inode(fs, L.located.dir, &di) == 0 && LINUX_S_ISDIR(di.i_mode) &&
              (di.i_mode & 07777) == 0700 && (di.i_flags & EXT2_IMMUTABLE_FL);
    check(ok, "/.cext3 is a directory, mode 0700, immutable", "wrong type, mode or flags");
  }
  // 3. System files: exactly the expected set, each contiguous at its range,
  //    inode >= 11, linked under its name, blocks allocated, no overlaps.
  {
    std::vector<std::pair<std::string, const SystemFileExtent*>> want;
    want.push_back({kClusterFileName, h.find(SystemFileKind::kCluster)});
    want.push_back({kHeartbeatFileName, h.find(SystemFileKind::kHeartbeat)});
    want.push_back({kLocksFileName, h.find(SystemFileKind::kLocks)});
    for (uint32_t s = 0; s < h.slot_count; ++s) want.push_back({journal_file_name(s), h.find(SystemFileKind::kJournal, s)});
    check(h.files.size() == want.size(), "header lists exactly cluster, heartbeat, locks and one journal per slot",
          std::to_string(h.files.size()) + " entries");
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (auto& [fname, f] : want) {
      if (!f) {
        rep.problems.push_back("/.cext3/" + fname + ": not listed in the cluster header");
        continue;
      }
      ext2_ino_t ino = 0;
      errcode_t err = ext2fs_lookup(fs, L.located.dir, fname.c_str(), static_cast<int>(fname.size()), nullptr, &ino);
      if (err || ino != f->inode) {
        rep.problems.push_back("/.cext3/" + fname + ": directory entry missing or names another inode than the header");
        continue;
      }
      bool ok = f->inode >= EXT2_GOOD_OLD_FIRST_INO;
      Status c = check_contiguous(fs, ino, f->first_block, f->block_count);
      std::string why = c.ok() ? "" : c.message();
      if (!ok) why = "inode below 11";
      for (uint64_t b = f->first_block; ok && c.ok() && b < f->first_block + f->block_count; ++b)
        if (!ext2fs_test_block_bitmap2(fs->block_map, b)) {
          why = "block " + std::to_string(b) + " is free in the bitmap";
          ok = false;
        }
      check(ok && c.ok(), "/.cext3/" + fname + " is contiguous and matches the header range", why);
      ranges.push_back({f->first_block, f->first_block + f->block_count});
    }
    std::sort(ranges.begin(), ranges.end());
    bool disjoint = true;
    for (size_t i = 1; i < ranges.size(); ++i)
      if (ranges[i].first < ranges[i - 1].second) disjoint = false;
    check(disjoint, "system files do not overlap", "two system files share blocks");
    if (h.find(SystemFileKind::kCluster))
      check(h.find(SystemFileKind::kCluster)->block_count * bs == 2ull * cluster_copy_size(ci.groups, bs) ||
                h.find(SystemFileKind::kCluster)->block_count == L.located.cluster_file.block_count,
            "cluster file holds two header copies", "unexpected size");
  }
  // 3b. Orphan directories (made by the engine, docs/FORMAT.md): every
  //     other entry of /.cext3 must be /.cext3/orphan.NN of an existing
  //     slot, a directory, mode 0700, immutable. Entries in them are files
  //     unlinked while open: legitimate until the slot's next mount or its
  //     recovery frees them, so they are counted, not called problems.
  {
    auto entries = list_dir(fs, L.located.dir);
    if (!entries.ok()) {
      rep.problems.push_back("/.cext3 cannot be listed: " + entries.status().message());
    } else {
      std::vector<std::string> bad;
      uint32_t dirs = 0;
      size_t orphans = 0;
      for (auto& [n, ino] : *entries) {
        if (n == kClusterFileName || n == kHeartbeatFileName || n == kLocksFileName) continue;
        bool is_journal = false;
        for (uint32_t s = 0; s < h.slot_count && !is_journal; ++s) is_journal = n == journal_file_name(s);
        if (is_journal) continue;
        const int slot = orphan_dir_slot(n);
        ext2_inode di;
        const bool ok = slot >= 0 && uint32_t(slot) < h.slot_count && ext2fs_read_inode(fs, ino, &di) == 0 &&
                        LINUX_S_ISDIR(di.i_mode) && (di.i_mode & 07777) == 0700 && (di.i_flags & EXT2_IMMUTABLE_FL);
        if (!ok) {
          bad.push_back(n);
          continue;
        }
        ++dirs;
        auto in = list_dir(fs, ino);
        if (in.ok()) orphans += in->size();
        else bad.push_back(n);
      }
      std::string why;
      for (auto& b : bad) why += (why.empty() ? "" : ", ") + b;
      check(bad.empty(), "every other /.cext3 entry is an orphan directory (orphan.NN of an existing slot, 0700, immutable)",
            "unexpected: " + why);
      if (dirs > 0)
        rep.passed.push_back(std::to_string(dirs) + " orphan directories hold " + std::to_string(orphans) +
                             " unlinked-but-open files" +
                             (orphans ? " (freed by their slot's next mount, its recovery, or jcoord recover)" : ""));
    }
  }
  // 4. Journals, heartbeats, leases.
  uint32_t bad_hb = 0, bad_lease = 0;
  for (const SlotInfo& s : ci.slots) {
    check(s.journal_ok, journal_file_name(s.slot) + " has a valid jbd2 superblock", s.journal_error);
    if (!s.heartbeat_ok) ++bad_hb;
    if (!s.lease_ok) ++bad_lease;
  }
  check(bad_hb == 0, "heartbeat records are well-formed", std::to_string(bad_hb) + " damaged records");
  check(bad_lease == 0, "slot lease records are well-formed", std::to_string(bad_lease) + " damaged records");
  check(ci.locks_ok && ci.locks.slot_count == h.slot_count, "locks file global record is valid and matches the slot count",
        ci.locks_ok ? "it says " + std::to_string(ci.locks.slot_count) + " slots" : ci.locks_error);
  if (ci.mmp.enabled)
    check(ci.mmp.readable && ci.mmp.magic == EXT4_MMP_MAGIC, "MMP block is readable and valid", "bad MMP block");

  session = FsSession();  // release libext2fs before writing anything

  // 5. Who is running. Repairs of a live cluster would race its nodes.
  if (opts.repair || opts.observe) CEXT3_RETURN_IF_ERROR(observe_liveness(dev, ci));
  const uint64_t now = wall_clock_ns();
  std::string live_names;
  for (const SlotInfo& s : ci.slots) {
    if (!slot_is_live(ci, s, now)) continue;
    rep.live_slots.push_back(s.slot);
    live_names += (live_names.empty() ? "" : ", ") + std::to_string(s.slot) +
                  (s.heartbeat_ok && !s.heartbeat.node_name.empty() ? " (node '" + s.heartbeat.node_name + "')" : "");
  }
  if (!rep.live_slots.empty()) {
    rep.problems.push_back("the cluster is live: slot(s) " + live_names + " " +
                           (opts.repair ? "running; nothing was repaired: stop jcoord on every node first"
                                        : "running; a check of a live filesystem is not conclusive: stop jcoord "
                                          "on every node for a full check"));
    rep.mmp_in_use_by_cluster = ci.mmp.in_use_by_cluster();
    return rep;
  }
  std::vector<uint32_t> dirty;
  for (const SlotInfo& s : ci.slots)
    if (slot_is_dirty(s)) dirty.push_back(s.slot);

  const SystemFileExtent* lkf = h.find(SystemFileKind::kLocks);
  bool recovered_all = true;
  for (uint32_t s : dirty) {
    const SlotInfo& si = ci.slots[s];
    std::string jn = journal_file_name(s);
    if (!opts.repair) {
      rep.problems.push_back(si.abandoned() ? "slot " + std::to_string(s) + " was held by node '" +
                                                  (si.lease_ok ? si.lease.owner : std::string("?")) +
                                                  "', which stopped without leaving cleanly: run clusterify verify -y"
                                            : jn + " is dirty (needs replay): run clusterify verify -y");
      recovered_all = false;
      continue;
    }
    if (si.journal_ok && !si.journal_clean) {
      auto jm = journal::JournalMap::contiguous(bs, si.journal_first_block, si.journal_blocks);
      if (!jm.ok()) return jm.status();
      auto rr = journal::recover_journal(dev, *jm);
      if (!rr.ok()) {
        rep.problems.push_back(jn + ": replay failed: " + rr.status().message());
        recovered_all = false;
        continue;
      }
      rep.fixed.push_back(jn + ": replayed " + std::to_string(rr->transactions) + " transactions (" +
                          std::to_string(rr->blocks_replayed) + " blocks)");
    } else if (!si.journal_ok) {
      recovered_all = false;  // reported above; nothing can be replayed
    }
    if (si.lease_ok && (si.lease.journal_dirty || si.lease.owned) && lkf) {
      SlotLeaseRecord nr = si.lease;
      nr.journal_dirty = 0;
      nr.owned = 0;
      nr.lease_expiry_ns = 0;
      ++nr.recovery_generation;
      std::array<uint8_t, kRecordSize> rec{};
      encode_slot_lease(nr, rec);
      CEXT3_RETURN_IF_ERROR(patch_bytes(dev, lkf->first_block * bs + (uint64_t{s} + 1) * kRecordSize, rec.data(),
                                        rec.size()));
      rep.fixed.push_back("slot " + std::to_string(s) + " lease released and marked clean (recovery generation " +
                          std::to_string(nr.recovery_generation) + ")");
    }
    // The dead node's last heartbeat gets the "stopped" flag, as a clean
    // leave would have written: every reader (jcoord's slot claim, these
    // tools) then sees the slot free, with nothing left to recover.
    const SystemFileExtent* hbf = h.find(SystemFileKind::kHeartbeat);
    if (si.abandoned() && hbf) {
      HeartbeatRecord hr = si.heartbeat_ok ? si.heartbeat : HeartbeatRecord{};
      hr.slot = s;
      hr.flags |= kHeartbeatFlagUsed | kHeartbeatFlagStopped;
      ++hr.sequence;
      hr.time_ns = now;
      hr.fence_deadline_ns = 0;
      std::array<uint8_t, kRecordSize> rec{};
      encode_heartbeat(hr, rec);
      CEXT3_RETURN_IF_ERROR(patch_bytes(dev, hbf->first_block * bs + uint64_t{s} * kRecordSize, rec.data(), rec.size()));
      rep.fixed.push_back("slot " + std::to_string(s) + " heartbeat marked stopped (node '" + hr.node_name +
                          "' recovered)");
    }
  }
  // 6. MMP: the last node to leave writes the clean sequence; after a crash
  // of every node it stays "in use by the cluster" until recovery is done.
  if (ci.mmp.in_use_by_cluster()) {
    if (opts.repair && recovered_all) {
      std::vector<uint8_t> blk(bs);
      CEXT3_RETURN_IF_ERROR(dev.read(ci.mmp.block * bs, blk.data(), bs));
      mmp_struct* m = reinterpret_cast<mmp_struct*>(blk.data());
      m->mmp_seq = EXT4_MMP_SEQ_CLEAN;
      m->mmp_time = static_cast<uint64_t>(now / 1000000000ull);
      CEXT3_RETURN_IF_ERROR(patch_bytes(dev, ci.mmp.block * bs, blk.data(), sizeof(mmp_struct)));
      rep.fixed.push_back("MMP block " + std::to_string(ci.mmp.block) + " set to clean (it said " + ci.mmp.describe() +
                          ", no slot is live or dirty): e2fsck and a single-node mount may use the disk again");
    } else {
      rep.mmp_in_use_by_cluster = true;
      rep.problems.push_back("MMP says " + ci.mmp.describe() + " but no slot is live: the cluster did not shut down "
                             "cleanly; " + (opts.repair ? "recover the slots above, then run clusterify verify -y again"
                                                        : "run clusterify verify -y to recover and release it"));
    }
  } else if (ci.mmp.enabled && ci.mmp.readable && ci.mmp.magic == EXT4_MMP_MAGIC && !ci.mmp.clean()) {
    rep.problems.push_back("MMP says " + ci.mmp.describe() + "; if no machine uses the disk, e2fsck clears it");
  }
  if (rewrite_copy && (ci.header.a_valid || ci.header.b_valid)) {
    int bad = ci.header.a_valid ? 1 : 0;
    if (opts.repair) {
      const SystemFileExtent& cf = L.located.cluster_file;
      const uint32_t copy = static_cast<uint32_t>(cf.block_count * bs / 2);
      auto enc = encode_header(h, copy);
      if (!enc.ok()) return enc.status();
      CEXT3_RETURN_IF_ERROR(dev.write(cf.first_block * bs + static_cast<uint64_t>(bad) * copy, enc->data(), copy));
      CEXT3_RETURN_IF_ERROR(dev.flush());
      rep.fixed.push_back(std::string("cluster header copy ") + (bad ? "B" : "A") + " rewritten from the valid copy");
      // It is no longer a problem.
      auto it = std::find_if(rep.problems.begin(), rep.problems.end(), [&](const std::string& p) {
        return p.rfind(std::string("cluster header copy ") + (bad ? "B" : "A"), 0) == 0;
      });
      if (it != rep.problems.end()) rep.problems.erase(it);
    }
  }
  return rep;
}

}  // namespace cext3::cluster
