// The file and block-device backend of BlockDevice: ext3 image files and
// /dev nodes (SCSI/FC/iSCSI LUNs, virtual disks, loop devices), read and
// written with O_DIRECT through Linux native AIO (libaio).
//
// docs/BLOCKDEV.md ("File and block-device backend") explains the design:
// why O_DIRECT, how sector size and alignment are chosen, queue depth,
// threading, and when the backend falls back to the page cache.
#pragma once

#include <memory>
#include <string>

#include "cext3/block_device.h"

namespace cext3 {

// What open_file_device() returns. Callers normally use it as a plain
// BlockDevice; the extra accessors are for diagnostics and benchmarks that
// need to know how the device ended up being opened
// (dynamic_cast<const FileDevice*>).
class FileDevice : public BlockDevice {
 public:
  // True when requests bypass the page cache (O_DIRECT is in effect).
  virtual bool direct_io() const = 0;
  // Why requests go through the page cache instead; empty when direct_io().
  virtual std::string buffered_reason() const = 0;
  // True for a block device node, false for a regular (image) file.
  virtual bool is_block_device() const = 0;
  // Most requests one submit() call keeps in flight (OpenOptions::queue_depth).
  virtual unsigned queue_depth() const = 0;
};

// Open a regular file or a block device as a BlockDevice.
//
//  * opts.direct: O_DIRECT. If the filesystem refuses O_DIRECT (EINVAL at
//    open, as ramfs does), the device is opened buffered instead and
//    buffered_reason() says why; flush() is fdatasync() either way.
//  * opts.read_only: O_RDONLY; write() and write requests are refused.
//  * opts.exclusive (block devices only): O_EXCL, so a device the kernel has
//    mounted or someone holds exclusively is refused with Status::Busy.
//  * opts.queue_depth: size of each kernel AIO context (1..1024).
//
// Block devices report their size (BLKGETSIZE64) and logical sector size
// (BLKSSZGET). Regular files use 512-byte sectors, or the larger direct-I/O
// offset alignment their filesystem demands. A file whose size is not a whole
// number of sectors is refused. Every failure is one operator-ready line.
Result<std::unique_ptr<BlockDevice>> open_file_device(const std::string& path,
                                                      const OpenOptions& opts);

}  // namespace cext3
