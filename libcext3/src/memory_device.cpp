#include "cext3/memory_device.h"

#include <cstring>

namespace cext3 {

MemoryDevice::MemoryDevice(uint64_t size, uint32_t sector_size, std::string name)
    : bytes_(size / sector_size * sector_size, 0), sector_size_(sector_size), name_(std::move(name)) {}

Status MemoryDevice::read(uint64_t offset, void* buf, size_t len) {
  CEXT3_RETURN_IF_ERROR(check_range(offset, len));
  std::lock_guard<std::mutex> g(mu_);
  if (len) std::memcpy(buf, bytes_.data() + offset, len);
  return Status::OK();
}

Status MemoryDevice::write(uint64_t offset, const void* buf, size_t len) {
  CEXT3_RETURN_IF_ERROR(check_range(offset, len));
  std::lock_guard<std::mutex> g(mu_);
  if (len) std::memcpy(bytes_.data() + offset, buf, len);
  return Status::OK();
}

Status MemoryDevice::flush() {
  std::lock_guard<std::mutex> g(mu_);
  ++flushes_;
  return Status::OK();
}

}  // namespace cext3
