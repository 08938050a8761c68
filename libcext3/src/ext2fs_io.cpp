#include "cext3/ext2fs_io.h"

#include <et/com_err.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "cext3/file_device.h"
#include "cext3/nbd_device.h"

namespace cext3 {
namespace {

constexpr const char* kRegistryPrefix = "cext3dev:";
// zeroout writes at most this much per device call.
constexpr size_t kZeroChunk = 1u << 20;

thread_local std::string t_last_error;

// One BlockDevice as the bridge sees it. Channels hold a shared_ptr, so the
// slot outlives a binding that is destroyed too early; `device` then becomes
// null and I/O fails instead of touching freed memory.
struct DeviceSlot {
  BlockDevice* device = nullptr;
  std::unique_ptr<BlockDevice> owned;  // set when the bridge opened it from a spec
  // Shared while a call uses `device`; exclusive to detach it.
  std::shared_mutex attach_mu;
  // Held by every write: a read-modify-write of a sector must not interleave
  // with another write to that sector.
  std::mutex write_mu;
};

std::mutex g_registry_mu;
std::map<uint64_t, std::shared_ptr<DeviceSlot>> g_registry;
std::atomic<uint64_t> g_next_id{1};

// What io_channel::private_data points to.
struct ChannelState {
  std::shared_ptr<DeviceSlot> slot;
  std::string name;
  bool writable = false;
  uint64_t byte_offset = 0;  // the "offset=" option: where the filesystem starts
  std::mutex stats_mu;
  struct_io_stats stats{};
};

ChannelState* state_of(io_channel ch) { return static_cast<ChannelState*>(ch->private_data); }

errcode_t fail(const Status& s) {
  t_last_error = s.message();
  return s.errno_value() ? s.errno_value() : EIO;
}

errcode_t fail_code(errcode_t code, const std::string& msg) {
  t_last_error = msg;
  return code;
}

// Runs fn(device) with the slot attached, or fails with ENODEV.
template <typename Fn>
errcode_t with_device(ChannelState* st, Fn fn) {
  std::shared_lock<std::shared_mutex> g(st->slot->attach_mu);
  if (st->slot->device == nullptr) {
    return fail_code(ENODEV, st->name + ": the BlockDevice behind this libext2fs channel was unbound; "
                                        "close the filesystem before destroying its Ext2fsDeviceBinding");
  }
  return fn(*st->slot->device);
}

// Splits [off, off+len) into runs of whole sectors, handed to whole(off,
// pos, n), and partial sectors at the ends, handed to partial(sector_off,
// in_sector, pos, n); pos is the offset into the caller's buffer.
template <class Whole, class Partial>
Status for_each_sector_run(uint32_t ss, uint64_t off, size_t len, Whole whole, Partial partial) {
  size_t pos = 0;
  while (pos < len) {
    const uint64_t in_sector = off % ss;
    const size_t left = len - pos;
    const size_t n = in_sector == 0 && left >= ss ? left / ss * ss : std::min<size_t>(left, ss - in_sector);
    if (in_sector == 0 && n % ss == 0) {
      CEXT3_RETURN_IF_ERROR(whole(off, pos, n));
    } else {
      CEXT3_RETURN_IF_ERROR(partial(off - in_sector, static_cast<size_t>(in_sector), pos, n));
    }
    off += n;
    pos += n;
  }
  return Status::OK();
}

// Reads [off, off+len) of the device into buf; both may be unaligned. Whole
// sectors in the middle go straight into buf, partial sectors at the ends
// through a one-sector bounce buffer.
Status read_unaligned(BlockDevice& dev, uint64_t off, uint8_t* buf, size_t len) {
  std::vector<uint8_t> sector(dev.sector_size());
  return for_each_sector_run(
      dev.sector_size(), off, len, [&](uint64_t o, size_t pos, size_t n) { return dev.read(o, buf + pos, n); },
      [&](uint64_t so, size_t in, size_t pos, size_t n) {
        CEXT3_RETURN_IF_ERROR(dev.read(so, sector.data(), sector.size()));
        std::memcpy(buf + pos, sector.data() + in, n);
        return Status::OK();
      });
}

// Writes buf to [off, off+len) of the device. Partial sectors are read,
// patched and written back. The caller holds the slot's write_mu.
Status write_unaligned(BlockDevice& dev, uint64_t off, const uint8_t* buf, size_t len) {
  std::vector<uint8_t> sector(dev.sector_size());
  return for_each_sector_run(
      dev.sector_size(), off, len, [&](uint64_t o, size_t pos, size_t n) { return dev.write(o, buf + pos, n); },
      [&](uint64_t so, size_t in, size_t pos, size_t n) {
        CEXT3_RETURN_IF_ERROR(dev.read(so, sector.data(), sector.size()));
        std::memcpy(sector.data() + in, buf + pos, n);
        return dev.write(so, sector.data(), sector.size());
      });
}

// libext2fs's (block, count) convention: count < 0 means -count bytes.
bool request_bytes(io_channel ch, unsigned long long block, int count, uint64_t* off, size_t* len) {
  const uint64_t bs = static_cast<uint64_t>(ch->block_size);
  *len = count < 0 ? static_cast<size_t>(-static_cast<int64_t>(count)) : static_cast<size_t>(count) * bs;
  if (bs != 0 && block > UINT64_MAX / bs) return false;
  *off = block * bs;
  return true;
}

errcode_t read_bytes(io_channel ch, unsigned long long block, int count, void* data) {
  ChannelState* st = state_of(ch);
  uint64_t rel = 0;
  size_t len = 0;
  if (!request_bytes(ch, block, count, &rel, &len))
    return fail_code(EXT2_ET_BAD_BLOCK_NUM, st->name + ": block " + std::to_string(block) + " is out of range");
  errcode_t rc = with_device(st, [&](BlockDevice& dev) -> errcode_t {
    const uint64_t off = st->byte_offset + rel;
    // Past the end: read what exists, zero the rest, say "short read" (what
    // libext2fs's own unix_io does, and what e2fsck expects).
    const uint64_t avail = off >= dev.size() ? 0 : std::min<uint64_t>(len, dev.size() - off);
    Status s = avail ? read_unaligned(dev, off, static_cast<uint8_t*>(data), avail) : Status::OK();
    if (!s.ok()) return fail(s);
    {
      std::lock_guard<std::mutex> g(st->stats_mu);
      st->stats.bytes_read += avail;
    }
    if (avail < len) {
      std::memset(static_cast<uint8_t*>(data) + avail, 0, len - avail);
      return fail_code(EXT2_ET_SHORT_READ, st->name + ": read of " + std::to_string(len) + " bytes at offset " +
                                               std::to_string(off) + " reaches past the end of the device (" +
                                               std::to_string(dev.size()) + " bytes)");
    }
    return 0;
  });
  if (rc != 0 && ch->read_error)
    return ch->read_error(ch, static_cast<unsigned long>(block), count, data, len, 0, rc);
  return rc;
}

errcode_t write_at(io_channel ch, uint64_t rel, size_t len, const void* data, unsigned long long block, int count) {
  ChannelState* st = state_of(ch);
  errcode_t rc = 0;
  if (!st->writable) {
    rc = fail_code(EROFS, st->name + ": write refused: the filesystem was opened read-only; open it with EXT2_FLAG_RW");
  } else {
    rc = with_device(st, [&](BlockDevice& dev) -> errcode_t {
      const uint64_t off = st->byte_offset + rel;
      // Refuse before writing: nothing reaches the device if any of it is
      // past the end.
      if (off > dev.size() || len > dev.size() - off) {
        return fail_code(EXT2_ET_SHORT_WRITE, st->name + ": write of " + std::to_string(len) + " bytes at offset " +
                                                  std::to_string(off) + " reaches past the end of the device (" +
                                                  std::to_string(dev.size()) + " bytes)");
      }
      std::lock_guard<std::mutex> g(st->slot->write_mu);
      Status s = write_unaligned(dev, off, static_cast<const uint8_t*>(data), len);
      if (!s.ok()) return fail(s);
      std::lock_guard<std::mutex> sg(st->stats_mu);
      st->stats.bytes_written += len;
      return 0;
    });
  }
  if (rc != 0 && ch->write_error)
    return ch->write_error(ch, static_cast<unsigned long>(block), count, data, len, 0, rc);
  return rc;
}

errcode_t write_bytes(io_channel ch, unsigned long long block, int count, const void* data) {
  uint64_t rel = 0;
  size_t len = 0;
  if (!request_bytes(ch, block, count, &rel, &len))
    return fail_code(EXT2_ET_BAD_BLOCK_NUM, state_of(ch)->name + ": block " + std::to_string(block) + " is out of range");
  return write_at(ch, rel, len, data, block, count);
}

// ------------------------------------------------------------ io_manager ops

errcode_t bridge_open(const char* name, int flags, io_channel* out);

errcode_t bridge_close(io_channel ch) {
  if (ch == nullptr || ch->magic != EXT2_ET_MAGIC_IO_CHANNEL) return EXT2_ET_MAGIC_IO_CHANNEL;
  if (--ch->refcount > 0) return 0;
  delete state_of(ch);
  delete ch;
  return 0;
}

errcode_t bridge_set_blksize(io_channel ch, int blksize) {
  if (blksize <= 0) return fail_code(EXT2_ET_INVALID_ARGUMENT, "block size " + std::to_string(blksize) + " is invalid");
  ch->block_size = blksize;
  return 0;
}

errcode_t bridge_read_blk64(io_channel ch, unsigned long long block, int count, void* data) {
  return read_bytes(ch, block, count, data);
}

errcode_t bridge_read_blk(io_channel ch, unsigned long block, int count, void* data) {
  return read_bytes(ch, block, count, data);
}

errcode_t bridge_write_blk64(io_channel ch, unsigned long long block, int count, const void* data) {
  return write_bytes(ch, block, count, data);
}

errcode_t bridge_write_blk(io_channel ch, unsigned long block, int count, const void* data) {
  return write_bytes(ch, block, count, data);
}

// libext2fs writes the primary superblock this way: only the bytes that
// changed, at their byte offset.
errcode_t bridge_write_byte(io_channel ch, unsigned long offset, int count, const void* data) {
  if (count < 0) return fail_code(EXT2_ET_INVALID_ARGUMENT, "negative write_byte count");
  return write_at(ch, offset, static_cast<size_t>(count), data, offset, count);
}

errcode_t bridge_flush(io_channel ch) {
  ChannelState* st = state_of(ch);
  return with_device(st, [&](BlockDevice& dev) -> errcode_t {
    Status s = dev.flush();
    return s.ok() ? 0 : fail(s);
  });
}

errcode_t bridge_set_option(io_channel ch, const char* option, const char* arg) {
  ChannelState* st = state_of(ch);
  if (std::strcmp(option, "offset") == 0) {
    if (arg == nullptr) return fail_code(EXT2_ET_INVALID_ARGUMENT, "io option offset needs a value (offset=BYTES)");
    uint64_t v = 0;
    const char* end = arg + std::strlen(arg);
    auto [p, ec] = std::from_chars(arg, end, v);
    if (ec != std::errc() || p != end)
      return fail_code(EXT2_ET_INVALID_ARGUMENT, std::string("io option offset=") + arg + " is not a byte count");
    st->byte_offset = v;
    return 0;
  }
  return fail_code(EXT2_ET_INVALID_ARGUMENT,
                   std::string("io option ") + option + " is not known to the cext3 bridge (it knows offset=BYTES)");
}

errcode_t bridge_get_stats(io_channel ch, io_stats* stats) {
  // The pointer stays valid while the channel is open, as with unix_io.
  if (stats) *stats = &state_of(ch)->stats;
  return 0;
}

// BlockDevice has no discard: say so, and libext2fs callers fall back
// (mke2fs skips discard, ext2fs_zero_blocks2 writes zeros).
errcode_t bridge_discard(io_channel, unsigned long long, unsigned long long) { return EXT2_ET_UNIMPLEMENTED; }

// A hint only; there is no cache to warm.
errcode_t bridge_cache_readahead(io_channel, unsigned long long, unsigned long long) { return 0; }

errcode_t bridge_zeroout(io_channel ch, unsigned long long block, unsigned long long count) {
  const uint64_t bs = static_cast<uint64_t>(ch->block_size);
  if (count == 0) return 0;
  if (block > UINT64_MAX / bs || count > UINT64_MAX / bs)
    return fail_code(EXT2_ET_BAD_BLOCK_NUM, state_of(ch)->name + ": zeroout range is out of range");
  const std::vector<uint8_t> zeros(std::min<uint64_t>(kZeroChunk, count * bs), 0);
  uint64_t rel = block * bs;
  uint64_t left = count * bs;
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, zeros.size()));
    errcode_t rc = write_at(ch, rel, n, zeros.data(), rel / bs, -static_cast<int>(n));
    if (rc) return rc;
    rel += n;
    left -= n;
  }
  return 0;
}

