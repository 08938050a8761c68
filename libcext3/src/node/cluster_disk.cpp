#include "cext3/node/cluster_disk.h"

#include <algorithm>
#include <cstring>

#include "cext3/cluster/inspect.h"
#include "cext3/cluster/layout.h"
#include "cluster/le_bytes.h"

namespace cext3::node {
namespace {

using cluster::get_le16;
using cluster::get_le32;
using cluster::get_le64;
using cluster::kRecordSize;

// The few superblock fields ClusterDisk needs (byte offsets inside the
// superblock, which starts at byte 1024 of the device).
constexpr uint64_t kSuperblockOffset = 1024;
constexpr size_t kSbMagic = 0x38;
constexpr size_t kSbLogBlockSize = 0x18;
constexpr size_t kSbFeatureIncompat = 0x60;
constexpr size_t kSbMmpBlock = 0x168;
constexpr uint16_t kExt2Magic = 0xEF53;
constexpr uint32_t kIncompatMmp = 0x0100;

struct SuperblockFacts {
  uint32_t block_size = 0;
  uint64_t mmp_block = 0;  // 0 = no MMP
};

Result<SuperblockFacts> read_superblock(BlockDevice& dev) {
  const uint32_t ss = dev.sector_size();
  // The sectors covering bytes [1024, 2048).
  const uint64_t first = kSuperblockOffset / ss * ss;
  const uint64_t end = (kSuperblockOffset + 1024 + ss - 1) / ss * ss;
  if (dev.size() < end)
    return Status::NotSupported(dev.name() + ": too small to hold an ext3 filesystem; jcoord needs a disk converted with `clusterify convert`");
  AlignedBuffer buf(end - first);
  CEXT3_RETURN_IF_ERROR(dev.read(first, buf.data(), buf.size()).Annotate(dev.name() + ": reading the superblock"));
  const uint8_t* sb = buf.data() + (kSuperblockOffset - first);
  if (get_le16(sb + kSbMagic) != kExt2Magic)
    return Status::NotSupported(dev.name() + ": not an ext3 filesystem (no superblock magic); jcoord needs a disk converted with `clusterify convert`");
  SuperblockFacts f;
  const uint32_t log = get_le32(sb + kSbLogBlockSize);
  if (log > 6) return Status::Corruption(dev.name() + ": superblock block size field is out of range; run e2fsck");
  f.block_size = 1024u << log;
  if (get_le32(sb + kSbFeatureIncompat) & kIncompatMmp) f.mmp_block = get_le64(sb + kSbMmpBlock);
  return f;
}

}  // namespace

Result<std::unique_ptr<ClusterDisk>> ClusterDisk::open(BlockDevice& dev) {
  auto sb = read_superblock(dev);
  if (!sb.ok()) return sb.status();
  // The cluster header lives in /.cext3/cluster; read_cluster_info finds it
  // through the directory tree (read-only libext2fs) and picks the current
  // A/B copy.
  auto ci = cluster::read_cluster_info(dev);
  if (!ci.ok()) return ci.status().Annotate(dev.name() + ": reading the cluster metadata");
  if (!ci->clusterified)
    return Status::NotSupported(dev.name() + ": an ext3 filesystem but not a cext3 cluster (no /.cext3); convert it with `clusterify convert " +
                                dev.name() + " --slots N`");
  if (ci->header.header.block_size != sb->block_size)
    return Status::Corruption(dev.name() + ": the cluster header says block size " +
                              std::to_string(ci->header.header.block_size) + ", the superblock " +
                              std::to_string(sb->block_size) + "; run `clusterify verify`");
  if (sb->mmp_block != 0 && ci->mmp.enabled && ci->mmp.block != sb->mmp_block)
    return Status::Corruption(dev.name() + ": MMP block disagrees between reads; run `clusterify verify`");
  return attach(dev, ci->header.header, sb->mmp_block);
}

Result<std::unique_ptr<ClusterDisk>> ClusterDisk::attach(BlockDevice& dev, cluster::ClusterHeader h,
                                                         uint64_t mmp_block) {
  const cluster::SystemFileExtent* hb = h.find(cluster::SystemFileKind::kHeartbeat);
  const cluster::SystemFileExtent* lk = h.find(cluster::SystemFileKind::kLocks);
  if (!hb || !lk)
    return Status::Corruption(dev.name() + ": the cluster header lists no heartbeat or locks file; run `clusterify verify`");
  if (h.slot_count < 1 || h.slot_count > cluster::kMaxSlots)
    return Status::Corruption(dev.name() + ": the cluster header names " + std::to_string(h.slot_count) +
                              " slots (1..255 allowed); run `clusterify verify`");
  if (h.block_size == 0 || h.block_size % kRecordSize != 0)
    return Status::Corruption(dev.name() + ": the cluster header block size " + std::to_string(h.block_size) +
                              " is not a multiple of 512; run `clusterify verify`");
  const uint64_t bs = h.block_size;
  if (hb->block_count * bs < uint64_t{h.slot_count} * kRecordSize ||
      lk->block_count * bs < uint64_t{h.slot_count + 1} * kRecordSize)
    return Status::Corruption(dev.name() + ": the heartbeat or locks file is too short for " +
                              std::to_string(h.slot_count) + " slots; run `clusterify verify`");
  const uint64_t hb_end = (hb->first_block + hb->block_count) * bs;
  const uint64_t lk_end = (lk->first_block + lk->block_count) * bs;
  if (hb_end > dev.size() || lk_end > dev.size() || (mmp_block + 1) * bs > dev.size())
    return Status::Corruption(dev.name() + ": the cluster files or the MMP block lie beyond the end of the device (" +
                              std::to_string(dev.size()) + " bytes); is this the right device?");
  if (dev.sector_size() > bs || bs % dev.sector_size() != 0)
    return Status::NotSupported(dev.name() + ": sector size " + std::to_string(dev.sector_size()) +
                                " does not divide the block size " + std::to_string(bs));
  std::unique_ptr<ClusterDisk> d(new ClusterDisk(dev, std::move(h), mmp_block));
  d->heartbeat_base_ = hb->first_block * bs;
  d->locks_base_ = lk->first_block * bs;
  return d;
}

uint64_t ClusterDisk::heartbeat_offset(uint32_t slot) const { return heartbeat_base_ + uint64_t{slot} * kRecordSize; }
uint64_t ClusterDisk::lease_offset(uint32_t slot) const { return locks_base_ + uint64_t{slot + 1} * kRecordSize; }
uint64_t ClusterDisk::global_lock_offset() const { return locks_base_; }

uint64_t ClusterDisk::journal_offset(uint32_t slot) const {
  const cluster::SystemFileExtent* j = header_.find(cluster::SystemFileKind::kJournal, slot);
  return j ? j->first_block * header_.block_size : 0;
}

uint64_t ClusterDisk::journal_bytes(uint32_t slot) const {
  const cluster::SystemFileExtent* j = header_.find(cluster::SystemFileKind::kJournal, slot);
  return j ? j->block_count * header_.block_size : 0;
}

Status ClusterDisk::read_record(uint64_t offset, std::span<uint8_t, 512> out) {
  const uint32_t ss = dev_.sector_size();
  if (ss <= kRecordSize) {
    AlignedBuffer buf(kRecordSize);
    CEXT3_RETURN_IF_ERROR(dev_.read(offset, buf.data(), kRecordSize));
    std::memcpy(out.data(), buf.data(), kRecordSize);
    return Status::OK();
  }
  const uint64_t base = offset / ss * ss;
  AlignedBuffer buf(ss);
  CEXT3_RETURN_IF_ERROR(dev_.read(base, buf.data(), ss));
  std::memcpy(out.data(), buf.data() + (offset - base), kRecordSize);
  return Status::OK();
}

Status ClusterDisk::write_record(uint64_t offset, std::span<const uint8_t, 512> in) {
  const uint32_t ss = dev_.sector_size();
  if (ss <= kRecordSize) {
    AlignedBuffer buf(kRecordSize);
    std::memcpy(buf.data(), in.data(), kRecordSize);
    return dev_.write(offset, buf.data(), kRecordSize);
  }
  // Several records share this sector: read-modify-write it. The mutex keeps
  // this process's own writers from reverting each other; other nodes are
  // not covered (see the header comment).
  std::lock_guard<std::mutex> lk(rmw_mu_);
  const uint64_t base = offset / ss * ss;
  AlignedBuffer buf(ss);
  CEXT3_RETURN_IF_ERROR(dev_.read(base, buf.data(), ss));
  std::memcpy(buf.data() + (offset - base), in.data(), kRecordSize);
  return dev_.write(base, buf.data(), ss);
}

Status ClusterDisk::read_records(uint64_t offset, uint32_t count, std::vector<uint8_t>& out) {
  const uint32_t ss = std::max<uint32_t>(dev_.sector_size(), kRecordSize);
  const uint64_t first = offset / ss * ss;
  const uint64_t end = (offset + uint64_t{count} * kRecordSize + ss - 1) / ss * ss;
  AlignedBuffer buf(end - first);
  CEXT3_RETURN_IF_ERROR(dev_.read(first, buf.data(), buf.size()));
  out.assign(buf.data() + (offset - first), buf.data() + (offset - first) + uint64_t{count} * kRecordSize);
  return Status::OK();
}

Result<cluster::HeartbeatRecord> ClusterDisk::read_heartbeat(uint32_t slot) {
  if (slot >= slot_count()) return Status::InvalidArgument("slot " + std::to_string(slot) + " does not exist");
  uint8_t sec[kRecordSize];
  CEXT3_RETURN_IF_ERROR(read_record(heartbeat_offset(slot), sec).Annotate("reading slot " + std::to_string(slot) + "'s heartbeat"));
  auto r = cluster::decode_heartbeat(std::span<const uint8_t, 512>(sec, 512));
  if (!r.ok()) return r.status().Annotate("slot " + std::to_string(slot));
  if (r->slot != slot)
    return Status::Corruption("slot " + std::to_string(slot) + ": heartbeat record names slot " + std::to_string(r->slot));
  return r;
}

Status ClusterDisk::write_heartbeat(const cluster::HeartbeatRecord& r) {
  if (r.slot >= slot_count()) return Status::InvalidArgument("slot " + std::to_string(r.slot) + " does not exist");
  uint8_t sec[kRecordSize];
  cluster::encode_heartbeat(r, std::span<uint8_t, 512>(sec, 512));
  return write_record(heartbeat_offset(r.slot), sec);
}

Result<std::vector<Result<cluster::HeartbeatRecord>>> ClusterDisk::read_all_heartbeats() {
  std::vector<uint8_t> raw;
  CEXT3_RETURN_IF_ERROR(read_records(heartbeat_offset(0), slot_count(), raw).Annotate("reading the heartbeat file"));
  std::vector<Result<cluster::HeartbeatRecord>> out;
  out.reserve(slot_count());
  for (uint32_t s = 0; s < slot_count(); ++s) {
    auto r = cluster::decode_heartbeat(std::span<const uint8_t, 512>(raw.data() + uint64_t{s} * kRecordSize, 512));
    if (r.ok() && r->slot != s)
      out.push_back(Status::Corruption("slot " + std::to_string(s) + ": heartbeat record names slot " + std::to_string(r->slot)));
    else if (!r.ok())
      out.push_back(r.status().Annotate("slot " + std::to_string(s)));
    else
      out.push_back(std::move(r));
  }
  return out;
}

Result<cluster::SlotLeaseRecord> ClusterDisk::read_lease(uint32_t slot) {
  if (slot >= slot_count()) return Status::InvalidArgument("slot " + std::to_string(slot) + " does not exist");
  uint8_t sec[kRecordSize];
  CEXT3_RETURN_IF_ERROR(read_record(lease_offset(slot), sec).Annotate("reading slot " + std::to_string(slot) + "'s lease"));
  auto r = cluster::decode_slot_lease(std::span<const uint8_t, 512>(sec, 512));
  if (!r.ok()) return r.status().Annotate("slot " + std::to_string(slot));
  if (r->slot != slot)
    return Status::Corruption("slot " + std::to_string(slot) + ": lease record names slot " + std::to_string(r->slot));
  return r;
}

Status ClusterDisk::write_lease(const cluster::SlotLeaseRecord& r) {
  if (r.slot >= slot_count()) return Status::InvalidArgument("slot " + std::to_string(r.slot) + " does not exist");
  uint8_t sec[kRecordSize];
  cluster::encode_slot_lease(r, std::span<uint8_t, 512>(sec, 512));
  return write_record(lease_offset(r.slot), sec);
}

Result<std::vector<Result<cluster::SlotLeaseRecord>>> ClusterDisk::read_all_leases() {
  std::vector<uint8_t> raw;
  CEXT3_RETURN_IF_ERROR(read_records(lease_offset(0), slot_count(), raw).Annotate("reading the locks file"));
  std::vector<Result<cluster::SlotLeaseRecord>> out;
  out.reserve(slot_count());
  for (uint32_t s = 0; s < slot_count(); ++s) {
    auto r = cluster::decode_slot_lease(std::span<const uint8_t, 512>(raw.data() + uint64_t{s} * kRecordSize, 512));
    if (r.ok() && r->slot != s)
      out.push_back(Status::Corruption("slot " + std::to_string(s) + ": lease record names slot " + std::to_string(r->slot)));
    else if (!r.ok())
      out.push_back(r.status().Annotate("slot " + std::to_string(s)));
    else
      out.push_back(std::move(r));
  }
  return out;
}

Result<cluster::LocksGlobalRecord> ClusterDisk::read_global() {
  uint8_t sec[kRecordSize];
  CEXT3_RETURN_IF_ERROR(read_record(global_lock_offset(), sec).Annotate("reading the global lock record"));
  return cluster::decode_locks_global(std::span<const uint8_t, 512>(sec, 512));
}

Status ClusterDisk::write_global(const cluster::LocksGlobalRecord& r) {
  uint8_t sec[kRecordSize];
  cluster::encode_locks_global(r, std::span<uint8_t, 512>(sec, 512));
  return write_record(global_lock_offset(), sec);
}

}  // namespace cext3::node
