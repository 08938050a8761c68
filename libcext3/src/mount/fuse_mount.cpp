// FuseMount: libfuse3's low-level API over engine::Filesystem.
//
// Inode numbers are the ext3 ones, so `stat -c %i` agrees on every node
// and with the kernel's ext3; only the root differs on the wire (FUSE
// calls it 1, ext3 2). Each request is answered from one engine call (a
// few for readdirplus), on libfuse's worker threads: the engine is
// thread-safe and takes the cluster locks itself.
//
// Kernel caches (docs/MOUNT.md): replies carry an entry/attribute timeout,
// but the kernel may trust them only while this node holds the covering
// cluster lock. lock_leaving() therefore queues, for every inode the lock
// covers that the kernel knows of, an invalidation of its attributes and
// pages and of every name it looked up in it (if a directory); a separate
// thread sends them. Sending from the lock hook itself could deadlock:
// the kernel holds a directory's i_rwsem while our create in it waits for
// the very lock being given up, and an entry invalidation needs that
// i_rwsem. The cost is a short window in which the kernel may still answer
// from its cache after the lock left; ext3 semantics within one node are
// unaffected, and the window is milliseconds against a cache timeout of
// about a second (cache_timeout_s).
#define FUSE_USE_VERSION 314
#include "cext3/mount/fuse_mount.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "mount/posix_acl.h"

namespace cext3::mount {
namespace {

constexpr fuse_ino_t kFuseRoot = FUSE_ROOT_ID;  // 1

uint64_t to_ext3(fuse_ino_t ino) { return ino == kFuseRoot ? engine::kRootIno : ino; }
fuse_ino_t to_fuse(uint64_t ino) { return ino == engine::kRootIno ? kFuseRoot : ino; }

int err_of(const Status& s) {
  int e = s.errno_value();
  return e > 0 ? e : EIO;
}

struct stat to_stat(const engine::Attr& a, uint32_t block_size) {
  struct stat st {};
  st.st_ino = a.ino;
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks512);
  st.st_blksize = block_size;
  st.st_rdev = a.rdev;
  st.st_atim = {a.atime.sec, a.atime.nsec};
  st.st_mtim = {a.mtime.sec, a.mtime.nsec};
  st.st_ctim = {a.ctime.sec, a.ctime.nsec};
  return st;
}

mode_t mode_of_file_type(uint8_t ft) {
  switch (ft) {
    case 1: return S_IFREG;
    case 2: return S_IFDIR;
    case 3: return S_IFCHR;
    case 4: return S_IFBLK;
    case 5: return S_IFIFO;
    case 6: return S_IFSOCK;
    case 7: return S_IFLNK;
    default: return 0;
  }
}

class FuseMountImpl final : public FuseMount {
 public:
  FuseMountImpl(engine::Filesystem& fs, FuseMountOptions opts) : fs_(fs), opts_(std::move(opts)) {}
  ~FuseMountImpl() override { stop(); }

  Status start_session();
  void lock_leaving(const std::string& resource, locks::LockMode from, locks::LockMode to) override;
  void stop() override;

