// The process-local lock service (local_locks.h).
//
// One mutex and one condition variable for everything: this is for tests
// and offline tools, not for speed. Invariant: for every resource, the
// cached modes of all nodes are pairwise compatible, and a node's local
// holders never exceed its cached mode.
#include "engine/local_locks.h"

#include <chrono>
#include <condition_variable>
#include <map>
#include <optional>
#include <mutex>

namespace cext3::engine {

using locks::LockMode;

struct LocalLockCluster::State {
  struct NodeHold {
    LockMode cached = LockMode::kNL;
    uint32_t pr_holders = 0, ex_holders = 0;
  };
  struct Resource {
    locks::Lvb lvb{};
    std::map<uint32_t, NodeHold> nodes;
    bool in_callback = false;  // a holder is being called back: nobody is granted meanwhile
  };
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Resource> resources;
  std::map<uint32_t, LeavingCallback> callbacks;
  uint64_t next_id = 1;
  uint64_t callback_count = 0;
};

namespace {

bool covers(LockMode have, LockMode want) { return static_cast<int>(have) >= static_cast<int>(want); }

class LocalProvider final : public LockProvider {
 public:
  LocalProvider(std::shared_ptr<LocalLockCluster::State> s, uint32_t node) : s_(std::move(s)), node_(node) {}

  Result<Held> lock(const std::string& resource, LockMode mode) override { return lock_until(resource, mode, {}); }

  Result<Held> lock_for(const std::string& resource, LockMode mode, std::chrono::milliseconds wait) override {
    return lock_until(resource, mode, std::chrono::steady_clock::now() + wait);
  }

  // Waits for users of the lock (here or on other nodes) until `deadline`
  // (none: forever). Idle holders on other nodes are called back at once.
  Result<Held> lock_until(const std::string& resource, LockMode mode,
                          std::optional<std::chrono::steady_clock::time_point> deadline) {
    auto& st = *s_;
    std::unique_lock<std::mutex> g(st.mu);
    auto wait = [&]() -> bool {  // false: the deadline passed
      if (!deadline) {
        st.cv.wait(g);
        return true;
      }
      return st.cv.wait_until(g, *deadline) != std::cv_status::timeout;
    };
    const auto busy = [&] {
      return Status::Busy("lock " + resource + " is in use (here or on another node) and was not granted in time");
    };
    for (;;) {
      auto& r = st.resources[resource];
      auto& me = r.nodes[node_];
      if (r.in_callback) {
        if (!wait()) return busy();
        continue;
      }
      // Local conflict: an EX user excludes everyone on this node, a PR
      // user excludes an EX request.
      const bool local_conflict = me.ex_holders > 0 || (mode == LockMode::kEX && me.pr_holders > 0);
      if (local_conflict) {
        if (!wait()) return busy();
        continue;
      }
      if (!covers(me.cached, mode)) {
        // Other nodes whose cached mode conflicts must give it up first.
        bool waited = false;
        for (auto& [other, h] : r.nodes) {
          if (other == node_ || locks::compatible(h.cached, mode)) continue;
          if (h.pr_holders > 0 || h.ex_holders > 0) {
            waited = true;  // in use over there: wait for its users
            break;
          }
          const LockMode from = h.cached;
          const LockMode to = (mode == LockMode::kPR && from == LockMode::kEX) ? LockMode::kPR : LockMode::kNL;
          LocalLockCluster::LeavingCallback cb;
          if (auto it = st.callbacks.find(other); it != st.callbacks.end()) cb = it->second;
          r.in_callback = true;
          ++st.callback_count;
          g.unlock();
          if (cb) cb(resource, from, to);
          g.lock();
          auto& r2 = st.resources[resource];
          r2.nodes[other].cached = to;
          r2.in_callback = false;
          st.cv.notify_all();
          waited = true;  // re-evaluate from the start (the map may have changed)
          break;
        }
        if (waited) {
          // Either a callback ran (re-check at once) or users must finish.
          auto& r3 = st.resources[resource];
          bool in_use = false;
          for (auto& [other, h] : r3.nodes)
            if (other != node_ && !locks::compatible(h.cached, mode) && (h.pr_holders || h.ex_holders)) in_use = true;
          if (in_use && !wait()) return busy();
          continue;
        }
        me.cached = mode;
      }
      if (mode == LockMode::kEX) ++me.ex_holders;
      else if (mode == LockMode::kPR) ++me.pr_holders;
      Held h;
      h.id = st.next_id++;
      h.mode = mode;
      h.lvb = r.lvb;
      return h;
    }
  }

  Status unlock(const std::string& resource, const Held& h) override {
    auto& st = *s_;
    std::lock_guard<std::mutex> g(st.mu);
    auto it = st.resources.find(resource);
    if (it == st.resources.end()) return Status::InvalidArgument("unlock of a lock never taken: " + resource);
    auto& me = it->second.nodes[node_];
    if (h.mode == LockMode::kEX) {
      if (me.ex_holders == 0) return Status::InvalidArgument("unlock of an EX lock not held: " + resource);
      --me.ex_holders;
      it->second.lvb = h.lvb;
    } else if (h.mode == LockMode::kPR) {
      if (me.pr_holders == 0) return Status::InvalidArgument("unlock of a PR lock not held: " + resource);
      --me.pr_holders;
    }
    st.cv.notify_all();
    return Status::OK();
  }

 private:
  std::shared_ptr<LocalLockCluster::State> s_;
  uint32_t node_;
};

// make_local_lock_provider(): a one-node cluster owned by its provider.
class OwningProvider final : public LockProvider {
 public:
  OwningProvider() : cluster_(std::make_unique<LocalLockCluster>()), p_(cluster_->provider(0)) {}
  Result<Held> lock(const std::string& r, LockMode m) override { return p_->lock(r, m); }
  Result<Held> lock_for(const std::string& r, LockMode m, std::chrono::milliseconds w) override {
    return p_->lock_for(r, m, w);
  }
  Status unlock(const std::string& r, const Held& h) override { return p_->unlock(r, h); }

 private:
  std::unique_ptr<LocalLockCluster> cluster_;
  std::unique_ptr<LockProvider> p_;
};

}  // namespace

LocalLockCluster::LocalLockCluster() : s_(std::make_shared<State>()) {}
LocalLockCluster::~LocalLockCluster() = default;

std::unique_ptr<LockProvider> LocalLockCluster::provider(uint32_t node) {
  return std::make_unique<LocalProvider>(s_, node);
}

void LocalLockCluster::set_leaving_callback(uint32_t node, LeavingCallback cb) {
  std::lock_guard<std::mutex> g(s_->mu);
  s_->callbacks[node] = std::move(cb);
}

uint64_t LocalLockCluster::callbacks() const {
  std::lock_guard<std::mutex> g(s_->mu);
  return s_->callback_count;
}

std::unique_ptr<LockProvider> make_local_lock_provider() { return std::make_unique<OwningProvider>(); }

}  // namespace cext3::engine
