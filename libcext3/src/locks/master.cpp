// The lock master's state machine (master.h; rules in docs/LOCKS.md).
#include "locks/master.h"

#include <algorithm>

namespace cext3::locks {
namespace {

uint64_t lvb_version(const Lvb& l) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(l[i]) << (8 * i);
  return v;
}

void bump_lvb_version(Lvb* l) {
  uint64_t v = lvb_version(*l) + 1;
  for (int i = 0; i < 8; ++i) (*l)[i] = static_cast<uint8_t>(v >> (8 * i));
}

bool lvb_zero(const Lvb& l) {
  return std::all_of(l.begin(), l.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

Master::Master(const MembershipView& view) : view_(view) {
  // Dead slots not yet recovered when this master starts never report to it:
  // whatever they held under an earlier master is unknown here.
  for (uint32_t s : view.unrecovered)
    if (!is_live(s)) unknown_.insert(s);
}

bool Master::is_live(uint32_t slot) const {
  return std::any_of(view_.live.begin(), view_.live.end(), [&](const Member& m) { return m.slot == slot; });
}

bool Master::is_unrecovered(uint32_t slot) const {
  return std::find(view_.unrecovered.begin(), view_.unrecovered.end(), slot) != view_.unrecovered.end();
}

bool Master::all_reported() const {
  for (const Member& m : view_.live)
    if (!reported_.count(m.slot)) return false;
  return true;
}

// What an unknown dead node may still hold on this resource. The old master
// only ever granted pairwise compatible modes, and a node's own mode is never
// above the old master's belief; so if a live node reported EX here, nobody
// else held more than NL, and if one reported PR, nobody else held EX.
// Without such a report, a dead node may have held EX.
LockMode Master::unknown_bound(const Resource& r) const {
  switch (r.reported_max) {
    case LockMode::kEX: return LockMode::kNL;
    case LockMode::kPR: return LockMode::kPR;
    case LockMode::kNL: break;
  }
  return LockMode::kEX;
}

bool Master::grantable(const Resource& r, uint32_t slot, LockMode mode) const {
  if (!all_reported()) return false;
  for (const auto& [s, g] : r.granted)
    if (s != slot && !compatible(g.mode, mode)) return false;
  if (!unknown_.empty() && !compatible(unknown_bound(r), mode)) return false;
  return true;
}

void Master::grant(const std::string& name, Resource& r, uint32_t slot, LockMode mode,
                   std::vector<Outgoing>* out) {
  Grant& g = r.granted[slot];
  g.mode = mode;
  g.dead = false;
  g.callback_sent = false;
  g.seq = next_seq_++;
  granting_started_ = true;
  wire::Message m;
  m.type = wire::MsgType::kGrant;
  m.generation = g.seq;
  m.resource = name;
  m.mode = mode;
  m.epoch = view_.epoch;
  m.has_lvb = true;
  m.lvb = r.lvb;
  out->push_back({slot, std::move(m)});
}

void Master::enqueue(const std::string& name, Resource& r, uint32_t slot, LockMode mode, bool try_only,
                     std::vector<Outgoing>* out) {
  // One outstanding request per slot and resource: a new one replaces it.
  std::erase_if(r.queue, [&](const Waiter& w) { return w.slot == slot; });
  auto held = r.granted.find(slot);
  if (held != r.granted.end() && !held->second.dead && held->second.mode >= mode) {
    grant(name, r, slot, held->second.mode, out);  // already satisfied: repeat the grant
    return;
  }
  bool conversion = held != r.granted.end() && held->second.mode > LockMode::kNL;
  // Conversions queue ahead of new requests (in their own FIFO order): a node
  // holding PR and upgrading must not wait behind a request its PR blocks.
  size_t pos = r.queue.size();
  if (conversion) {
    pos = 0;
    while (pos < r.queue.size() && r.queue[pos].conversion) ++pos;
  }
  // NL blocks nobody, so it need not wait its turn.
  bool first = pos == 0 || mode == LockMode::kNL;
  if (try_only || mode == LockMode::kNL) {
    if (first && grantable(r, slot, mode)) {
      grant(name, r, slot, mode, out);
      return;
    }
    if (try_only) {
      wire::Message m;
      m.type = wire::MsgType::kDeny;
      m.resource = name;
      m.mode = mode;
      m.epoch = view_.epoch;
      out->push_back({slot, std::move(m)});
      return;
    }
  }
  r.queue.insert(r.queue.begin() + static_cast<std::ptrdiff_t>(pos), Waiter{slot, mode, conversion});
  process(name, r, out);
}

void Master::process(const std::string& name, Resource& r, std::vector<Outgoing>* out) {
  while (!r.queue.empty()) {
    Waiter head = r.queue.front();
    if (grantable(r, head.slot, head.mode)) {
      r.queue.pop_front();
      grant(name, r, head.slot, head.mode, out);
      continue;
    }
    if (!all_reported()) return;
    // FIFO: the head blocks everyone behind it. Ask the live holders that
    // block it to come down; a dead holder waits for recovery_done.
    for (auto& [s, g] : r.granted) {
      if (s == head.slot || g.dead || compatible(g.mode, head.mode)) continue;
      if (g.callback_sent && g.callback_for >= head.mode) continue;
      g.callback_sent = true;
      g.callback_for = head.mode;
      wire::Message m;
      m.type = wire::MsgType::kCallback;
      m.resource = name;
      m.mode = head.mode;
      m.epoch = view_.epoch;
      out->push_back({s, std::move(m)});
    }
    return;
  }
}

void Master::process_all(std::vector<Outgoing>* out) {
  for (auto& [name, r] : resources_) process(name, r, out);
  drop_idle_resources();
  plocks_.process_all(plock_gate(), out);
}

PlockGate Master::plock_gate() const {
  PlockGate g;
  g.ready = all_reported();
  g.unknown_slot = unknown_.empty() ? -1 : static_cast<int64_t>(*unknown_.begin());
  g.epoch = view_.epoch;
  return g;
}

void Master::on_plock(uint32_t slot, const wire::Message& m, std::vector<Outgoing>* out) {
  if (!is_live(slot) || !reported_.count(slot)) return;  // a hello must come first
  switch (m.type) {
    case wire::MsgType::kPlockSet: plocks_.on_set(slot, m, plock_gate(), out); break;
    case wire::MsgType::kPlockGet: plocks_.on_get(slot, m, plock_gate(), out); break;
    case wire::MsgType::kPlockCancel: plocks_.on_cancel(slot, m, plock_gate(), out); break;
    default: break;
  }
}

bool Master::idle(const Resource& r) const {
  // A value block must outlive its holders, and so must the bound on unknown
  // holders while any is unrecovered.
  return r.granted.empty() && r.queue.empty() && lvb_zero(r.lvb) &&
         (unknown_.empty() || r.reported_max == LockMode::kNL);
}

void Master::drop_idle_resources() {
  std::erase_if(resources_, [this](const auto& kv) { return idle(kv.second); });
}

void Master::forget_slot(uint32_t slot) {
  plocks_.forget_slot(slot);
  for (auto& [name, r] : resources_) {
    r.granted.erase(slot);
    std::erase_if(r.queue, [&](const Waiter& w) { return w.slot == slot; });
  }
}

void Master::slot_died(uint32_t slot) {
  reported_.erase(slot);
  bool hold_back = is_unrecovered(slot);
  plocks_.slot_died(slot, hold_back);
  for (auto& [name, r] : resources_) {
    std::erase_if(r.queue, [&](const Waiter& w) { return w.slot == slot; });
    auto g = r.granted.find(slot);
    if (g == r.granted.end()) continue;
    if (hold_back)
      g->second.dead = true;  // blocks conflicting grants until recovery_done
    else
      r.granted.erase(g);     // clean leave: nothing to recover
  }
}

void Master::slot_recovered(uint32_t slot) {
  unknown_.erase(slot);
  plocks_.slot_recovered(slot);
  for (auto& [name, r] : resources_) {
    auto g = r.granted.find(slot);
    if (g == r.granted.end() || !g->second.dead) continue;
    // A dead EX holder never returned its value block, but its journal
    // (now replayed) may have changed what the lock covers: bump the
    // version so no node trusts a copy cached under the old one.
    if (g->second.mode == LockMode::kEX) bump_lvb_version(&r.lvb);
    r.granted.erase(g);
  }
}

Status Master::on_hello(const wire::Message& hello, std::vector<Outgoing>* out) {
  if (hello.epoch != view_.epoch)
    return Status::Busy("coordinator epoch " + std::to_string(view_.epoch) + " here, node " +
                        std::to_string(hello.slot) + " is at epoch " + std::to_string(hello.epoch));
  auto mem = std::find_if(view_.live.begin(), view_.live.end(),
                          [&](const Member& m) { return m.slot == hello.slot; });
  if (mem == view_.live.end())
    return Status::Busy("slot " + std::to_string(hello.slot) + " is not a live member in the master's view");
  if (mem->generation != hello.generation)
    return Status::Busy("slot " + std::to_string(hello.slot) + " generation " + std::to_string(hello.generation) +
                        " does not match the live member's " + std::to_string(mem->generation));
  // The report is the node's whole truth: it replaces whatever this master
  // believed about the slot (a node's mode is never above the master's belief,
  // so grants lost in flight on a broken connection are dropped here).
  forget_slot(hello.slot);
  unknown_.erase(hello.slot);
  for (const wire::ReportEntry& e : hello.report) {
    if (!e.holding) continue;
    Resource& r = resources_[e.resource];
    Grant g;
    g.mode = e.held;  // seq 0: the node's next downgrade names grant 0
    r.granted[hello.slot] = g;
    if (!granting_started_) {
      // A new master lost the LVBs with the old one: take the holders' copies,
      // an EX holder's first (it is the newest), else the highest version.
      if (e.held == LockMode::kEX || (r.reported_max != LockMode::kEX && lvb_version(e.lvb) > lvb_version(r.lvb)))
        r.lvb = e.lvb;
      r.reported_max = std::max(r.reported_max, e.held);
    }
  }
  plocks_.replace_slot(hello.slot, hello.plock_report);
  reported_.insert(hello.slot);
  wire::Message ack;
  ack.type = wire::MsgType::kHelloAck;
  ack.epoch = view_.epoch;
  out->push_back({hello.slot, std::move(ack)});
  for (const wire::ReportEntry& e : hello.report)
    if (e.pending) enqueue(e.resource, resources_[e.resource], hello.slot, e.pending_mode, e.pending_try, out);
  process_all(out);
  return Status::OK();
}

void Master::on_request(uint32_t slot, const wire::Message& m, std::vector<Outgoing>* out) {
  if (!is_live(slot) || !reported_.count(slot)) return;  // a hello must come first
  enqueue(m.resource, resources_[m.resource], slot, m.mode, m.try_only, out);
}

void Master::on_downgrade(uint32_t slot, const wire::Message& m, std::vector<Outgoing>* out) {
  // A dead slot's grants change only through recovery; a late message from a
  // node declared dead must not free what its journal may still cover.
  if (!is_live(slot) || !reported_.count(slot)) return;
  auto it = resources_.find(m.resource);
  if (it == resources_.end()) return;
  Resource& r = it->second;
  auto g = r.granted.find(slot);
  if (g == r.granted.end() || m.generation != g->second.seq) return;  // crossed a newer grant
  if (m.has_lvb && g->second.mode == LockMode::kEX) r.lvb = m.lvb;
  if (m.release) {
    r.granted.erase(g);
  } else if (m.mode < g->second.mode) {
    g->second.mode = m.mode;
    g->second.callback_sent = false;
  }
  process(m.resource, r, out);
  if (idle(r)) resources_.erase(it);
}

void Master::on_recovery_done(uint32_t slot, std::vector<Outgoing>* out) {
  // A live slot has rejoined; its state came with its hello.
  if (is_live(slot)) return;
  slot_recovered(slot);
  process_all(out);
}

void Master::on_membership(const MembershipView& view, std::vector<Outgoing>* out) {
  MembershipView old = std::move(view_);
  view_ = view;
  // A live slot that dies before it ever reported here: unknown holdings.
  for (const Member& m : old.live)
    if (!is_live(m.slot) && !reported_.count(m.slot) && is_unrecovered(m.slot)) unknown_.insert(m.slot);
  // Deaths: a reported slot that left `live`, or came back under another
  // generation (it restarted: what it held before is the dead node's).
  for (uint32_t s : std::set<uint32_t>(reported_)) {
    auto mem = std::find_if(view_.live.begin(), view_.live.end(), [&](const Member& m) { return m.slot == s; });
    auto was = std::find_if(old.live.begin(), old.live.end(), [&](const Member& m) { return m.slot == s; });
    if (mem == view_.live.end() || (was != old.live.end() && mem->generation != was->generation)) slot_died(s);
  }
  // Recoveries: a slot the disk no longer lists as unrecovered.
  std::set<uint32_t> held_back(unknown_);
  for (auto& [name, r] : resources_)
    for (auto& [s, g] : r.granted)
      if (g.dead) held_back.insert(s);
  for (uint32_t s : held_back)
    if (!is_live(s) && !is_unrecovered(s)) slot_recovered(s);
  process_all(out);
}

uint64_t Master::grant_seq(uint32_t slot, const std::string& resource) const {
  auto r = resources_.find(resource);
  if (r == resources_.end()) return 0;
  auto g = r->second.granted.find(slot);
  return g == r->second.granted.end() ? 0 : g->second.seq;
}

std::vector<MasterStatusEntry> Master::status() const {
  std::vector<MasterStatusEntry> v;
  for (const auto& [name, r] : resources_) {
    MasterStatusEntry e;
    e.resource = name;
    for (const auto& [s, g] : r.granted) e.granted.emplace_back(s, g.mode);
    e.waiting = static_cast<uint32_t>(r.queue.size());
    v.push_back(std::move(e));
  }
  return v;
}

}  // namespace cext3::locks