  // --- request handlers (static trampolines below call these)
  void init(fuse_conn_info* conn);
  void lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void forget(fuse_ino_t ino, uint64_t n);
  void getattr(fuse_req_t req, fuse_ino_t ino);
  void setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set);
  void readlink(fuse_req_t req, fuse_ino_t ino);
  void mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void unlink(fuse_req_t req, fuse_ino_t parent, const char* name);
  void rmdir(fuse_req_t req, fuse_ino_t parent, const char* name);
  void symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name);
  void rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned flags);
  void link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, bool dir);
  void create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi);
  void read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
  void write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi);
  void release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, bool dir);
  void flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  void fsync(fuse_req_t req, fuse_ino_t ino);
  void readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus);
  void statfs(fuse_req_t req);
  void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags);
  void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);
  void getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock);
  void setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep);
  void flock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op);

 private:
  engine::Caller caller(fuse_req_t req) const;
  // POSIX ACLs (FUSE_CAP_POSIX_ACL, docs/MOUNT.md): the kernel applies
  // neither the umask nor a default ACL to a new inode; we do.
  struct NewInode {
    uint32_t mode = 0;
    engine::Caller caller;
    std::optional<std::vector<AclEntry>> access, inherited_default;
  };
  NewInode plan_new_inode(fuse_req_t req, fuse_ino_t parent, uint32_t mode, bool is_dir);
  // Store the ACLs planned for a new inode; on failure the inode is removed
  // again (parent/name) and the error returned.
  Status apply_new_inode_acls(const NewInode& plan, uint64_t ino, fuse_ino_t parent, const char* name, bool is_dir);
  void reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char* name, const NewInode& plan,
                       Result<engine::Attr> a, bool is_dir);
  // Reply with an entry the kernel will hold a lookup reference on.
  void reply_entry(fuse_req_t req, fuse_ino_t parent, const char* name, const Result<engine::Attr>& a);
  bool fill_entry(fuse_ino_t parent, const char* name, const engine::Attr& a, fuse_entry_param* e);
  void remember(fuse_ino_t parent, const char* name, uint64_t ext3_ino);
  void forget_name(fuse_ino_t parent, const char* name);
  void invalidation_worker();
  void loop_main();

  engine::Filesystem& fs_;
  const FuseMountOptions opts_;
  uint32_t block_size_ = 4096;
  bool posix_acl_ = false;  // negotiated in init()
  fuse_session* se_ = nullptr;
  std::thread loop_;
  std::atomic<bool> stopping_{false};
  std::once_flag stop_once_;

  // What the kernel knows: lookup references per inode (ext3 number) and,
  // per directory, the names it looked up (for entry invalidation).
  std::mutex known_mu_;
  std::unordered_map<uint64_t, uint64_t> lookups_;
  std::unordered_map<uint64_t, std::set<std::string>> names_;

  struct Invalidation {
    uint64_t ino;           // ext3 number
    std::string name;       // empty: the inode itself
  };
  std::mutex inval_mu_;
  std::condition_variable inval_cv_;
  std::deque<Invalidation> inval_q_;
  bool inval_stop_ = false;
  std::thread inval_thread_;
};

FuseMountImpl* self(fuse_req_t req) { return static_cast<FuseMountImpl*>(fuse_req_userdata(req)); }