struct_io_manager make_manager() {
  struct_io_manager m{};
  m.magic = EXT2_ET_MAGIC_IO_MANAGER;
  m.name = "cext3 BlockDevice I/O manager";
  m.open = bridge_open;
  m.close = bridge_close;
  m.set_blksize = bridge_set_blksize;
  m.read_blk = bridge_read_blk;
  m.write_blk = bridge_write_blk;
  m.flush = bridge_flush;
  m.write_byte = bridge_write_byte;
  m.set_option = bridge_set_option;
  m.get_stats = bridge_get_stats;
  m.read_blk64 = bridge_read_blk64;
  m.write_blk64 = bridge_write_blk64;
  m.discard = bridge_discard;
  m.cache_readahead = bridge_cache_readahead;
  m.zeroout = bridge_zeroout;
  return m;
}

struct_io_manager g_manager = make_manager();

// "cext3dev:N" -> the registered slot, or nullptr.
std::shared_ptr<DeviceSlot> lookup_registered(const std::string& name) {
  const std::string digits = name.substr(std::strlen(kRegistryPrefix));
  uint64_t id = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  if (ec != std::errc() || p != digits.data() + digits.size()) return nullptr;
  std::lock_guard<std::mutex> g(g_registry_mu);
  auto it = g_registry.find(id);
  return it == g_registry.end() ? nullptr : it->second;
}

