// The FUSE mount's record locks (fcntl, flock), made cluster-wide by this
// node's lock service (locks::Plocks; docs/LOCKS.md, "Record locks").
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "cext3/locks/plock.h"
#include "cext3/mount/fuse_mount.h"

namespace cext3::daemon {

// `slot` is this node's: F_GETLK reports a holder's pid only when the holder
// is on this node (a pid from another node names nothing here; 0 then).
// A non-waiting request or an unlock gives up after `answer_timeout` without
// the master's answer (ENOLCK); a waiting one waits until granted or
// interrupted.
std::unique_ptr<mount::RecordLocks> make_mount_record_locks(locks::Plocks& plocks, uint32_t slot,
                                                            std::chrono::milliseconds answer_timeout);

}  // namespace cext3::daemon