// --- trampolines -----------------------------------------------------------
void op_init(void* u, fuse_conn_info* c) { static_cast<FuseMountImpl*>(u)->init(c); }
void op_lookup(fuse_req_t r, fuse_ino_t p, const char* n) { self(r)->lookup(r, p, n); }
void op_forget(fuse_req_t r, fuse_ino_t i, uint64_t n) {
  self(r)->forget(i, n);
  fuse_reply_none(r);
}
void op_forget_multi(fuse_req_t r, size_t count, fuse_forget_data* f) {
  for (size_t i = 0; i < count; ++i) self(r)->forget(f[i].ino, f[i].nlookup);
  fuse_reply_none(r);
}
void op_getattr(fuse_req_t r, fuse_ino_t i, fuse_file_info*) { self(r)->getattr(r, i); }
void op_setattr(fuse_req_t r, fuse_ino_t i, struct stat* a, int s, fuse_file_info*) { self(r)->setattr(r, i, a, s); }
void op_readlink(fuse_req_t r, fuse_ino_t i) { self(r)->readlink(r, i); }
void op_mknod(fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t d) { self(r)->mknod(r, p, n, m, d); }
void op_mkdir(fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) { self(r)->mkdir(r, p, n, m); }
void op_unlink(fuse_req_t r, fuse_ino_t p, const char* n) { self(r)->unlink(r, p, n); }
void op_rmdir(fuse_req_t r, fuse_ino_t p, const char* n) { self(r)->rmdir(r, p, n); }
void op_symlink(fuse_req_t r, const char* l, fuse_ino_t p, const char* n) { self(r)->symlink(r, l, p, n); }
void op_rename(fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn, unsigned f) {
  self(r)->rename(r, p, n, np, nn, f);
}
void op_link(fuse_req_t r, fuse_ino_t i, fuse_ino_t np, const char* nn) { self(r)->link(r, i, np, nn); }
void op_open(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { self(r)->open(r, i, fi, false); }
void op_opendir(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { self(r)->open(r, i, fi, true); }
void op_create(fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, fuse_file_info* fi) {
  self(r)->create(r, p, n, m, fi);
}
void op_read(fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info*) { self(r)->read(r, i, s, o); }
void op_write(fuse_req_t r, fuse_ino_t i, const char* b, size_t s, off_t o, fuse_file_info* fi) {
  self(r)->write(r, i, b, s, o, fi);
}
void op_flush(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { self(r)->flush(r, i, fi); }
void op_release(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { self(r)->release(r, i, fi, false); }
void op_releasedir(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi) { self(r)->release(r, i, fi, true); }
void op_fsync(fuse_req_t r, fuse_ino_t i, int, fuse_file_info*) { self(r)->fsync(r, i); }
void op_readdir(fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info*) { self(r)->readdir(r, i, s, o, false); }
void op_readdirplus(fuse_req_t r, fuse_ino_t i, size_t s, off_t o, fuse_file_info*) {
  self(r)->readdir(r, i, s, o, true);
}
void op_statfs(fuse_req_t r, fuse_ino_t) { self(r)->statfs(r); }
void op_setxattr(fuse_req_t r, fuse_ino_t i, const char* n, const char* v, size_t s, int f) {
  self(r)->setxattr(r, i, n, v, s, f);
}
void op_getxattr(fuse_req_t r, fuse_ino_t i, const char* n, size_t s) { self(r)->getxattr(r, i, n, s); }
void op_listxattr(fuse_req_t r, fuse_ino_t i, size_t s) { self(r)->listxattr(r, i, s); }
void op_removexattr(fuse_req_t r, fuse_ino_t i, const char* n) { self(r)->removexattr(r, i, n); }
void op_getlk(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi, struct flock* l) { self(r)->getlk(r, i, fi, l); }
void op_setlk(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi, struct flock* l, int s) {
  self(r)->setlk(r, i, fi, l, s);
}
void op_flock(fuse_req_t r, fuse_ino_t i, fuse_file_info* fi, int op) { self(r)->flock(r, i, fi, op); }

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops o{};
  o.init = op_init;
  o.lookup = op_lookup;
  o.forget = op_forget;
  o.forget_multi = op_forget_multi;
  o.getattr = op_getattr;
  o.setattr = op_setattr;
  o.readlink = op_readlink;
  o.mknod = op_mknod;
  o.mkdir = op_mkdir;
  o.unlink = op_unlink;
  o.rmdir = op_rmdir;
  o.symlink = op_symlink;
  o.rename = op_rename;
  o.link = op_link;
  o.open = op_open;
  o.opendir = op_opendir;
  o.create = op_create;
  o.read = op_read;
  o.write = op_write;
  o.flush = op_flush;
  o.release = op_release;
  o.releasedir = op_releasedir;
  o.fsync = op_fsync;
  o.fsyncdir = op_fsync;
  o.readdir = op_readdir;
  o.readdirplus = op_readdirplus;
  o.statfs = op_statfs;
  o.setxattr = op_setxattr;
  o.getxattr = op_getxattr;
  o.listxattr = op_listxattr;
  o.removexattr = op_removexattr;
  o.getlk = op_getlk;
  o.setlk = op_setlk;
  o.flock = op_flock;
  return o;
}

// --- handlers ----------------------------------------------------------------

void FuseMountImpl::init(fuse_conn_info* conn) {
  // Big writes: up to 1 MiB per request (the engine splits larger ones).
  conn->max_write = 1u << 20;
  conn->want |= conn->capable & FUSE_CAP_READDIRPLUS;
  // Pages are dropped when another node changed size or mtime.
  conn->want |= conn->capable & FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // write-through: the engine is the only cache of dirty data
  // open(O_TRUNC) arrives as open + setattr(size 0), which the engine
  // already does atomically; libfuse would otherwise ask for it in open.
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  if (opts_.posix_acl && (conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
    conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
    posix_acl_ = true;
  }
  if (opts_.record_locks) {
    conn->want |= conn->capable & FUSE_CAP_POSIX_LOCKS;
    conn->want |= conn->capable & FUSE_CAP_FLOCK_LOCKS;
  }
}

engine::Caller FuseMountImpl::caller(fuse_req_t req) const {
  const fuse_ctx* c = fuse_req_ctx(req);
  engine::Caller out;
  out.uid = c->uid;
  out.gid = c->gid;
  // Without POSIX ACLs the kernel applied the umask already; with them,
  // plan_new_inode decides.
  out.umask = 0;
  return out;
}

FuseMountImpl::NewInode FuseMountImpl::plan_new_inode(fuse_req_t req, fuse_ino_t parent, uint32_t mode, bool is_dir) {
  NewInode p;
  p.caller = caller(req);
  p.mode = mode & 07777;
  if (!posix_acl_) return p;
  std::optional<std::vector<AclEntry>> dflt;
  if (auto v = fs_.getxattr(to_ext3(parent), kAclDefault); v.ok()) dflt = parse_acl_xattr(*v);
  if (!dflt) {
    p.caller.umask = fuse_req_ctx(req)->umask;  // no default ACL: the umask applies
    return p;
  }
  auto a = acl_for_new_inode(*dflt, p.mode);
  p.mode = a.mode;
  p.access = std::move(a.access);
  if (is_dir) p.inherited_default = std::move(dflt);
  return p;
}

Status FuseMountImpl::apply_new_inode_acls(const NewInode& plan, uint64_t ino, fuse_ino_t parent, const char* name,
                                           bool is_dir) {
  Status s;
  if (plan.access) s = fs_.setxattr(ino, kAclAccess, acl_xattr(*plan.access), 0);
  if (s.ok() && plan.inherited_default) s = fs_.setxattr(ino, kAclDefault, acl_xattr(*plan.inherited_default), 0);
  if (!s.ok()) (void)(is_dir ? fs_.rmdir(to_ext3(parent), name) : fs_.unlink(to_ext3(parent), name));
  return s;
}

void FuseMountImpl::reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char* name, const NewInode& plan,
                                    Result<engine::Attr> a, bool is_dir) {
  if (a.ok() && (plan.access || plan.inherited_default)) {
    Status s = apply_new_inode_acls(plan, a->ino, parent, name, is_dir);
    if (!s.ok()) a = s;
  }
  reply_entry(req, parent, name, a);
}

void FuseMountImpl::remember(fuse_ino_t parent, const char* name, uint64_t ext3_ino) {
  std::lock_guard<std::mutex> g(known_mu_);
  ++lookups_[ext3_ino];
  if (name) names_[to_ext3(parent)].insert(name);
}

void FuseMountImpl::forget_name(fuse_ino_t parent, const char* name) {
  std::lock_guard<std::mutex> g(known_mu_);
  auto it = names_.find(to_ext3(parent));
  if (it != names_.end()) it->second.erase(name);
}

void FuseMountImpl::forget(fuse_ino_t ino, uint64_t n) {
  std::lock_guard<std::mutex> g(known_mu_);
  const uint64_t e = to_ext3(ino);
  auto it = lookups_.find(e);
  if (it == lookups_.end()) return;
  if (it->second <= n) {
    lookups_.erase(it);
    names_.erase(e);
  } else {
    it->second -= n;
  }
}

bool FuseMountImpl::fill_entry(fuse_ino_t parent, const char* name, const engine::Attr& a, fuse_entry_param* e) {
  *e = fuse_entry_param{};
  e->ino = to_fuse(a.ino);
  e->generation = a.generation;
  e->attr = to_stat(a, block_size_);
  e->attr_timeout = opts_.cache_timeout_s;
  e->entry_timeout = opts_.cache_timeout_s;
  remember(parent, name, a.ino);
  return true;
}

void FuseMountImpl::reply_entry(fuse_req_t req, fuse_ino_t parent, const char* name, const Result<engine::Attr>& a) {
  if (!a.ok()) {
    fuse_reply_err(req, err_of(a.status()));
    return;
  }
  fuse_entry_param e;
  fill_entry(parent, name, *a, &e);
  if (fuse_reply_entry(req, &e) != 0) forget(e.ino, 1);  // the kernel did not take it
}

void FuseMountImpl::lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  // A failed lookup is not cached by the kernel (no negative entries): a
  // name another node creates is found at once.
  reply_entry(req, parent, name, fs_.lookup(to_ext3(parent), name));
}

void FuseMountImpl::getattr(fuse_req_t req, fuse_ino_t ino) {
  auto a = fs_.getattr(to_ext3(ino));
  if (!a.ok()) {
    fuse_reply_err(req, err_of(a.status()));
    return;
  }
  struct stat st = to_stat(*a, block_size_);
  fuse_reply_attr(req, &st, opts_.cache_timeout_s);
}

void FuseMountImpl::setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set) {
  engine::SetAttr c;
  if (to_set & FUSE_SET_ATTR_MODE) c.mode = attr->st_mode & 07777;
  if (to_set & FUSE_SET_ATTR_UID) c.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) c.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) c.size = static_cast<uint64_t>(attr->st_size);
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) c.atime = engine::Timespec{now.tv_sec, uint32_t(now.tv_nsec)};
  else if (to_set & FUSE_SET_ATTR_ATIME)
    c.atime = engine::Timespec{attr->st_atim.tv_sec, uint32_t(attr->st_atim.tv_nsec)};
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) c.mtime = engine::Timespec{now.tv_sec, uint32_t(now.tv_nsec)};
  else if (to_set & FUSE_SET_ATTR_MTIME)
    c.mtime = engine::Timespec{attr->st_mtim.tv_sec, uint32_t(attr->st_mtim.tv_nsec)};
  // FUSE_SET_ATTR_CTIME alone: the engine sets ctime on every change.
  auto a = fs_.setattr(to_ext3(ino), c);
  if (a.ok() && c.mode && posix_acl_) {
    // chmod of an inode with an access ACL: its base entries follow.
    if (auto v = fs_.getxattr(to_ext3(ino), kAclAccess); v.ok()) {
      if (auto acl = parse_acl_xattr(*v)) {
        Status s = fs_.setxattr(to_ext3(ino), kAclAccess, acl_xattr(acl_after_chmod(*acl, *c.mode)), 0);
        if (!s.ok()) a = s;
        else a = fs_.getattr(to_ext3(ino));
      }
    }
  }
  if (!a.ok()) {
    fuse_reply_err(req, err_of(a.status()));
    return;
  }
  struct stat st = to_stat(*a, block_size_);
  fuse_reply_attr(req, &st, opts_.cache_timeout_s);
}

