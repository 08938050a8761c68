// The lock master: the coordinator's table of every resource (docs/LOCKS.md).
//
// A pure state machine: it is fed decoded messages and membership views and
// answers with messages addressed to slots. It does no I/O and takes no locks;
// the service calls it under its own mutex. One Master lives for one epoch; a
// new coordinator epoch means a new Master built from the nodes' reports.
//
// Invariants it keeps:
//  * the modes granted to different slots for one resource are pairwise
//    compatible, and compatible with what a dead, not yet recovered node may
//    still hold (its known grants, or a per-resource bound when unknown);
//  * nothing is granted until every live slot has reported its state to this
//    master (hello), so a grant can never conflict with an unreported holder;
//  * per resource, waiters are served in FIFO order (conversions of a held
//    lock first, as in DLM), a waiter never overtakes an earlier one.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "cext3/locks/lock_service.h"
#include "cext3/locks/lock_types.h"
#include "cext3/status.h"
#include "locks/outgoing.h"
#include "locks/plock_table.h"
#include "locks/wire.h"

namespace cext3::locks {

class Master {
 public:
  explicit Master(const MembershipView& view);

  uint64_t epoch() const { return view_.epoch; }
  // True once every live slot has reported: grants may flow.
  bool all_reported() const;

  // A node's hello with its state report. A refusal (wrong epoch, not a live
  // member, stale generation) is returned; the caller sends HelloReject.
  Status on_hello(const wire::Message& hello, std::vector<Outgoing>* out);
  void on_request(uint32_t slot, const wire::Message& m, std::vector<Outgoing>* out);
  void on_downgrade(uint32_t slot, const wire::Message& m, std::vector<Outgoing>* out);
  void on_recovery_done(uint32_t slot, std::vector<Outgoing>* out);
  // Record-lock requests (kPlockSet, kPlockGet, kPlockCancel): PlockTable.
  void on_plock(uint32_t slot, const wire::Message& m, std::vector<Outgoing>* out);
  // Same epoch, new membership (deaths, joins, recoveries).
  void on_membership(const MembershipView& view, std::vector<Outgoing>* out);

  std::vector<MasterStatusEntry> status() const;
  void plock_status(PlockStatus* s) const { plocks_.status(s); }
  // Sequence of the grant `slot` holds on `resource` (0 if none or reported).
  uint64_t grant_seq(uint32_t slot, const std::string& resource) const;

 private:
  struct Grant {
    LockMode mode = LockMode::kNL;
    bool dead = false;            // holder died; kept until recovery_done
    // Sequence of the grant message that set `mode` (0: taken from a report).
    // A downgrade names the last grant its sender had seen; one that crossed a
    // newer grant in flight describes an older state and is ignored.
    uint64_t seq = 0;
    bool callback_sent = false;   // a callback asking for `callback_for` went out
    LockMode callback_for = LockMode::kNL;
  };
  struct Waiter {
    uint32_t slot = 0;
    LockMode mode = LockMode::kNL;
    bool conversion = false;      // the slot already holds PR/EX here
  };
  struct Resource {
    std::map<uint32_t, Grant> granted;
    std::deque<Waiter> queue;
    Lvb lvb{};
    // Highest mode a live node reported holding at this master's start: it
    // bounds what the unknown dead nodes can hold (see unknown_bound).
    LockMode reported_max = LockMode::kNL;
  };

  bool is_live(uint32_t slot) const;
  bool is_unrecovered(uint32_t slot) const;
  LockMode unknown_bound(const Resource& r) const;
  bool grantable(const Resource& r, uint32_t slot, LockMode mode) const;
  void grant(const std::string& name, Resource& r, uint32_t slot, LockMode mode, std::vector<Outgoing>* out);
  void enqueue(const std::string& name, Resource& r, uint32_t slot, LockMode mode, bool try_only,
               std::vector<Outgoing>* out);
  void process(const std::string& name, Resource& r, std::vector<Outgoing>* out);
  void process_all(std::vector<Outgoing>* out);
  PlockGate plock_gate() const;
  void forget_slot(uint32_t slot);          // drop grants and waiters
  void slot_died(uint32_t slot);
  void slot_recovered(uint32_t slot);
  bool idle(const Resource& r) const;
  void drop_idle_resources();

  MembershipView view_;
  std::map<std::string, Resource> resources_;
  std::set<uint32_t> reported_;
  // Dead, unrecovered slots that never reported to this master: what they
  // hold is unknown, so every resource is treated as possibly held by them.
  std::set<uint32_t> unknown_;
  PlockTable plocks_;  // record locks: same reports, deaths and recoveries
  bool granting_started_ = false;
  uint64_t next_seq_ = 1;
};

}  // namespace cext3::locks
