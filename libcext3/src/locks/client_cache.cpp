// The node-side lock cache (client_cache.h; rules in docs/LOCKS.md).
#include "locks/client_cache.h"

#include <algorithm>

namespace cext3::locks {

LockMode ClientCache::target_for(LockMode held, LockMode wanted) {
  // The highest mode at or below `held` that lets the master grant `wanted`:
  // EX wanted -> NL; PR wanted -> an EX comes down to PR, a PR stays.
  if (wanted == LockMode::kEX) return LockMode::kNL;
  if (wanted == LockMode::kPR && held == LockMode::kEX) return LockMode::kPR;
  return held;
}

bool ClientCache::locally_compatible(const Entry& e, const LocalWaiter& w) const {
  for (const auto& [id, mode] : e.holders) {
    if (w.is_convert && id == w.id) continue;
    if (!compatible(mode, w.mode)) return false;
  }
  return true;
}

bool ClientCache::can_serve(const Entry& e, const LocalWaiter& w) const {
  if (!e.holding || w.mode > e.cluster) return false;
  // While the master waits for us to come down, nothing above the target is
  // handed out locally, or a busy node would starve the remote waiter.
  if (e.downgrading && w.mode > e.downgrade_to) return false;
  if (e.callback && w.mode > target_for(e.cluster, e.wanted)) return false;
  return locally_compatible(e, w);
}

void ClientCache::grant_local(Entry& e, const std::shared_ptr<LocalWaiter>& w, bool from_cache) {
  e.holders[w->id] = w->mode;
  w->lvb = e.lvb;
  w->from_cache = from_cache;
  w->state = LocalWaiter::State::kGranted;
  w->cv.notify_all();
}

void ClientCache::send_request(const std::string& name, Entry& e, LockMode mode, bool try_only, ClientEffects* fx) {
  e.requested = true;
  e.requested_mode = mode;
  e.requested_try = try_only;
  wire::Message m;
  m.type = wire::MsgType::kRequest;
  m.resource = name;
  m.mode = mode;
  m.try_only = try_only;
  fx->to_master.push_back(std::move(m));
}

void ClientCache::process(const std::string& name, Entry& e, ClientEffects* fx) {
  // FIFO among local waiters: stop at the first one that cannot be served.
  while (!e.waiters.empty()) {
    std::shared_ptr<LocalWaiter> w = e.waiters.front();
    if (!can_serve(e, *w)) break;
    e.waiters.pop_front();
    grant_local(e, w, false);
  }
  if (!e.waiters.empty()) {
    const LocalWaiter& w = *e.waiters.front();
    bool needs_master = !e.holding || w.mode > e.cluster;
    // One outstanding request per resource; none while coming down for a
    // callback (it would jump the queue as a conversion at the master).
    if (needs_master && !w.try_only && !e.requested && !e.callback && !e.downgrading)
      send_request(name, e, w.mode, false, fx);
  }
  check_downgrade(name, e, fx);
}

void ClientCache::check_downgrade(const std::string& name, Entry& e, ClientEffects* fx) {
  if (!e.callback || e.downgrading || !e.holding) return;
  LockMode to = target_for(e.cluster, e.wanted);
  for (const auto& [id, mode] : e.holders)
    if (mode > to) return;  // a local user still needs more; unlock will retry
  e.downgrading = true;
  e.downgrade_to = to;
  fx->downgrade_ready.push_back(name);
}

void ClientCache::forget_if_idle(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end()) return;
  const Entry& e = it->second;
  if (!e.holding && e.holders.empty() && e.waiters.empty() && !e.requested && !e.downgrading && !e.callback)
    entries_.erase(it);
}

void ClientCache::add_waiter(const std::shared_ptr<LocalWaiter>& w, ClientEffects* fx) {
  Entry& e = entries_[w->resource];
  if (w->try_only) {
    bool nobody_ahead = e.waiters.empty();
    if (nobody_ahead && can_serve(e, *w)) {
      grant_local(e, w, true);
      return;
    }
    // Only the cluster mode is missing: ask the master, which answers at once.
    if (nobody_ahead && locally_compatible(e, *w) && !e.callback && !e.downgrading && !e.requested) {
      w->try_sent = true;
      e.waiters.push_back(w);
      send_request(w->resource, e, w->mode, true, fx);
      return;
    }
    w->state = LocalWaiter::State::kDenied;
    forget_if_idle(w->resource);
    return;
  }
  if (w->is_convert) {
    // Conversions of held handles go ahead of new requests, as at the master.
    auto pos = std::find_if(e.waiters.begin(), e.waiters.end(), [](const auto& x) { return !x->is_convert; });
    e.waiters.insert(pos, w);
  } else {
    e.waiters.push_back(w);
  }
  process(w->resource, e, fx);
  // Served before add_waiter returns: no message was needed for it.
  if (w->state == LocalWaiter::State::kGranted) w->from_cache = true;
}

void ClientCache::remove_waiter(const std::shared_ptr<LocalWaiter>& w, ClientEffects* fx) {
  auto it = entries_.find(w->resource);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  std::erase(e.waiters, w);
  // An outstanding request stays at the master; its grant is simply cached.
  process(w->resource, e, fx);
  forget_if_idle(w->resource);
}

bool ClientCache::release_holder(const std::string& resource, uint64_t id, const Lvb& lvb, ClientEffects* fx) {
  auto it = entries_.find(resource);
  if (it == entries_.end()) return false;
  Entry& e = it->second;
  auto h = e.holders.find(id);
  if (h == e.holders.end()) return false;
  if (h->second == LockMode::kEX) e.lvb = lvb;
  e.holders.erase(h);
  process(resource, e, fx);
  return true;
}