void FuseMountImpl::readlink(fuse_req_t req, fuse_ino_t ino) {
  auto t = fs_.readlink(to_ext3(ino));
  if (!t.ok()) fuse_reply_err(req, err_of(t.status()));
  else fuse_reply_readlink(req, t->c_str());
}

void FuseMountImpl::mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  NewInode p = plan_new_inode(req, parent, mode, false);
  const uint32_t type = (mode & S_IFMT) == 0 ? S_IFREG : (mode & S_IFMT);
  Result<engine::Attr> a = type == S_IFREG
                               ? fs_.create(to_ext3(parent), name, S_IFREG | p.mode, p.caller)
                               : fs_.mknod(to_ext3(parent), name, type | p.mode, static_cast<uint32_t>(rdev), p.caller);
  reply_new_entry(req, parent, name, p, std::move(a), false);
}

void FuseMountImpl::mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  NewInode p = plan_new_inode(req, parent, mode, true);
  reply_new_entry(req, parent, name, p, fs_.mkdir(to_ext3(parent), name, p.mode, p.caller), true);
}

void FuseMountImpl::unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = fs_.unlink(to_ext3(parent), name);
  if (s.ok()) forget_name(parent, name);
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = fs_.rmdir(to_ext3(parent), name);
  if (s.ok()) forget_name(parent, name);
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  reply_entry(req, parent, name, fs_.symlink(to_ext3(parent), name, target, caller(req)));
}

