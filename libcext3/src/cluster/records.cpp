#include "cext3/cluster/records.h"

#include <algorithm>
#include <cstring>

#include "cext3/cluster/crc32c.h"
#include "cluster/le_bytes.h"

namespace cext3::cluster {
namespace {

constexpr size_t kCrcOffset = 508;
constexpr size_t kNameBytes = 64;

void put_name(uint8_t* p, const std::string& s) {
  std::memset(p, 0, kNameBytes);
  std::memcpy(p, s.data(), std::min(s.size(), kNameBytes - 1));
}

std::string get_name(const uint8_t* p) {
  size_t n = 0;
  while (n < kNameBytes - 1 && p[n] != 0) ++n;
  return std::string(reinterpret_cast<const char*>(p), n);
}

void seal(std::span<uint8_t, 512> out) { put_le32(out.data() + kCrcOffset, crc32c(out.data(), kCrcOffset)); }

Status check(std::span<const uint8_t, 512> in, const char (&magic)[8], const char* what) {
  if (std::memcmp(in.data(), magic, 8) != 0) return Status::Corruption(std::string(what) + " record magic is wrong");
  if (get_le32(in.data() + kCrcOffset) != crc32c(in.data(), kCrcOffset))
    return Status::Corruption(std::string(what) + " record checksum mismatch");
  return Status::OK();
}

}  // namespace

void encode_heartbeat(const HeartbeatRecord& r, std::span<uint8_t, 512> out) {
  std::fill(out.begin(), out.end(), 0);
  uint8_t* p = out.data();
  std::memcpy(p, kHeartbeatMagic, 8);
  put_le32(p + 8, r.slot);
  put_le32(p + 12, r.flags);
  put_le64(p + 16, r.sequence);
  put_le64(p + 24, r.generation);
  put_le64(p + 32, r.time_ns);
  put_le64(p + 40, r.fence_deadline_ns);
  put_name(p + 48, r.node_name);
  put_name(p + 112, r.address);
  seal(out);
}

Result<HeartbeatRecord> decode_heartbeat(std::span<const uint8_t, 512> in) {
  CEXT3_RETURN_IF_ERROR(check(in, kHeartbeatMagic, "heartbeat"));
  const uint8_t* p = in.data();
  HeartbeatRecord r;
  r.slot = get_le32(p + 8);
  r.flags = get_le32(p + 12);
  r.sequence = get_le64(p + 16);
  r.generation = get_le64(p + 24);
  r.time_ns = get_le64(p + 32);
  r.fence_deadline_ns = get_le64(p + 40);
  r.node_name = get_name(p + 48);
  r.address = get_name(p + 112);
  return r;
}

void encode_locks_global(const LocksGlobalRecord& r, std::span<uint8_t, 512> out) {
  std::fill(out.begin(), out.end(), 0);
  uint8_t* p = out.data();
  std::memcpy(p, kLocksMagic, 8);
  put_le32(p + 8, r.slot_count);
  put_le32(p + 12, r.coordinator_slot);
  put_le64(p + 16, r.coordinator_epoch);
  seal(out);
}

Result<LocksGlobalRecord> decode_locks_global(std::span<const uint8_t, 512> in) {
  CEXT3_RETURN_IF_ERROR(check(in, kLocksMagic, "locks"));
  const uint8_t* p = in.data();
  LocksGlobalRecord r;
  r.slot_count = get_le32(p + 8);
  r.coordinator_slot = get_le32(p + 12);
  r.coordinator_epoch = get_le64(p + 16);
  return r;
}

void encode_slot_lease(const SlotLeaseRecord& r, std::span<uint8_t, 512> out) {
  std::fill(out.begin(), out.end(), 0);
  uint8_t* p = out.data();
  std::memcpy(p, kSlotLeaseMagic, 8);
  put_le32(p + 8, r.slot);
  put_le32(p + 12, r.owned);
  put_le64(p + 16, r.lease_generation);
  put_le64(p + 24, r.lease_expiry_ns);
  put_name(p + 32, r.owner);
  put_le64(p + 96, r.recovery_generation);
  put_le32(p + 104, r.journal_dirty);
  seal(out);
}

Result<SlotLeaseRecord> decode_slot_lease(std::span<const uint8_t, 512> in) {
  CEXT3_RETURN_IF_ERROR(check(in, kSlotLeaseMagic, "slot lease"));
  const uint8_t* p = in.data();
  SlotLeaseRecord r;
  r.slot = get_le32(p + 8);
  r.owned = get_le32(p + 12);
  r.lease_generation = get_le64(p + 16);
  r.lease_expiry_ns = get_le64(p + 24);
  r.owner = get_name(p + 32);
  r.recovery_generation = get_le64(p + 96);
  r.journal_dirty = get_le32(p + 104);
  return r;
}

}  // namespace cext3::cluster
