// ClusterDisk: a running node's view of the shared disk's cluster metadata.
//
// jcoord never walks inode block maps at run time: clusterify allocated every
// system file as one contiguous block run and recorded it in the cluster
// header, so the byte offset of each heartbeat sector, lease sector, journal
// and the MMP block is known once the header is read. Every record here is one
// 512-byte sector (docs/FORMAT.md), read and written with O_DIRECT through the
// BlockDevice, so what a node reads is what the disk holds, not a page cache.
//
// Sector size: on a device whose sector is 512 bytes every record is written
// alone. On a larger sector (4Kn disk, or an image whose filesystem demands
// 4096-byte O_DIRECT alignment) eight records share one sector and a record
// write is a read-modify-write of that sector; this process serializes its
// own, but another node's concurrent write to a neighbouring record can be
// reverted. docs/MEMBERSHIP.md explains why membership stays safe anyway
// (liveness is judged by heartbeat changes, never by a lease alone) and why
// 512e disks are still the recommendation.
//
// Thread-safe: every call uses its own buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/cluster/header.h"
#include "cext3/cluster/records.h"
#include "cext3/status.h"

namespace cext3::node {

class ClusterDisk {
 public:
  // Reads the superblock and the current cluster header copy. NotSupported
  // with a one-line message if the device is not a cext3 filesystem.
  static Result<std::unique_ptr<ClusterDisk>> open(BlockDevice& dev);
  // For tests and tools that already hold the header: no filesystem read.
  // `mmp_block` 0 means the filesystem has no MMP. InvalidArgument if the
  // header lacks the heartbeat or locks file or they lie beyond the device.
  static Result<std::unique_ptr<ClusterDisk>> attach(BlockDevice& dev, cluster::ClusterHeader h,
                                                     uint64_t mmp_block);

  BlockDevice& device() { return dev_; }
  const cluster::ClusterHeader& header() const { return header_; }
  uint32_t slot_count() const { return header_.slot_count; }
  uint32_t block_size() const { return header_.block_size; }
  const cluster::Timing& timing() const { return header_.timing; }

  // Byte offsets on the device.
  uint64_t heartbeat_offset(uint32_t slot) const;
  uint64_t lease_offset(uint32_t slot) const;
  uint64_t global_lock_offset() const;
  bool has_mmp() const { return mmp_block_ != 0; }
  uint64_t mmp_offset() const { return mmp_block_ * header_.block_size; }
  // First byte and length of slot N's journal file.
  uint64_t journal_offset(uint32_t slot) const;
  uint64_t journal_bytes(uint32_t slot) const;

  // One sector each. Reads fail with Corruption on a bad CRC or magic.
  Result<cluster::HeartbeatRecord> read_heartbeat(uint32_t slot);
  Status write_heartbeat(const cluster::HeartbeatRecord& r);
  // All slot_count() heartbeat sectors in one request; entry i is slot i's
  // record or the error decoding it.
  Result<std::vector<Result<cluster::HeartbeatRecord>>> read_all_heartbeats();
  Result<cluster::SlotLeaseRecord> read_lease(uint32_t slot);
  Status write_lease(const cluster::SlotLeaseRecord& r);
  Result<std::vector<Result<cluster::SlotLeaseRecord>>> read_all_leases();
  Result<cluster::LocksGlobalRecord> read_global();
  Status write_global(const cluster::LocksGlobalRecord& r);

 private:
  ClusterDisk(BlockDevice& dev, cluster::ClusterHeader h, uint64_t mmp_block)
      : dev_(dev), header_(std::move(h)), mmp_block_(mmp_block) {}
  Status read_record(uint64_t offset, std::span<uint8_t, 512> out);
  Status write_record(uint64_t offset, std::span<const uint8_t, 512> in);
  // `count` consecutive records from `offset` in one request.
  Status read_records(uint64_t offset, uint32_t count, std::vector<uint8_t>& out);

  BlockDevice& dev_;
  cluster::ClusterHeader header_;
  uint64_t mmp_block_ = 0;
  uint64_t heartbeat_base_ = 0, locks_base_ = 0;
  std::mutex rmw_mu_;  // read-modify-write of a shared sector (sector > 512)
};

}  // namespace cext3::node
