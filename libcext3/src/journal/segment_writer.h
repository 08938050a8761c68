// SegmentWriter: writes the log body of a large transaction while the
// committer is still building the rest of it. Internal to src/journal.
//
// Building a large log image (copying every image into the staging buffer,
// escaping, checksums, descriptors) costs about a quarter of a millisecond
// per MiB once it no longer fits the CPU caches; written after the whole
// image is built, that time adds to the device time. With SegmentWriter the
// committer hands over each finished stretch ("segment") of the image and
// goes on building the next one while up to `writers` threads write the
// segments already handed over, each through one BlockDevice::submit()
// batch. With two writers a new batch is already in flight while the
// previous one drains, so the device queue does not empty between segments.
//
// All segments belong to one flush epoch: they may reach the device in any
// order, and finish() returns only when every one has completed, so the
// caller's flush after finish() covers all of them. Segments must not
// overlap, and their memory must stay untouched until finish() returns.
// The device must accept calls from several threads at once (every
// BlockDevice in libcext3 does).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "journal/journal_io.h"

namespace cext3::journal {

class SegmentWriter {
 public:
  // Starts the writer threads. If a thread cannot be started, push() writes
  // in the calling thread instead (slower, same result).
  SegmentWriter(BlockDevice& dev, uint32_t block_size, unsigned writers);
  ~SegmentWriter();  // finish(), ignoring its status
  SegmentWriter(const SegmentWriter&) = delete;
  SegmentWriter& operator=(const SegmentWriter&) = delete;

  // Queue `blocks` for writing (io::write_blocks); returns at once. After a
  // failure, later segments are dropped (the commit fails anyway).
  void push(std::vector<io::BlockRef> blocks);
  // True once some segment failed: the caller may stop building.
  bool failed();
  // Wait until every pushed segment completed; the first failure, if any.
  Status finish();

 private:
  void run();

  BlockDevice& dev_;
  const uint32_t bs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<io::BlockRef>> queue_;
  bool closing_ = false;
  Status first_error_;
  std::vector<std::thread> threads_;
};

}  // namespace cext3::journal
