// open_file_device() and the FileDevice it returns: geometry, O_DIRECT and
// its fallback, argument checks. The I/O itself runs in file_device_aio.cpp.
#include "cext3/file_device.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <utility>

#include "file_device_aio.h"

namespace cext3 {

namespace {

using file_device_detail::AioQueuePool;
using file_device_detail::AioTarget;

// Largest queue depth we accept; far beyond what one device benefits from.
constexpr unsigned kMaxQueueDepth = 1024;

// Threading: each submit()/read()/write() borrows a whole AIO context from a
// small pool for the duration of its batch, so concurrent callers never share
// a context and never have to hand each other's completions around (which a
// single shared context would require). Contexts are created on demand up to
// this many per device; further callers wait for a context to come back.
// jcoord's few I/O threads each get their own context and proceed in
// parallel; the bench's single caller uses one context at full queue depth.
constexpr unsigned kMaxContextsPerDevice = 8;

bool is_power_of_two(uint64_t v) { return v && (v & (v - 1)) == 0; }

// One line for a failed open(2)/stat(2): what, why (strerror, last), and
// what to do (in the context).
Status open_error(int err, const std::string& path, const OpenOptions& opts) {
  std::string ctx = "cannot open " + path;
  switch (err) {
    case ENOENT:
      ctx += " (check the path; an image file must exist and be sized already)";
      break;
    case EACCES:
    case EPERM:
      ctx += std::string(" for ") + (opts.read_only ? "reading" : "reading and writing") +
             " (run as root or fix its permissions" + (opts.read_only ? "" : ", or open it read-only") + ")";
      break;
    case EROFS:
      ctx += " for writing (it lives on a read-only filesystem; open it read-only)";
      break;
    case EISDIR:
      ctx += " (it is a directory; give an image file or a block device)";
      break;
    case ENOTDIR:
      ctx += " (a component of the path is not a directory; check the path)";
      break;
    case ENXIO:
    case ENODEV:
      ctx += " (the device node has no device behind it; check that the disk is attached)";
      break;
    default:
      break;
  }
  return Status::FromErrno(err, ctx);
}

const char* file_type_name(mode_t m) {
  if (S_ISCHR(m)) return "a character device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

class FileDeviceImpl final : public FileDevice {
 public:
  FileDeviceImpl(std::string path, int fd, bool block_device, bool read_only, bool direct,
                 std::string buffered_reason, uint64_t size, uint32_t sector_size,
                 uint32_t mem_align, unsigned depth)
      : path_(std::move(path)),
        fd_(fd),
        block_device_(block_device),
        read_only_(read_only),
        direct_(direct),
        buffered_reason_(std::move(buffered_reason)),
        size_(size),
        sector_size_(sector_size),
        depth_(depth),
        pool_(depth, kMaxContextsPerDevice) {
    target_.fd = fd_;
    target_.sector_size = sector_size_;
    target_.mem_align = direct_ ? mem_align : 1;
    target_.name = path_;
  }
  ~FileDeviceImpl() override { ::close(fd_); }

  Status init() { return pool_.init(path_); }

  uint64_t size() const override { return size_; }
  uint32_t sector_size() const override { return sector_size_; }
  bool read_only() const override { return read_only_; }
  std::string name() const override { return path_; }
  bool direct_io() const override { return direct_; }
  std::string buffered_reason() const override { return buffered_reason_; }
  bool is_block_device() const override { return block_device_; }
  unsigned queue_depth() const override { return depth_; }
  // Durable writes go to the kernel with RWF_DSYNC (file_device_aio.cpp): a
  // FUA write where the disk has FUA, else the kernel's own write + cache
  // flush, either way without a second system call round trip.
  bool native_durable_writes() const override { return !read_only_; }

  Status read(uint64_t offset, void* buf, size_t len) override {
    IoRequest r{IoRequest::Op::kRead, offset, buf, len};
    return submit(std::span<IoRequest>(&r, 1));
  }

  Status write(uint64_t offset, const void* buf, size_t len) override {
    IoRequest r{IoRequest::Op::kWrite, offset, const_cast<void*>(buf), len};
    return submit(std::span<IoRequest>(&r, 1));
  }

  // The whole batch is checked before anything is transferred: one bad
  // request refuses the batch and leaves the device untouched.
  Status submit(std::span<IoRequest> batch) override {
    bool any = false;
    for (size_t i = 0; i < batch.size(); ++i) {
      const IoRequest& r = batch[i];
      if (r.op == IoRequest::Op::kWrite && read_only_) {
        return Status::NotSupported(path_ + ": device is open read-only, so writes are refused; "
                                    "open it read-write to change it");
      }
      Status s = check_range(r.offset, r.len);
      if (!s.ok()) {
        return batch.size() == 1 ? s
                                 : s.Annotate("request " + std::to_string(i + 1) + " of " +
                                              std::to_string(batch.size()) + " (batch refused)");
      }
      any = any || r.len > 0;
    }
    if (!any) return Status::OK();
    if (batch.size() == 1 && batch[0].op == IoRequest::Op::kWrite && batch[0].durable) {
      if (auto done = write_dsync(batch[0])) return *done;
    }
    return pool_.run(target_, batch);
  }

  // A lone durable write (what ends a journal commit) is written with a
  // synchronous pwritev2(RWF_DSYNC): the kernel then completes the write and
  // its cache flush in the calling thread, as for an O_DSYNC pwrite, rather
  // than finishing the flush in a kernel worker and waking the caller
  // through the AIO context (an extra scheduling hop that costs most on a
  // busy machine). Unaligned memory and kernels without the flag take the
  // AIO path. Returns nullopt when this path cannot be used.
  std::optional<Status> write_dsync(const IoRequest& r) {
    if (no_pwritev2_.load(std::memory_order_relaxed)) return std::nullopt;
    if (reinterpret_cast<uintptr_t>(r.buf) % target_.mem_align != 0) return std::nullopt;
    size_t done = 0;
    unsigned stalls = 0;
    while (done < r.len) {
      struct iovec iov = {static_cast<uint8_t*>(r.buf) + done, r.len - done};
      const ssize_t n = ::pwritev2(fd_, &iov, 1, static_cast<off_t>(r.offset + done), RWF_DSYNC);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && done == 0 && (errno == ENOSYS || errno == EOPNOTSUPP || errno == EINVAL)) {
        // No pwritev2 or no RWF_DSYNC here (or a refusal the AIO path will
        // report in its own words): never try again on this device.
        no_pwritev2_.store(true, std::memory_order_relaxed);
        return std::nullopt;
      }
      const std::string what = path_ + ": write of " + std::to_string(r.len - done) + " bytes at offset " +
                               std::to_string(r.offset + done);
      if (n < 0) return Status::FromErrno(errno, what);
      if (n == 0)
        return Status::IoError(what + " hit the end of the file; did it shrink while open? Check the image and "
                                      "reopen it");
      // Resume only at a sector boundary, as the AIO path does.
      const size_t progress = static_cast<size_t>(n) / sector_size_ * sector_size_;
      if (progress == 0 && ++stalls > 3)
        return Status::IoError(what + " keeps transferring less than one sector; the device is misbehaving, "
                                      "check the kernel log");
      if (progress) stalls = 0;
      done += progress;
    }
    return Status::OK();
  }

  Status flush() override {
    if (read_only_) return Status::OK();
    // fdatasync also with O_DIRECT: it commits the file's block allocation
    // (sparse images) and sends the disk a cache flush. Buffered fallback
    // relies on it to write the page cache out.
    if (::fdatasync(fd_) != 0) {
      return Status::FromErrno(errno, path_ + ": flushing writes to stable storage (fdatasync) failed; "
                                          "data since the last flush may be lost, check the device");
    }
    return Status::OK();
  }

 private:
  const std::string path_;
  const int fd_;
  const bool block_device_;
  const bool read_only_;
  const bool direct_;
  const std::string buffered_reason_;
  const uint64_t size_;
  const uint32_t sector_size_;
  const unsigned depth_;
  AioTarget target_;
  AioQueuePool pool_;
  std::atomic<bool> no_pwritev2_{false};
};

struct DirectAlignment {
  uint32_t offset_align = 0;  // 0: unknown
  uint32_t mem_align = 0;
  bool unsupported = false;   // the filesystem says this file cannot do direct I/O
  std::string source;
};

// How a regular file's filesystem wants O_DIRECT aligned.
//
// Choice: ask the kernel first (statx STATX_DIOALIGN, Linux >= 6.1, answered
// by ext4, xfs, f2fs, btrfs and block devices) because it is authoritative
// and costs nothing. Where it does not answer (older kernels, other
// filesystems), try it: a 512-byte O_DIRECT read at offset 0 into 4096-aligned
// memory, and if that is refused with EINVAL, a 4096-byte one. Reads are
// harmless; an empty file cannot be probed and stays at 512.
DirectAlignment detect_direct_alignment(int fd, uint64_t size) {
  DirectAlignment a;
#ifdef STATX_DIOALIGN
  struct statx sx;
  std::memset(&sx, 0, sizeof sx);
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
    if (sx.stx_dio_offset_align == 0) {
      a.unsupported = true;
    } else {
      a.offset_align = sx.stx_dio_offset_align;
      a.mem_align = sx.stx_dio_mem_align;
    }
    a.source = "statx";
    return a;
  }
#endif
  a.source = "probe";
  if (size < 512) return a;
  AlignedBuffer probe(4096);
  if (::pread(fd, probe.data(), 512, 0) >= 0) {
    a.offset_align = a.mem_align = 512;
  } else if (errno == EINVAL && size >= 4096 && ::pread(fd, probe.data(), 4096, 0) >= 0) {
    a.offset_align = a.mem_align = 4096;
  }
  return a;
}

}  // namespace