errcode_t bridge_open(const char* name, int flags, io_channel* out) {
  if (name == nullptr || *name == '\0') return fail_code(EXT2_ET_BAD_DEVICE_NAME, "no device name given");
  const std::string spec = name;
  const bool writable = (flags & IO_FLAG_RW) != 0;

  std::shared_ptr<DeviceSlot> slot;
  if (spec.rfind(kRegistryPrefix, 0) == 0) {
    slot = lookup_registered(spec);
    if (!slot) {
      return fail_code(EXT2_ET_BAD_DEVICE_NAME, spec + ": no BlockDevice is registered under this name; "
                                                       "create an Ext2fsDeviceBinding and open binding.name()");
    }
  } else {
    OpenOptions opts;
    opts.read_only = !writable;
    opts.exclusive = (flags & IO_FLAG_EXCLUSIVE) != 0;
    opts.direct = (flags & IO_FLAG_DIRECT_IO) != 0;
    auto dev = is_nbd_uri(spec) ? open_nbd_device(spec, opts) : open_file_device(spec, opts);
    if (!dev.ok()) return fail(dev.status());
    slot = std::make_shared<DeviceSlot>();
    slot->owned = std::move(dev).value();
    slot->device = slot->owned.get();
  }

  {
    std::shared_lock<std::shared_mutex> g(slot->attach_mu);
    if (slot->device == nullptr) return fail_code(ENODEV, spec + ": the BlockDevice was unbound");
    if (writable && slot->device->read_only()) {
      return fail_code(EROFS, spec + " (" + slot->device->name() +
                                  "): cannot open read-write: the device is read-only; open the filesystem "
                                  "without EXT2_FLAG_RW or use a writable device");
    }
  }

  auto st = std::make_unique<ChannelState>();
  st->slot = std::move(slot);
  st->name = spec;
  st->writable = writable;
  st->stats.num_fields = 2;

  auto ch = std::make_unique<struct_io_channel>();
  *ch = {};
  ch->magic = EXT2_ET_MAGIC_IO_CHANNEL;
  ch->manager = &g_manager;
  ch->name = st->name.data();  // owned by the state, freed with it in close
  ch->block_size = 1024;       // libext2fs's starting assumption
  ch->refcount = 1;
  // Every path is safe for concurrent callers: reads need no lock, writes
  // serialize on the slot's write_mu.
  ch->flags = (flags & IO_FLAG_THREADS) ? CHANNEL_FLAGS_THREADS : 0;
  ch->private_data = st.release();
  *out = ch.release();
  return 0;
}

}  // namespace

