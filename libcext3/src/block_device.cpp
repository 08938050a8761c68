#include "cext3/block_device.h"

#include <cstdlib>
#include <cstring>
#include <utility>

namespace cext3 {

Status BlockDevice::submit(std::span<IoRequest> batch) {
  Status first;
  bool durable = false;
  for (IoRequest& r : batch) {
    Status s = r.op == IoRequest::Op::kRead ? read(r.offset, r.buf, r.len)
                                            : write(r.offset, r.buf, r.len);
    if (!s.ok() && first.ok()) first = s;
    durable = durable || (r.op == IoRequest::Op::kWrite && r.durable && r.len > 0);
  }
  // A durable write without native support: a flush after the whole batch
  // makes it (and everything else written so far) durable.
  if (durable && first.ok()) first = flush();
  return first;
}

Status BlockDevice::check_range(uint64_t offset, size_t len) const {
  const uint32_t ss = sector_size();
  if (offset % ss != 0 || len % ss != 0) {
    return Status::InvalidArgument(name() + ": request at offset " + std::to_string(offset) +
                                   ", length " + std::to_string(len) +
                                   " is not aligned to the " + std::to_string(ss) +
                                   "-byte sector size");
  }
  if (offset > size() || len > size() - offset) {
    return Status::InvalidArgument(name() + ": request at offset " + std::to_string(offset) +
                                   ", length " + std::to_string(len) + " reaches past the end (" +
                                   std::to_string(size()) + " bytes)");
  }
  return Status::OK();
}

AlignedBuffer::AlignedBuffer(size_t len) : len_(len) {
  if (len == 0) return;
  void* p = nullptr;
  // Round the allocation up so the last sector of an odd-sized buffer can be
  // handed to O_DIRECT as a whole.
  size_t alloc = (len + kAlignment - 1) / kAlignment * kAlignment;
  if (posix_memalign(&p, kAlignment, alloc) != 0) std::abort();  // out of memory: nothing sane to do
  std::memset(p, 0, alloc);
  p_ = static_cast<uint8_t*>(p);
}

AlignedBuffer::~AlignedBuffer() { std::free(p_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), len_(std::exchange(o.len_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(p_);
    p_ = std::exchange(o.p_, nullptr);
    len_ = std::exchange(o.len_, 0);
  }
  return *this;
}

}  // namespace cext3
