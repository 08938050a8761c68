// Huge-page friendly, grow-only staging memory for log images.
#include "journal/staging_buffer.h"

#include <sys/mman.h>

#include <cstdlib>

namespace cext3::journal {

namespace {
constexpr size_t kHugePage = 2u << 20;
}  // namespace

StagingBuffer::~StagingBuffer() { std::free(p_); }

uint8_t* StagingBuffer::reserve(size_t len) {
  if (len <= len_) return p_;
  // Round up to whole huge pages: the tail would be small pages otherwise.
  const size_t want = (len + kHugePage - 1) / kHugePage * kHugePage;
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, want) != 0) return nullptr;
  // Advice only: without THP the buffer still works, with 4 KiB pages.
  (void)madvise(p, want, MADV_HUGEPAGE);
  std::free(p_);
  p_ = static_cast<uint8_t*>(p);
  len_ = want;
  return p_;
}

}  // namespace cext3::journal