io_manager cext3_io_manager() { return &g_manager; }

Ext2fsDeviceBinding::Ext2fsDeviceBinding(BlockDevice& device)
    : device_(device), id_(g_next_id.fetch_add(1)), name_(kRegistryPrefix + std::to_string(id_)) {
  auto slot = std::make_shared<DeviceSlot>();
  slot->device = &device;
  std::lock_guard<std::mutex> g(g_registry_mu);
  g_registry.emplace(id_, std::move(slot));
}

Ext2fsDeviceBinding::~Ext2fsDeviceBinding() {
  std::shared_ptr<DeviceSlot> slot;
  {
    std::lock_guard<std::mutex> g(g_registry_mu);
    auto it = g_registry.find(id_);
    if (it == g_registry.end()) return;
    slot = std::move(it->second);
    g_registry.erase(it);
  }
  // Waits for calls in progress; later calls on leftover channels fail.
  std::unique_lock<std::shared_mutex> g(slot->attach_mu);
  slot->device = nullptr;
}

Result<ext2_filsys> Ext2fsDeviceBinding::open_filesystem(int flags, const char* io_options, blk64_t superblock,
                                                         unsigned block_size) const {
  t_last_error.clear();
  ext2_filsys fs = nullptr;
  errcode_t err = ext2fs_open2(name(), io_options, flags, static_cast<int>(superblock), block_size,
                               cext3_io_manager(), &fs);
  if (err != 0) return status_from_errcode(err, "cannot open an ext2/ext3 filesystem on " + device_.name());
  return fs;
}

