// Heartbeat and lock records: fixed 512-byte sectors, each ending in a
// CRC-32C over its first 508 bytes, so one O_DIRECT sector write replaces a
// record atomically and a torn or stale-format sector is detected.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "cext3/status.h"

namespace cext3::cluster {

inline constexpr char kHeartbeatMagic[8] = {'C', 'X', '3', 'H', 'B', 'E', 'A', 'T'};
inline constexpr char kLocksMagic[8] = {'C', 'X', '3', 'L', 'O', 'C', 'K', 'S'};
inline constexpr char kSlotLeaseMagic[8] = {'C', 'X', '3', 'L', 'E', 'A', 'S', 'E'};
inline constexpr uint32_t kNoSlot = 0xFFFFFFFFu;

// Heartbeat record flags.
inline constexpr uint32_t kHeartbeatFlagUsed = 1u << 0;     // a node has used the slot since format
inline constexpr uint32_t kHeartbeatFlagStopped = 1u << 1;  // the last writer left cleanly (its final record)

// heartbeat file: record i (at byte i*512) is slot i's.
struct HeartbeatRecord {
  uint32_t slot = 0;
  uint32_t flags = 0;          // kHeartbeatFlagUsed | kHeartbeatFlagStopped
  uint64_t sequence = 0;       // +1 on every write; 0 = never written by a node
  uint64_t generation = 0;     // changes when a new node instance takes the slot
  uint64_t time_ns = 0;        // CLOCK_REALTIME of the write
  uint64_t fence_deadline_ns = 0;  // the writer stops all writes by this time if it cannot renew
  std::string node_name;       // up to 63 bytes
  std::string address;         // "host:port", up to 63 bytes
  bool stopped() const { return (flags & kHeartbeatFlagStopped) != 0; }
  bool operator==(const HeartbeatRecord&) const = default;
};

// locks file: record 0 is the global record, record 1+i is slot i's lease.
struct LocksGlobalRecord {
  uint32_t slot_count = 0;
  uint32_t coordinator_slot = kNoSlot;
  uint64_t coordinator_epoch = 0;  // +1 on every election; fencing token
  bool operator==(const LocksGlobalRecord&) const = default;
};

struct SlotLeaseRecord {
  uint32_t slot = 0;
  uint32_t owned = 0;                // 1 while a node holds the slot
  uint64_t lease_generation = 0;
  uint64_t lease_expiry_ns = 0;
  std::string owner;                 // node name, up to 63 bytes
  uint64_t recovery_generation = 0;  // +1 each time the slot journal is recovered
  uint32_t journal_dirty = 0;        // 1 while the slot journal may hold unreplayed transactions
  bool operator==(const SlotLeaseRecord&) const = default;
};

void encode_heartbeat(const HeartbeatRecord& r, std::span<uint8_t, 512> out);
Result<HeartbeatRecord> decode_heartbeat(std::span<const uint8_t, 512> in);
void encode_locks_global(const LocksGlobalRecord& r, std::span<uint8_t, 512> out);
Result<LocksGlobalRecord> decode_locks_global(std::span<const uint8_t, 512> in);
void encode_slot_lease(const SlotLeaseRecord& r, std::span<uint8_t, 512> out);
Result<SlotLeaseRecord> decode_slot_lease(std::span<const uint8_t, 512> in);

}  // namespace cext3::cluster
