// FsSession: a libext2fs filesystem handle opened over a cext3::BlockDevice.
//
// clusterify's units run libext2fs on top of an OverlayDevice (or read-only on
// the real device), never on a path, so that every write can be classified
// before it reaches the disk. The I/O goes through libcext3's libext2fs
// bridge (cext3/ext2fs_io.h): the session owns the Ext2fsDeviceBinding that
// registers the device, and closes the filesystem before the binding goes.
#pragma once

#include <ext2fs/ext2fs.h>

#include <memory>
#include <string>

#include "cext3/block_device.h"
#include "cext3/ext2fs_io.h"
#include "cext3/status.h"

namespace cext3::cluster {

class FsSession {
 public:
  FsSession() = default;
  ~FsSession();
  FsSession(FsSession&& o) noexcept;
  FsSession& operator=(FsSession&& o) noexcept;
  FsSession(const FsSession&) = delete;
  FsSession& operator=(const FsSession&) = delete;

  // Open the filesystem on `dev` (which must outlive the session) and read
  // its bitmaps. `writable` opens it EXT2_FLAG_RW; MMP is never started
  // (clusterify holds the device exclusively, and the MMP block itself is
  // one of the things it edits).
  static Result<FsSession> open(BlockDevice& dev, bool writable);

  ext2_filsys fs() const { return fs_; }
  // Flush everything libext2fs caches (superblock, descriptors, bitmaps) to
  // the device and release the handle.
  Status close();

 private:
  void release();
  // Declared first so it is destroyed last: fs_ is freed before the binding.
  std::unique_ptr<Ext2fsDeviceBinding> binding_;
  ext2_filsys fs_ = nullptr;
};

// "libext2fs: <message> (<what>)" for an errcode_t.
Status ext2_status(errcode_t err, const std::string& what);

}  // namespace cext3::cluster
