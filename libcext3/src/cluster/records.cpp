#include "cext3/cluster/records.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cext3/cluster/crc32c.h"
#include "cluster/le_bytes.h"

namespace cext3::cluster {
namespace {

// Every record: 8-byte magic at 0, fields, CRC-32C of [0, 508) at 508.
constexpr size_t kCrcOffset = 508;
constexpr size_t kNameBytes = 64;

// One field of a record: where it sits and which member it is. A record's
// layout is one table of these, read by both the encoder and the decoder,
// so the two cannot disagree (docs/FORMAT.md lists the same offsets).
template <class R>
struct Field {
  enum class Type { kU32, kU64, kName } type;
  size_t offset;
  uint32_t R::*u32 = nullptr;
  uint64_t R::*u64 = nullptr;
  // A function rather than a member pointer: records without strings then
  // never instantiate string code (and GCC's bounds analysis stays quiet).
  std::string* (*text)(R&) = nullptr;
};
template <class R>
Field<R> u32(size_t off, uint32_t R::*m) {
  return {Field<R>::Type::kU32, off, m, nullptr, nullptr};
}
template <class R>
Field<R> u64(size_t off, uint64_t R::*m) {
  return {Field<R>::Type::kU64, off, nullptr, m, nullptr};
}
// NUL-padded string of kNameBytes; at most kNameBytes - 1 bytes are kept.
template <class R, std::string R::*M>
Field<R> name(size_t off) {
  return {Field<R>::Type::kName, off, nullptr, nullptr, [](R& r) { return &(r.*M); }};
}

template <class R>
struct RecordFormat {
  const char* magic;  // 8 bytes
  const char* what;   // for messages: "heartbeat", "slot lease"
  std::vector<Field<R>> fields;
};

template <class R>
void encode(const RecordFormat<R>& fmt, const R& r, std::span<uint8_t, 512> out) {
  std::fill(out.begin(), out.end(), 0);
  uint8_t* p = out.data();
  std::memcpy(p, fmt.magic, 8);
  for (const Field<R>& f : fmt.fields) {
    switch (f.type) {
      case Field<R>::Type::kU32: put_le32(p + f.offset, r.*f.u32); break;
      case Field<R>::Type::kU64: put_le64(p + f.offset, r.*f.u64); break;
      case Field<R>::Type::kName: {
        const std::string& s = *f.text(const_cast<R&>(r));
        std::memcpy(p + f.offset, s.data(), std::min(s.size(), kNameBytes - 1));
        break;
      }
    }
  }
  put_le32(p + kCrcOffset, crc32c(p, kCrcOffset));
}

template <class R>
Result<R> decode(const RecordFormat<R>& fmt, std::span<const uint8_t, 512> in) {
  const uint8_t* p = in.data();
  if (std::memcmp(p, fmt.magic, 8) != 0) return Status::Corruption(std::string(fmt.what) + " record magic is wrong");
  if (get_le32(p + kCrcOffset) != crc32c(p, kCrcOffset))
    return Status::Corruption(std::string(fmt.what) + " record checksum mismatch");
  R r;
  for (const Field<R>& f : fmt.fields) {
    switch (f.type) {
      case Field<R>::Type::kU32: r.*f.u32 = get_le32(p + f.offset); break;
      case Field<R>::Type::kU64: r.*f.u64 = get_le64(p + f.offset); break;
      case Field<R>::Type::kName: {
        size_t n = 0;
        while (n < kNameBytes - 1 && p[f.offset + n] != 0) ++n;
        *f.text(r) = std::string(reinterpret_cast<const char*>(p + f.offset), n);
        break;
      }
    }
  }
  return r;
}

using HB = HeartbeatRecord;
using LG = LocksGlobalRecord;
using SL = SlotLeaseRecord;

const RecordFormat<HB>& heartbeat_format() {
  static const RecordFormat<HB> f{kHeartbeatMagic, "heartbeat",
                                  {u32<HB>(8, &HB::slot), u32<HB>(12, &HB::flags), u64<HB>(16, &HB::sequence),
                                   u64<HB>(24, &HB::generation), u64<HB>(32, &HB::time_ns),
                                   u64<HB>(40, &HB::fence_deadline_ns), name<HB, &HB::node_name>(48),
                                   name<HB, &HB::address>(112)}};
  return f;
}

const RecordFormat<LG>& locks_global_format() {
  static const RecordFormat<LG> f{kLocksMagic, "locks",
                                  {u32<LG>(8, &LG::slot_count), u32<LG>(12, &LG::coordinator_slot),
                                   u64<LG>(16, &LG::coordinator_epoch)}};
  return f;
}

const RecordFormat<SL>& slot_lease_format() {
  static const RecordFormat<SL> f{kSlotLeaseMagic, "slot lease",
                                  {u32<SL>(8, &SL::slot), u32<SL>(12, &SL::owned), u64<SL>(16, &SL::lease_generation),
                                   u64<SL>(24, &SL::lease_expiry_ns), name<SL, &SL::owner>(32),
                                   u64<SL>(96, &SL::recovery_generation), u32<SL>(104, &SL::journal_dirty)}};
  return f;
}

}  // namespace

void encode_heartbeat(const HeartbeatRecord& r, std::span<uint8_t, 512> out) { encode(heartbeat_format(), r, out); }
Result<HeartbeatRecord> decode_heartbeat(std::span<const uint8_t, 512> in) { return decode(heartbeat_format(), in); }
void encode_locks_global(const LocksGlobalRecord& r, std::span<uint8_t, 512> out) {
  encode(locks_global_format(), r, out);
}
Result<LocksGlobalRecord> decode_locks_global(std::span<const uint8_t, 512> in) {
  return decode(locks_global_format(), in);
}
void encode_slot_lease(const SlotLeaseRecord& r, std::span<uint8_t, 512> out) { encode(slot_lease_format(), r, out); }
Result<SlotLeaseRecord> decode_slot_lease(std::span<const uint8_t, 512> in) { return decode(slot_lease_format(), in); }

}  // namespace cext3::cluster
