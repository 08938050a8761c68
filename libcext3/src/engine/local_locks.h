// A process-local lock service for tests and offline use: one or more
// "nodes" (one LockProvider each) share one table of resources.
//
// It models what jcoord's LockService does (docs/LOCKS.md), minus the
// network: a node keeps a lock it was granted cached after its local users
// release it; a later compatible request on the same node is granted at
// once. When another node asks for an incompatible mode, the holder's
// callback runs first (the engine's on_lock_leaving: commit, write back,
// revoke), once its local users are done, and then the holder's cached mode
// drops (EX -> PR for a PR request, else -> NL). The value block is the one
// the last EX holder released with.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "cext3/engine/filesystem.h"

namespace cext3::engine {

class LocalLockCluster {
 public:
  using LeavingCallback = std::function<void(const std::string& resource, locks::LockMode from, locks::LockMode to)>;
  LocalLockCluster();
  ~LocalLockCluster();
  LocalLockCluster(const LocalLockCluster&) = delete;
  LocalLockCluster& operator=(const LocalLockCluster&) = delete;

  // A provider for node `node` (any small distinct number). The cluster
  // must outlive it.
  std::unique_ptr<LockProvider> provider(uint32_t node);
  // What to run before `node`'s cached lock leaves it (may be set after
  // provider(); empty = nothing to do). Typically
  // [&](auto& r, auto f, auto t) { fs->on_lock_leaving(r, f, t); }.
  void set_leaving_callback(uint32_t node, LeavingCallback cb);
  // How many callbacks ran (tests check that coherence was exercised).
  uint64_t callbacks() const;

  struct State;

 private:
  std::shared_ptr<State> s_;
};

}  // namespace cext3::engine