void FuseMountImpl::rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                           const char* newname, unsigned flags) {
  uint32_t f = 0;
  if (flags & RENAME_NOREPLACE) f |= engine::kRenameNoReplace;
  if (flags & RENAME_EXCHANGE) f |= engine::kRenameExchange;
  if (flags & ~unsigned(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
    fuse_reply_err(req, EINVAL);  // RENAME_WHITEOUT: ext3 has no whiteouts
    return;
  }
  Status s = fs_.rename(to_ext3(parent), name, to_ext3(newparent), newname, f);
  if (s.ok()) {
    forget_name(parent, name);
    forget_name(newparent, newname);
  }
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  reply_entry(req, newparent, newname, fs_.link(to_ext3(ino), to_ext3(newparent), newname));
}

void FuseMountImpl::open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, bool dir) {
  Status s = fs_.open(to_ext3(ino));
  if (!s.ok()) {
    fuse_reply_err(req, err_of(s));
    return;
  }
  // Cached pages are dropped at every open (no keep_cache): a file closed
  // on another node reads back as that node wrote it.
  fi->keep_cache = 0;
  (void)dir;
  if (fuse_reply_open(req, fi) != 0) (void)fs_.release(to_ext3(ino));  // the open was interrupted
}

void FuseMountImpl::create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  NewInode p = plan_new_inode(req, parent, mode, false);
  auto a = fs_.create(to_ext3(parent), name, S_IFREG | p.mode, p.caller);
  if (a.ok() && (p.access || p.inherited_default)) {
    Status s = apply_new_inode_acls(p, a->ino, parent, name, false);
    if (!s.ok()) a = s;
  }
  if (!a.ok()) {
    fuse_reply_err(req, err_of(a.status()));
    return;
  }
  Status s = fs_.open(a->ino);
  if (!s.ok()) {
    fuse_reply_err(req, err_of(s));
    return;
  }
  fi->keep_cache = 0;
  fuse_entry_param e;
  fill_entry(parent, name, *a, &e);
  if (fuse_reply_create(req, &e, fi) != 0) {
    forget(e.ino, 1);
    (void)fs_.release(a->ino);
  }
}

void FuseMountImpl::read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  // Not zero-filled: the engine writes every byte it returns.
  std::unique_ptr<uint8_t[]> buf(new uint8_t[size]);
  auto n = fs_.read(to_ext3(ino), static_cast<uint64_t>(off), std::span<uint8_t>(buf.get(), size));
  if (!n.ok()) fuse_reply_err(req, err_of(n.status()));
  else fuse_reply_buf(req, reinterpret_cast<const char*>(buf.get()), *n);
}

