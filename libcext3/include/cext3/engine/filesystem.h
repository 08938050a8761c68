// engine::Filesystem: one node's read-write view of a clusterified ext3.
//
// Shaped like FUSE's low-level API: objects are named by inode number, a
// name is always (parent inode, name). Every call is one atomic operation
// in this node's slot journal; fsync/sync return only after the commit is
// durable. Errors are Status values whose errno_value() is what the kernel's
// ext3 would return (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ...).
//
// Coherence with other nodes (docs/ENGINE.md): every metadata block the
// engine reads or changes is covered by a cluster lock taken through the
// LockProvider below, in PR to read and EX to change. Before an EX lock
// leaves this node the engine commits, writes in place and revokes what it
// covers (on_lock_leaving); a cached block is dropped when the lock's value
// block version says another node changed it.
//
// Thread safety: every method may be called from many threads at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/locks/lock_types.h"
#include "cext3/status.h"

namespace cext3::engine {

inline constexpr uint64_t kRootIno = 2;

struct Timespec {
  int64_t sec = 0;
  uint32_t nsec = 0;  // ext3 128-byte inodes keep seconds only; nsec is 0 on disk
  bool operator==(const Timespec&) const = default;
};

// What getattr returns (struct stat, in ext3's terms).
struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;        // type and permission bits (S_IFREG | 0644 ...)
  uint32_t nlink = 0;
  uint32_t uid = 0, gid = 0;
  uint64_t size = 0;
  uint64_t blocks512 = 0;   // i_blocks: 512-byte units, metadata blocks included
  uint32_t rdev = 0;        // device number for S_IFCHR / S_IFBLK
  uint32_t generation = 0;
  Timespec atime, mtime, ctime;
};

struct DirEntry {
  uint64_t ino = 0;
  uint8_t file_type = 0;    // EXT2_FT_* (1 reg, 2 dir, 3 chr, 4 blk, 5 fifo, 6 sock, 7 symlink)
  std::string name;
  uint64_t next_offset = 0; // pass to readdir to continue after this entry
};

// setattr: only the fields that are set change. `size` truncates or extends
// (sparse). ctime is set to now whenever anything changes.
struct SetAttr {
  std::optional<uint32_t> mode;  // permission bits only (07777); the type never changes
  std::optional<uint32_t> uid, gid;
  std::optional<uint64_t> size;
  std::optional<Timespec> atime, mtime;
};

struct FsStats {
  uint32_t block_size = 0;
  uint64_t blocks = 0, free_blocks = 0, avail_blocks = 0;
  uint64_t inodes = 0, free_inodes = 0;
  uint32_t name_max = 255;
};

// Who asks (for permission bits on new objects; access checks are the
// caller's job, as with FUSE's default_permissions).
struct Caller {
  uint32_t uid = 0, gid = 0;
  uint32_t umask = 022;
};

enum RenameFlags : uint32_t {
  kRenameNoReplace = 1u << 0,  // RENAME_NOREPLACE
  kRenameExchange = 1u << 1,   // RENAME_EXCHANGE
};

// The cluster locks the engine takes. jcoord adapts its LockService to
// this; tests and offline tools use a process-local implementation
// (make_local_lock_provider). A resource is a string such as "itb:1234"
// (docs/ENGINE.md, "Lock granularity").
class LockProvider {
 public:
  struct Held {
    uint64_t id = 0;
    locks::LockMode mode = locks::LockMode::kNL;
    locks::Lvb lvb{};
  };
  virtual ~LockProvider() = default;
  virtual Result<Held> lock(const std::string& resource, locks::LockMode mode) = 0;
  // Like lock(), but gives up with Busy after `wait` instead of waiting
  // for another node's (or this node's) users of the lock. Another node
  // that only caches the lock with no user left is called back and gives
  // it up, as for lock(). The engine's open-file locks need this: an
  // unlinker asks `open:<ino>` EX to learn whether any node still holds the
  // inode open (docs/ENGINE.md, "Orphans").
  virtual Result<Held> lock_for(const std::string& resource, locks::LockMode mode,
                                std::chrono::milliseconds wait) = 0;
  // For an EX, `lvb` becomes the resource's value block.
  virtual Status unlock(const std::string& resource, const Held& h) = 0;
};
std::unique_ptr<LockProvider> make_local_lock_provider();

