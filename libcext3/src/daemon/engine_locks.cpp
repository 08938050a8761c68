#include "daemon/engine_locks.h"

namespace cext3::daemon {
namespace {

class ServiceLockProvider final : public engine::LockProvider {
 public:
  ServiceLockProvider(locks::LockService& s, std::chrono::milliseconds timeout) : s_(s), timeout_(timeout) {}

  Result<Held> lock(const std::string& resource, locks::LockMode mode) override {
    auto h = s_.lock(resource, mode, timeout_);
    if (!h.ok()) {
      if (h.status().code() == Status::Code::kBusy)
        return Status::Busy("cluster lock " + resource + " not granted within " + std::to_string(timeout_.count()) +
                            " ms: " + h.status().message());
      return h.status();
    }
    return Held{h->id, h->mode, h->lvb};
  }

  // A bounded wait, not try_only: try_only would fail on another node's
  // merely cached lock (no callback is sent for it), while a normal request
  // makes an idle holder give it up. If the wait ends first, the request
  // stays queued at the master and its later grant is cached here.
  Result<Held> lock_for(const std::string& resource, locks::LockMode mode, std::chrono::milliseconds wait) override {
    auto h = s_.lock(resource, mode, wait);
    if (!h.ok()) return h.status();
    return Held{h->id, h->mode, h->lvb};
  }

  Status unlock(const std::string& resource, const Held& h) override {
    locks::LockHandle lh;
    lh.id = h.id;
    lh.resource = resource;
    lh.mode = h.mode;
    lh.lvb = h.lvb;
    return s_.unlock(lh);
  }

 private:
  locks::LockService& s_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<engine::LockProvider> make_service_lock_provider(locks::LockService& service,
                                                                 std::chrono::milliseconds timeout) {
  return std::make_unique<ServiceLockProvider>(service, timeout);
}

}  // namespace cext3::daemon
