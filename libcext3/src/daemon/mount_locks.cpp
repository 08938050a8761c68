#include "daemon/mount_locks.h"

#include <fcntl.h>

namespace cext3::daemon {
namespace {

// F_SETLKW has no time limit in POSIX; a day stands for "until granted or
// interrupted" (a signal reaches us as FUSE_INTERRUPT -> cancel()).
constexpr std::chrono::milliseconds kWaitForever = std::chrono::hours(24);

class MountRecordLocks final : public mount::RecordLocks {
 public:
  MountRecordLocks(locks::Plocks& p, uint32_t slot, std::chrono::milliseconds t) : p_(p), slot_(slot), answer_(t) {}

  Result<Range> test(uint64_t ino, uint64_t owner, const Range& want) override {
    auto c = p_.getlk(ino, locks::PlockSpace::kPosix, want.type, want.start, want.end, {owner, want.pid}, answer_);
    if (!c.ok()) return as_lock_error(c.status());
    Range out;
    out.type = c->type;
    out.start = c->start;
    out.end = c->end;
    out.pid = c->slot == slot_ ? c->pid : 0;
    return out;
  }

  Status set(uint64_t ino, uint64_t owner, const Range& r, bool wait) override {
    return as_lock_error(p_.setlk(ino, locks::PlockSpace::kPosix, r.type, r.start, r.end, {owner, r.pid}, wait,
                                  wait && r.type != F_UNLCK ? kWaitForever : answer_));
  }

  Status flock(uint64_t ino, uint64_t owner, int type, bool wait) override {
    if (type == F_UNLCK) return as_lock_error(p_.release_owner(ino, locks::PlockSpace::kFlock, owner, answer_));
    return as_lock_error(p_.setlk(ino, locks::PlockSpace::kFlock, type, 0, locks::kPlockEof, {owner, 0}, wait,
                                  wait ? kWaitForever : answer_));
  }

  void interrupt(uint64_t ino, uint64_t owner) override {
    (void)p_.cancel(ino, locks::PlockSpace::kPosix, owner);
    (void)p_.cancel(ino, locks::PlockSpace::kFlock, owner);
  }

 private:
  // A master out of reach is ENOLCK to the application (as NFS reports a
  // lock manager that does not answer), not ETIMEDOUT, which fcntl never
  // returns.
  static Status as_lock_error(const Status& s) {
    if (s.ok() || s.errno_value() != ETIMEDOUT) return s;
    return Status::FromErrno(ENOLCK, s.message());
  }

  locks::Plocks& p_;
  const uint32_t slot_;
  const std::chrono::milliseconds answer_;
};

}  // namespace

std::unique_ptr<mount::RecordLocks> make_mount_record_locks(locks::Plocks& plocks, uint32_t slot,
                                                            std::chrono::milliseconds answer_timeout) {
  return std::make_unique<MountRecordLocks>(plocks, slot, answer_timeout);
}

}  // namespace cext3::daemon
