// A message the master's state machines (Master, PlockTable) address to a slot.
#pragma once

#include <cstdint>

#include "locks/wire.h"

namespace cext3::locks {

struct Outgoing {
  uint32_t slot = 0;
  wire::Message msg;
};

}  // namespace cext3::locks