Result<std::unique_ptr<BlockDevice>> open_file_device(const std::string& path, const OpenOptions& opts) {
  if (opts.queue_depth == 0 || opts.queue_depth > kMaxQueueDepth) {
    return Status::InvalidArgument("queue depth " + std::to_string(opts.queue_depth) + " for " + path +
                                   " is out of range; use 1 to " + std::to_string(kMaxQueueDepth));
  }

  // stat first: opening a FIFO would block, and a directory opens fine read-only.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return open_error(errno, path, opts);
  if (S_ISDIR(st.st_mode)) return open_error(EISDIR, path, opts);
  if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
    return Status::InvalidArgument(path + " is " + file_type_name(st.st_mode) +
                                   ", not an image file or a block device; give one of those");
  }
  const bool block_device = S_ISBLK(st.st_mode);

  int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  // O_EXCL without O_CREAT means "exclusive open" only for block devices.
  if (block_device && opts.exclusive) flags |= O_EXCL;

  bool direct = opts.direct;
  std::string buffered_reason = direct ? "" : "O_DIRECT was not requested";
  int fd = ::open(path.c_str(), flags | (direct ? O_DIRECT : 0));
  if (fd < 0 && direct && errno == EINVAL) {
    // The filesystem does not do O_DIRECT (ramfs, some FUSE and network
    // filesystems). Go through the page cache; flush() stays fdatasync, so
    // durability is unchanged, but other nodes may see stale data: fine for
    // a private image, not for a disk shared between nodes.
    fd = ::open(path.c_str(), flags);
    if (fd >= 0) {
      direct = false;
      buffered_reason = "the filesystem holding " + path +
                        " refuses O_DIRECT (open returned EINVAL), so I/O goes through the page cache";
    }
  }
  if (fd < 0) {
    const int err = errno;
    if (err == EBUSY && (flags & O_EXCL)) {
      return Status::Busy(path + " is mounted or in use; unmount it first (or stop whatever holds it "
                                 "open exclusively)");
    }
    return open_error(err, path, opts);
  }

  // Re-check what we actually opened (the path may have changed under us).
  auto refuse = [fd](Status s) -> Result<std::unique_ptr<BlockDevice>> {
    ::close(fd);
    return s;
  };
  if (::fstat(fd, &st) != 0) return refuse(Status::FromErrno(errno, "cannot stat " + path));
  if (S_ISBLK(st.st_mode) != block_device || (!block_device && !S_ISREG(st.st_mode))) {
    return refuse(Status::Busy(path + " changed type while being opened; try again"));
  }

  uint64_t size = 0;
  uint32_t sector = 512;
  uint32_t mem_align = 512;
  if (block_device) {
    int ssz = 0;
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) {
      return refuse(Status::FromErrno(errno, "cannot read the size of block device " + path + " (BLKGETSIZE64)"));
    }
    if (::ioctl(fd, BLKSSZGET, &ssz) != 0) {
      return refuse(Status::FromErrno(errno, "cannot read the sector size of block device " + path + " (BLKSSZGET)"));
    }
    sector = static_cast<uint32_t>(ssz);
    // The kernel requires O_DIRECT memory aligned to the device's DMA
    // alignment, never more than its logical sector size.
    mem_align = sector;
  } else {
    size = static_cast<uint64_t>(st.st_size);
    if (direct) {
      DirectAlignment a = detect_direct_alignment(fd, size);
      if (a.unsupported) {
        // Opened with O_DIRECT, but the filesystem says direct I/O on this
        // file is not possible: drop the flag rather than fail every request.
        int fl = ::fcntl(fd, F_GETFL);
        if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_DIRECT) != 0) {
          return refuse(Status::FromErrno(errno, path + ": cannot switch to buffered I/O"));
        }
        direct = false;
        buffered_reason = "the filesystem holding " + path +
                          " reports no direct I/O support for it (statx), so I/O goes through the page cache";
      } else {
        sector = std::max<uint32_t>(512, a.offset_align);
        mem_align = std::max<uint32_t>(a.mem_align, 1);
      }
    }
  }
  if (!is_power_of_two(sector) || sector > 65536) {
    return refuse(Status::NotSupported(path + ": sector size " + std::to_string(sector) +
                                       " is not supported (must be a power of two up to 65536)"));
  }
  if (mem_align > AlignedBuffer::kAlignment) {
    return refuse(Status::NotSupported(path + ": O_DIRECT wants memory aligned to " + std::to_string(mem_align) +
                                       " bytes, more than the " + std::to_string(AlignedBuffer::kAlignment) +
                                       " supported; open it without direct I/O"));
  }
  if (size % sector != 0) {
    return refuse(Status::InvalidArgument(
        path + ": size " + std::to_string(size) + " bytes is not a multiple of the " + std::to_string(sector) +
        "-byte sector size; resize it to a whole number of sectors (truncate -s)"));
  }

  auto dev = std::make_unique<FileDeviceImpl>(path, fd, block_device, opts.read_only, direct,
                                              std::move(buffered_reason), size, sector, mem_align,
                                              opts.queue_depth);
  // From here the device owns fd.
  CEXT3_RETURN_IF_ERROR(dev->init());
  return std::unique_ptr<BlockDevice>(std::move(dev));
}

}  // namespace cext3
