#include "cluster/fs_session.h"

#include <et/com_err.h>

#include <utility>

namespace cext3::cluster {

Status ext2_status(errcode_t err, const std::string& what) {
  return Status::IoError(what + ": " + error_message(err), EIO);
}

void FsSession::release() {
  if (fs_) ext2fs_free(fs_);
  fs_ = nullptr;
  binding_.reset();
}

FsSession::~FsSession() { release(); }

FsSession::FsSession(FsSession&& o) noexcept
    : binding_(std::move(o.binding_)), fs_(std::exchange(o.fs_, nullptr)) {}

FsSession& FsSession::operator=(FsSession&& o) noexcept {
  if (this != &o) {
    release();
    binding_ = std::move(o.binding_);
    fs_ = std::exchange(o.fs_, nullptr);
  }
  return *this;
}

Result<FsSession> FsSession::open(BlockDevice& dev, bool writable) {
  initialize_ext2_error_table();
  FsSession s;
  s.binding_ = std::make_unique<Ext2fsDeviceBinding>(dev);
  const int flags = EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP | (writable ? EXT2_FLAG_RW : 0);
  ext2_filsys fs = nullptr;
  errcode_t err = ext2fs_open2(s.binding_->name(), nullptr, flags, 0, 0, cext3_io_manager(), &fs);
  if (err == EXT2_ET_BAD_MAGIC || err == EXT2_ET_SB_CSUM_INVALID || err == EXT2_ET_CORRUPT_SUPERBLOCK)
    return Status::NotSupported(dev.name() + " is not an ext2/ext3 filesystem (" + error_message(err) +
                                "); give the device that holds the ext3 filesystem");
  if (err) return status_from_errcode(err, "opening the filesystem on " + dev.name());
  s.fs_ = fs;
  err = ext2fs_read_bitmaps(fs);
  if (err) return ext2_status(err, "reading the bitmaps of " + dev.name() + " (run e2fsck -f first)");
  return s;
}

Status FsSession::close() {
  if (!fs_) return Status::OK();
  // Never let libext2fs touch the MMP block on close through its own file
  // descriptor: clusterify writes the MMP block through the session like any
  // other block.
  fs_->flags |= EXT2_FLAG_SKIP_MMP;
  errcode_t err = ext2fs_close2(fs_, 0);
  if (err) {
    release();
    return ext2_status(err, "writing the filesystem metadata");
  }
  fs_ = nullptr;
  binding_.reset();
  return Status::OK();
}

}  // namespace cext3::cluster
