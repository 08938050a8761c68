// BlockDevice: the one interface through which libcext3 touches a disk.
//
// Every byte cext3 reads or writes on the shared disk goes through a
// BlockDevice, like LevelDB's Env or e2fsprogs' io_manager. That is what lets
// tests swap the real disk for a memory device, a recording device that
// captures every write and flush (the crash-state generator), or a fault
// injector, and what lets clusterify and jcoord run unchanged over an image
// file, a block device or an NBD export.
//
// Contract (every backend; tests/support/backend_suite.h checks it):
//  * offset and length of every request are multiples of sector_size();
//    anything else is InvalidArgument, and nothing is transferred;
//  * a request that reaches past size() is InvalidArgument, nothing transferred;
//  * buffers need no alignment: backends that need aligned memory (O_DIRECT)
//    bounce through their own aligned buffer;
//  * a successful write() is visible to every later read() on this device;
//    it is durable only after a later flush() returns OK;
//  * requests in one submit() batch may complete in any order and must not
//    overlap if any of them is a write; a caller that needs A before B puts a
//    flush() between them;
//  * a read-only device refuses write() and flush() is a no-op;
//  * a write marked IoRequest::durable is durable when submit() returns OK,
//    as if a flush() had followed it; it promises nothing about any other
//    write (a device may make only that one durable, like a FUA write).
//    Every backend honours it (the default submit() writes, then flushes);
//    native_durable_writes() says whether it saves a round trip.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "cext3/status.h"

namespace cext3 {

struct IoRequest {
  enum class Op { kRead, kWrite };
  Op op = Op::kRead;
  uint64_t offset = 0;
  void* buf = nullptr;  // for kWrite the device only reads from it
  size_t len = 0;
  // kWrite only (ignored on reads): write-through. When submit() returns OK
  // this write has reached stable storage, but nothing else is implied: it
  // is not ordered after the other writes of the batch and does not make
  // them durable. A caller that needs "A durable before B" still flushes
  // between them (or marks every write of the epoch durable).
  bool durable = false;
};

class BlockDevice {
 public:
  virtual ~BlockDevice() = default;

  // Size in bytes (a multiple of sector_size()).
  virtual uint64_t size() const = 0;
  // Logical sector size: the unit of alignment for offsets and lengths.
  virtual uint32_t sector_size() const = 0;
  virtual bool read_only() const = 0;
  // The path or URI it was opened from, for messages.
  virtual std::string name() const = 0;

  virtual Status read(uint64_t offset, void* buf, size_t len) = 0;
  virtual Status write(uint64_t offset, const void* buf, size_t len) = 0;
  // Run a batch of independent requests; returns when all have completed,
  // with the first failure if any failed. The default runs them one by one
  // and, if the batch held a durable write, flushes after the batch.
  virtual Status submit(std::span<IoRequest> batch);
  // Make every completed write durable (fdatasync, NBD_CMD_FLUSH, ...).
  virtual Status flush() = 0;
  // True when submit() makes an IoRequest::durable write durable by itself
  // (RWF_DSYNC, NBD FUA), without a separate flush() round trip. When false,
  // durable writes still work (the default submit() runs the batch and then
  // flush()), but write + flush() is just as good. Callers pick their write
  // path with it; a wrapper that forwards submit() may forward this too.
  virtual bool native_durable_writes() const { return false; }

 protected:
  // Shared argument check for backends: alignment and bounds.
  Status check_range(uint64_t offset, size_t len) const;
};

struct OpenOptions {
  bool read_only = false;
  // O_DIRECT for files and block devices: bypass the page cache, so that what
  // another node reads is what is on the disk, not what this node cached.
  bool direct = true;
  // O_EXCL on block devices: fail if the kernel has it mounted or open
  // exclusively elsewhere.
  bool exclusive = false;
  // Maximum requests in flight for asynchronous backends.
  unsigned queue_depth = 32;
};

// Open a device by name:
//   "nbd://host[:port][/export]", "nbd+unix:///export?socket=PATH" -> NBD
//   anything else                                                -> file or block device
Result<std::unique_ptr<BlockDevice>> open_block_device(const std::string& spec,
                                                       const OpenOptions& opts = {});

// Heap memory aligned for O_DIRECT (4096 bytes), zero-filled.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t len);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() { return p_; }
  const uint8_t* data() const { return p_; }
  size_t size() const { return len_; }

  static constexpr size_t kAlignment = 4096;

 private:
  uint8_t* p_ = nullptr;
  size_t len_ = 0;
};

}  // namespace cext3
