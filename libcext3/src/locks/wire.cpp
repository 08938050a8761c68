// Encoding and decoding of lock protocol frames (layout in wire.h).
#include "locks/wire.h"

#include <cstring>

namespace cext3::locks::wire {
namespace {

constexpr uint8_t kFlagTry = 1, kFlagRelease = 2, kFlagHasLvb = 4, kFlagHasPlock = 8;
constexpr uint8_t kEntryHolding = 1, kEntryPending = 2, kEntryPendingTry = 4;

void put_u8(std::string* o, uint8_t v) { o->push_back(static_cast<char>(v)); }
void put_u16(std::string* o, uint16_t v) {
  for (int i = 0; i < 2; ++i) o->push_back(static_cast<char>(v >> (8 * i)));
}
void put_u32(std::string* o, uint32_t v) {
  for (int i = 0; i < 4; ++i) o->push_back(static_cast<char>(v >> (8 * i)));
}
void put_u64(std::string* o, uint64_t v) {
  for (int i = 0; i < 8; ++i) o->push_back(static_cast<char>(v >> (8 * i)));
}
void put_str(std::string* o, const std::string& s) {
  // Resource names and reasons are short; longer ones are cut, never sent torn.
  size_t n = s.size() > 0xFFFF ? 0xFFFF : s.size();
  put_u16(o, static_cast<uint16_t>(n));
  o->append(s.data(), n);
}
void put_lvb(std::string* o, const Lvb& l) { o->append(reinterpret_cast<const char*>(l.data()), l.size()); }

// Bounds-checked reader: every get fails (and stays failed) past the end.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n) : p_(p), n_(n) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == n_; }
  uint64_t get(int bytes) {
    if (!need(bytes)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p_[pos_ + i]) << (8 * i);
    pos_ += bytes;
    return v;
  }
  std::string str() {
    size_t len = get(2);
    if (!need(len)) return {};
    std::string s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  void lvb(Lvb* out) {
    if (!need(out->size())) return;
    std::memcpy(out->data(), p_ + pos_, out->size());
    pos_ += out->size();
  }

 private:
  bool need(size_t k) {
    if (!ok_ || n_ - pos_ < k) ok_ = false;
    return ok_;
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  bool ok_ = true;
};

bool valid_mode(uint64_t m) { return m <= static_cast<uint64_t>(LockMode::kEX); }

constexpr size_t kPlockEntryBytes = 8 + 1 + 1 + 8 + 4 + 4 + 8 + 8 + 1;

void put_plock(std::string* o, const PlockEntry& e) {
  put_u64(o, e.ino);
  put_u8(o, e.space);
  put_u8(o, static_cast<uint8_t>(e.type));
  put_u64(o, e.owner);
  put_u32(o, e.pid);
  put_u32(o, e.slot);
  put_u64(o, e.start);
  put_u64(o, e.end);
  put_u8(o, e.wait ? 1 : 0);
}

// False for values no sender produces (the frame is then refused).
bool get_plock(Reader& r, PlockEntry* e) {
  e->ino = r.get(8);
  uint64_t space = r.get(1), type = r.get(1);
  e->owner = r.get(8);
  e->pid = static_cast<uint32_t>(r.get(4));
  e->slot = static_cast<uint32_t>(r.get(4));
  e->start = r.get(8);
  e->end = r.get(8);
  uint64_t wait = r.get(1);
  if (space > 1 || type > static_cast<uint64_t>(PlockType::kWrite) || wait > 1 || e->start > e->end) return false;
  e->space = static_cast<uint8_t>(space);
  e->type = static_cast<PlockType>(type);
  e->wait = wait == 1;
  return true;
}

}  // namespace

const char* to_string(MsgType t) {
  switch (t) {
    case MsgType::kHello: return "hello";
    case MsgType::kHelloAck: return "hello-ack";
    case MsgType::kHelloReject: return "hello-reject";
    case MsgType::kRequest: return "request";
    case MsgType::kGrant: return "grant";
    case MsgType::kDeny: return "deny";
    case MsgType::kCallback: return "callback";
    case MsgType::kDowngrade: return "downgrade";
    case MsgType::kRecoveryDone: return "recovery-done";
    case MsgType::kPlockSet: return "plock-set";
    case MsgType::kPlockGet: return "plock-get";
    case MsgType::kPlockCancel: return "plock-cancel";
    case MsgType::kPlockReply: return "plock-reply";
  }
  return "unknown";
}

void encode(const Message& m, std::string* out) {
  size_t start = out->size();
  put_u32(out, 0);  // length, patched below
  put_u8(out, static_cast<uint8_t>(m.type));
  uint8_t flags = (m.try_only ? kFlagTry : 0) | (m.release ? kFlagRelease : 0) | (m.has_lvb ? kFlagHasLvb : 0) |
                  (m.has_plock ? kFlagHasPlock : 0);
  put_u8(out, flags);
  put_u8(out, static_cast<uint8_t>(m.mode));
  put_u32(out, m.slot);
  put_u64(out, m.generation);
  put_u64(out, m.epoch);
  put_str(out, m.resource);
  if (m.has_lvb) put_lvb(out, m.lvb);
  put_str(out, m.reason);
  put_u32(out, static_cast<uint32_t>(m.report.size()));
  for (const ReportEntry& e : m.report) {
    put_str(out, e.resource);
    put_u8(out, (e.holding ? kEntryHolding : 0) | (e.pending ? kEntryPending : 0) |
                    (e.pending_try ? kEntryPendingTry : 0));
    put_u8(out, static_cast<uint8_t>(e.held));
    put_u8(out, static_cast<uint8_t>(e.pending_mode));
    put_lvb(out, e.lvb);
  }
  if (m.has_plock) {
    put_u64(out, m.plock_req);
    put_u8(out, static_cast<uint8_t>(m.plock_result));
    put_plock(out, m.plock);
    put_u32(out, static_cast<uint32_t>(m.plock_report.size()));
    for (const PlockEntry& e : m.plock_report) put_plock(out, e);
  }
  uint32_t body = static_cast<uint32_t>(out->size() - start - 4);
  for (int i = 0; i < 4; ++i) (*out)[start + i] = static_cast<char>(body >> (8 * i));
}

Result<size_t> decode(const uint8_t* buf, size_t len, Message* out) {
  if (len < 4) return size_t{0};
  uint32_t body = static_cast<uint32_t>(buf[0]) | static_cast<uint32_t>(buf[1]) << 8 |
                  static_cast<uint32_t>(buf[2]) << 16 | static_cast<uint32_t>(buf[3]) << 24;
  if (body > kMaxFrameBytes)
    return Status::Corruption("lock protocol frame of " + std::to_string(body) +
                              " bytes exceeds the limit: the peer is not a cext3 lock service of this version; check the address it connects to");
  if (len - 4 < body) return size_t{0};
  Reader r(buf + 4, body);
  Message m;
  uint64_t type = r.get(1);
  uint8_t flags = static_cast<uint8_t>(r.get(1));
  uint64_t mode = r.get(1);
  m.slot = static_cast<uint32_t>(r.get(4));
  m.generation = r.get(8);
  m.epoch = r.get(8);
  m.resource = r.str();
  m.try_only = flags & kFlagTry;
  m.release = flags & kFlagRelease;
  m.has_lvb = flags & kFlagHasLvb;
  if (m.has_lvb) r.lvb(&m.lvb);
  m.reason = r.str();
  uint64_t count = r.get(4);
  // Each entry takes at least 2 + 3 + 64 bytes: a count beyond that is garbage.
  if (r.ok() && count > body / 69) count = UINT64_MAX;
  for (uint64_t i = 0; r.ok() && count != UINT64_MAX && i < count; ++i) {
    ReportEntry e;
    e.resource = r.str();
    uint8_t ef = static_cast<uint8_t>(r.get(1));
    uint64_t held = r.get(1), pend = r.get(1);
    r.lvb(&e.lvb);
    if (!valid_mode(held) || !valid_mode(pend)) { count = UINT64_MAX; break; }
    e.holding = ef & kEntryHolding;
    e.pending = ef & kEntryPending;
    e.pending_try = ef & kEntryPendingTry;
    e.held = static_cast<LockMode>(held);
    e.pending_mode = static_cast<LockMode>(pend);
    m.report.push_back(std::move(e));
  }
  m.has_plock = flags & kFlagHasPlock;
  bool plock_ok = true;
  if (m.has_plock && r.ok() && count != UINT64_MAX) {
    m.plock_req = r.get(8);
    uint64_t result = r.get(1);
    plock_ok = result <= static_cast<uint64_t>(PlockResult::kDeadlock) && get_plock(r, &m.plock);
    m.plock_result = static_cast<PlockResult>(plock_ok ? result : 0);
    uint64_t n = r.get(4);
    if (r.ok() && n > body / kPlockEntryBytes) plock_ok = false;
    for (uint64_t i = 0; plock_ok && r.ok() && i < n; ++i) {
      PlockEntry e;
      plock_ok = get_plock(r, &e);
      m.plock_report.push_back(e);
    }
  }
  if (!r.ok() || !r.done() || count == UINT64_MAX || !plock_ok || type < 1 || type > 13 || !valid_mode(mode))
    return Status::Corruption("malformed lock protocol frame (type " + std::to_string(type) +
                              "): the peer speaks another protocol version; restart it with this build");
  m.type = static_cast<MsgType>(type);
  m.mode = static_cast<LockMode>(mode);
  *out = std::move(m);
  return size_t{4} + body;
}

}  // namespace cext3::locks::wire
