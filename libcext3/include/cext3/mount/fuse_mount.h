// FuseMount: one node's engine served to the kernel as a FUSE filesystem.
//
// The mount is a thin translation of the kernel's low-level FUSE requests
// into engine::Filesystem calls (both name objects by inode number); it
// knows nothing of the disk format. What it adds is what the kernel needs
// beyond the engine:
//  * cache coherence: the kernel may cache an inode's attributes, its
//    directory entries and its pages only while this node holds the
//    cluster lock covering that inode. lock_leaving() is called before such
//    a lock leaves the node and invalidates what the kernel cached for every
//    inode the lock covers (docs/MOUNT.md, "Kernel caches");
//  * open files: open/create/opendir tell the engine the inode is open
//    (an unlinked inode then lives on as an orphan until its last release);
//  * record locks (fcntl and flock), forwarded to a RecordLocks backend that
//    makes them cluster-wide.
// Permission checks are the kernel's (the default_permissions option), as
// with ext3: mode bits, POSIX ACLs (through the system.posix_acl_* xattrs),
// sticky directories.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "cext3/engine/filesystem.h"
#include "cext3/status.h"

namespace cext3::mount {

// Cluster-wide POSIX record locks and flock locks, as the mount needs
// them. `owner` is the kernel's lock owner (unique on this node); the
// implementation makes it unique in the cluster. Ranges are inclusive,
// `end` UINT64_MAX meaning "to end of file"; type is F_RDLCK, F_WRLCK or
// F_UNLCK.
class RecordLocks {
 public:
  struct Range {
    int type = 0;
    uint64_t start = 0, end = 0;
    uint32_t pid = 0;
  };
  virtual ~RecordLocks() = default;
  // The first lock that conflicts with `want`, or a Range of type F_UNLCK.
  virtual Result<Range> test(uint64_t ino, uint64_t owner, const Range& want) = 0;
  // Set or clear (F_UNLCK) a range. wait=false: EAGAIN on a conflict.
  // wait=true blocks until granted (EINTR if interrupt() is called for
  // this owner meanwhile).
  virtual Status set(uint64_t ino, uint64_t owner, const Range& r, bool wait) = 0;
  // flock(2): one whole-file lock per open file description, in a lock
  // space separate from the record locks (as Linux keeps them).
  virtual Status flock(uint64_t ino, uint64_t owner, int type, bool wait) = 0;
  // The kernel interrupted a waiting request of `owner` (a signal).
  virtual void interrupt(uint64_t ino, uint64_t owner) = 0;
};

struct FuseMountOptions {
  std::string mountpoint;
  std::string fsname;          // shown in /proc/mounts: the shared device
  // How long the kernel may trust an entry or attribute without asking.
  // Only an upper bound: lock_leaving() invalidates sooner.
  double cache_timeout_s = 1.0;
  // Let users other than the one running the node use the mount (needs
  // root or user_allow_other in /etc/fuse.conf).
  bool allow_other = true;
  // Workers: a blocked F_SETLKW or a lock wait holds one until it is served.
  unsigned max_threads = 32;
  // Let the kernel enforce POSIX ACLs (stored as system.posix_acl_* xattrs);
  // the mount then applies default ACLs and the umask to new inodes itself.
  bool posix_acl = true;
  RecordLocks* record_locks = nullptr;  // null: fcntl/flock locks get ENOLCK
  // Called once when the mount ends on its own: `umount DIR`, or the
  // kernel connection failed. Not called for stop().
  std::function<void(const std::string& why)> on_unmounted;
};

class FuseMount {
 public:
  // Mounts at opts.mountpoint and starts serving; the engine must outlive
  // the FuseMount. Errors are one line (mount point missing, /dev/fuse
  // unavailable, not permitted).
  static Result<std::unique_ptr<FuseMount>> start(engine::Filesystem& fs, const FuseMountOptions& opts);
  virtual ~FuseMount() = default;

  // A cluster lock is about to leave this node (the lock service's
  // downgrade hook): forget the kernel's cached entries, attributes and
  // pages of the inodes it covers. Never blocks on a FUSE request.
  virtual void lock_leaving(const std::string& resource, locks::LockMode from, locks::LockMode to) = 0;

  // Unmount (lazily if busy: open files then fail with ENOTCONN) and wait
  // until no request is being served. Idempotent.
  virtual void stop() = 0;
};

}  // namespace cext3::mount
