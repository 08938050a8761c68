// The master's table of record locks (docs/LOCKS.md, "Record locks").
//
// A pure state machine like Master, which owns one and feeds it: requests
// from nodes, the nodes' reports at hello, deaths and recoveries. Per inode
// and lock space it keeps the granted locks of every node's owners and a FIFO
// of waiting F_SETLKW requests.
//
// Invariants:
//  * granted locks of different owners never conflict (ranges overlap and one
//    is a write), and one owner's locks obey plock_ranges.h;
//  * nothing is answered before every live node has reported (`ready`): a
//    request is kept until then, so no grant or F_GETLK answer ignores an
//    unreported holder;
//  * while a dead node whose locks are unknown remains (`unknown_slot`), every
//    range may be locked by it: no lock is granted, F_GETLK reports it;
//  * a dead node's granted locks stay (blocking) until it is recovered;
//  * waiters of one inode are served in arrival order; a request from an owner
//    holding no record lock does not pass an earlier conflicting waiter.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "cext3/locks/plock.h"
#include "locks/outgoing.h"
#include "locks/plock_ranges.h"
#include "locks/wire.h"

namespace cext3::locks {

// What the master tells the table about the cluster for each call.
struct PlockGate {
  bool ready = false;           // every live slot has reported
  int64_t unknown_slot = -1;    // a dead slot whose locks are unknown, or -1
  uint64_t epoch = 0;           // stamped on replies
};

class PlockTable {
 public:
  void on_set(uint32_t slot, const wire::Message& m, const PlockGate& g, std::vector<Outgoing>* out);
  void on_get(uint32_t slot, const wire::Message& m, const PlockGate& g, std::vector<Outgoing>* out);
  void on_cancel(uint32_t slot, const wire::Message& m, const PlockGate& g, std::vector<Outgoing>* out);
  // A hello: the slot's report replaces all the table knew of it (its
  // waiting requests are re-sent by the node after the hello).
  void replace_slot(uint32_t slot, const std::vector<wire::PlockEntry>& report);
  // Drop the slot's granted locks, waiters and kept requests.
  void forget_slot(uint32_t slot);
  // The slot died: its waiters go; its granted locks stay, blocking, until
  // slot_recovered when hold_back, else they go too (a clean leave).
  void slot_died(uint32_t slot, bool hold_back);
  void slot_recovered(uint32_t slot);
  // Answer kept requests once ready, then serve every inode's waiters.
  void process_all(const PlockGate& g, std::vector<Outgoing>* out);

  void status(PlockStatus* s) const;

 private:
  struct Waiter {
    RangeLock lock;
    uint64_t req = 0;
  };
  struct File {
    std::vector<RangeLock> held;
    std::deque<Waiter> queue;
  };
  using Key = std::pair<uint64_t, uint8_t>;  // ino, space

  bool holds_nothing(const RangeLock& w) const;
  // Whom `w`, at queue position `pos` of `f` (f.queue.size() for a new
  // request), must wait for; empty when it can be granted now.
  std::vector<PlockOwnerKey> blockers(const File& f, size_t pos, const RangeLock& w, const PlockGate& g) const;
  bool would_deadlock(const RangeLock& req, std::vector<PlockOwnerKey> by, const PlockGate& g) const;
  void process_file(const Key& key, File& f, const PlockGate& g, std::vector<Outgoing>* out);
  void reply(uint32_t slot, uint64_t req, wire::PlockResult result, const wire::PlockEntry& e, const PlockGate& g,
             std::vector<Outgoing>* out) const;
  void drop_empty();

  std::map<Key, File> files_;
  std::deque<std::pair<uint32_t, wire::Message>> kept_;  // requests that came before `ready`
  std::set<uint32_t> dead_;                              // slots whose held locks wait for recovery
};

}  // namespace cext3::locks