void FuseMountImpl::write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                          fuse_file_info* fi) {
  uint64_t at = static_cast<uint64_t>(off);
  if (fi->flags & O_APPEND) {
    // The kernel computed `off` from the size it cached, which another
    // node may have changed since; appends go to the engine's end of file.
    // Under a record lock (the way to share an append-only file between
    // nodes) nobody else appends in between.
    auto a = fs_.getattr(to_ext3(ino));
    if (!a.ok()) {
      fuse_reply_err(req, err_of(a.status()));
      return;
    }
    at = a->size;
  }
  auto n = fs_.write(to_ext3(ino), at, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(buf), size));
  if (!n.ok()) fuse_reply_err(req, err_of(n.status()));
  else fuse_reply_write(req, *n);
}

void FuseMountImpl::release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, bool dir) {
  if (!dir && fi->flock_release && opts_.record_locks)
    (void)opts_.record_locks->flock(to_ext3(ino), fi->lock_owner, F_UNLCK, false);
  Status s = fs_.release(to_ext3(ino));
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

// close(2) of any descriptor of the file: POSIX drops every record lock
// the process (lock owner) holds on it. The kernel leaves that to us.
void FuseMountImpl::flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Status s;
  if (opts_.record_locks) {
    RecordLocks::Range all;
    all.type = F_UNLCK;
    all.start = 0;
    all.end = UINT64_MAX;
    s = opts_.record_locks->set(to_ext3(ino), fi->lock_owner, all, false);
  }
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::fsync(fuse_req_t req, fuse_ino_t ino) {
  Status s = fs_.fsync(to_ext3(ino));
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  std::vector<char> buf(size);
  size_t used = 0;
  uint64_t at = static_cast<uint64_t>(off);
  for (;;) {
    auto ents = fs_.readdir(to_ext3(ino), at, 128);
    if (!ents.ok()) {
      if (used == 0) {
        fuse_reply_err(req, err_of(ents.status()));
        return;
      }
      break;
    }
    if (ents->empty()) break;
    bool full = false;
    for (const auto& d : *ents) {
      size_t need;
      const bool dot = d.name == "." || d.name == "..";
      if (plus) {
        fuse_entry_param e{};
        bool counted = false;
        if (!dot) {
          auto a = fs_.getattr(d.ino);
          if (a.ok()) {
            fill_entry(ino, d.name.c_str(), *a, &e);
            counted = true;
          }
        }
        if (!counted) {
          // "." and "..", or an entry removed meanwhile: no lookup reference.
          e.attr.st_ino = d.ino;
          e.attr.st_mode = mode_of_file_type(d.file_type);
        }
        need = fuse_add_direntry_plus(req, buf.data() + used, size - used, d.name.c_str(), &e,
                                      static_cast<off_t>(d.next_offset));
        if (need > size - used) {
          if (counted) forget(e.ino, 1);
          full = true;
          break;
        }
      } else {
        struct stat st {};
        st.st_ino = d.ino;
        st.st_mode = mode_of_file_type(d.file_type);
        need = fuse_add_direntry(req, buf.data() + used, size - used, d.name.c_str(), &st,
                                 static_cast<off_t>(d.next_offset));
        if (need > size - used) {
          full = true;
          break;
        }
      }
      used += need;
      at = d.next_offset;
    }
    if (full) break;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void FuseMountImpl::statfs(fuse_req_t req) {
  auto s = fs_.statfs();
  if (!s.ok()) {
    fuse_reply_err(req, err_of(s.status()));
    return;
  }
  struct statvfs v {};
  v.f_bsize = s->block_size;
  v.f_frsize = s->block_size;
  v.f_blocks = s->blocks;
  v.f_bfree = s->free_blocks;
  v.f_bavail = s->avail_blocks;
  v.f_files = s->inodes;
  v.f_ffree = s->free_inodes;
  v.f_favail = s->free_inodes;
  v.f_namemax = s->name_max;
  fuse_reply_statfs(req, &v);
}

void FuseMountImpl::setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                             int flags) {
  Status s = fs_.setxattr(to_ext3(ino), name,
                          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value), size), flags);
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto v = fs_.getxattr(to_ext3(ino), name);
  if (!v.ok()) fuse_reply_err(req, err_of(v.status()));
  else if (size == 0) fuse_reply_xattr(req, v->size());
  else if (v->size() > size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, reinterpret_cast<const char*>(v->data()), v->size());
}