std::string ext2fs_io_last_error() { return t_last_error; }

Status status_from_errcode(errcode_t err, const std::string& context) {
  // The bridge's own message says more than the code: use it when the code
  // came from the bridge on this thread.
  const std::string bridge = t_last_error;
  if (err > 0 && err < 4096) {
    // An errno value (EIO, EROFS, ENOTCONN...): keep its category.
    return Status::FromErrno(static_cast<int>(err), bridge.empty() ? context : context + ": " + bridge);
  }
  std::string detail = error_message(err);
  if (!bridge.empty()) detail += " (" + bridge + ")";
  const std::string msg = context + ": " + detail;
  switch (err) {
    case EXT2_ET_BAD_MAGIC:
    case EXT2_ET_SB_CSUM_INVALID:
    case EXT2_ET_CORRUPT_SUPERBLOCK:
    case EXT2_ET_GDESC_BAD_BLOCK_MAP:
    case EXT2_ET_GDESC_BAD_INODE_MAP:
    case EXT2_ET_GDESC_BAD_INODE_TABLE:
    case EXT2_ET_BAD_DESC_SIZE:
      return Status::Corruption(msg + "; run e2fsck on it, or check that this is the right device");
    case EXT2_ET_UNSUPP_FEATURE:
    case EXT2_ET_RO_UNSUPP_FEATURE:
    case EXT2_ET_REV_TOO_HIGH:
      return Status::NotSupported(msg);
    case EXT2_ET_SHORT_READ:
    case EXT2_ET_SHORT_WRITE:
      return Status::IoError(msg + "; the device is smaller than the filesystem says");
    case EXT2_ET_BAD_DEVICE_NAME:
      return Status::InvalidArgument(msg);
    case EXT2_ET_NO_MEMORY:
      return Status::NoSpace(msg);
    default:
      return Status::IoError(msg);
  }
}

}  // namespace cext3
