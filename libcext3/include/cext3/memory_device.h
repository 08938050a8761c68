// MemoryDevice: a BlockDevice held in RAM. For tests, and for materializing
// crash states before they are written out as image files.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "cext3/block_device.h"

namespace cext3 {

class MemoryDevice : public BlockDevice {
 public:
  explicit MemoryDevice(uint64_t size, uint32_t sector_size = 512, std::string name = "memory");

  uint64_t size() const override { return bytes_.size(); }
  uint32_t sector_size() const override { return sector_size_; }
  bool read_only() const override { return false; }
  std::string name() const override { return name_; }

  Status read(uint64_t offset, void* buf, size_t len) override;
  Status write(uint64_t offset, const void* buf, size_t len) override;
  Status flush() override;

  // Direct access for tests and the crash-state tool.
  std::vector<uint8_t>& bytes() { return bytes_; }
  unsigned flush_count() const { return flushes_; }

 private:
  std::vector<uint8_t> bytes_;
  uint32_t sector_size_;
  std::string name_;
  unsigned flushes_ = 0;
  std::mutex mu_;
};

}  // namespace cext3
