// StagingBuffer: the reusable memory a journal builds its log images in.
// Internal to src/journal.
//
// A journal keeps one for its whole life, as large as the largest
// transaction (or checkpoint stretch) it has written. Fresh memory is
// expensive on a virtual machine: every first touch of a 4 KiB page is a
// fault that the host may have to back with a page of its own (measured:
// about 60 us per page on the shared build VM under load, so half a second
// for a 32 MiB transaction). The buffer is therefore aligned to 2 MiB and
// offered to the kernel for transparent huge pages (madvise), which turns
// 512 faults into one where THP is enabled ("always" or "madvise"), and it
// is never shrunk. Contents are not zeroed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cext3::journal {

class StagingBuffer {
 public:
  StagingBuffer() = default;
  ~StagingBuffer();
  StagingBuffer(const StagingBuffer&) = delete;
  StagingBuffer& operator=(const StagingBuffer&) = delete;

  // At least `len` bytes, 4096-aligned (O_DIRECT-ready); earlier contents
  // are lost when it grows. Returns nullptr if memory is exhausted.
  uint8_t* reserve(size_t len);
  uint8_t* data() { return p_; }
  size_t size() const { return len_; }

 private:
  uint8_t* p_ = nullptr;
  size_t len_ = 0;
};

}  // namespace cext3::journal
