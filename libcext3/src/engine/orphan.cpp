// Open files and orphans (docs/ENGINE.md "Orphans").
//
// A node with an inode open holds the cluster lock `open:<ino>` in PR (one
// lock handle per inode per node, however many local opens). The node that
// removes an inode's last name links it into its slot's orphan directory
// in the same op (fs_namespace.cpp), then asks `open:<ino>` EX with a short
// bounded wait: granted means no node has it open, and the inode is freed
// (its entry removed) in a following op while the EX is held, so no node
// can open it meanwhile. Not granted: it stays an orphan, and the periodic
// scan, the unmount, the next mount of the slot or (the unlinker's own
// opens) the last local release try again.
//
// Invariants relied on:
//  * lock order: open:<ino> is taken with no other cluster lock held and
//    before any Op; nobody waits for it while holding mu_ or open_mu_;
//  * an open() verifies the inode is in use only after its PR is granted,
//    so it cannot race a free (which holds EX);
//  * the lock service keeps a released lock cached; a bounded EX request
//    (not try_only) calls back a node that merely caches PR, so only real
//    opens keep an orphan alive;
//  * orphans_ (under mu_) mirrors this slot's orphan directory.
#include <sys/stat.h>

#include <cstdio>

#include "cext3/engine/orphans.h"
#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
// How long an unlink, a release or a scan waits for open:<ino> EX. Short:
// a node that has the inode open does not give the lock up anyway, and
// one that only caches it answers the callback at once.
constexpr std::chrono::milliseconds kOpenLockWait{200};
}  // namespace

std::string open_resource(uint64_t ino) { return "open:" + std::to_string(ino); }

bool EngineFs::open_locally(uint64_t ino) {
  std::lock_guard<std::mutex> g(open_mu_);
  auto it = open_files_.find(ino);
  return it != open_files_.end() && (it->second.count > 0 || it->second.locking);
}

Status EngineFs::open(uint64_t ino) {
  const std::string what = "open of inode " + std::to_string(ino);
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, what + ": out of range");
  if (!mounted_) return Status::InvalidArgument(what + ": the filesystem is not mounted");
  std::unique_lock<std::mutex> l(open_mu_);
  for (;;) {
    OpenFile& f = open_files_[ino];
    if (f.locking) {
      open_cv_.wait(l);
      continue;
    }
    if (f.count > 0) {
      ++f.count;
      return Status::OK();
    }
    f.locking = true;
    break;
  }
  l.unlock();
  // First local open: the cluster lock, then check the inode is still in
  // use (a free holds EX, so it is either done or cannot start now).
  const std::string res = open_resource(ino);
  auto h = opts_.locks->lock(res, LockMode::kPR);
  Status s = h.status();
  if (h.ok()) {
    Op op(*this);
    op.want_inode(ino, LockMode::kPR);
    s = run_op(op, [&]() -> Status {
      ext2_inode in;
      CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
      if (in.i_links_count == 0 || in.i_mode == 0) return Status::FromErrno(ENOENT, what + ": the inode is not in use");
      return Status::OK();
    });
    if (!s.ok()) (void)opts_.locks->unlock(res, *h);
  } else {
    s = s.Annotate(what);
  }
  l.lock();
  OpenFile& f = open_files_[ino];
  f.locking = false;
  if (s.ok()) {
    f.count = 1;
    f.held = *h;
  } else {
    open_files_.erase(ino);
  }
  open_cv_.notify_all();
  return s;
}

Status EngineFs::release(uint64_t ino) {
  LockProvider::Held held;
  {
    std::lock_guard<std::mutex> g(open_mu_);
    auto it = open_files_.find(ino);
    if (it == open_files_.end() || it->second.count == 0)
      return Status::FromErrno(EBADF, "release of inode " + std::to_string(ino) + ": it is not open on this node");
    if (--it->second.count > 0) return Status::OK();
    held = it->second.held;
    open_files_.erase(it);
    open_cv_.notify_all();
  }
  // The lock stays cached here; another node's EX request calls it back.
  Status s = opts_.locks->unlock(open_resource(ino), held);
  bool orphan = false;
  {
    std::lock_guard<std::mutex> g(mu_);
    orphan = orphans_.count(ino) != 0;
  }
  if (orphan && journal_) {
    bool freed = false;
    Status f = try_free_orphan(orphan_dir(), ino, kOpenLockWait, &freed);
    if (s.ok() && !f.ok()) s = f;
  }
  return s;
}