bool ClientCache::downgrade_holder(const std::string& resource, uint64_t id, LockMode to, const Lvb& lvb,
                                   ClientEffects* fx) {
  auto it = entries_.find(resource);
  if (it == entries_.end()) return false;
  Entry& e = it->second;
  auto h = e.holders.find(id);
  if (h == e.holders.end()) return false;
  if (h->second == LockMode::kEX && to != LockMode::kEX) e.lvb = lvb;
  if (to < h->second) h->second = to;
  process(resource, e, fx);
  return true;
}

void ClientCache::on_grant(const wire::Message& m, ClientEffects* fx) {
  Entry& e = entries_[m.resource];
  e.holding = true;
  e.cluster = m.mode;
  e.grant_seq = m.generation;
  e.lvb = m.lvb;
  e.requested = false;
  if (e.callback && !e.downgrading && compatible(e.cluster, e.wanted)) e.callback = false;
  process(m.resource, e, fx);
}

void ClientCache::on_deny(const wire::Message& m, ClientEffects* fx) {
  auto it = entries_.find(m.resource);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.requested = false;
  std::erase_if(e.waiters, [](const std::shared_ptr<LocalWaiter>& w) {
    if (!w->try_sent) return false;
    w->state = LocalWaiter::State::kDenied;
    w->cv.notify_all();
    return true;
  });
  process(m.resource, e, fx);
  forget_if_idle(m.resource);
}

void ClientCache::on_callback(const wire::Message& m, ClientEffects* fx) {
  auto it = entries_.find(m.resource);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (!e.holding || compatible(e.cluster, m.mode)) return;  // already down (a stale callback)
  e.wanted = e.callback ? std::max(e.wanted, m.mode) : m.mode;
  e.callback = true;
  check_downgrade(m.resource, e, fx);
}

bool ClientCache::begin_downgrade(const std::string& resource, LockMode* from, LockMode* to) {
  auto it = entries_.find(resource);
  if (it == entries_.end() || !it->second.downgrading) return false;
  *from = it->second.cluster;
  *to = std::min(it->second.downgrade_to, it->second.cluster);
  return true;
}

void ClientCache::finish_downgrade(const std::string& resource, ClientEffects* fx) {
  auto it = entries_.find(resource);
  if (it == entries_.end() || !it->second.downgrading) return;
  Entry& e = it->second;
  e.downgrading = false;
  LockMode from = e.cluster, to = std::min(e.downgrade_to, e.cluster);
  if (e.holding && to < from) {
    e.cluster = to;
    wire::Message m;
    m.type = wire::MsgType::kDowngrade;
    m.resource = resource;
    m.mode = to;
    m.generation = e.grant_seq;
    m.has_lvb = from == LockMode::kEX;  // only an EX holder may have changed it
    m.lvb = e.lvb;
    // Nothing left to cache at NL: give the lock back entirely.
    if (to == LockMode::kNL && e.holders.empty() && e.waiters.empty() && !e.requested) {
      m.release = true;
      e.holding = false;
    }
    fx->to_master.push_back(std::move(m));
  }
  if (!e.holding || compatible(e.cluster, e.wanted)) e.callback = false;
  process(resource, e, fx);
  forget_if_idle(resource);
}

std::vector<wire::ReportEntry> ClientCache::report_for_new_master() {
  std::vector<wire::ReportEntry> v;
  for (auto& [name, e] : entries_) {
    // The old master's callbacks are void; the new one asks again if needed.
    if (!e.downgrading) e.callback = false;
    e.grant_seq = 0;  // the new master numbers reported grants 0
    if (!e.holding && !e.requested) continue;
    wire::ReportEntry r;
    r.resource = name;
    r.holding = e.holding;
    r.held = e.cluster;
    r.lvb = e.lvb;
    r.pending = e.requested;
    r.pending_mode = e.requested_mode;
    r.pending_try = e.requested_try;
    v.push_back(std::move(r));
  }
  return v;
}

void ClientCache::abort_all() {
  for (auto& [name, e] : entries_) {
    for (auto& w : e.waiters) {
      w->state = LocalWaiter::State::kAborted;
      w->cv.notify_all();
    }
    e.waiters.clear();
  }
}

std::vector<std::pair<std::string, LockMode>> ClientCache::held() const {
  std::vector<std::pair<std::string, LockMode>> v;
  for (const auto& [name, e] : entries_)
    if (e.holding) v.emplace_back(name, e.cluster);
  return v;
}

bool ClientCache::holds(const std::string& resource, uint64_t id, LockMode* mode) const {
  auto it = entries_.find(resource);
  if (it == entries_.end()) return false;
  auto h = it->second.holders.find(id);
  if (h == it->second.holders.end()) return false;
  *mode = h->second;
  return true;
}

void ClientCache::release_all(ClientEffects* fx) {
  for (auto& [name, e] : entries_) {
    if (!e.holding) continue;
    wire::Message m;
    m.type = wire::MsgType::kDowngrade;
    m.resource = name;
    m.mode = LockMode::kNL;
    m.release = true;
    m.generation = e.grant_seq;
    m.has_lvb = e.cluster == LockMode::kEX;
    m.lvb = e.lvb;
    fx->to_master.push_back(std::move(m));
  }
  entries_.clear();
}

std::vector<LockStatusEntry> ClientCache::status() const {
  std::vector<LockStatusEntry> v;
  for (const auto& [name, e] : entries_) {
    LockStatusEntry s;
    s.resource = name;
    s.cached = e.holding ? e.cluster : LockMode::kNL;
    s.local_holders = static_cast<uint32_t>(e.holders.size());
    s.local_waiters = static_cast<uint32_t>(e.waiters.size());
    v.push_back(std::move(s));
  }
  return v;
}

}  // namespace cext3::locks