struct MountOptions {
  uint32_t slot = 0;                 // whose groups and journal this node uses
  // Group commit window: how long a handle may wait for others to join its
  // commit (0: commit at once). fsync/sync always wait for durability.
  std::chrono::microseconds commit_delay{0};
  // The commit thread commits the running transaction (its metadata and the
  // file data written since) this often when nothing else commits it first
  // (ext3's commit= mount option; its default is 5 s).
  std::chrono::milliseconds commit_interval{1000};
  LockProvider* locks = nullptr;     // required; must outlive the Filesystem
  bool read_only = false;
  // Every operation is durable when it returns (as if followed by fsync):
  // what jcoord's `exec` needs, since it acknowledges an op only once durable.
  bool sync_ops = false;
  // How often the orphan scan retries freeing this slot's orphans (inodes
  // unlinked while open on some node; docs/ENGINE.md "Orphans").
  std::chrono::milliseconds orphan_scan_interval{3000};
};

class Filesystem {
 public:
  // Open a clusterified ext3 for this node's slot. The slot's journal must
  // be clean (replay it first: daemon::recover_slot); refused otherwise.
  static Result<std::unique_ptr<Filesystem>> mount(BlockDevice& dev, const MountOptions& opts);
  virtual ~Filesystem() = default;

  virtual Result<Attr> lookup(uint64_t parent, std::string_view name) = 0;
  virtual Result<Attr> getattr(uint64_t ino) = 0;
  // Entries after `offset` (0: from the start), "." and ".." included, at
  // most `max_entries`. An empty vector is the end of the directory.
  virtual Result<std::vector<DirEntry>> readdir(uint64_t ino, uint64_t offset, size_t max_entries) = 0;

  virtual Result<Attr> mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c) = 0;
  virtual Result<Attr> create(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c) = 0;
  // mode carries the type: S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO or S_IFSOCK.
  virtual Result<Attr> mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev,
                             const Caller& c) = 0;
  virtual Result<Attr> symlink(uint64_t parent, std::string_view name, std::string_view target,
                               const Caller& c) = 0;
  virtual Result<Attr> link(uint64_t ino, uint64_t new_parent, std::string_view new_name) = 0;
  virtual Status unlink(uint64_t parent, std::string_view name) = 0;
  virtual Status rmdir(uint64_t parent, std::string_view name) = 0;
  virtual Status rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                        std::string_view new_name, uint32_t flags = 0) = 0;
  virtual Result<std::string> readlink(uint64_t ino) = 0;

  // The caller (a FUSE open/create/opendir) holds `ino` open on this node until release(ino).
  // An unlink/rmdir/rename that drops the last name of an inode open on ANY node keeps it as an orphan.
  virtual Status open(uint64_t ino) = 0;
  virtual Status release(uint64_t ino) = 0;   // last local release of an unlinked inode frees it (when no other node has it open)

  // Short reads only at end of file; holes read as zeros.
  virtual Result<size_t> read(uint64_t ino, uint64_t offset, std::span<uint8_t> out) = 0;
  // All or nothing: returns data.size() or an error (ENOSPC, EFBIG, ...).
  virtual Result<size_t> write(uint64_t ino, uint64_t offset, std::span<const uint8_t> data) = 0;
  virtual Result<Attr> setattr(uint64_t ino, const SetAttr& changes) = 0;

  // User extended attributes ("user." names). get/list return ENODATA /
  // an empty list when absent; set with flags XATTR_CREATE / XATTR_REPLACE.
  virtual Status setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value, int flags) = 0;
  virtual Result<std::vector<uint8_t>> getxattr(uint64_t ino, std::string_view name) = 0;
  virtual Result<std::vector<std::string>> listxattr(uint64_t ino) = 0;
  virtual Status removexattr(uint64_t ino, std::string_view name) = 0;

  // Durable on return: the operations that changed `ino` (fsync) or every
  // acknowledged operation (sync) are committed.
  virtual Status fsync(uint64_t ino) = 0;
  virtual Status sync() = 0;
  virtual Result<FsStats> statfs() = 0;

  // The lock service is about to downgrade or release `resource` from
  // `from` to `to`: commit, write in place and revoke what it covers (EX),
  // forget cached copies. Called on a lock-service thread.
  virtual void on_lock_leaving(const std::string& resource, locks::LockMode from, locks::LockMode to) = 0;
  // The inodes whose attributes, data and directory entries `resource`
  // covers (an itb: lock covers the inodes of one inode-table block; other
  // resources cover none). A cache above the engine - the FUSE mount's
  // kernel caches - forgets these when the lock leaves the node.
  virtual std::vector<uint64_t> inodes_covered_by(const std::string& resource) = 0;

  // Clean unmount: commit, checkpoint the slot journal (clean, s_start 0),
  // fold counters into the group descriptors and superblock, release locks.
  virtual Status unmount() = 0;
};

}  // namespace cext3::engine