Status EngineFs::try_free_orphan(uint64_t dir, uint64_t ino, std::chrono::milliseconds wait, bool* freed) {
  *freed = false;
  if (open_locally(ino)) return Status::OK();  // our own release will try
  const std::string res = open_resource(ino);
  auto h = opts_.locks->lock_for(res, LockMode::kEX, wait);
  if (!h.ok()) {
    if (h.status().code() == Status::Code::kBusy) return Status::OK();  // open somewhere
    return h.status().Annotate("freeing orphan inode " + std::to_string(ino));
  }
  auto r = free_orphan(dir, ino);
  (void)opts_.locks->unlock(res, *h);
  if (!r.ok()) {
    // A removed directory that got entries while open stays (free_orphan
    // says why); everything else is an error worth reporting.
    if (r.status().errno_value() == ENOTEMPTY) return Status::OK();
    return r.status();
  }
  *freed = *r;
  return Status::OK();
}

void EngineFs::orphan_unlinked(uint64_t ino) {
  bool freed = false;
  Status s = try_free_orphan(orphan_dir(), ino, kOpenLockWait, &freed);
  // Not fatal for the unlink (its name is gone, durably with the orphan
  // entry): the scan tries again.
  if (!s.ok()) std::fprintf(stderr, "cext3 engine: %s (the orphan scan retries)\n", s.ToString().c_str());
}

Result<size_t> EngineFs::scan_orphans(std::chrono::milliseconds wait) {
  std::vector<uint64_t> todo;
  {
    std::lock_guard<std::mutex> g(mu_);
    todo.assign(orphans_.begin(), orphans_.end());
  }
  Status first;
  const uint64_t dir = orphan_dir();
  for (uint64_t ino : todo) {
    bool freed = false;
    Status s = try_free_orphan(dir, ino, wait, &freed);
    if (!s.ok() && first.ok()) first = s;
  }
  if (!first.ok()) return first;
  std::lock_guard<std::mutex> g(mu_);
  return orphans_.size();
}

// Mount only reads (the orphan directory and its entries): a write during
// mount would run before the caller has connected this engine to its lock
// callbacks (jcoord sets its downgrade hook once mount returns), and a lock
// leaving without on_lock_leaving loses what it covers. The directory is
// made by the first op that needs it (ensure_orphan_dir), and what the
// slot's previous life left is freed by the scan's first pass.
Status EngineFs::start_orphans() {
  auto d = find_orphan_dir(opts_.slot, /*create=*/false);
  if (!d.ok()) return d.status().Annotate("the slot's orphan directory");
  if (*d != 0) {
    auto listed = list_orphan_dir(*d);
    if (!listed.ok()) return listed.status().Annotate("listing the slot's orphan directory");
    std::lock_guard<std::mutex> g(mu_);
    orphan_dir_ = *d;
    orphans_.insert(listed->begin(), listed->end());
    orphans_at_mount_ = listed->size();
  }
  stop_orphan_scan_ = false;
  orphan_thread_ = std::thread([this] { orphan_scan_main(); });
  return Status::OK();
}

void EngineFs::orphan_scan_main() {
  std::unique_lock<std::mutex> l(orphan_scan_mu_);
  while (!stop_orphan_scan_) {
    orphan_scan_cv_.wait_for(l, opts_.orphan_scan_interval, [&] { return stop_orphan_scan_; });
    if (stop_orphan_scan_) break;
    l.unlock();
    bool any = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      any = !orphans_.empty();
    }
    if (any) {
      auto r = scan_orphans(kOpenLockWait);
      if (!r.ok()) std::fprintf(stderr, "cext3 engine: orphan scan: %s\n", r.status().ToString().c_str());
    }
    l.lock();
  }
}

