// The lock protocol's messages and their byte encoding (docs/LOCKS.md, "Wire").
//
// A frame is: u32 little-endian length of what follows, then the body:
//   u8 type, u8 flags, u8 mode, u32 slot, u64 generation, u64 epoch,
//   u16 resource length + bytes, [64-byte LVB if flags has kHasLvb],
//   u16 reason length + bytes, u32 report count + entries,
//   [record-lock section if flags has kHasPlock: u64 request id, u8 result,
//    one record-lock entry, u32 count + record-lock entries].
// A report entry is: u16 resource length + bytes, u8 entry flags, u8 held mode,
//   u8 pending mode, 64-byte LVB.
// A record-lock entry is: u64 ino, u8 space, u8 type, u64 owner, u32 pid,
//   u32 slot, u64 start, u64 end, u8 wait.
// Every field is present in every type (unused ones are zero) so one decoder
// serves all; frames are small and loopback-cheap, so clarity wins over bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cext3/locks/lock_types.h"
#include "cext3/status.h"

namespace cext3::locks::wire {

enum class MsgType : uint8_t {
  kHello = 1,         // node -> master: slot, generation, epoch, report
  kHelloAck = 2,      // master -> node: epoch
  kHelloReject = 3,   // master -> node: epoch, reason; the master closes
  kRequest = 4,       // node -> master: resource, mode, try_only
  kGrant = 5,         // master -> node: resource, mode, epoch, lvb, generation = grant sequence
  kDeny = 6,          // master -> node: resource, epoch (a try_only request failed)
  kCallback = 7,      // master -> node: resource, mode = the mode someone waits for
  kDowngrade = 8,     // node -> master: resource, mode = new mode, release, lvb if it was EX,
                      //   generation = sequence of the last grant the node had received
  kRecoveryDone = 9,  // node -> master: slot whose journal has been replayed
  // Record locks (plock.h): every request carries an id the reply names.
  kPlockSet = 10,     // node -> master: plock = the lock to set (type kUnlock: unlock), wait flag
  kPlockGet = 11,     // node -> master: plock = the lock to test
  kPlockCancel = 12,  // node -> master: plock_req = the waiting request to withdraw
  kPlockReply = 13,   // master -> node: plock_req, plock_result, epoch; plock = the request's lock
                      //   (set) or the conflicting lock (get)
};
const char* to_string(MsgType t);

// One resource in a node's state report (sent inside hello to every new master).
struct ReportEntry {
  std::string resource;
  bool holding = false;           // the node holds `held` from the master
  LockMode held = LockMode::kNL;
  Lvb lvb{};                      // the node's cached value block
  bool pending = false;           // a request is outstanding
  LockMode pending_mode = LockMode::kNL;
  bool pending_try = false;
  bool operator==(const ReportEntry&) const = default;
};

// Record lock types on the wire (not the platform's F_* values).
enum class PlockType : uint8_t { kUnlock = 0, kRead = 1, kWrite = 2 };
enum class PlockResult : uint8_t {
  kGranted = 0,    // set: applied; get: no conflict
  kConflict = 1,   // set: EAGAIN; get: `plock` is the conflicting lock
  kCancelled = 2,  // a waiting set was withdrawn (cancel) or is unknown
  kDeadlock = 3,   // set: EDEADLK
};

// One record lock: a node's report entry, a request, or a conflicting lock.
struct PlockEntry {
  uint64_t ino = 0;
  uint8_t space = 0;          // PlockSpace
  PlockType type = PlockType::kUnlock;
  uint64_t owner = 0;
  uint32_t pid = 0;
  uint32_t slot = 0;          // the holder (in a get reply); unused elsewhere
  uint64_t start = 0, end = 0;  // inclusive
  bool wait = false;          // a set request that may queue
  bool operator==(const PlockEntry&) const = default;
};

struct Message {
  MsgType type = MsgType::kHello;
  uint32_t slot = 0;
  uint64_t generation = 0;
  uint64_t epoch = 0;
  std::string resource;
  LockMode mode = LockMode::kNL;
  bool try_only = false;
  bool release = false;
  bool has_lvb = false;
  Lvb lvb{};
  std::string reason;
  std::vector<ReportEntry> report;
  // Record locks: present when has_plock (the plock message types, and a
  // hello whose node holds record locks).
  bool has_plock = false;
  uint64_t plock_req = 0;
  PlockResult plock_result = PlockResult::kGranted;
  PlockEntry plock;
  std::vector<PlockEntry> plock_report;  // hello: the node's granted record locks
  bool operator==(const Message&) const = default;
};

inline constexpr uint32_t kMaxFrameBytes = 16u << 20;

// Appends one frame holding `m` to `out`.
void encode(const Message& m, std::string* out);

// Decodes the first frame of buf[0, len). Returns the number of bytes it
// used, 0 when the frame is not complete yet, or Corruption for a malformed
// frame (the connection is then closed).
Result<size_t> decode(const uint8_t* buf, size_t len, Message* out);

}  // namespace cext3::locks::wire
