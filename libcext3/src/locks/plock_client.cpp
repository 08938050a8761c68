// The node's record-lock requests and its copy of its granted locks (plock_client.h).
#include "locks/plock_client.h"

#include <fcntl.h>

#include <algorithm>

namespace cext3::locks {
namespace {

wire::Message request_message(const PlockWaiter& w) {
  wire::Message m;
  m.type = w.type;
  m.has_plock = true;
  m.plock_req = w.req;
  m.plock = w.lock;
  return m;
}

}  // namespace

wire::Message PlockClient::start(const std::shared_ptr<PlockWaiter>& w) {
  w->req = next_req_++;
  pending_[w->req] = w;
  return request_message(*w);
}

void PlockClient::finish(const std::shared_ptr<PlockWaiter>& w, wire::PlockResult r) {
  w->done = true;
  w->result = r;
  w->cv.notify_all();
}

bool PlockClient::cancel(const std::shared_ptr<PlockWaiter>& w, bool connected, wire::Message* m) {
  if (w->done || w->cancelling) return false;
  w->cancelling = true;
  if (!connected) {
    pending_.erase(w->req);
    finish(w, wire::PlockResult::kCancelled);
    return false;
  }
  *m = wire::Message{};
  m->type = wire::MsgType::kPlockCancel;
  m->has_plock = true;
  m->plock_req = w->req;
  m->plock = w->lock;
  return true;
}

void PlockClient::forget(const std::shared_ptr<PlockWaiter>& w) {
  if (pending_.erase(w->req) && w->type == wire::MsgType::kPlockSet) forgotten_sets_[w->req] = w->lock;
}

std::vector<std::shared_ptr<PlockWaiter>> PlockClient::waiting_sets(uint64_t ino, uint8_t space,
                                                                    uint64_t owner) const {
  std::vector<std::shared_ptr<PlockWaiter>> v;
  for (const auto& [req, w] : pending_)
    if (w->type == wire::MsgType::kPlockSet && w->lock.wait && !w->cancelling && !w->done && w->lock.ino == ino &&
        w->lock.space == space && w->lock.owner == owner)
      v.push_back(w);
  return v;
}

bool PlockClient::owner_has_nothing(uint64_t ino, uint8_t space, uint64_t owner) const {
  if (auto it = held_.find(Key{ino, space}); it != held_.end())
    for (const RangeLock& l : it->second)
      if (l.who.owner == owner) return false;
  for (const auto& [req, w] : pending_)
    if (w->lock.ino == ino && w->lock.space == space && w->lock.owner == owner) return false;
  for (const auto& [req, e] : forgotten_sets_)
    if (e.ino == ino && e.space == space && e.owner == owner) return false;
  return true;
}

void PlockClient::apply(const wire::PlockEntry& e) {
  RangeLock l;
  l.who = PlockOwnerKey{0, e.owner};
  l.pid = e.pid;
  l.type = e.type;
  l.start = e.start;
  l.end = e.end;
  std::vector<RangeLock>& v = held_[Key{e.ino, e.space}];
  set_range(&v, l);
  if (v.empty()) held_.erase(Key{e.ino, e.space});
}

void PlockClient::on_reply(const wire::Message& m) {
  auto it = pending_.find(m.plock_req);
  if (it == pending_.end()) {
    // A set its caller gave up on: a grant that still comes is held by the
    // owner at the master now, so this node's copy must have it too.
    auto f = forgotten_sets_.find(m.plock_req);
    if (f == forgotten_sets_.end()) return;
    if (m.plock_result == wire::PlockResult::kGranted) apply(f->second);
    forgotten_sets_.erase(f);
    return;
  }
  std::shared_ptr<PlockWaiter> w = it->second;
  pending_.erase(it);
  if (w->type == wire::MsgType::kPlockSet && m.plock_result == wire::PlockResult::kGranted) apply(w->lock);
  w->answer = m.plock;
  finish(w, m.plock_result);
}

std::vector<wire::PlockEntry> PlockClient::report() const {
  std::vector<wire::PlockEntry> v;
  for (const auto& [key, locks] : held_)
    for (const RangeLock& l : locks) {
      wire::PlockEntry e;
      e.ino = key.first;
      e.space = key.second;
      e.type = l.type;
      e.owner = l.who.owner;
      e.pid = l.pid;
      e.start = l.start;
      e.end = l.end;
      v.push_back(e);
    }
  return v;
}

std::vector<wire::Message> PlockClient::resend() {
  // Replies of the old connection can no longer come.
  forgotten_sets_.clear();
  std::vector<wire::Message> v;
  for (auto it = pending_.begin(); it != pending_.end();) {
    std::shared_ptr<PlockWaiter> w = it->second;
    if (w->cancelling) {
      it = pending_.erase(it);
      finish(w, wire::PlockResult::kCancelled);
      continue;
    }
    v.push_back(request_message(*w));
    ++it;
  }
  return v;
}

void PlockClient::abort_all() {
  for (auto& [req, w] : pending_) {
    w->aborted = true;
    finish(w, wire::PlockResult::kCancelled);
  }
  pending_.clear();
}

std::vector<wire::Message> PlockClient::release_all() {
  std::vector<wire::Message> v;
  for (const auto& [key, locks] : held_) {
    std::vector<uint64_t> owners;
    for (const RangeLock& l : locks) owners.push_back(l.who.owner);
    std::sort(owners.begin(), owners.end());
    owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
    for (uint64_t o : owners) {
      wire::Message m;
      m.type = wire::MsgType::kPlockSet;
      m.has_plock = true;
      m.plock_req = next_req_++;
      m.plock.ino = key.first;
      m.plock.space = key.second;
      m.plock.type = wire::PlockType::kUnlock;
      m.plock.owner = o;
      m.plock.start = 0;
      m.plock.end = UINT64_MAX;
      v.push_back(std::move(m));
    }
  }
  held_.clear();
  return v;
}

void PlockClient::status(PlockStatus* s) const {
  for (const auto& [key, locks] : held_)
    for (const RangeLock& l : locks) {
      PlockStatus::Held h;
      h.ino = key.first;
      h.space = static_cast<PlockSpace>(key.second);
      h.lock.type = l.type == wire::PlockType::kWrite ? F_WRLCK : F_RDLCK;
      h.lock.start = l.start;
      h.lock.end = l.end;
      h.lock.pid = l.pid;
      h.lock.owner = l.who.owner;
      s->held.push_back(h);
    }
  s->pending = static_cast<uint32_t>(pending_.size());
}

}  // namespace cext3::locks
