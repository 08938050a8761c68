// The libaio engine under the file/block-device backend (file_device.cpp).
//
// AioQueue owns one kernel AIO context and runs whole batches on it; it is
// used by one thread at a time. AioQueuePool lends queues to concurrent
// callers, so threads never share a context and never see each other's
// completions.
#pragma once

#include <libaio.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "cext3/block_device.h"

namespace cext3::file_device_detail {

// What a queue needs to know about the open file. Immutable after open.
struct AioTarget {
  int fd = -1;
  uint32_t sector_size = 512;  // offsets and lengths are multiples of this
  // User buffers aligned to this go to the kernel as they are; others are
  // copied through an aligned bounce buffer. 1 when the fd is buffered.
  uint32_t mem_align = 1;
  std::string name;  // for messages
};

// Requests larger than this are cut into pieces of at most this size. Keeps
// bounce buffers bounded (queue depth x this) and lets a single large request
// use several queue slots.
inline constexpr size_t kMaxChunkBytes = 1u << 20;

class AioQueue {
 public:
  // depth: most iocbs in flight on this context.
  static Result<std::unique_ptr<AioQueue>> create(unsigned depth);
  ~AioQueue();
  AioQueue(const AioQueue&) = delete;
  AioQueue& operator=(const AioQueue&) = delete;

  // Runs every request of the batch to completion (or failure) and returns
  // the first failure. The requests must already be validated (aligned, in
  // range, non-overlapping if any writes). Returns only when nothing is in
  // flight any more, so the caller's buffers are free again.
  Status run(const AioTarget& target, std::span<const IoRequest> batch);

 private:
  struct Slot;
  struct Chunk;
  AioQueue(io_context_t ctx, unsigned depth);

  io_context_t ctx_;
  unsigned depth_;
  std::vector<std::unique_ptr<Slot>> slots_;  // stable addresses: iocb.data points at them
};

class AioQueuePool {
 public:
  // max_queues: how many contexts concurrent callers may grow the pool to.
  AioQueuePool(unsigned depth, unsigned max_queues);
  // Creates the first queue, so that a device whose AIO cannot be set up
  // fails at open rather than at its first request.
  Status init(const std::string& name);
  // Borrows an idle queue (creating one if below max_queues, else waiting
  // for one), runs the batch on it, and gives it back.
  Status run(const AioTarget& target, std::span<const IoRequest> batch);

 private:
  const unsigned depth_;
  unsigned max_queues_;  // lowered if the kernel refuses more contexts
  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::vector<std::unique_ptr<AioQueue>> idle_;
  // Invariant: live_ >= 1 after init(); queues are destroyed only with the
  // pool, so a waiter always has a busy queue that will come back.
  unsigned live_ = 0;  // queues created (idle, busy, or being created)
};

}  // namespace cext3::file_device_detail
