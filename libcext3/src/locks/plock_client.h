// The node side of record locks (docs/LOCKS.md, "Record locks").
//
// Keeps this node's copy of the record locks the master granted to its
// owners, and the requests the master has not answered yet. The copy changes
// only when a reply arrives, in the master's order (the connection is
// ordered), so it is always a state the master had for this slot, and the
// master's state is it plus a first part of the unanswered requests. After a
// coordinator change it is the node's report, and all unanswered requests are
// sent again after the hello, in their original order (docs/LOCKS.md).
//
// Not thread-safe: the service calls it under its mutex and carries out the
// messages it returns.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "cext3/locks/plock.h"
#include "locks/plock_ranges.h"
#include "locks/wire.h"

namespace cext3::locks {

struct PlockWaiter {
  wire::MsgType type = wire::MsgType::kPlockSet;  // kPlockSet or kPlockGet
  wire::PlockEntry lock;                          // what is asked
  uint64_t req = 0;
  bool done = false;
  wire::PlockResult result = wire::PlockResult::kGranted;
  wire::PlockEntry answer;       // get: the conflicting lock
  bool cancelling = false;       // a cancel went to the master (or is due on reconnect)
  bool timed_out = false;        // the cancel came from the caller's timeout
  bool aborted = false;          // the service stops
  std::condition_variable cv;
};

class PlockClient {
 public:
  // Register a request; returns the message to send.
  wire::Message start(const std::shared_ptr<PlockWaiter>& w);
  // Withdraw a request: with a connection, the returned message asks the
  // master (the waiter stays until its reply); without one (`connected`
  // false) the request is forgotten at once and the waiter finished as
  // cancelled: no master has it, since every new connection starts with a
  // hello that replaces the slot's state. Returns false when nothing is sent.
  bool cancel(const std::shared_ptr<PlockWaiter>& w, bool connected, wire::Message* m);
  // Forget a request without asking the master (the caller stops waiting).
  // A grant that still comes is applied all the same (on_reply).
  void forget(const std::shared_ptr<PlockWaiter>& w);
  // Waiting set requests of `owner` on (ino, space), not yet cancelling.
  std::vector<std::shared_ptr<PlockWaiter>> waiting_sets(uint64_t ino, uint8_t space, uint64_t owner) const;

  // True when `owner` holds nothing on (ino, space) and has no request the
  // master may still apply: then the master's table has nothing of it
  // either (it is this copy plus a first part of the unanswered requests),
  // and an unlock of it can be answered here without a message.
  bool owner_has_nothing(uint64_t ino, uint8_t space, uint64_t owner) const;

  void on_reply(const wire::Message& m);

  // A new connection: the report of granted locks for the hello, then the
  // requests to send after it (requests being cancelled are finished as
  // cancelled instead: the new hello drops them at the master).
  std::vector<wire::PlockEntry> report() const;
  std::vector<wire::Message> resend();
  // The service stops: every waiter is finished as aborted.
  void abort_all();
  // Clean leave: one unlock of [0, EOF] per owner and file held; the copy is emptied.
  std::vector<wire::Message> release_all();

  void status(PlockStatus* s) const;

 private:
  using Key = std::pair<uint64_t, uint8_t>;  // ino, space
  void finish(const std::shared_ptr<PlockWaiter>& w, wire::PlockResult r);
  void apply(const wire::PlockEntry& e);  // a granted set (or unlock) into held_

  std::map<Key, std::vector<RangeLock>> held_;  // who.slot is unused (0): all are this node's
  std::map<uint64_t, std::shared_ptr<PlockWaiter>> pending_;  // by request id: sending order
  std::map<uint64_t, wire::PlockEntry> forgotten_sets_;        // given up, maybe granted meanwhile
  uint64_t next_req_ = 1;
};

}  // namespace cext3::locks
