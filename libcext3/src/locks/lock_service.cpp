// LockService: ties the lock cache, the master and the transport together
// (cext3/locks/lock_service.h; design in docs/LOCKS.md).
//
// Threads: callers of lock/convert/unlock; one event-loop thread (poll over
// the listener, the connection to the master and, on the coordinator, the
// nodes' connections); one downgrade worker that runs before_downgrade hooks
// so a slow hook never stalls the event loop. All state is under mu_; the
// event loop drops mu_ only while it sleeps in poll. Only the event loop
// destroys connections, so pointers gathered before poll stay valid after.
#include "cext3/locks/lock_service.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "locks/client_cache.h"
#include "locks/master.h"
#include "locks/plock_client.h"
#include "cext3/node/fence.h"
#include "locks/transport.h"

namespace cext3::locks {
namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

constexpr uint64_t kReconnectDelayNs = 20'000'000;   // after a refused or broken connection
constexpr uint64_t kShutdownFlushNs = 300'000'000;   // clean leave: time to send the releases
// A record-lock request withdrawn on a live connection: how long to wait for
// the master's confirmation before forgetting it locally.
constexpr auto kPlockCancelGrace = std::chrono::milliseconds(1000);
constexpr auto kPlockMaxWait = std::chrono::milliseconds(std::chrono::hours(24 * 365 * 10));

const char* plock_type_name(wire::PlockType t) {
  switch (t) {
    case wire::PlockType::kRead: return "read";
    case wire::PlockType::kWrite: return "write";
    case wire::PlockType::kUnlock: return "unlock";
  }
  return "?";
}

std::string plock_what(const wire::PlockEntry& e) {
  return std::string(e.space == static_cast<uint8_t>(PlockSpace::kFlock) ? "flock" : "record lock") + " " +
         plock_type_name(e.type) + " on inode " + std::to_string(e.ino) + " [" + std::to_string(e.start) + ", " +
         (e.end == kPlockEof ? std::string("EOF") : std::to_string(e.end)) + "]";
}

class LockServiceImpl;

// The record-lock API (plock.h) of one LockServiceImpl: a separate object
// because LockService and Plocks both have a status().
class PlockApi final : public Plocks {
 public:
  explicit PlockApi(LockServiceImpl& s) : s_(s) {}
  Status setlk(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end, PlockOwner owner, bool wait,
               std::chrono::milliseconds timeout) override;
  Result<PlockInfo> getlk(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end, PlockOwner owner,
                          std::chrono::milliseconds timeout) override;
  Status release_owner(uint64_t ino, PlockSpace space, uint64_t owner, std::chrono::milliseconds timeout) override;
  size_t cancel(uint64_t ino, PlockSpace space, uint64_t owner) override;
  PlockStatus status() const override;

 private:
  LockServiceImpl& s_;
};

class LockServiceImpl final : public LockService {
 public:
  explicit LockServiceImpl(Options o) : opts_(std::move(o)) {}
  ~LockServiceImpl() override { shutdown(); }

  Status init();

  std::string address() const override { return address_; }
  void update_membership(const MembershipView& view) override;
  void recovery_done(uint32_t slot) override;
  Result<LockHandle> lock(const std::string& resource, LockMode mode, std::chrono::milliseconds timeout,
                          bool try_only) override;
  Status convert(LockHandle& h, LockMode mode, std::chrono::milliseconds timeout) override;
  Status unlock(const LockHandle& h) override;
  LockServiceStatus status() const override;
  void shutdown() override;
  Plocks& plocks() override { return plock_api_; }

  // Record locks (PlockApi forwards here).
  Status plock_call(const std::shared_ptr<PlockWaiter>& w, std::chrono::milliseconds timeout);
  size_t plock_cancel(uint64_t ino, PlockSpace space, uint64_t owner);
  PlockStatus plock_status() const;

