// Lock modes, value blocks and the membership view the lock service needs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cext3::locks {

// NL: held for its value block / as a cache anchor, blocks nobody.
// PR: shared read. EX: exclusive. PR+PR is the only compatible pair besides NL.
enum class LockMode : uint8_t { kNL = 0, kPR = 1, kEX = 2 };
const char* to_string(LockMode m);
bool parse_lock_mode(const std::string& s, LockMode* out);  // "NL" "PR" "EX", any case
bool compatible(LockMode a, LockMode b);

// The lock value block: returned with every grant, replaced by the holder when
// it releases or downgrades an EX. The first 8 bytes are by convention a
// little-endian version counter the engine bumps when it changes what the lock
// covers (cache invalidation, as lvmlockd's r_version).
inline constexpr size_t kLvbBytes = 64;
using Lvb = std::array<uint8_t, kLvbBytes>;

// What the daemon knows of the cluster, handed to the lock service after
// every heartbeat tick. Only nodes in `live` may hold or request locks.
struct Member {
  uint32_t slot = 0;
  std::string name;
  std::string address;   // host:port of its lock listener
  uint64_t generation = 0;
  bool operator==(const Member&) const = default;
};
struct MembershipView {
  std::vector<Member> live;
  uint32_t coordinator_slot = 0xFFFFFFFFu;  // none
  uint64_t epoch = 0;                        // coordinator epoch from disk
  // Dead slots whose journals are not yet recovered. No lock a dead node may
  // have held is granted to anyone while its slot is listed here.
  std::vector<uint32_t> unrecovered;
  bool operator==(const MembershipView&) const = default;
};

}  // namespace cext3::locks
