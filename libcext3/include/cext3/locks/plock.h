// Cluster-wide record locks ("plocks"): POSIX fcntl byte-range locks and
// flock, for the FUSE mount (docs/LOCKS.md, "Record locks").
//
// Reached through LockService::plocks(). The lock master (on the coordinator)
// keeps the table of every inode's record locks; each node remembers the ones
// granted to its own owners and reports them to a new master after a
// coordinator change, like the named locks.
//
// Semantics, cluster-wide, as POSIX/Linux within one machine:
//  * an owner is (this node's slot, PlockOwner::owner): FUSE's lock_owner is
//    unique per node, the service adds the slot. An owner never conflicts
//    with itself: setting a range replaces the owner's locks there (splitting
//    and merging as needed; adjacent or overlapping ranges of one type merge);
//    unlocking a sub-range splits;
//  * read locks are shared, write locks exclusive, between different owners;
//  * a conflicting non-waiting request fails with errno EAGAIN and changes
//    nothing (also when it would have converted the owner's own locks);
//  * a waiting request (F_SETLKW) queues at the master. Waiters are served in
//    arrival order per inode, and a new request from an owner that holds no
//    record lock at all does not overtake an earlier conflicting waiter, so a
//    stream of readers cannot starve a writer. An owner that already holds
//    record locks may pass waiters (it may be what they wait for; making it
//    queue could create a deadlock POSIX does not have);
//  * EDEADLK: a waiting fcntl request fails with EDEADLK when an owner it
//    would wait for already waits, directly or through other owners' waits
//    (any inode, any node), for the requesting owner, as Linux does. flock
//    never reports EDEADLK;
//  * fcntl locks and flock locks are separate lock spaces (PlockSpace), as
//    on Linux: they never conflict with each other. A flock is a whole-file
//    lock; its owner is the open file (FUSE passes its lock_owner for flock);
//  * F_GETLK reports one conflicting lock, with the holder's pid on the
//    holder's node and its slot: a pid from another node is meaningless here,
//    so a caller filling struct flock for a local process may report 0 when
//    `slot` is not this node's (the mount decides; plain Linux reports the
//    remote pid for NFS-style locks as 0 too).
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "cext3/status.h"

namespace cext3::locks {

// fcntl locks and flock locks never conflict with each other (Linux).
enum class PlockSpace : uint8_t { kPosix = 0, kFlock = 1 };

// Whose lock: `owner` is FUSE's lock_owner, unique on this node; the service
// adds the node's slot. `pid` is only reported by F_GETLK.
struct PlockOwner {
  uint64_t owner = 0;
  uint32_t pid = 0;
};

inline constexpr uint64_t kPlockEof = UINT64_MAX;  // `end` of a lock "to end of file"

// A lock as F_GETLK reports it (type F_RDLCK or F_WRLCK; F_UNLCK: no conflict).
struct PlockInfo {
  int type = 0;
  uint64_t start = 0;
  uint64_t end = 0;        // inclusive; kPlockEof = to end of file
  uint32_t pid = 0;        // on the holder's node
  uint32_t slot = 0;       // the holder's node; UINT32_MAX: a dead node whose locks are unknown
  uint64_t owner = 0;      // the holder's lock_owner on its node
};

struct PlockStatus {
  struct Held {
    uint64_t ino = 0;
    PlockSpace space = PlockSpace::kPosix;
    PlockInfo lock;
  };
  std::vector<Held> held;        // granted to this node's owners
  uint32_t pending = 0;          // this node's requests not yet answered
  // Only on the master: every node's granted locks and the waiting requests.
  std::vector<Held> master_held;
  uint32_t master_waiting = 0;
};

class Plocks {
 public:
  virtual ~Plocks() = default;

  // F_SETLK / F_SETLKW (wait) / flock. type: F_RDLCK, F_WRLCK or F_UNLCK;
  // [start, end] inclusive, end = kPlockEof for "to end of file"; a flock
  // must be [0, kPlockEof]. Errors (Status::errno_value()):
  //   EAGAIN     conflict and !wait (nothing changed);
  //   EDEADLK    wait would deadlock (fcntl space only);
  //   EINTR      cancelled by cancel() (nothing changed);
  //   ETIMEDOUT  wait longer than `timeout` (nothing changed; see below);
  //   ENOLCK     the service is shutting down;
  //   EINVAL     bad type or range.
  // An unlock (F_UNLCK) never waits and returns once the master applied it.
  // A request waits for the master's answer (one round trip), also without
  // `wait`; `timeout` bounds that too. If the master cannot be reached for
  // `timeout`, the request is withdrawn; a grant the master made just before
  // the withdrawal reached it is kept (the lock is held by the owner until it
  // unlocks or release_owner()), as Linux keeps a lock granted just before a
  // signal.
  virtual Status setlk(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end,
                       PlockOwner owner, bool wait, std::chrono::milliseconds timeout) = 0;

  // F_GETLK: the first lock of another owner that conflicts with `type` on
  // [start, end], or PlockInfo{type = F_UNLCK}. Errors: EINVAL, ENOLCK,
  // ETIMEDOUT (master not reachable within `timeout`).
  virtual Result<PlockInfo> getlk(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end,
                                  PlockOwner owner, std::chrono::milliseconds timeout) = 0;

  // Close: drop every lock `owner` holds on `ino` in `space` (an unlock of
  // [0, EOF]). Waits for the master like an unlock.
  virtual Status release_owner(uint64_t ino, PlockSpace space, uint64_t owner,
                               std::chrono::milliseconds timeout) = 0;

  // Interrupt (FUSE_INTERRUPT of a blocked setlk): every waiting setlk of
  // `owner` on `ino` in `space` returns EINTR, unless its grant crossed the
  // cancel (then it returns OK and the lock is held). Returns how many
  // waiting requests were asked to stop; the setlk calls return on their
  // own threads once the master confirmed (at most 1 s later: then the
  // request is forgotten locally, as after a timeout).
  virtual size_t cancel(uint64_t ino, PlockSpace space, uint64_t owner) = 0;

  virtual PlockStatus status() const = 0;
};

}  // namespace cext3::locks