void FuseMountImpl::listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto l = fs_.listxattr(to_ext3(ino));
  if (!l.ok()) {
    fuse_reply_err(req, err_of(l.status()));
    return;
  }
  std::string all;
  for (const auto& n : *l) {
    all += n;
    all.push_back('\0');
  }
  if (size == 0) fuse_reply_xattr(req, all.size());
  else if (all.size() > size) fuse_reply_err(req, ERANGE);
  else fuse_reply_buf(req, all.data(), all.size());
}

void FuseMountImpl::removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Status s = fs_.removexattr(to_ext3(ino), name);
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

RecordLocks::Range range_of(const struct flock* l) {
  RecordLocks::Range r;
  r.type = l->l_type;
  r.start = static_cast<uint64_t>(l->l_start);
  // The kernel hands over absolute ranges; l_len 0 means to end of file.
  r.end = l->l_len == 0 ? UINT64_MAX : static_cast<uint64_t>(l->l_start + l->l_len - 1);
  r.pid = static_cast<uint32_t>(l->l_pid);
  return r;
}

void FuseMountImpl::getlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock) {
  if (!opts_.record_locks) {
    fuse_reply_err(req, ENOLCK);
    return;
  }
  auto c = opts_.record_locks->test(to_ext3(ino), fi->lock_owner, range_of(lock));
  if (!c.ok()) {
    fuse_reply_err(req, err_of(c.status()));
    return;
  }
  struct flock out = *lock;
  out.l_type = static_cast<short>(c->type);
  if (c->type != F_UNLCK) {
    out.l_whence = SEEK_SET;
    out.l_start = static_cast<off_t>(c->start);
    out.l_len = c->end == UINT64_MAX ? 0 : static_cast<off_t>(c->end - c->start + 1);
    out.l_pid = static_cast<pid_t>(c->pid);
  }
  fuse_reply_lock(req, &out);
}

struct InterruptCtx {
  RecordLocks* locks;
  uint64_t ino, owner;
};
void on_lock_interrupt(fuse_req_t, void* data) {
  auto* c = static_cast<InterruptCtx*>(data);
  c->locks->interrupt(c->ino, c->owner);
}

void FuseMountImpl::setlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep) {
  if (!opts_.record_locks) {
    fuse_reply_err(req, ENOLCK);
    return;
  }
  InterruptCtx ctx{opts_.record_locks, to_ext3(ino), fi->lock_owner};
  if (sleep) fuse_req_interrupt_func(req, on_lock_interrupt, &ctx);
  Status s = opts_.record_locks->set(to_ext3(ino), fi->lock_owner, range_of(lock), sleep != 0);
  if (sleep) fuse_req_interrupt_func(req, nullptr, nullptr);
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

void FuseMountImpl::flock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
  if (!opts_.record_locks) {
    fuse_reply_err(req, ENOLCK);
    return;
  }
  const bool wait = !(op & LOCK_NB);
  int type = F_UNLCK;
  if (op & LOCK_SH) type = F_RDLCK;
  if (op & LOCK_EX) type = F_WRLCK;
  InterruptCtx ctx{opts_.record_locks, to_ext3(ino), fi->lock_owner};
  if (wait) fuse_req_interrupt_func(req, on_lock_interrupt, &ctx);
  Status s = opts_.record_locks->flock(to_ext3(ino), fi->lock_owner, type, wait);
  if (wait) fuse_req_interrupt_func(req, nullptr, nullptr);
  fuse_reply_err(req, s.ok() ? 0 : err_of(s));
}

// --- cache invalidation ----------------------------------------------------

void FuseMountImpl::lock_leaving(const std::string& resource, locks::LockMode /*from*/, locks::LockMode to) {
  // Keeping PR (an EX downgraded for a reader elsewhere): nobody else may
  // change what the lock covers, so the kernel's copies stay right.
  if (to != locks::LockMode::kNL || stopping_.load()) return;
  std::vector<Invalidation> todo;
  {
    std::lock_guard<std::mutex> g(known_mu_);
    for (uint64_t ino : fs_.inodes_covered_by(resource)) {
      if (!lookups_.count(ino) && ino != engine::kRootIno) continue;
      todo.push_back({ino, {}});
      auto it = names_.find(ino);
      if (it == names_.end()) continue;
      for (const auto& n : it->second) todo.push_back({ino, n});
      names_.erase(it);
    }
  }
  if (todo.empty()) return;
  std::lock_guard<std::mutex> g(inval_mu_);
  for (auto& t : todo) inval_q_.push_back(std::move(t));
  inval_cv_.notify_one();
}

