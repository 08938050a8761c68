// The master's record-lock table (plock_table.h; rules in docs/LOCKS.md).
#include "locks/plock_table.h"

#include <fcntl.h>

#include <algorithm>

namespace cext3::locks {
namespace {

RangeLock from_entry(uint32_t slot, const wire::PlockEntry& e) {
  RangeLock l;
  l.who = PlockOwnerKey{slot, e.owner};
  l.pid = e.pid;
  l.type = e.type;
  l.start = e.start;
  l.end = e.end;
  return l;
}

wire::PlockEntry to_entry(uint64_t ino, uint8_t space, const RangeLock& l) {
  wire::PlockEntry e;
  e.ino = ino;
  e.space = space;
  e.type = l.type;
  e.owner = l.who.owner;
  e.pid = l.pid;
  e.slot = l.who.slot;
  e.start = l.start;
  e.end = l.end;
  return e;
}

constexpr uint32_t kUnknownHolder = UINT32_MAX;

}  // namespace

void PlockTable::reply(uint32_t slot, uint64_t req, wire::PlockResult result, const wire::PlockEntry& e,
                       const PlockGate& g, std::vector<Outgoing>* out) const {
  wire::Message m;
  m.type = wire::MsgType::kPlockReply;
  m.epoch = g.epoch;
  m.has_plock = true;
  m.plock_req = req;
  m.plock_result = result;
  m.plock = e;
  out->push_back({slot, std::move(m)});
}

bool PlockTable::holds_nothing(const RangeLock& w) const {
  // Same owner, or the same process through another owner (its flock and
  // fcntl owners differ): either may be what an earlier waiter waits for.
  for (const auto& [key, f] : files_)
    for (const RangeLock& h : f.held)
      if (h.who == w.who || (w.pid != 0 && h.who.slot == w.who.slot && h.pid == w.pid)) return false;
  return true;
}

std::vector<PlockOwnerKey> PlockTable::blockers(const File& f, size_t pos, const RangeLock& w,
                                                const PlockGate& g) const {
  std::vector<PlockOwnerKey> by;
  if (w.type == wire::PlockType::kUnlock) return by;
  if (g.unknown_slot >= 0) by.push_back(PlockOwnerKey{kUnknownHolder, 0});
  for (const RangeLock& h : f.held)
    if (blocks(h, w)) by.push_back(h.who);
  // Fairness: an owner holding nothing cannot be what anyone waits for, so
  // letting it queue behind earlier conflicting waiters cannot deadlock, and
  // it keeps a stream of new readers from starving a waiting writer.
  if (pos > 0 && holds_nothing(w))
    for (size_t i = 0; i < pos && i < f.queue.size(); ++i)
      if (blocks(f.queue[i].lock, w)) by.push_back(f.queue[i].lock.who);
  return by;
}

bool PlockTable::would_deadlock(const RangeLock& req, std::vector<PlockOwnerKey> by, const PlockGate& g) const {
  // Follow "waits for" from the owners `req` would wait for: reaching req's
  // own owner closes a cycle. Only fcntl locks, as Linux.
  std::set<PlockOwnerKey> seen;
  while (!by.empty()) {
    PlockOwnerKey o = by.back();
    by.pop_back();
    if (o == req.who) return true;
    if (!seen.insert(o).second) continue;
    for (const auto& [key, f] : files_) {
      if (key.second != static_cast<uint8_t>(PlockSpace::kPosix)) continue;
      for (size_t i = 0; i < f.queue.size(); ++i) {
        if (f.queue[i].lock.who != o) continue;
        std::vector<PlockOwnerKey> next = blockers(f, i, f.queue[i].lock, g);
        by.insert(by.end(), next.begin(), next.end());
      }
    }
  }
  return false;
}

void PlockTable::process_file(const Key& key, File& f, const PlockGate& g, std::vector<Outgoing>* out) {
  if (!g.ready) return;
  // In arrival order. A grant may also lower its owner's other locks (a
  // write turned read), which can free an earlier waiter: start over then.
  for (size_t i = 0; i < f.queue.size();) {
    if (!blockers(f, i, f.queue[i].lock, g).empty()) {
      ++i;
      continue;
    }
    Waiter w = f.queue[i];
    f.queue.erase(f.queue.begin() + static_cast<std::ptrdiff_t>(i));
    set_range(&f.held, w.lock);
    reply(w.lock.who.slot, w.req, wire::PlockResult::kGranted, to_entry(key.first, key.second, w.lock), g, out);
    i = 0;
  }
}

void PlockTable::on_set(uint32_t slot, const wire::Message& m, const PlockGate& g, std::vector<Outgoing>* out) {
  if (!g.ready) {
    kept_.emplace_back(slot, m);
    return;
  }
  Key key{m.plock.ino, m.plock.space};
  File& f = files_[key];
  RangeLock l = from_entry(slot, m.plock);
  wire::PlockEntry e = to_entry(key.first, key.second, l);
  std::vector<PlockOwnerKey> by = blockers(f, f.queue.size(), l, g);
  if (by.empty()) {
    set_range(&f.held, l);
    reply(slot, m.plock_req, wire::PlockResult::kGranted, e, g, out);
    process_file(key, f, g, out);  // an unlock or a write turned read may free waiters
  } else if (!m.plock.wait) {
    reply(slot, m.plock_req, wire::PlockResult::kConflict, e, g, out);
  } else if (key.second == static_cast<uint8_t>(PlockSpace::kPosix) && would_deadlock(l, by, g)) {
    reply(slot, m.plock_req, wire::PlockResult::kDeadlock, e, g, out);
  } else {
    f.queue.push_back(Waiter{l, m.plock_req});
  }
  drop_empty();
}

void PlockTable::on_get(uint32_t slot, const wire::Message& m, const PlockGate& g, std::vector<Outgoing>* out) {
  if (!g.ready) {
    kept_.emplace_back(slot, m);
    return;
  }
  RangeLock l = from_entry(slot, m.plock);
  auto it = files_.find(Key{m.plock.ino, m.plock.space});
  if (it != files_.end())
    for (const RangeLock& h : it->second.held)
      if (blocks(h, l)) {
        reply(slot, m.plock_req, wire::PlockResult::kConflict, to_entry(m.plock.ino, m.plock.space, h), g, out);
        return;
      }
  if (g.unknown_slot >= 0 && l.type != wire::PlockType::kUnlock) {
    // A dead node whose locks died with the old master may hold anything.
    RangeLock phantom;
    phantom.who = PlockOwnerKey{kUnknownHolder, 0};
    phantom.type = wire::PlockType::kWrite;
    phantom.start = 0;
    phantom.end = UINT64_MAX;
    reply(slot, m.plock_req, wire::PlockResult::kConflict, to_entry(m.plock.ino, m.plock.space, phantom), g, out);
    return;
  }
  wire::PlockEntry none = m.plock;
  none.type = wire::PlockType::kUnlock;
  reply(slot, m.plock_req, wire::PlockResult::kGranted, none, g, out);
}

void PlockTable::on_cancel(uint32_t slot, const wire::Message& m, const PlockGate& g, std::vector<Outgoing>* out) {
  // Always confirmed: a grant that crossed the cancel went out before this
  // reply on the same connection, so the node sees it first.
  std::erase_if(kept_, [&](const auto& k) { return k.first == slot && k.second.plock_req == m.plock_req; });
  for (auto& [key, f] : files_) {
    size_t before = f.queue.size();
    std::erase_if(f.queue, [&](const Waiter& w) { return w.lock.who.slot == slot && w.req == m.plock_req; });
    if (f.queue.size() != before) process_file(key, f, g, out);  // it may have held others back (fairness)
  }
  reply(slot, m.plock_req, wire::PlockResult::kCancelled, m.plock, g, out);
  drop_empty();
}

void PlockTable::replace_slot(uint32_t slot, const std::vector<wire::PlockEntry>& report) {
  forget_slot(slot);
  for (const wire::PlockEntry& e : report) {
    if (e.type == wire::PlockType::kUnlock || e.space > 1 || e.start > e.end) continue;
    set_range(&files_[Key{e.ino, e.space}].held, from_entry(slot, e));
  }
}

void PlockTable::forget_slot(uint32_t slot) {
  dead_.erase(slot);
  std::erase_if(kept_, [&](const auto& k) { return k.first == slot; });
  for (auto& [key, f] : files_) {
    std::erase_if(f.held, [&](const RangeLock& l) { return l.who.slot == slot; });
    std::erase_if(f.queue, [&](const Waiter& w) { return w.lock.who.slot == slot; });
  }
  drop_empty();
}

void PlockTable::slot_died(uint32_t slot, bool hold_back) {
  if (!hold_back) {
    forget_slot(slot);
    return;
  }
  dead_.insert(slot);
  std::erase_if(kept_, [&](const auto& k) { return k.first == slot; });
  for (auto& [key, f] : files_)
    std::erase_if(f.queue, [&](const Waiter& w) { return w.lock.who.slot == slot; });
  drop_empty();
}

void PlockTable::slot_recovered(uint32_t slot) {
  if (dead_.count(slot)) forget_slot(slot);
}

void PlockTable::process_all(const PlockGate& g, std::vector<Outgoing>* out) {
  if (!g.ready) return;
  std::deque<std::pair<uint32_t, wire::Message>> kept;
  kept.swap(kept_);
  for (auto& [slot, m] : kept) {
    if (m.type == wire::MsgType::kPlockSet) on_set(slot, m, g, out);
    if (m.type == wire::MsgType::kPlockGet) on_get(slot, m, g, out);
  }
  for (auto& [key, f] : files_) process_file(key, f, g, out);
  drop_empty();
}

void PlockTable::drop_empty() {
  std::erase_if(files_, [](const auto& kv) { return kv.second.held.empty() && kv.second.queue.empty(); });
}

void PlockTable::status(PlockStatus* s) const {
  for (const auto& [key, f] : files_) {
    for (const RangeLock& l : f.held) {
      PlockStatus::Held h;
      h.ino = key.first;
      h.space = static_cast<PlockSpace>(key.second);
      h.lock.type = l.type == wire::PlockType::kWrite ? F_WRLCK : F_RDLCK;
      h.lock.start = l.start;
      h.lock.end = l.end;
      h.lock.pid = l.pid;
      h.lock.slot = l.who.slot;
      h.lock.owner = l.who.owner;
      s->master_held.push_back(h);
    }
    s->master_waiting += static_cast<uint32_t>(f.queue.size());
  }
}

}  // namespace cext3::locks
