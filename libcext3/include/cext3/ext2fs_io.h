// The libext2fs bridge: an io_manager that sends libext2fs's block I/O to a
// cext3::BlockDevice, so libext2fs (bitmaps, inode tables, directories, block
// maps) runs unchanged over an image file, a LUN, an NBD export, a memory
// device, the recording device or the overlay device.
//
// Two ways to name the device in ext2fs_open2(name, ..., cext3_io_manager(), &fs):
//
//  * An existing BlockDevice, registered by an Ext2fsDeviceBinding under a
//    name of the form "cext3dev:N" (N unique for the process lifetime):
//
//      MemoryDevice dev(...);
//      Ext2fsDeviceBinding binding(dev);
//      auto fs = binding.open_filesystem(EXT2_FLAG_RW | EXT2_FLAG_64BITS);
//      ... ext2fs_mkdir(*fs, ...); ext2fs_close_free(&*fs);
//
//  * A device spec: an NBD URI (nbd://..., nbd+unix://...) or the path of an
//    image file or block device. The manager opens the device itself
//    (open_nbd_device / open_file_device) and closes it with the channel.
//    IO_FLAG_RW, IO_FLAG_EXCLUSIVE and IO_FLAG_DIRECT_IO map onto OpenOptions.
//    ext2fs_open2 cuts its name at the first '?' ("name?io_options"), so an
//    nbd+unix:///?socket=PATH URI cannot go through it this way: open the
//    NbdDevice and bind it instead.
//
// Byte semantics: libext2fs addresses the device in its own block size (1024
// until set_blksize, then the filesystem's) and with write_byte at any byte
// offset. Whatever does not line up with the device's sector size is done by
// read-modify-write of the covering sectors; all writes through one device
// hold one lock, so a read-modify-write is never torn by another writer that
// goes through the bridge (writers that bypass the bridge are not covered).
//
// Errors come back as errno-style errcode_t (EIO, EROFS, ENOTCONN, ...) or
// EXT2_ET_SHORT_READ / EXT2_ET_SHORT_WRITE past the end of the device; the
// one-line message of the last failure on the calling thread is kept for
// ext2fs_io_last_error().
//
// Nothing is cached: every read_blk reaches the device. That is what a shared
// disk needs (another node may have written the block) and leaves caching
// decisions to the caller.
#pragma once

#include <ext2fs/ext2fs.h>

#include <cstdint>
#include <string>

#include "cext3/block_device.h"
#include "cext3/status.h"

namespace cext3 {

// The io_manager to pass to ext2fs_open2 / ext2fs_initialize.
io_manager cext3_io_manager();

// Registers a BlockDevice with the bridge for as long as it lives.
// Invariants: the device outlives the binding; every ext2_filsys opened
// through the binding is closed before the binding is destroyed (I/O on a
// channel whose binding is gone fails with ENODEV instead of touching a
// dead device).
class Ext2fsDeviceBinding {
 public:
  explicit Ext2fsDeviceBinding(BlockDevice& device);
  ~Ext2fsDeviceBinding();
  Ext2fsDeviceBinding(const Ext2fsDeviceBinding&) = delete;
  Ext2fsDeviceBinding& operator=(const Ext2fsDeviceBinding&) = delete;

  // "cext3dev:N": the name to hand to ext2fs_open2 with cext3_io_manager().
  const char* name() const { return name_.c_str(); }
  BlockDevice& device() const { return device_; }

  // ext2fs_open2(name(), io_options, flags, superblock, block_size,
  // cext3_io_manager(), &fs), with failures turned into one-line Statuses.
  // The caller owns the result (ext2fs_close_free).
  Result<ext2_filsys> open_filesystem(int flags, const char* io_options = nullptr, blk64_t superblock = 0,
                                      unsigned block_size = 0) const;

 private:
  BlockDevice& device_;
  uint64_t id_;
  std::string name_;
};

// The one-line message of the last failure the bridge saw on this thread
// (empty if none); libext2fs only passes the errcode_t up.
std::string ext2fs_io_last_error();

// A libext2fs error code as a Status: errno values keep their errno,
// EXT2_ET_* codes get a category and com_err's text. `context` says what
// was being done ("opening the filesystem on /dev/sdb").
Status status_from_errcode(errcode_t err, const std::string& context);

}  // namespace cext3