void EngineFs::stop_orphan_scan() {
  {
    std::lock_guard<std::mutex> g(orphan_scan_mu_);
    stop_orphan_scan_ = true;
  }
  orphan_scan_cv_.notify_all();
  if (orphan_thread_.joinable()) orphan_thread_.join();
}

Status EngineFs::ensure_orphan_dir() {
  if (!journal_) return Status::FromErrno(EROFS, "the filesystem is mounted read-only");
  std::lock_guard<std::mutex> once(orphan_dir_mu_);
  {
    std::lock_guard<std::mutex> g(mu_);
    if (orphan_dir_ != 0) return Status::OK();
  }
  auto d = find_orphan_dir(opts_.slot, /*create=*/true);
  if (!d.ok()) return d.status().Annotate("making the slot's orphan directory");
  std::lock_guard<std::mutex> g(mu_);
  orphan_dir_ = *d;
  return Status::OK();
}

Status EngineFs::adopt_orphans_of(uint32_t slot) {
  const std::string what = "adopting the orphans of slot " + std::to_string(slot);
  if (!journal_) return Status::InvalidArgument(what + ": the engine is not mounted read-write");
  CEXT3_RETURN_IF_ERROR(ensure_orphan_dir().Annotate(what));
  if (slot == opts_.slot) return scan_orphans(kOpenLockWait).status();
  auto d = find_orphan_dir(slot, /*create=*/false);
  if (!d.ok()) return d.status().Annotate(what);
  if (*d == 0) return Status::OK();  // that slot never made one
  auto listed = list_orphan_dir(*d);
  if (!listed.ok()) return listed.status().Annotate(what);
  for (uint64_t ino : *listed) {
    bool freed = false;
    CEXT3_RETURN_IF_ERROR(try_free_orphan(*d, ino, kOpenLockWait, &freed));
    // Still open on a live node: it needs an owner whose scan retries (the
    // dead slot may never come back). Ours, in one op.
    if (!freed) CEXT3_RETURN_IF_ERROR(move_orphan(*d, orphan_dir(), ino).Annotate(what));
  }
  return Status::OK();
}

Status adopt_orphans(Filesystem& fs, uint32_t dead_slot) {
  auto* e = dynamic_cast<EngineFs*>(&fs);
  if (e == nullptr) return Status::InvalidArgument("adopt_orphans needs an engine made by Filesystem::mount");
  return e->adopt_orphans_of(dead_slot);
}

Result<size_t> free_orphans_offline(BlockDevice& dev, uint32_t slot) {
  auto locks = make_local_lock_provider();
  MountOptions mo;
  mo.slot = slot;
  mo.locks = locks.get();
  {
    // A read-only look first: a slot without orphans is left untouched (a
    // read-write mount would make its orphan directory).
    MountOptions ro = mo;
    ro.read_only = true;
    auto rfs = Filesystem::mount(dev, ro);
    if (!rfs.ok()) return rfs.status().Annotate("looking for slot " + std::to_string(slot) + "'s orphans");
    auto* e = dynamic_cast<EngineFs*>(rfs->get());
    auto d = e->find_orphan_dir(slot, /*create=*/false);
    if (!d.ok()) return d.status();
    if (*d == 0) return size_t{0};
    auto listed = e->list_orphan_dir(*d);
    if (!listed.ok()) return listed.status();
    if (listed->empty()) return size_t{0};
  }
  auto fs = Filesystem::mount(dev, mo);
  if (!fs.ok()) return fs.status().Annotate("freeing slot " + std::to_string(slot) + "'s orphans");
  auto* e = dynamic_cast<EngineFs*>(fs->get());
  const size_t n = e->orphans_at_mount();
  CEXT3_RETURN_IF_ERROR((*fs)->unmount());
  return n;
}

}  // namespace cext3::engine
