// The node side of the lock service: the lock cache (docs/LOCKS.md, "Node").
//
// Per resource it records the mode this node holds from the master (the
// "cluster mode"), the local holders and the local waiters. A local request
// that the cluster mode covers and that is compatible with the other local
// holders is granted from the cache with no message. A blocking callback
// stops new local grants above the mode the node must come down to; once the
// local holders fit under it, the resource is "ready" and the service's
// downgrade worker runs the before_downgrade hook and then finish_downgrade.
//
// Not thread-safe: the service calls it under its mutex. It produces effects
// (messages for the master, resources ready to downgrade) for the service to
// carry out, and wakes waiters through their condition variables.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cext3/locks/lock_service.h"
#include "cext3/locks/lock_types.h"
#include "locks/wire.h"

namespace cext3::locks {

struct ClientEffects {
  std::vector<wire::Message> to_master;
  std::vector<std::string> downgrade_ready;
};

struct LocalWaiter {
  enum class State { kWaiting, kGranted, kDenied, kAborted };
  uint64_t id = 0;           // the handle id it will get (or converts)
  std::string resource;
  LockMode mode = LockMode::kNL;
  bool try_only = false;
  bool is_convert = false;   // converting handle `id` up to `mode`
  bool try_sent = false;     // a try_only request is at the master
  bool from_cache = false;   // granted with no message to the master
  State state = State::kWaiting;
  Lvb lvb{};
  std::condition_variable cv;
};

class ClientCache {
 public:
  // Queue a local request and serve what can be served. A try_only request
  // that cannot be granted at once is denied (or asked of the master with the
  // try flag when only the cluster mode is missing).
  void add_waiter(const std::shared_ptr<LocalWaiter>& w, ClientEffects* fx);
  // A waiter gave up (timeout or stop): forget it and let the next ones go.
  void remove_waiter(const std::shared_ptr<LocalWaiter>& w, ClientEffects* fx);
  // A local holder releases its handle; `lvb` is stored when it held EX.
  bool release_holder(const std::string& resource, uint64_t id, const Lvb& lvb, ClientEffects* fx);
  // A local holder lowers its mode (local only: the cluster mode stays cached).
  bool downgrade_holder(const std::string& resource, uint64_t id, LockMode to, const Lvb& lvb, ClientEffects* fx);

  void on_grant(const wire::Message& m, ClientEffects* fx);
  void on_deny(const wire::Message& m, ClientEffects* fx);
  void on_callback(const wire::Message& m, ClientEffects* fx);

  // Downgrade protocol, run by the service's worker: begin() fixes from/to and
  // returns false when nothing is to be done; finish() applies it and emits
  // the downgrade (or release) message.
  bool begin_downgrade(const std::string& resource, LockMode* from, LockMode* to);
  void finish_downgrade(const std::string& resource, ClientEffects* fx);

  // A new connection to a (possibly new) master: callbacks of the old one are
  // void. Returns the report to send in the hello.
  std::vector<wire::ReportEntry> report_for_new_master();
  // Give every waiter kAborted (service stopping).
  void abort_all();
  bool holds(const std::string& resource, uint64_t id, LockMode* mode) const;
  // Everything this node holds from the master (for a clean leave).
  std::vector<std::pair<std::string, LockMode>> held() const;
  // Clean leave: release messages for everything held; the cache is emptied.
  void release_all(ClientEffects* fx);

  std::vector<LockStatusEntry> status() const;

 private:
  struct Entry {
    bool holding = false;                 // `cluster` is granted by the master
    LockMode cluster = LockMode::kNL;
    uint64_t grant_seq = 0;               // of the last grant received (master.h)
    Lvb lvb{};
    std::map<uint64_t, LockMode> holders;  // handle id -> mode
    std::deque<std::shared_ptr<LocalWaiter>> waiters;
    bool requested = false;               // a request is outstanding at the master
    LockMode requested_mode = LockMode::kNL;
    bool requested_try = false;
    bool callback = false;                // the master wants us down to fit `wanted`
    LockMode wanted = LockMode::kNL;
    bool downgrading = false;             // the worker owns the downgrade now
    LockMode downgrade_to = LockMode::kNL;
  };

  static LockMode target_for(LockMode held, LockMode wanted);
  bool can_serve(const Entry& e, const LocalWaiter& w) const;
  bool locally_compatible(const Entry& e, const LocalWaiter& w) const;
  void grant_local(Entry& e, const std::shared_ptr<LocalWaiter>& w, bool from_cache);
  void process(const std::string& name, Entry& e, ClientEffects* fx);
  void check_downgrade(const std::string& name, Entry& e, ClientEffects* fx);
  void send_request(const std::string& name, Entry& e, LockMode mode, bool try_only, ClientEffects* fx);
  void forget_if_idle(const std::string& name);

  std::map<std::string, Entry> entries_;
};

}  // namespace cext3::locks
