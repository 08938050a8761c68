// OverlayDevice: a BlockDevice wrapper that keeps every write in memory.
//
// Reads are served from the overlay first, then from the wrapped device; the
// wrapped device is never written. clusterify runs libext2fs on top of one so
// that a whole conversion is computed without touching the disk; afterwards
// it inspects the dirty sectors and decides how each reaches the disk (direct
// write into blocks that were free, or through one journal transaction).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "cext3/block_device.h"

namespace cext3 {

class OverlayDevice : public BlockDevice {
 public:
  // `base` must outlive the overlay.
  explicit OverlayDevice(BlockDevice& base);

  uint64_t size() const override { return base_.size(); }
  uint32_t sector_size() const override { return base_.sector_size(); }
  bool read_only() const override { return false; }
  std::string name() const override { return base_.name(); }

  Status read(uint64_t offset, void* buf, size_t len) override;
  Status write(uint64_t offset, const void* buf, size_t len) override;
  // Nothing reaches the wrapped device, so there is nothing to make durable.
  Status flush() override { return Status::OK(); }

  // Dirty data, one entry per sector that was written (sector index -> bytes).
  const std::map<uint64_t, std::vector<uint8_t>>& dirty_sectors() const { return dirty_; }
  // Byte offsets of dirty units of `unit` bytes (a multiple of the sector
  // size, e.g. the filesystem block size), ascending.
  std::vector<uint64_t> dirty_units(uint32_t unit) const;
  // Current content (overlay over base) of [offset, offset+len).
  Status read_current(uint64_t offset, void* buf, size_t len) { return read(offset, buf, len); }
  BlockDevice& base() { return base_; }

 private:
  BlockDevice& base_;
  std::map<uint64_t, std::vector<uint8_t>> dirty_;
};

}  // namespace cext3
