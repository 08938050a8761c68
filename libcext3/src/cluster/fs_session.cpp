#include "cluster/fs_session.h"

#include <et/com_err.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

namespace cext3::cluster {
namespace {

struct Channel {
  BlockDevice* dev;
};

// libext2fs opens channels by name; the name carries the BlockDevice pointer
// of the session being opened (only ever a pointer this file formatted).
std::string channel_name(BlockDevice* dev) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "cext3-blockdev:%p", static_cast<void*>(dev));
  return buf;
}

errcode_t to_errcode(const Status& s) { return s.ok() ? 0 : (s.errno_value() ? s.errno_value() : EIO); }

// Byte-granular access on a sector-granular device.
errcode_t dev_read(BlockDevice& dev, uint64_t off, size_t len, void* out) {
  const uint32_t ss = dev.sector_size();
  if (off % ss == 0 && len % ss == 0) return to_errcode(dev.read(off, out, len));
  uint64_t a = off / ss * ss;
  uint64_t e = (off + len + ss - 1) / ss * ss;
  std::vector<uint8_t> tmp(e - a);
  errcode_t err = to_errcode(dev.read(a, tmp.data(), tmp.size()));
  if (err) return err;
  std::memcpy(out, tmp.data() + (off - a), len);
  return 0;
}

errcode_t dev_write(BlockDevice& dev, uint64_t off, size_t len, const void* in) {
  const uint32_t ss = dev.sector_size();
  if (off % ss == 0 && len % ss == 0) return to_errcode(dev.write(off, in, len));
  uint64_t a = off / ss * ss;
  uint64_t e = (off + len + ss - 1) / ss * ss;
  std::vector<uint8_t> tmp(e - a);
  errcode_t err = to_errcode(dev.read(a, tmp.data(), tmp.size()));
  if (err) return err;
  std::memcpy(tmp.data() + (off - a), in, len);
  return to_errcode(dev.write(a, tmp.data(), tmp.size()));
}

Channel* chan(io_channel c) { return static_cast<Channel*>(c->private_data); }

size_t byte_count(io_channel c, int count) {
  return count < 0 ? static_cast<size_t>(-count) : static_cast<size_t>(count) * c->block_size;
}

errcode_t bd_open(const char* name, int flags, io_channel* out);

errcode_t bd_close(io_channel c) {
  if (--c->refcount > 0) return 0;
  delete chan(c);
  ext2fs_free_mem(&c->name);
  ext2fs_free_mem(&c);
  return 0;
}

errcode_t bd_set_blksize(io_channel c, int blksize) {
  c->block_size = blksize;
  return 0;
}

errcode_t bd_read64(io_channel c, unsigned long long block, int count, void* data) {
  return dev_read(*chan(c)->dev, block * c->block_size, byte_count(c, count), data);
}
errcode_t bd_write64(io_channel c, unsigned long long block, int count, const void* data) {
  return dev_write(*chan(c)->dev, block * c->block_size, byte_count(c, count), data);
}
errcode_t bd_read(io_channel c, unsigned long block, int count, void* data) {
  return bd_read64(c, block, count, data);
}
errcode_t bd_write(io_channel c, unsigned long block, int count, const void* data) {
  return bd_write64(c, block, count, data);
}
errcode_t bd_write_byte(io_channel c, unsigned long offset, int count, const void* data) {
  return dev_write(*chan(c)->dev, offset, static_cast<size_t>(count), data);
}
errcode_t bd_flush(io_channel c) { return to_errcode(chan(c)->dev->flush()); }
errcode_t bd_set_option(io_channel, const char*, const char*) { return EXT2_ET_INVALID_ARGUMENT; }

struct_io_manager make_manager() {
  struct_io_manager m{};
  m.magic = EXT2_ET_MAGIC_IO_MANAGER;
  m.name = "cext3 BlockDevice I/O manager";
  m.open = bd_open;
  m.close = bd_close;
  m.set_blksize = bd_set_blksize;
  m.read_blk = bd_read;
  m.write_blk = bd_write;
  m.flush = bd_flush;
  m.write_byte = bd_write_byte;
  m.set_option = bd_set_option;
  m.read_blk64 = bd_read64;
  m.write_blk64 = bd_write64;
  return m;
}

struct_io_manager g_manager = make_manager();

// Sessions being opened right now, by channel name (libext2fs gives open()
// only the name).
std::mutex g_mu;
BlockDevice* g_opening = nullptr;

errcode_t bd_open(const char* name, int /*flags*/, io_channel* out) {
  BlockDevice* dev = g_opening;
  if (!dev || channel_name(dev) != name) return EXT2_ET_BAD_DEVICE_NAME;
  io_channel c = nullptr;
  errcode_t err = ext2fs_get_memzero(sizeof(struct struct_io_channel), &c);
  if (err) return err;
  c->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  c->manager = &g_manager;
  err = ext2fs_get_mem(std::strlen(name) + 1, &c->name);
  if (err) {
    ext2fs_free_mem(&c);
    return err;
  }
  std::strcpy(c->name, name);
  c->block_size = 1024;
  c->refcount = 1;
  c->private_data = new Channel{dev};
  *out = c;
  return 0;
}

}  // namespace

Status ext2_status(errcode_t err, const std::string& what) {
  return Status::IoError(what + ": " + error_message(err), EIO);
}

FsSession::~FsSession() {
  if (fs_) ext2fs_free(fs_);
}

FsSession::FsSession(FsSession&& o) noexcept : fs_(std::exchange(o.fs_, nullptr)) {}

FsSession& FsSession::operator=(FsSession&& o) noexcept {
  if (this != &o) {
    if (fs_) ext2fs_free(fs_);
    fs_ = std::exchange(o.fs_, nullptr);
  }
  return *this;
}

Result<FsSession> FsSession::open(BlockDevice& dev, bool writable) {
  initialize_ext2_error_table();
  std::string name = channel_name(&dev);
  ext2_filsys fs = nullptr;
  errcode_t err;
  {
    std::lock_guard<std::mutex> g(g_mu);
    g_opening = &dev;
    int flags = EXT2_FLAG_64BITS | EXT2_FLAG_SKIP_MMP | (writable ? EXT2_FLAG_RW : 0);
    err = ext2fs_open2(name.c_str(), nullptr, flags, 0, 0, &g_manager, &fs);
    g_opening = nullptr;
  }
  if (err == EXT2_ET_BAD_MAGIC || err == EXT2_ET_SB_CSUM_INVALID || err == EXT2_ET_CORRUPT_SUPERBLOCK)
    return Status::NotSupported(dev.name() + " is not an ext2/ext3 filesystem (" + error_message(err) +
                                "); give the device that holds the ext3 filesystem");
  if (err) return ext2_status(err, "opening the filesystem on " + dev.name());
  FsSession s;
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
    ext2fs_free(fs_);
    fs_ = nullptr;
    return ext2_status(err, "writing the filesystem metadata");
  }
  fs_ = nullptr;
  return Status::OK();
}

}  // namespace cext3::cluster
