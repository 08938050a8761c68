// The engine's cluster locks, served by this node's LockService.
#pragma once

#include <chrono>
#include <memory>

#include "cext3/engine/filesystem.h"
#include "cext3/locks/lock_service.h"

namespace cext3::daemon {

// An engine lock request waits at most `timeout` (then the operation fails
// with EBUSY rather than hang: a conflicting node that neither answers nor
// dies within the fence window is itself about to be fenced).
std::unique_ptr<engine::LockProvider> make_service_lock_provider(locks::LockService& service,
                                                                 std::chrono::milliseconds timeout);

}  // namespace cext3::daemon