void FuseMountImpl::invalidation_worker() {
  std::unique_lock<std::mutex> g(inval_mu_);
  for (;;) {
    inval_cv_.wait(g, [&] { return inval_stop_ || !inval_q_.empty(); });
    if (inval_stop_) return;
    Invalidation inv = std::move(inval_q_.front());
    inval_q_.pop_front();
    g.unlock();
    // Errors are expected and harmless: ENOENT when the kernel already
    // dropped the inode or name.
    if (inv.name.empty()) (void)fuse_lowlevel_notify_inval_inode(se_, to_fuse(inv.ino), 0, 0);
    else (void)fuse_lowlevel_notify_inval_entry(se_, to_fuse(inv.ino), inv.name.c_str(), inv.name.size());
    g.lock();
  }
}

// --- session ---------------------------------------------------------------

void FuseMountImpl::loop_main() {
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, opts_.max_threads);
  // Idle workers are kept: libfuse otherwise ends and starts a thread for
  // almost every request of a file-at-a-time workload (tar: 3 per file).
  fuse_loop_cfg_set_idle_threads(cfg, opts_.max_threads);
  int r = fuse_session_loop_mt(se_, cfg);
  fuse_loop_cfg_destroy(cfg);
  if (!stopping_.exchange(true) && opts_.on_unmounted) {
    opts_.on_unmounted(r == 0 ? "the mount point " + opts_.mountpoint + " was unmounted"
                              : "the FUSE connection at " + opts_.mountpoint + " failed: " + std::strerror(-r));
  }
}

Status FuseMountImpl::start_session() {
  struct stat st {};
  if (::stat(opts_.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status::InvalidArgument("mount point " + opts_.mountpoint + " is not a directory (create it first)");
  if (::access("/dev/fuse", R_OK | W_OK) != 0)
    return Status::IoError("cannot open /dev/fuse: " + std::string(std::strerror(errno)) +
                           " (load the fuse module and install fuse3)");
  if (auto s = fs_.statfs(); s.ok()) block_size_ = s->block_size;

  std::vector<std::string> argv_s = {"jcoord", "-o", "default_permissions", "-o", "fsname=" + opts_.fsname,
                                     "-o", "subtype=cext3"};
  if (opts_.allow_other) argv_s.insert(argv_s.end(), {"-o", "allow_other"});
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const fuse_lowlevel_ops ops = make_ops();
  se_ = fuse_session_new(&args, &ops, sizeof ops, this);
  fuse_opt_free_args(&args);
  if (!se_) return Status::IoError("cannot create a FUSE session for " + opts_.mountpoint);
  if (fuse_session_mount(se_, opts_.mountpoint.c_str()) != 0) {
    fuse_session_destroy(se_);
    se_ = nullptr;
    return Status::IoError("cannot mount FUSE at " + opts_.mountpoint +
                           " (is it already a mount point, and may this user mount? see the log above)");
  }
  inval_thread_ = std::thread([this] { invalidation_worker(); });
  loop_ = std::thread([this] { loop_main(); });
  return Status::OK();
}

void FuseMountImpl::stop() {
  std::call_once(stop_once_, [this] {
    if (!se_) return;
    const bool ended_on_its_own = stopping_.exchange(true);
    if (!ended_on_its_own) {
      fuse_session_exit(se_);
      // Unmounting ends the loop: the kernel fails its pending reads of
      // /dev/fuse. Lazily if files are still open there: they get ENOTCONN
      // once this process lets go of the connection.
      if (::umount2(opts_.mountpoint.c_str(), 0) != 0 && ::umount2(opts_.mountpoint.c_str(), MNT_DETACH) != 0) {
        // Not root: fusermount3 does it for the user who mounted.
        pid_t p = fork();
        if (p == 0) {
          execlp("fusermount3", "fusermount3", "-u", "-z", opts_.mountpoint.c_str(), static_cast<char*>(nullptr));
          _exit(127);
        }
        if (p > 0) waitpid(p, nullptr, 0);
      }
    }
    if (loop_.joinable()) loop_.join();
    {
      std::lock_guard<std::mutex> g(inval_mu_);
      inval_stop_ = true;
      inval_cv_.notify_all();
    }
    if (inval_thread_.joinable()) inval_thread_.join();
    fuse_session_unmount(se_);
    fuse_session_destroy(se_);
    se_ = nullptr;
  });
}

}  // namespace

Result<std::unique_ptr<FuseMount>> FuseMount::start(engine::Filesystem& fs, const FuseMountOptions& opts) {
  auto m = std::make_unique<FuseMountImpl>(fs, opts);
  CEXT3_RETURN_IF_ERROR(m->start_session());
  return std::unique_ptr<FuseMount>(std::move(m));
}

}  // namespace cext3::mount