 private:
  // All below run with mu_ held.
  void apply(ClientEffects& fx);
  void send_master(const wire::Message& m);
  void deliver(std::vector<Outgoing>& out);
  void wake();
  void maintain(uint64_t now);
  void master_conn_up();
  void on_master_message(const wire::Message& m);
  void on_peer_message(net::Conn& c, const wire::Message& m);
  Status wait_for(std::unique_lock<std::mutex>& lk, const std::shared_ptr<LocalWaiter>& w,
                  std::chrono::milliseconds timeout);
  bool master_connected() const { return mconn_ && mconn_ready_ && !mconn_->broken; }
  void plock_withdraw(const std::shared_ptr<PlockWaiter>& w);

  void loop();
  void worker();

  Options opts_;
  std::string address_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  std::thread loop_thread_, worker_thread_;

  mutable std::mutex mu_;
  ClientCache cache_;
  PlockClient plocks_;
  PlockApi plock_api_{*this};
  std::unique_ptr<Master> master_;   // when this node is the coordinator
  MembershipView view_;
  bool have_view_ = false;
  std::unique_ptr<net::Conn> mconn_; // this node's connection to the master
  std::string mconn_target_;
  uint64_t mconn_epoch_ = 0;
  bool mconn_ready_ = false;         // hello sent: later messages may follow
  bool mconn_acked_ = false;
  uint64_t next_connect_ns_ = 0;
  std::vector<std::unique_ptr<net::Conn>> peers_;  // accepted (coordinator side)
  std::map<uint32_t, net::Conn*> slot_conn_;
  std::deque<std::string> downgrades_;
  std::condition_variable worker_cv_;
  bool stopping_ = false, worker_stop_ = false, loop_stop_ = false, shut_ = false;
  uint64_t loop_stop_deadline_ = 0;
  uint64_t next_handle_ = 1;
  uint64_t grants_ = 0, cached_grants_ = 0, callbacks_ = 0;
};

Status LockServiceImpl::init() {
  Result<int> fd = net::listen_tcp(opts_.listen_address, &address_);
  if (!fd.ok()) return fd.status();
  listen_fd_ = *fd;
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return Status::FromErrno(errno, "eventfd for the lock service");
  loop_thread_ = std::thread([this] { loop(); });
  worker_thread_ = std::thread([this] { worker(); });
  return Status::OK();
}

void LockServiceImpl::wake() {
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;  // a full counter still wakes the loop
}

void LockServiceImpl::apply(ClientEffects& fx) {
  for (const wire::Message& m : fx.to_master) send_master(m);
  for (std::string& r : fx.downgrade_ready) downgrades_.push_back(std::move(r));
  if (!fx.downgrade_ready.empty()) worker_cv_.notify_one();
  fx.to_master.clear();
  fx.downgrade_ready.clear();
}

void LockServiceImpl::send_master(const wire::Message& m) {
  // Not connected: drop it. The hello on the next connection carries the
  // cache's whole state (held modes and outstanding requests) instead.
  if (!mconn_ || !mconn_ready_ || mconn_->broken) return;
  if (!mconn_->send(m)) wake();
}

void LockServiceImpl::deliver(std::vector<Outgoing>& out) {
  for (Outgoing& o : out) {
    auto it = slot_conn_.find(o.slot);
    if (it == slot_conn_.end()) continue;  // its next hello resynchronises it
    if (!it->second->send(o.msg)) wake();
  }
  out.clear();
}

void LockServiceImpl::update_membership(const MembershipView& view) {
  std::lock_guard lk(mu_);
  if (shut_ || (have_view_ && view == view_)) return;
  view_ = view;
  have_view_ = true;
  std::vector<Outgoing> out;
  if (view.coordinator_slot == opts_.slot) {
    if (!master_ || master_->epoch() != view.epoch) {
      // A new epoch: a fresh master that learns everything from reports.
      master_ = std::make_unique<Master>(view);
      for (auto& p : peers_) p->broken = true;
      slot_conn_.clear();
    } else {
      master_->on_membership(view, &out);
      // A node declared dead is cut off: it can no longer change the table.
      for (auto& p : peers_) {
        if (p->slot < 0) continue;
        bool live = std::any_of(view.live.begin(), view.live.end(),
                                [&](const Member& m) { return m.slot == static_cast<uint32_t>(p->slot); });
        if (!live) {
          p->broken = true;
          slot_conn_.erase(static_cast<uint32_t>(p->slot));
        }
      }
    }
  } else if (master_) {
    master_.reset();
    for (auto& p : peers_) p->broken = true;
    slot_conn_.clear();
  }
  deliver(out);
  // The client side follows the coordinator: a new address or epoch means a
  // new connection and a new report; grants of the old epoch are ignored.
  std::string target;
  for (const Member& m : view.live)
    if (m.slot == view.coordinator_slot) target = m.address;
  if (mconn_ && (target != mconn_target_ || view.epoch != mconn_epoch_)) {
    mconn_->broken = true;
    mconn_ready_ = false;
    next_connect_ns_ = 0;
  }
  wake();
}

void LockServiceImpl::recovery_done(uint32_t slot) {
  std::lock_guard lk(mu_);
  if (shut_) return;
  if (master_) {
    std::vector<Outgoing> out;
    master_->on_recovery_done(slot, &out);
    deliver(out);
    return;
  }
  // The master may be another node. If this message is lost with a broken
  // connection, the disk's view (slot gone from `unrecovered`) says it again.
  wire::Message m;
  m.type = wire::MsgType::kRecoveryDone;
  m.slot = slot;
  send_master(m);
}

Status LockServiceImpl::wait_for(std::unique_lock<std::mutex>& lk, const std::shared_ptr<LocalWaiter>& w,
                                 std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  while (w->state == LocalWaiter::State::kWaiting) {
    if (w->cv.wait_until(lk, deadline) == std::cv_status::timeout && w->state == LocalWaiter::State::kWaiting) {
      ClientEffects fx;
      cache_.remove_waiter(w, &fx);
      apply(fx);
      return Status::Busy("lock " + w->resource + " " + to_string(w->mode) + " not granted within " +
                          std::to_string(timeout.count()) +
                          " ms: another node holds it or the lock master is unreachable; retry later");
    }
  }
  switch (w->state) {
    case LocalWaiter::State::kGranted:
      ++grants_;
      if (w->from_cache) ++cached_grants_;
      return Status::OK();
    case LocalWaiter::State::kDenied:
      return Status::Busy("lock " + w->resource + " " + to_string(w->mode) +
                          " is held in a conflicting mode (try_only): retry later or wait for it");
    default:
      return Status::Busy("lock service of slot " + std::to_string(opts_.slot) +
                          " is shutting down: the lock was not granted");
  }
}

Result<LockHandle> LockServiceImpl::lock(const std::string& resource, LockMode mode,
                                         std::chrono::milliseconds timeout, bool try_only) {
  if (resource.empty() || resource.size() > 4096)
    return Status::InvalidArgument("lock resource name must be 1..4096 bytes");
  auto w = std::make_shared<LocalWaiter>();
  w->resource = resource;
  w->mode = mode;
  w->try_only = try_only;
  std::unique_lock lk(mu_);
  if (stopping_) return Status::Busy("lock service is shutting down: no new locks");
  w->id = next_handle_++;
  ClientEffects fx;
  cache_.add_waiter(w, &fx);
  apply(fx);
  CEXT3_RETURN_IF_ERROR(wait_for(lk, w, timeout));
  LockHandle h;
  h.id = w->id;
  h.resource = resource;
  h.mode = mode;
  h.lvb = w->lvb;
  return h;
}

Status LockServiceImpl::convert(LockHandle& h, LockMode mode, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  LockMode held;
  if (!cache_.holds(h.resource, h.id, &held))
    return Status::InvalidArgument("convert: handle " + std::to_string(h.id) + " on " + h.resource +
                                   " is not held on this node");
  if (mode == held) return Status::OK();
  if (mode < held) {
    ClientEffects fx;
    cache_.downgrade_holder(h.resource, h.id, mode, h.lvb, &fx);
    apply(fx);
    h.mode = mode;
    return Status::OK();
  }
  if (stopping_) return Status::Busy("lock service is shutting down: no conversions");
  auto w = std::make_shared<LocalWaiter>();
  w->id = h.id;
  w->resource = h.resource;
  w->mode = mode;
  w->is_convert = true;
  ClientEffects fx;
  cache_.add_waiter(w, &fx);
  apply(fx);
  CEXT3_RETURN_IF_ERROR(wait_for(lk, w, timeout));
  h.mode = mode;
  h.lvb = w->lvb;
  return Status::OK();
}

Status LockServiceImpl::unlock(const LockHandle& h) {
  std::lock_guard lk(mu_);
  ClientEffects fx;
  if (!cache_.release_holder(h.resource, h.id, h.lvb, &fx))
    return Status::InvalidArgument("unlock: handle " + std::to_string(h.id) + " on " + h.resource +
                                   " is not held on this node (already unlocked?)");
  apply(fx);
  return Status::OK();
}

LockServiceStatus LockServiceImpl::status() const {
  std::lock_guard lk(mu_);
  LockServiceStatus s;
  s.is_master = master_ != nullptr;
  s.epoch = view_.epoch;
  s.coordinator_slot = view_.coordinator_slot;
  s.connected_to_master = mconn_ && mconn_acked_ && !mconn_->broken;
  s.held = cache_.status();
  if (master_) s.master = master_->status();
  s.grants = grants_;
  s.cached_grants = cached_grants_;
  s.callbacks = callbacks_;
  return s;
}

void LockServiceImpl::shutdown() {
  {
    std::lock_guard lk(mu_);
    if (shut_) return;
    shut_ = true;
    stopping_ = true;
    cache_.abort_all();
    plocks_.abort_all();
    worker_stop_ = true;
    worker_cv_.notify_all();
  }
  if (worker_thread_.joinable()) worker_thread_.join();
  // Clean leave: let the engine write back what it holds, then release it all.
  std::vector<std::pair<std::string, LockMode>> held;
  {
    std::lock_guard lk(mu_);
    held = cache_.held();
  }
  if (opts_.before_downgrade)
    for (const auto& [r, m] : held)
      if (m != LockMode::kNL) opts_.before_downgrade(r, m, LockMode::kNL);
  {
    std::lock_guard lk(mu_);
    ClientEffects fx;
    cache_.release_all(&fx);
    // A fenced node releases nothing: recovery of its journal does.
    if (opts_.gate == nullptr || opts_.gate->check().ok()) {
      apply(fx);
      // A clean leave drops this node's record locks at the master at once
      // (the view that shows it gone would drop them too, later).
      for (const wire::Message& m : plocks_.release_all()) send_master(m);
    }
    loop_stop_ = true;
    loop_stop_deadline_ = now_ns() + kShutdownFlushNs;
    if (wake_fd_ >= 0) wake();
  }
  if (loop_thread_.joinable()) loop_thread_.join();
  std::lock_guard lk(mu_);
  mconn_.reset();
  slot_conn_.clear();
  peers_.clear();
  master_.reset();
  if (listen_fd_ >= 0) close(listen_fd_);
  if (wake_fd_ >= 0) close(wake_fd_);
  listen_fd_ = wake_fd_ = -1;
}

void LockServiceImpl::worker() {
  std::unique_lock lk(mu_);
  for (;;) {
    worker_cv_.wait(lk, [&] { return worker_stop_ || !downgrades_.empty(); });
    if (worker_stop_) return;
    std::string r = std::move(downgrades_.front());
    downgrades_.pop_front();
    LockMode from, to;
    if (!cache_.begin_downgrade(r, &from, &to)) continue;
    // The hook runs without mu_: it may take long (commit, write back, revoke).
    // Nothing above `to` is granted locally meanwhile (client_cache.h).
    if (opts_.before_downgrade && from != to && from != LockMode::kNL) {
      lk.unlock();
      opts_.before_downgrade(r, from, to);
      lk.lock();
    }
    // Giving up an EX lets another node write what it covers: a node that
    // lost its lease must not (its peers will recover its journal instead).
    // The resource stays "downgrading", so nothing more is granted locally.
    if (from == LockMode::kEX && opts_.gate != nullptr && !opts_.gate->check().ok()) continue;
    ClientEffects fx;
    cache_.finish_downgrade(r, &fx);
    apply(fx);
  }
}

void LockServiceImpl::master_conn_up() {
  mconn_ready_ = true;
  mconn_acked_ = false;
  wire::Message hello;
  hello.type = wire::MsgType::kHello;
  hello.slot = opts_.slot;
  hello.generation = opts_.generation;
  hello.epoch = mconn_epoch_;
  hello.report = cache_.report_for_new_master();
  hello.has_plock = true;
  hello.plock_report = plocks_.report();
  mconn_->send(hello);
  // Unanswered record-lock requests go again, after the report and in their
  // order; the hello made the master forget what it had of them.
  for (const wire::Message& m : plocks_.resend()) mconn_->send(m);
}

void LockServiceImpl::maintain(uint64_t now) {
  if (mconn_ && mconn_->broken) {
    mconn_.reset();
    mconn_ready_ = false;
    mconn_acked_ = false;
    if (next_connect_ns_ != 0) next_connect_ns_ = now + kReconnectDelayNs;
  }
  std::erase_if(peers_, [&](const std::unique_ptr<net::Conn>& p) {
    bool gone = p->broken || (p->close_after_flush && !p->has_output());
    if (gone && p->slot >= 0) {
      auto it = slot_conn_.find(static_cast<uint32_t>(p->slot));
      if (it != slot_conn_.end() && it->second == p.get()) slot_conn_.erase(it);
    }
    return gone;
  });
  if (mconn_ || loop_stop_ || !have_view_ || now < next_connect_ns_) return;
  std::string target;
  for (const Member& m : view_.live)
    if (m.slot == view_.coordinator_slot) target = m.address;
  if (target.empty()) return;  // no coordinator yet: wait for a view
  bool in_progress = false;
  Result<int> fd = net::connect_tcp(target, &in_progress);
  next_connect_ns_ = now + kReconnectDelayNs;  // pacing for the next attempt if this one fails
  if (!fd.ok()) return;
  mconn_ = std::make_unique<net::Conn>(*fd);
  mconn_target_ = target;
  mconn_epoch_ = view_.epoch;
  mconn_->connecting = in_progress;
  if (!in_progress) master_conn_up();
}

void LockServiceImpl::on_master_message(const wire::Message& m) {
  ClientEffects fx;
  switch (m.type) {
    case wire::MsgType::kHelloAck:
      mconn_acked_ = true;
      next_connect_ns_ = 0;
      return;
    case wire::MsgType::kHelloReject:
      // Usually the master has not seen the new view yet: retry shortly.
      mconn_->broken = true;
      return;
    case wire::MsgType::kGrant:
    case wire::MsgType::kDeny:
    case wire::MsgType::kCallback:
      // A grant of another epoch is from a deposed master: never use it.
      if (m.epoch != view_.epoch || mconn_epoch_ != view_.epoch) return;
      if (m.type == wire::MsgType::kGrant) cache_.on_grant(m, &fx);
      if (m.type == wire::MsgType::kDeny) cache_.on_deny(m, &fx);
      if (m.type == wire::MsgType::kCallback) {
        ++callbacks_;
        cache_.on_callback(m, &fx);
      }
      apply(fx);
      return;
    case wire::MsgType::kPlockReply:
      if (m.epoch != view_.epoch || mconn_epoch_ != view_.epoch) return;
      plocks_.on_reply(m);
      return;
    default:
      return;  // not for a node
  }
}

void LockServiceImpl::on_peer_message(net::Conn& c, const wire::Message& m) {
  std::vector<Outgoing> out;
  if (m.type == wire::MsgType::kHello) {
    Status st = master_ ? master_->on_hello(m, &out)
                        : Status::Busy("slot " + std::to_string(opts_.slot) + " is not the lock master");
    if (!st.ok()) {
      wire::Message rej;
      rej.type = wire::MsgType::kHelloReject;
      rej.epoch = master_ ? master_->epoch() : view_.epoch;
      rej.reason = st.message();
      c.send(rej);
      c.close_after_flush = true;
      return;
    }
    auto old = slot_conn_.find(m.slot);
    if (old != slot_conn_.end() && old->second != &c) old->second->broken = true;
    c.slot = m.slot;
    slot_conn_[m.slot] = &c;
    deliver(out);
    return;
  }
  if (c.slot < 0 || !master_) return;
  uint32_t slot = static_cast<uint32_t>(c.slot);
  switch (m.type) {
    case wire::MsgType::kRequest: master_->on_request(slot, m, &out); break;
    case wire::MsgType::kDowngrade: master_->on_downgrade(slot, m, &out); break;
    case wire::MsgType::kRecoveryDone: master_->on_recovery_done(m.slot, &out); break;
    case wire::MsgType::kPlockSet:
    case wire::MsgType::kPlockGet:
    case wire::MsgType::kPlockCancel: master_->on_plock(slot, m, &out); break;
    default: break;
  }
  deliver(out);
}

void LockServiceImpl::loop() {
  std::vector<pollfd> pfds;
  std::vector<net::Conn*> conns;  // parallel to pfds; null for the listener and wake fd
  std::unique_lock lk(mu_);
  for (;;) {
    uint64_t now = now_ns();
    maintain(now);
    if (loop_stop_ && (!mconn_ || !mconn_->has_output() || now >= loop_stop_deadline_)) return;
    pfds.clear();
    conns.clear();
    pfds.push_back({wake_fd_, POLLIN, 0});
    conns.push_back(nullptr);
    pfds.push_back({listen_fd_, POLLIN, 0});
    conns.push_back(nullptr);
    auto add = [&](net::Conn* c) {
      short ev = POLLIN;
      if (c->connecting || c->has_output()) ev |= POLLOUT;
      pfds.push_back({c->fd, ev, 0});
      conns.push_back(c);
    };
    if (mconn_) add(mconn_.get());
    for (auto& p : peers_) add(p.get());
    int timeout_ms = 200;
    if (!mconn_ && have_view_ && !loop_stop_)
      timeout_ms = static_cast<int>(std::min<uint64_t>(200, (next_connect_ns_ > now ? next_connect_ns_ - now : 0) / 1000000 + 1));
    if (loop_stop_) timeout_ms = 10;
    lk.unlock();
    poll(pfds.data(), pfds.size(), timeout_ms);
    lk.lock();
    for (size_t i = 0; i < pfds.size(); ++i) {
      short re = pfds[i].revents;
      if (re == 0) continue;
      if (i == 0) {
        uint64_t v;
        ssize_t n = read(wake_fd_, &v, sizeof v);
        (void)n;
        continue;
      }
      if (i == 1) {
        for (int fd; (fd = net::accept_conn(listen_fd_)) >= 0;) peers_.push_back(std::make_unique<net::Conn>(fd));
        continue;
      }
      net::Conn* c = conns[i];
      if (c->broken) continue;
      bool is_master_conn = c == mconn_.get();
      if (c->connecting) {
        if (!(re & (POLLOUT | POLLERR | POLLHUP))) continue;
        if (!net::connect_result(c->fd).ok()) {
          c->broken = true;
          continue;
        }
        c->connecting = false;
        master_conn_up();
      }
      if (re & (POLLIN | POLLHUP | POLLERR)) {
        c->read_available();
        wire::Message m;
        Status err;
        while (!c->broken && c->next(&m, &err)) {
          if (is_master_conn)
            on_master_message(m);
          else
            on_peer_message(*c, m);
        }
        // A broken connection may still have delivered frames before EOF.
        if (c->broken)
          while (c->next(&m, &err)) is_master_conn ? on_master_message(m) : on_peer_message(*c, m);
      }
      if (re & POLLOUT) c->flush();
    }
  }
}


// ---- Record locks -------------------------------------------------------

void LockServiceImpl::plock_withdraw(const std::shared_ptr<PlockWaiter>& w) {
  wire::Message m;
  if (plocks_.cancel(w, master_connected(), &m)) send_master(m);
}

Status LockServiceImpl::plock_call(const std::shared_ptr<PlockWaiter>& w, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (stopping_)
    return Status::FromErrno(ENOLCK, plock_what(w->lock) + ": the lock service of slot " + std::to_string(opts_.slot) +
                                         " is shutting down");
  if (w->type == wire::MsgType::kPlockSet && w->lock.type == wire::PlockType::kUnlock &&
      plocks_.owner_has_nothing(w->lock.ino, w->lock.space, w->lock.owner)) {
    // Every close() unlocks; most owners never locked anything.
    w->done = true;
    w->result = wire::PlockResult::kGranted;
    return Status::OK();
  }
  send_master(plocks_.start(w));  // not connected: sent after the next hello
  // "Forever" may come as a huge value: keep now() + timeout from overflowing.
  timeout = std::clamp(timeout, std::chrono::milliseconds(0), kPlockMaxWait);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool grace_given = false;
  bool is_unlock = w->type == wire::MsgType::kPlockSet && w->lock.type == wire::PlockType::kUnlock;
  while (!w->done) {
    if (w->cancelling && !grace_given) {
      // cancel() asked the master: its answer is due soon, whatever the timeout.
      grace_given = true;
      deadline = std::min(deadline, std::chrono::steady_clock::now() + kPlockCancelGrace);
    }
    if (w->cv.wait_until(lk, deadline) != std::cv_status::timeout || w->done) continue;
    if (is_unlock)  // stays queued: applied once a master is reachable
      return Status::FromErrno(ETIMEDOUT, plock_what(w->lock) + ": the lock master did not answer within " +
                                              std::to_string(timeout.count()) +
                                              " ms; the unlock stays queued and is applied when it is reachable");
    if (w->type == wire::MsgType::kPlockGet) {
      plocks_.forget(w);
      return Status::FromErrno(ETIMEDOUT, plock_what(w->lock) + ": test not answered by the lock master within " +
                                              std::to_string(timeout.count()) + " ms; retry later");
    }
    if (!grace_given) {
      // Withdraw it at the master; a grant that crosses the withdrawal wins.
      w->timed_out = true;
      grace_given = true;
      plock_withdraw(w);
      deadline = std::chrono::steady_clock::now() + kPlockCancelGrace;
      continue;
    }
    plocks_.forget(w);  // the master does not answer: give up locally
    w->result = wire::PlockResult::kCancelled;
    break;
  }
  if (w->aborted)
    return Status::FromErrno(ENOLCK, plock_what(w->lock) + ": the lock service of slot " + std::to_string(opts_.slot) +
                                         " is shutting down");
  switch (w->result) {
    case wire::PlockResult::kGranted: return Status::OK();
    case wire::PlockResult::kConflict:
      if (w->type == wire::MsgType::kPlockGet) return Status::OK();  // the answer is the conflict
      return Status::FromErrno(EAGAIN, plock_what(w->lock) + ": another owner holds a conflicting lock; retry or wait for it");
    case wire::PlockResult::kDeadlock:
      return Status::FromErrno(EDEADLK, plock_what(w->lock) +
                                            ": waiting would deadlock (an owner it waits for waits for this owner); release a lock first");
    case wire::PlockResult::kCancelled: break;
  }
  if (w->timed_out)
    return Status::FromErrno(ETIMEDOUT, plock_what(w->lock) + ": not granted within " +
                                            std::to_string(timeout.count()) +
                                            " ms: another owner holds it or the lock master is unreachable; retry later");
  return Status::FromErrno(EINTR, plock_what(w->lock) + ": the wait was cancelled; nothing was locked");
}

size_t LockServiceImpl::plock_cancel(uint64_t ino, PlockSpace space, uint64_t owner) {
  std::lock_guard lk(mu_);
  auto ws = plocks_.waiting_sets(ino, static_cast<uint8_t>(space), owner);
  for (const auto& w : ws) {
    plock_withdraw(w);
    w->cv.notify_all();  // its caller now waits at most the cancel grace
  }
  return ws.size();
}

PlockStatus LockServiceImpl::plock_status() const {
  std::lock_guard lk(mu_);
  PlockStatus s;
  plocks_.status(&s);
  if (master_) master_->plock_status(&s);
  return s;
}

namespace {

// Checks the arguments shared by setlk and getlk and fills the request.
Status plock_entry(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end, PlockOwner owner,
                   wire::PlockEntry* e) {
  e->ino = ino;
  e->space = static_cast<uint8_t>(space);
  e->owner = owner.owner;
  e->pid = owner.pid;
  e->start = start;
  e->end = end;
  if (type == F_RDLCK) e->type = wire::PlockType::kRead;
  else if (type == F_WRLCK) e->type = wire::PlockType::kWrite;
  else if (type == F_UNLCK) e->type = wire::PlockType::kUnlock;
  else return Status::InvalidArgument("record lock type " + std::to_string(type) + " on inode " + std::to_string(ino) +
                                      " is not F_RDLCK, F_WRLCK or F_UNLCK");
  if (space != PlockSpace::kPosix && space != PlockSpace::kFlock)
    return Status::InvalidArgument("record lock space " + std::to_string(static_cast<int>(space)) + " is unknown");
  if (start > end)
    return Status::InvalidArgument("record lock on inode " + std::to_string(ino) + ": start " + std::to_string(start) +
                                   " is past end " + std::to_string(end));
  if (space == PlockSpace::kFlock && (start != 0 || end != kPlockEof))
    return Status::InvalidArgument("flock on inode " + std::to_string(ino) + " must cover the whole file [0, EOF]");
  return Status::OK();
}

}  // namespace

Status PlockApi::setlk(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end, PlockOwner owner,
                       bool wait, std::chrono::milliseconds timeout) {
  auto w = std::make_shared<PlockWaiter>();
  w->type = wire::MsgType::kPlockSet;
  CEXT3_RETURN_IF_ERROR(plock_entry(ino, space, type, start, end, owner, &w->lock));
  w->lock.wait = wait && w->lock.type != wire::PlockType::kUnlock;
  return s_.plock_call(w, timeout);
}

Result<PlockInfo> PlockApi::getlk(uint64_t ino, PlockSpace space, int type, uint64_t start, uint64_t end,
                                  PlockOwner owner, std::chrono::milliseconds timeout) {
  auto w = std::make_shared<PlockWaiter>();
  w->type = wire::MsgType::kPlockGet;
  CEXT3_RETURN_IF_ERROR(plock_entry(ino, space, type, start, end, owner, &w->lock));
  if (w->lock.type == wire::PlockType::kUnlock)
    return Status::InvalidArgument("F_GETLK on inode " + std::to_string(ino) + " needs F_RDLCK or F_WRLCK, not F_UNLCK");
  Status st = s_.plock_call(w, timeout);
  if (!st.ok()) return st;
  PlockInfo info;
  info.type = F_UNLCK;
  if (w->result == wire::PlockResult::kConflict) {
    info.type = w->answer.type == wire::PlockType::kWrite ? F_WRLCK : F_RDLCK;
    info.start = w->answer.start;
    info.end = w->answer.end;
    info.pid = w->answer.pid;
    info.slot = w->answer.slot;
    info.owner = w->answer.owner;
  }
  return info;
}

Status PlockApi::release_owner(uint64_t ino, PlockSpace space, uint64_t owner, std::chrono::milliseconds timeout) {
  return setlk(ino, space, F_UNLCK, 0, kPlockEof, PlockOwner{owner, 0}, false, timeout);
}

size_t PlockApi::cancel(uint64_t ino, PlockSpace space, uint64_t owner) { return s_.plock_cancel(ino, space, owner); }

PlockStatus PlockApi::status() const { return s_.plock_status(); }

}  // namespace

Result<std::unique_ptr<LockService>> LockService::start(Options opts) {
  auto s = std::make_unique<LockServiceImpl>(std::move(opts));
  Status st = s->init();
  if (!st.ok()) return st;
  return std::unique_ptr<LockService>(std::move(s));
}

}  // namespace cext3::locks
