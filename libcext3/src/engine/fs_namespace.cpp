// The namespace operations of EngineFs: lookup, readdir, mkdir, create,
// mknod, symlink, link, unlink, rmdir, rename, readlink (engine_impl.h).
//
// Directories are linear ext3 directories (dir_block.h). Invariants relied
// on:
//  * every block of a directory is covered by its inode's lock
//    (itb:<inode-table block>, docs/ENGINE.md): read under PR, changed
//    under EX, always through Op, so locks are taken in the global order;
//  * an op's body first finds out everything it needs (names, inodes, the
//    locks and groups for them: Op::want_...() + op.retry()) and checks
//    every error case, and only then changes blocks; the steps that can
//    still fail after that (allocation: ENOSPC) come first among the
//    changes and leave a valid filesystem when they fail (a directory that
//    grew an empty block is valid ext3);
//  * entries never move inside a block (insert splits slack, remove merges
//    into the previous entry), so a readdir cookie, the byte position
//    block index x block size + offset in block, stays valid across calls;
//  * htree: a directory with EXT2_INDEX_FL is read linearly (its index
//    blocks are valid linear blocks) and the flag is cleared by the first
//    change (docs/ENGINE.md, "htree directories"): the kernel and e2fsck
//    then read it linearly, and e2fsck -fn accepts it (dir_block_test.cpp
//    checks this on a two-level index made by e2fsck -D);
//  * link counts as ext3 keeps them (no dir_nlink): a directory has 2 + its
//    subdirectories, EXT3_LINK_MAX (32000) is the limit (EMLINK);
//  * removing the last link does not free the inode in the same op: it is
//    linked into this slot's orphan directory (/.cext3/orphan.NN, named by
//    its inode number) in the same transaction, and freed by a following op
//    once no node holds it open (orphan.cpp, docs/ENGINE.md "Orphans"). An
//    orphan is valid ext3 at every point: one name (the orphan entry), so
//    i_links_count 1 (a directory: 2, its ".." naming the orphan directory).
//
// Errors are what the kernel's ext3 returns (EEXIST, ENOENT, ENOTDIR,
// EISDIR, ENOTEMPTY, ENAMETOOLONG, EMLINK, EPERM for immutable/append-only
// inodes and directories). Names "." and ".." are refused with EINVAL by
// every operation that creates, removes or renames (the kernel's VFS
// answers those itself; a FUSE caller never passes them).
//
// What this file needs from the core that engine_impl.h does not offer yet
// (asked for in the report to the lead):
//  1. (done) Every rename across directories takes the cluster-wide
//     "rename" lock in EX, so the "not into its own subtree" check below is
//     exact across nodes too, not only on one (where mu_ serializes ops).
//     The kernel serializes these with s_vfs_rename_mutex, OCFS2 with its
//     rename lock.
//  2. Geometry::filetype (incompat "filetype"): without it the byte after
//     name_len is the high byte of a 16-bit name_len. clusterify only
//     converts what mke2fs -t ext3 makes, which always has filetype, so
//     this file assumes it.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "engine/dir_block.h"
#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {

constexpr uint32_t kLinkMax = 32000;  // EXT3_LINK_MAX
// A fast symlink keeps its target in i_block (60 bytes) with room for the
// kernel's terminating NUL: targets of up to 59 bytes.
constexpr size_t kFastSymlinkMax = sizeof(ext2_inode::i_block) - 1;
// Deeper than any real tree; stops a corrupted ".." cycle from looping.
constexpr int kMaxDepth = 65536;

bool inode_in_use(const ext2_inode& in) { return in.i_links_count != 0 && in.i_mode != 0; }

std::string q(std::string_view name) {
  std::string r(1, '\'');
  r.append(name);
  r.push_back('\'');
  return r;
}

Status err(int e, const std::string& what) { return Status::FromErrno(e, what); }

// Names given to lookup: any existing entry may be asked for.
Status check_lookup_name(std::string_view name, const std::string& what) {
  if (name.empty()) return err(ENOENT, what + ": empty name");
  if (name.size() > kMaxNameLen) return err(ENAMETOOLONG, what + ": name longer than 255 bytes");
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
    return err(EINVAL, what + ": a name cannot contain '/' or NUL");
  return Status::OK();
}

// Names an operation creates, removes or renames.
Status check_change_name(std::string_view name, const std::string& what) {
  CEXT3_RETURN_IF_ERROR(check_lookup_name(name, what));
  if (name == "." || name == "..") return err(EINVAL, what + ": '.' and '..' cannot be created, removed or renamed");
  return Status::OK();
}

// Where a name was found.
struct Found {
  uint64_t lblk = 0;  // logical block of the directory
  uint64_t pblk = 0;  // its physical block
  uint32_t offset = 0;
  uint32_t inode = 0;
  uint8_t file_type = 0;
};

// Directory work inside one op's body. Every method needs the directory's
// inode lock held (PR to read, EX to change): the caller took it.
class DirWork {
 public:
  DirWork(EngineFs& fs, Op& op) : fs_(fs), op_(op), bs_(fs.geo().block_size) {}

  uint64_t block_count(const ext2_inode& in) const { return in.i_size / bs_; }

  // Block `lblk` of directory `dir`, validated.
  Result<const uint8_t*> read_block(uint64_t dir, const ext2_inode& in, uint64_t lblk, uint64_t* pblk_out) {
    ext2_inode copy = in;  // bmap without allocation changes nothing
    auto p = fs_.bmap(op_, dir, copy, lblk, false);
    if (!p.ok()) return p.status();
    if (*p == 0)
      return Status::Corruption("directory inode " + std::to_string(dir) + " has a hole at block " +
                                std::to_string(lblk) + "; run e2fsck -f on the unmounted filesystem");
    auto b = fs_.read_meta(op_, *p, fs_.inode_res(dir));
    if (!b.ok()) return b.status();
    CEXT3_RETURN_IF_ERROR(dir_block::validate(std::span<const uint8_t>(*b, bs_), fs_.geo().inodes_count,
                                              "directory inode " + std::to_string(dir) + ", block " +
                                                  std::to_string(lblk) + " (physical " + std::to_string(*p) + ")"));
    if (pblk_out) *pblk_out = *p;
    return *b;
  }

  Result<std::optional<Found>> find(uint64_t dir, const ext2_inode& in, std::string_view name) {
    for (uint64_t l = 0; l < block_count(in); ++l) {
      uint64_t p = 0;
      auto b = read_block(dir, in, l, &p);
      if (!b.ok()) return b.status();
      auto e = dir_block::find(std::span<const uint8_t>(*b, bs_), name);
      if (e) return std::optional<Found>(Found{l, p, e->offset, e->inode, e->file_type});
    }
    return std::optional<Found>();
  }

  // The ".." entry of a directory (block 0, second entry, as e2fsck requires).
  Result<Found> dotdot(uint64_t dir, const ext2_inode& in) {
    if (block_count(in) == 0)
      return Status::Corruption("directory inode " + std::to_string(dir) + " has no blocks; run e2fsck -f");
    uint64_t p = 0;
    auto b = read_block(dir, in, 0, &p);
    if (!b.ok()) return b.status();
    auto es = dir_block::entries(std::span<const uint8_t>(*b, bs_));
    if (es.size() < 2 || es[0].name != "." || es[1].name != ".." || es[1].inode == 0)
      return Status::Corruption("directory inode " + std::to_string(dir) +
                                " does not start with '.' and '..'; run e2fsck -f on the unmounted filesystem");
    return Found{0, p, es[1].offset, es[1].inode, es[1].file_type};
  }

  // Only "." and ".." (rmdir, rename over a directory).
  Result<bool> is_empty(uint64_t dir, const ext2_inode& in) {
    CEXT3_RETURN_IF_ERROR(dotdot(dir, in).status());
    for (uint64_t l = 0; l < block_count(in); ++l) {
      auto b = read_block(dir, in, l, nullptr);
      if (!b.ok()) return b.status();
      if (!dir_block::only_dot_entries(std::span<const uint8_t>(*b, bs_))) return false;
    }
    return true;
  }

  // A physical block of `dir` where a name of `name_len` bytes fits; when
  // none has room the directory grows by one empty block (in.i_size and
  // the map in `in` change; the caller writes `in`). On a failed growth the
  // inode is written here (an indirect block may already be linked).
  Result<uint64_t> room_for(uint64_t dir, ext2_inode& in, size_t name_len) {
    for (uint64_t l = 0; l < block_count(in); ++l) {
      uint64_t p = 0;
      auto b = read_block(dir, in, l, &p);
      if (!b.ok()) return b.status();
      if (dir_block::has_room(std::span<const uint8_t>(*b, bs_), name_len)) return p;
    }
    const uint64_t l = block_count(in);
    bool fresh = false;
    auto p = fs_.bmap(op_, dir, in, l, true, &fresh);
    if (!p.ok()) {
      (void)fs_.write_inode(op_, dir, in);
      return p.status().Annotate("growing directory inode " + std::to_string(dir));
    }
    if (!fresh) {
      return Status::Corruption("directory inode " + std::to_string(dir) + " maps block " + std::to_string(l) +
                                " past its size; run e2fsck -f on the unmounted filesystem");
    }
    auto nb = fs_.new_meta(op_, *p, fs_.inode_res(dir));
    if (!nb.ok()) return nb.status();
    dir_block::init_empty(std::span<uint8_t>(*nb, bs_));
    in.i_size += bs_;
    return *p;
  }

  Status insert_at(uint64_t dir, uint64_t pblk, std::string_view name, uint32_t ino, uint8_t ft) {
    auto b = fs_.write_meta(op_, pblk, fs_.inode_res(dir));
    if (!b.ok()) return b.status();
    if (!dir_block::insert(std::span<uint8_t>(*b, bs_), name, ino, ft))
      return Status::Corruption("directory inode " + std::to_string(dir) + ": block " + std::to_string(pblk) +
                                " lost the room it had for " + q(name) + " (internal error)");
    return Status::OK();
  }

  // Find `name` again (entries never move, but the block may have been
  // written since it was found) and remove it.
  Status remove_name(uint64_t dir, const ext2_inode& in, std::string_view name) {
    auto f = find(dir, in, name);
    if (!f.ok()) return f.status();
    if (!*f) return Status::Corruption("directory inode " + std::to_string(dir) + ": entry " + q(name) +
                                       " vanished inside one operation (internal error)");
    auto b = fs_.write_meta(op_, (*f)->pblk, fs_.inode_res(dir));
    if (!b.ok()) return b.status();
    dir_block::remove(std::span<uint8_t>(*b, bs_), (*f)->offset);
    return Status::OK();
  }

  Status retarget(uint64_t dir, const Found& at, uint32_t ino, uint8_t ft) {
    auto b = fs_.write_meta(op_, at.pblk, fs_.inode_res(dir));
    if (!b.ok()) return b.status();
    if (!dir_block::set_target(std::span<uint8_t>(*b, bs_), at.offset, ino, ft))
      return Status::Corruption("directory inode " + std::to_string(dir) + ": no entry at byte " +
                                std::to_string(at.offset) + " of block " + std::to_string(at.pblk) +
                                " (internal error)");
    return Status::OK();
  }

 private:
  EngineFs& fs_;
  Op& op_;
  uint32_t bs_;
};

// A directory about to change: the index flag goes (linear from now on)
// and mtime/ctime are now. The caller writes the inode.
void touch_dir_changed(EngineFs& fs, ext2_inode& dir) {
  dir.i_flags &= ~uint32_t(EXT2_INDEX_FL);
  dir.i_mtime = dir.i_ctime = fs.now();
}

bool immutable_or_append(const ext2_inode& in) {
  return (in.i_flags & (EXT2_IMMUTABLE_FL | EXT2_APPEND_FL)) != 0;
}

// Reads `dir`, checks it is a directory in use.
Status read_dir_inode(EngineFs& fs, Op& op, uint64_t dir, ext2_inode* in, const std::string& what) {
  CEXT3_RETURN_IF_ERROR(fs.read_inode(op, dir, in));
  if (!inode_in_use(*in)) return err(ENOENT, what + ": directory inode " + std::to_string(dir) + " is not in use");
  if (!S_ISDIR(in->i_mode)) return err(ENOTDIR, what + ": inode " + std::to_string(dir) + " is not a directory");
  return Status::OK();
}

// A directory that is about to get a new entry or lose one.
Status check_dir_writable(const ext2_inode& dir, bool removing, const std::string& what) {
  if (dir.i_flags & EXT2_IMMUTABLE_FL) return err(EPERM, what + ": the directory is immutable");
  if (removing && (dir.i_flags & EXT2_APPEND_FL)) return err(EPERM, what + ": the directory is append-only");
  return Status::OK();
}

Status check_valid_ino(const EngineFs& fs, uint64_t ino) {
  if (!fs.valid_ino(ino)) return err(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  return Status::OK();
}

// Make sure the op holds `ino`'s inode lock in `mode`; if not, ask for it.
// Returns true when the body must `return op.retry()`.
bool need_inode_lock(Op& op, uint64_t ino, LockMode mode) {
  if (op.holds_inode(ino, mode)) return false;
  op.want_inode(ino, mode);
  return true;
}

// Before the last link of `ino` goes: the locks freeing it takes (its
// blocks' groups, its xattr block, its inode bitmap). Returns true when the
// body must retry.
Result<bool> need_free_locks(EngineFs& fs, Op& op, uint64_t ino, const ext2_inode& in) {
  Status s = fs.prepare_truncate(op, ino, in, 0);
  bool retry = false;
  if (op.retry_requested()) {
    retry = true;
  } else if (!s.ok()) {
    return s;
  }
  const uint32_t g = fs.group_of_ino(ino);
  if (!op.holds(grp_key(g), LockMode::kEX)) {
    op.want_group(g);
    retry = true;
  }
  return retry;
}

// Free an inode whose link count reached 0: its blocks, then the inode.
Status release_inode(EngineFs& fs, Op& op, uint64_t ino, ext2_inode& in) {
  CEXT3_RETURN_IF_ERROR(fs.free_inode_blocks(op, ino, in));
  return fs.free_inode(op, ino, in);
}

}  // namespace

// ================================================================ reading

Result<Attr> EngineFs::lookup(uint64_t parent, std::string_view name) {
  const std::string what = "lookup of " + q(name) + " in directory inode " + std::to_string(parent);
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, parent));
  CEXT3_RETURN_IF_ERROR(check_lookup_name(name, what));
  Op op(*this);
  op.want_inode(parent, LockMode::kPR);
  Attr out;
  Status s = run_op(op, [&]() -> Status {
    DirWork d(*this, op);
    ext2_inode pin;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, parent, &pin, what));
    auto f = d.find(parent, pin, name);
    if (!f.ok()) return f.status();
    if (!*f) return err(ENOENT, what);
    const uint32_t ino = (*f)->inode;
    if (need_inode_lock(op, ino, LockMode::kPR)) return op.retry();
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in))
      return Status::Corruption(what + ": the entry names inode " + std::to_string(ino) +
                                ", which is not in use; run e2fsck -f on the unmounted filesystem");
    out = make_attr(ino, in);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<DirEntry>> EngineFs::readdir(uint64_t ino, uint64_t offset, size_t max_entries) {
  const std::string what = "readdir of directory inode " + std::to_string(ino);
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, ino));
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  std::vector<DirEntry> out;
  Status s = run_op(op, [&]() -> Status {
    out.clear();
    DirWork d(*this, op);
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, ino, &in, what));
    const uint32_t bs = geo().block_size;
    for (uint64_t l = offset / bs; l < d.block_count(in) && out.size() < max_entries; ++l) {
      auto b = d.read_block(ino, in, l, nullptr);
      if (!b.ok()) return b.status();
      for (const auto& e : dir_block::entries(std::span<const uint8_t>(*b, bs))) {
        const uint64_t pos = l * bs + e.offset;
        if (pos < offset || e.inode == 0) continue;
        if (out.size() >= max_entries) break;
        out.push_back(DirEntry{e.inode, e.file_type, std::string(e.name), pos + e.rec_len});
      }
    }
    return Status::OK();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::string> EngineFs::readlink(uint64_t ino) {
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, ino));
  const std::string what = "readlink of inode " + std::to_string(ino);
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  std::string target;
  Status s = run_op(op, [&]() -> Status {
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in)) return err(ENOENT, what + ": the inode is not in use");
    if (!S_ISLNK(in.i_mode)) return err(EINVAL, what + ": not a symbolic link");
    const uint64_t size = inode_size(in);
    if (is_fast_symlink(in)) {
      target.assign(reinterpret_cast<const char*>(in.i_block), size);
      return Status::OK();
    }
    if (size >= geo().block_size)
      return Status::Corruption(what + ": a symlink target of " + std::to_string(size) +
                                " bytes does not fit its one block; run e2fsck -f");
    target.assign(size, '\0');
    auto r = read_data(op, ino, in, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(target.data()), size));
    if (!r.ok()) return r.status();
    target.resize(*r);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return target;
}

// ================================================================ creating

namespace {

// What a new inode is: the parts mkdir/create/mknod/symlink differ in.
struct NewObject {
  uint32_t mode = 0;           // type | permission bits
  uint32_t rdev = 0;           // S_IFCHR / S_IFBLK
  std::string_view target;     // S_IFLNK
};

}  // namespace

// One shared body for mkdir, create, mknod and symlink: check the parent
// and the name, make room for the entry, take the reserved inode, fill it,
// link it.
static Result<Attr> create_object(EngineFs& fs, uint64_t parent, std::string_view name, const NewObject& obj,
                                  const Caller& c, const std::string& what, bool system_dir = false) {
  CEXT3_RETURN_IF_ERROR(check_valid_ino(fs, parent));
  CEXT3_RETURN_IF_ERROR(check_change_name(name, what));
  const bool is_dir = S_ISDIR(obj.mode);
  const bool is_link = S_ISLNK(obj.mode);
  const uint32_t bs = fs.geo().block_size;
  if (is_link) {
    if (obj.target.empty()) return err(ENOENT, what + ": empty symlink target");
    // Stored as a C string (e2fsck checks its length against i_size).
    if (obj.target.find('\0') != std::string_view::npos)
      return err(EINVAL, what + ": a symlink target cannot contain NUL");
    // The kernel stores the target with its NUL in one block at most.
    if (obj.target.size() + 1 > bs)
      return err(ENAMETOOLONG, what + ": symlink target of " + std::to_string(obj.target.size()) +
                                   " bytes does not fit one " + std::to_string(bs) + "-byte block");
  }
  Op op(fs);
  op.want_inode(parent, LockMode::kEX);
  op.want_new_inode(parent, is_dir);
  // Parent growth (one block and up to three indirect blocks) + the new
  // directory's first block or the slow symlink's block.
  op.want_alloc(4 + 1);
  Attr out;
  Status s = fs.run_op(op, [&]() -> Status {
    DirWork d(fs, op);
    ext2_inode pin;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(fs, op, parent, &pin, what));
    // The engine's own directories go into the immutable /.cext3.
    if (!system_dir) CEXT3_RETURN_IF_ERROR(check_dir_writable(pin, false, what));
    if (fs.is_local_orphan(parent)) return err(ENOENT, what + ": the directory was removed");
    if (is_dir && pin.i_links_count >= kLinkMax)
      return err(EMLINK, what + ": the parent already has " + std::to_string(kLinkMax) + " links");
    auto existing = d.find(parent, pin, name);
    if (!existing.ok()) return existing.status();
    if (*existing) return err(EEXIST, what);
    const uint32_t ino = op.reserved_inode();
    if (ino == 0) return Status::InvalidArgument(what + ": no inode was reserved (internal error)");

    // First the steps that may fail for want of space; none of them
    // leaves anything invalid behind.
    auto slot = d.room_for(parent, pin, name.size());
    if (!slot.ok()) return slot.status();
    uint64_t first_block = 0;
    if (is_dir) {
      auto b = fs.alloc_block(op, fs.goal_for_inode(ino));
      if (!b.ok()) {
        (void)fs.write_inode(op, parent, pin);  // it may have grown
        return b.status().Annotate(what);
      }
      first_block = *b;
    }
    auto taken = fs.new_inode(op, obj.mode);
    if (!taken.ok()) {
      if (first_block) (void)fs.free_blocks(op, first_block, 1, true);
      (void)fs.write_inode(op, parent, pin);
      return taken.status();
    }

    ext2_inode in;
    fs.init_new_inode(c, obj.mode, &pin, &in);
    in.i_links_count = 1;
    if (is_dir) {
      in.i_links_count = 2;
      auto nb = fs.new_meta(op, first_block, fs.inode_res(ino));
      if (!nb.ok()) return nb.status();
      dir_block::init_first(std::span<uint8_t>(*nb, bs), ino, uint32_t(parent));
      in.i_block[0] = uint32_t(first_block);
      in.i_blocks = bs / 512;
      in.i_size = bs;
    } else if (S_ISCHR(obj.mode) || S_ISBLK(obj.mode)) {
      // ext3's two encodings (the kernel's old_encode_dev/new_encode_dev):
      // major and minor below 256 in i_block[0], else the new one in
      // i_block[1]. Both equal the low 32 bits of makedev(major, minor).
      if (major(obj.rdev) < 256 && minor(obj.rdev) < 256) {
        in.i_block[0] = obj.rdev;
      } else {
        in.i_block[1] = obj.rdev;
      }
    } else if (is_link) {
      in.i_mode = uint16_t(S_IFLNK | 0777);  // symlinks ignore the umask
      if (obj.target.size() <= kFastSymlinkMax) {
        std::memcpy(in.i_block, obj.target.data(), obj.target.size());
        in.i_size = uint32_t(obj.target.size());
      } else {
        CEXT3_RETURN_IF_ERROR(fs.write_inode(op, ino, in));
        Status w = fs.write_data(op, ino, in,
                                 0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(obj.target.data()),
                                                             obj.target.size()));
        if (!w.ok()) {
          // Undo: the inode is not linked anywhere yet.
          (void)release_inode(fs, op, ino, in);
          (void)fs.write_inode(op, parent, pin);
          return w.Annotate(what);
        }
      }
    }
    // An orphan directory is immutable: no user can add or remove its
    // entries (the engine's own orphan ops do not check the flag).
    if (system_dir) in.i_flags |= EXT2_IMMUTABLE_FL;
    CEXT3_RETURN_IF_ERROR(fs.write_inode(op, ino, in));

    CEXT3_RETURN_IF_ERROR(d.insert_at(parent, *slot, name, ino, file_type_for_mode(in.i_mode)));
    if (is_dir) pin.i_links_count += 1;
    touch_dir_changed(fs, pin);
    CEXT3_RETURN_IF_ERROR(fs.write_inode(op, parent, pin));
    out = fs.make_attr(ino, in);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return out;
}

Result<Attr> EngineFs::mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c) {
  NewObject o;
  o.mode = S_IFDIR | (mode & 07777);
  return create_object(*this, parent, name, o, c,
                       "mkdir " + q(name) + " in directory inode " + std::to_string(parent));
}

Result<Attr> EngineFs::create(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c) {
  const std::string what = "create " + q(name) + " in directory inode " + std::to_string(parent);
  if ((mode & S_IFMT) != 0 && (mode & S_IFMT) != S_IFREG)
    return err(EINVAL, what + ": create makes regular files only (use mkdir, mknod or symlink)");
  NewObject o;
  o.mode = S_IFREG | (mode & 07777);
  return create_object(*this, parent, name, o, c, what);
}

Result<Attr> EngineFs::mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev,
                             const Caller& c) {
  const std::string what = "mknod " + q(name) + " in directory inode " + std::to_string(parent);
  const uint32_t type = mode & S_IFMT;
  if (type != S_IFREG && type != S_IFCHR && type != S_IFBLK && type != S_IFIFO && type != S_IFSOCK)
    return err(EINVAL, what + ": the mode's type must be a regular file, device, FIFO or socket");
  NewObject o;
  o.mode = type | (mode & 07777);
  o.rdev = (type == S_IFCHR || type == S_IFBLK) ? rdev : 0;
  return create_object(*this, parent, name, o, c, what);
}

Result<Attr> EngineFs::symlink(uint64_t parent, std::string_view name, std::string_view target, const Caller& c) {
  NewObject o;
  o.mode = S_IFLNK | 0777;
  o.target = target;
  return create_object(*this, parent, name, o, c,
                       "symlink " + q(name) + " in directory inode " + std::to_string(parent));
}

Result<Attr> EngineFs::link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  const std::string what =
      "link of inode " + std::to_string(ino) + " as " + q(new_name) + " in directory inode " + std::to_string(new_parent);
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, ino));
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, new_parent));
  CEXT3_RETURN_IF_ERROR(check_change_name(new_name, what));
  Op op(*this);
  op.want_inode(ino, LockMode::kEX);
  op.want_inode(new_parent, LockMode::kEX);
  op.want_alloc(4);
  Attr out;
  Status s = run_op(op, [&]() -> Status {
    DirWork d(*this, op);
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in)) return err(ENOENT, what + ": the inode is not in use");
    if (is_local_orphan(ino)) return err(ENOENT, what + ": the inode was unlinked (it is only open)");
    if (S_ISDIR(in.i_mode)) return err(EPERM, what + ": directories cannot be hard-linked");
    if (immutable_or_append(in)) return err(EPERM, what + ": the inode is immutable or append-only");
    if (in.i_links_count >= kLinkMax)
      return err(EMLINK, what + ": the inode already has " + std::to_string(kLinkMax) + " links");
    ext2_inode pin;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, new_parent, &pin, what));
    CEXT3_RETURN_IF_ERROR(check_dir_writable(pin, false, what));
    auto existing = d.find(new_parent, pin, new_name);
    if (!existing.ok()) return existing.status();
    if (*existing) return err(EEXIST, what);
    auto slot = d.room_for(new_parent, pin, new_name.size());
    if (!slot.ok()) return slot.status();
    CEXT3_RETURN_IF_ERROR(d.insert_at(new_parent, *slot, new_name, uint32_t(ino), file_type_for_mode(in.i_mode)));
    touch_dir_changed(*this, pin);
    CEXT3_RETURN_IF_ERROR(write_inode(op, new_parent, pin));
    in.i_links_count += 1;
    in.i_ctime = now();
    CEXT3_RETURN_IF_ERROR(write_inode(op, ino, in));
    out = make_attr(ino, in);
    return Status::OK();
  });
  if (!s.ok()) return s;
  return out;
}

// ================================================================ removing

namespace {

// ---------------------------------------------------------------- orphans
// An inode losing its last name is linked into this slot's orphan
// directory instead of being freed (docs/ENGINE.md "Orphans"). Two steps so
// that the one that can fail for space (room in the orphan directory) runs
// before the op changes anything else.
std::string orphan_name(uint64_t ino) { return std::to_string(ino); }

struct OrphanRoom {
  uint64_t dir = 0;    // the orphan directory
  ext2_inode din{};    // its inode image (written by link_orphan)
  uint64_t pblk = 0;   // a block of it with room for the entry
};

// Needs the orphan directory's inode lock EX and op.want_alloc (it may grow).
Result<OrphanRoom> orphan_room(EngineFs& fs, Op& op, DirWork& d, uint64_t orphan_dir, uint64_t ino) {
  OrphanRoom r;
  r.dir = orphan_dir;
  CEXT3_RETURN_IF_ERROR(read_dir_inode(fs, op, orphan_dir, &r.din, "orphan directory"));
  auto slot = d.room_for(orphan_dir, r.din, orphan_name(ino).size());
  if (!slot.ok()) {
    (void)fs.write_inode(op, orphan_dir, r.din);  // it may have grown
    return slot.status().Annotate("linking inode " + std::to_string(ino) + " into the orphan directory");
  }
  r.pblk = *slot;
  return r;
}

// `in` (inode `ino`) has just lost its last name: it becomes the orphan
// entry's inode. A directory's ".." moves to the orphan directory, which
// gains the link that ".." is. Writes both inodes.
Status link_orphan(EngineFs& fs, Op& op, DirWork& d, OrphanRoom& r, uint64_t ino, ext2_inode& in) {
  CEXT3_RETURN_IF_ERROR(d.insert_at(r.dir, r.pblk, orphan_name(ino), uint32_t(ino), file_type_for_mode(in.i_mode)));
  if (S_ISDIR(in.i_mode)) {
    auto dd = d.dotdot(ino, in);
    if (!dd.ok()) return dd.status();
    CEXT3_RETURN_IF_ERROR(d.retarget(ino, *dd, uint32_t(r.dir), kFtDir));
    in.i_flags &= ~uint32_t(EXT2_INDEX_FL);
    in.i_links_count = 2;  // "." and the orphan entry
    r.din.i_links_count += 1;
  } else {
    in.i_links_count = 1;  // the orphan entry
  }
  in.i_ctime = fs.now();
  CEXT3_RETURN_IF_ERROR(fs.write_inode(op, ino, in));
  touch_dir_changed(fs, r.din);
  CEXT3_RETURN_IF_ERROR(fs.write_inode(op, r.dir, r.din));
  fs.note_orphan(r.dir, ino);
  return Status::OK();
}

// unlink and rmdir: one body, `dir` says which.
Status remove_entry(EngineFs& fs, uint64_t parent, std::string_view name, bool dir) {
  const std::string what =
      std::string(dir ? "rmdir " : "unlink ") + q(name) + " in directory inode " + std::to_string(parent);
  CEXT3_RETURN_IF_ERROR(check_valid_ino(fs, parent));
  CEXT3_RETURN_IF_ERROR(check_change_name(name, what));
  // The orphan directory must exist before the op (made by its own op).
  if (fs.orphan_dir() == 0 && !fs.options().read_only) CEXT3_RETURN_IF_ERROR(fs.ensure_orphan_dir().Annotate(what));
  Op op(fs);
  op.want_inode(parent, LockMode::kEX);
  const uint64_t odir = fs.orphan_dir();
  if (odir != 0) {
    op.want_inode(odir, LockMode::kEX);
    op.want_alloc(4);  // the orphan directory may grow
  }
  uint64_t orphaned = 0;
  Status st = fs.run_op(op, [&]() -> Status {
    orphaned = 0;
    DirWork d(fs, op);
    ext2_inode pin;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(fs, op, parent, &pin, what));
    auto f = d.find(parent, pin, name);
    if (!f.ok()) return f.status();
    if (!*f) return err(ENOENT, what);
    const uint64_t ino = (*f)->inode;
    if (need_inode_lock(op, ino, LockMode::kEX)) return op.retry();
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(fs.read_inode(op, ino, &in));
    if (!inode_in_use(in))
      return Status::Corruption(what + ": the entry names inode " + std::to_string(ino) +
                                ", which is not in use; run e2fsck -f on the unmounted filesystem");
    if (dir && !S_ISDIR(in.i_mode)) return err(ENOTDIR, what);
    if (!dir && S_ISDIR(in.i_mode)) return err(EISDIR, what);
    CEXT3_RETURN_IF_ERROR(check_dir_writable(pin, true, what));
    if (immutable_or_append(in)) return err(EPERM, what + ": the inode is immutable or append-only");
    if (dir) {
      if (ino == kRootIno) return err(EBUSY, what + ": the root directory");
      auto empty = d.is_empty(ino, in);
      if (!empty.ok()) return empty.status();
      if (!*empty) return err(ENOTEMPTY, what);
    }
    const bool last = dir || in.i_links_count <= 1;
    if (last && odir == 0) {
      auto r = need_free_locks(fs, op, ino, in);
      if (!r.ok()) return r.status();
      if (*r) return op.retry();
    }

    // Changes from here on; room for the orphan entry first (may fail).
    std::optional<OrphanRoom> room;
    if (last && odir != 0) {
      auto r = orphan_room(fs, op, d, odir, ino);
      if (!r.ok()) return r.status();
      room = *r;
    }
    CEXT3_RETURN_IF_ERROR(d.remove_name(parent, pin, name));
    if (dir && pin.i_links_count > 2) pin.i_links_count -= 1;  // the child's ".." is gone
    touch_dir_changed(fs, pin);
    if (room && room->dir == parent) return Status::Corruption(what + ": the orphan directory is the parent (internal error)");
    CEXT3_RETURN_IF_ERROR(fs.write_inode(op, parent, pin));
    if (last && room) {
      orphaned = ino;
      return link_orphan(fs, op, d, *room, ino, in);
    }
    if (last) return release_inode(fs, op, ino, in);
    in.i_links_count -= 1;
    in.i_ctime = fs.now();
    return fs.write_inode(op, ino, in);
  });
  // The name is gone (committed with the orphan entry): free it now unless
  // some node holds it open.
  if (st.ok() && orphaned != 0) fs.orphan_unlinked(orphaned);
  return st;
}

}  // namespace

Status EngineFs::unlink(uint64_t parent, std::string_view name) { return remove_entry(*this, parent, name, false); }

Status EngineFs::rmdir(uint64_t parent, std::string_view name) { return remove_entry(*this, parent, name, true); }

// ================================================================ rename

namespace {

// The directories from `dir` up to the root (dir first, root excluded),
// each read in its own small op: the rename op then takes all of them at
// once and walks the chain again under its locks.
Result<std::vector<uint64_t>> ancestor_chain(EngineFs& fs, uint64_t dir) {
  std::vector<uint64_t> chain;
  uint64_t cur = dir;
  while (cur != kRootIno) {
    if (chain.size() > size_t(kMaxDepth))
      return Status::Corruption("the parent chain of directory inode " + std::to_string(dir) +
                                " does not reach the root; run e2fsck -f on the unmounted filesystem");
    chain.push_back(cur);
    Op op(fs);
    op.want_inode(cur, LockMode::kPR);
    uint64_t up = 0;
    Status s = fs.run_op(op, [&]() -> Status {
      DirWork d(fs, op);
      ext2_inode in;
      CEXT3_RETURN_IF_ERROR(read_dir_inode(fs, op, cur, &in, "walking up from directory inode " + std::to_string(dir)));
      auto dd = d.dotdot(cur, in);
      if (!dd.ok()) return dd.status();
      up = dd->inode;
      return Status::OK();
    });
    if (!s.ok()) return s;
    cur = up;
  }
  return chain;
}

}  // namespace

Status EngineFs::rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                        uint32_t flags) {
  const std::string what = "rename of " + q(name) + " in directory inode " + std::to_string(parent) + " to " +
                           q(new_name) + " in directory inode " + std::to_string(new_parent);
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, parent));
  CEXT3_RETURN_IF_ERROR(check_valid_ino(*this, new_parent));
  CEXT3_RETURN_IF_ERROR(check_change_name(name, what));
  CEXT3_RETURN_IF_ERROR(check_change_name(new_name, what));
  if (flags & ~uint32_t(kRenameNoReplace | kRenameExchange)) return err(EINVAL, what + ": unknown flags");
  const bool noreplace = flags & kRenameNoReplace;
  const bool exchange = flags & kRenameExchange;
  if (noreplace && exchange) return err(EINVAL, what + ": NOREPLACE and EXCHANGE exclude each other");
  const bool cross = parent != new_parent;

  // A directory moving to another parent must not move below itself, and a
  // target above the source is refused: the chains above both parents are
  // found first (small read ops), then taken by the rename op, which walks
  // them again under its locks.
  std::vector<uint64_t> chain_new, chain_old;
  if (cross) {
    auto a = ancestor_chain(*this, new_parent);
    if (!a.ok()) return a.status();
    chain_new = std::move(*a);
    auto b = ancestor_chain(*this, parent);
    if (!b.ok()) return b.status();
    chain_old = std::move(*b);
  }

  if (orphan_dir() == 0 && !options().read_only) CEXT3_RETURN_IF_ERROR(ensure_orphan_dir().Annotate(what));
  Op op(*this);
  if (cross) op.want(rename_key(), LockMode::kEX);
  op.want_inode(parent, LockMode::kEX);
  op.want_inode(new_parent, LockMode::kEX);
  const uint64_t odir = orphan_dir();
  if (odir != 0) op.want_inode(odir, LockMode::kEX);
  for (uint64_t a : chain_new) op.want_inode(a, LockMode::kPR);
  for (uint64_t a : chain_old) op.want_inode(a, LockMode::kPR);
  op.want_alloc(odir != 0 ? 8 : 4);
  uint64_t orphaned = 0;
  Status st = run_op(op, [&]() -> Status {
    orphaned = 0;
    DirWork d(*this, op);
    ext2_inode pin, npin_store;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, parent, &pin, what));
    // Same directory: one inode image, changed once.
    ext2_inode& npin = cross ? npin_store : pin;
    if (cross) CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, new_parent, &npin, what));

    auto fsrc = d.find(parent, pin, name);
    if (!fsrc.ok()) return fsrc.status();
    if (!*fsrc) return err(ENOENT, what + ": no such source");
    auto fdst = d.find(new_parent, npin, new_name);
    if (!fdst.ok()) return fdst.status();
    const Found src_at = **fsrc;
    const std::optional<Found> dst_at = *fdst;
    const uint64_t src = src_at.inode;
    const uint64_t dst = dst_at ? dst_at->inode : 0;
    bool relock = need_inode_lock(op, src, LockMode::kEX);
    if (dst) relock = need_inode_lock(op, dst, LockMode::kEX) || relock;
    if (relock) return op.retry();

    ext2_inode sin, din_store;
    CEXT3_RETURN_IF_ERROR(read_inode(op, src, &sin));
    if (!inode_in_use(sin))
      return Status::Corruption(what + ": the source entry names inode " + std::to_string(src) +
                                ", which is not in use; run e2fsck -f on the unmounted filesystem");
    // Source and target may be one inode (two hard links): then there is
    // nothing to do, as POSIX says; otherwise separate images.
    ext2_inode& din = (dst == src) ? sin : din_store;
    if (dst && dst != src) {
      CEXT3_RETURN_IF_ERROR(read_inode(op, dst, &din));
      if (!inode_in_use(din))
        return Status::Corruption(what + ": the target entry names inode " + std::to_string(dst) +
                                  ", which is not in use; run e2fsck -f on the unmounted filesystem");
    }
    const bool src_dir = S_ISDIR(sin.i_mode);
    const bool dst_dir = dst && S_ISDIR(din.i_mode);

    // ---- every error case before any change, in the kernel's order
    // (do_renameat2, then vfs_rename, then ext3's own checks)
    if (noreplace && dst) return err(EEXIST, what);
    if (exchange && !dst) return err(ENOENT, what + ": no such target to exchange with");
    // Not into its own subtree; a target that is an ancestor of the source
    // is "not empty". Walked up under the locks taken.
    auto below = [&](uint64_t top, uint64_t from, bool* is_below) -> Status {
      *is_below = false;
      uint64_t cur = from;
      for (int depth = 0; cur != kRootIno; ++depth) {
        if (cur == top) {
          *is_below = true;
          return Status::OK();
        }
        if (depth > kMaxDepth)
          return Status::Corruption(what + ": the parent chain does not reach the root; run e2fsck -f");
        if (need_inode_lock(op, cur, LockMode::kPR)) return op.retry();
        ext2_inode cin;
        CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, cur, &cin, what));
        auto dd = d.dotdot(cur, cin);
        if (!dd.ok()) return dd.status();
        cur = dd->inode;
      }
      return Status::OK();
    };
    if (cross && src_dir) {
      bool b = false;
      CEXT3_RETURN_IF_ERROR(below(src, new_parent, &b));
      if (b) return err(EINVAL, what + ": a directory cannot move into its own subtree");
    }
    if (cross && dst_dir) {
      bool b = false;
      CEXT3_RETURN_IF_ERROR(below(dst, parent, &b));
      if (b && exchange) return err(EINVAL, what + ": a directory cannot move into its own subtree");
      if (b) return err(ENOTEMPTY, what + ": the target is a directory above the source");
    }
    if (dst == src) return Status::OK();
    CEXT3_RETURN_IF_ERROR(check_dir_writable(pin, true, what));
    CEXT3_RETURN_IF_ERROR(check_dir_writable(npin, dst != 0, what));
    if (immutable_or_append(sin)) return err(EPERM, what + ": the source is immutable or append-only");
    if (dst && immutable_or_append(din)) return err(EPERM, what + ": the target is immutable or append-only");
    if (!exchange && dst) {
      if (src_dir && !dst_dir) return err(ENOTDIR, what + ": a directory cannot replace a non-directory");
      if (!src_dir && dst_dir) return err(EISDIR, what + ": a non-directory cannot replace a directory");
    }
    // Link counts of the parents after the move (ext3: 2 + subdirectories).
    int old_delta = 0, new_delta = 0;
    if (exchange) {
      if (cross && src_dir != dst_dir) {
        old_delta = src_dir ? -1 : +1;
        new_delta = -old_delta;
      }
    } else {
      if (src_dir && cross) {
        old_delta -= 1;
        new_delta += 1;
      }
      if (dst_dir) new_delta -= 1;
    }
    if (cross && new_delta > 0 && npin.i_links_count >= kLinkMax)
      return err(EMLINK, what + ": the target directory already has " + std::to_string(kLinkMax) + " links");
    if (cross && old_delta > 0 && pin.i_links_count >= kLinkMax)
      return err(EMLINK, what + ": the source directory already has " + std::to_string(kLinkMax) + " links");
    if (!exchange && dst_dir) {
      auto empty = d.is_empty(dst, din);
      if (!empty.ok()) return empty.status();
      if (!*empty) return err(ENOTEMPTY, what + ": the target directory is not empty");
    }
    const bool frees_dst = dst && !exchange && (dst_dir || din.i_links_count <= 1);
    if (frees_dst && odir == 0) {
      auto r = need_free_locks(*this, op, dst, din);
      if (!r.ok()) return r.status();
      if (*r) return op.retry();
    }

    // ---- changes; the steps that can fail for space come first (room
    // for the replaced target's orphan entry, room for the new name)
    std::optional<OrphanRoom> room;
    if (frees_dst && odir != 0) {
      if (odir == parent || odir == new_parent || odir == src || odir == dst)
        return err(EPERM, what + ": the orphan directory is the engine's own");
      auto r = orphan_room(*this, op, d, odir, dst);
      if (!r.ok()) return r.status();
      room = *r;
    }
    const uint8_t src_ft = file_type_for_mode(sin.i_mode);
    const uint32_t t = now();
    if (exchange) {
      CEXT3_RETURN_IF_ERROR(d.retarget(parent, src_at, uint32_t(dst), file_type_for_mode(din.i_mode)));
      CEXT3_RETURN_IF_ERROR(d.retarget(new_parent, *dst_at, uint32_t(src), src_ft));
    } else if (dst) {
      CEXT3_RETURN_IF_ERROR(d.retarget(new_parent, *dst_at, uint32_t(src), src_ft));
      CEXT3_RETURN_IF_ERROR(d.remove_name(parent, pin, name));
    } else {
      auto slot = d.room_for(new_parent, npin, new_name.size());
      if (!slot.ok()) return slot.status();
      CEXT3_RETURN_IF_ERROR(d.insert_at(new_parent, *slot, new_name, uint32_t(src), src_ft));
      CEXT3_RETURN_IF_ERROR(d.remove_name(parent, pin, name));
    }
    // Moved directories point ".." at their new parent.
    if (cross && src_dir) {
      auto dd = d.dotdot(src, sin);
      if (!dd.ok()) return dd.status();
      CEXT3_RETURN_IF_ERROR(d.retarget(src, *dd, uint32_t(new_parent), kFtDir));
      sin.i_flags &= ~uint32_t(EXT2_INDEX_FL);
    }
    if (cross && exchange && dst_dir) {
      auto dd = d.dotdot(dst, din);
      if (!dd.ok()) return dd.status();
      CEXT3_RETURN_IF_ERROR(d.retarget(dst, *dd, uint32_t(parent), kFtDir));
      din.i_flags &= ~uint32_t(EXT2_INDEX_FL);
    }
    pin.i_links_count = uint16_t(int(pin.i_links_count) + old_delta + (cross ? 0 : new_delta));
    if (cross) npin.i_links_count = uint16_t(int(npin.i_links_count) + new_delta);
    touch_dir_changed(*this, pin);
    CEXT3_RETURN_IF_ERROR(write_inode(op, parent, pin));
    if (cross) {
      touch_dir_changed(*this, npin);
      CEXT3_RETURN_IF_ERROR(write_inode(op, new_parent, npin));
    }
    sin.i_ctime = t;
    CEXT3_RETURN_IF_ERROR(write_inode(op, src, sin));
    if (exchange) {
      din.i_ctime = t;
      return write_inode(op, dst, din);
    }
    if (dst) {
      if (frees_dst && room) {
        orphaned = dst;
        return link_orphan(*this, op, d, *room, dst, din);
      }
      if (frees_dst) return release_inode(*this, op, dst, din);
      din.i_links_count -= 1;
      din.i_ctime = t;
      return write_inode(op, dst, din);
    }
    return Status::OK();
  });
  if (st.ok() && orphaned != 0) orphan_unlinked(orphaned);
  return st;
}

// ================================================================ orphan directories
// The directory operations behind orphan.cpp: each is one op. The caller
// of free_orphan holds `open:<ino>` EX (nobody has the inode open).

Result<uint64_t> EngineFs::find_orphan_dir(uint32_t slot, bool create) {
  using cluster::kSystemDirName;
  using cluster::orphan_dir_name;
  const std::string name = orphan_dir_name(slot);
  auto sys = lookup(kRootIno, kSystemDirName);
  if (!sys.ok()) return sys.status().Annotate("finding /" + std::string(kSystemDirName));
  for (int round = 0; round < 2; ++round) {
    auto o = lookup(sys->ino, name);
    if (o.ok()) {
      if (!S_ISDIR(o->mode))
        return Status::Corruption("/" + std::string(kSystemDirName) + "/" + name +
                                  " is not a directory; run clusterify verify");
      return o->ino;
    }
    if (o.status().errno_value() != ENOENT) return o.status();
    if (!create) return uint64_t{0};
    NewObject obj;
    obj.mode = S_IFDIR | 0700;
    Caller root;
    root.umask = 0;
    auto made = create_object(*this, sys->ino, name, obj, root,
                              "creating /" + std::string(kSystemDirName) + "/" + name, /*system_dir=*/true);
    if (made.ok()) return made->ino;
    if (made.status().errno_value() != EEXIST) return made.status();
  }
  return Status::Corruption("/" + std::string(kSystemDirName) + "/" + name + " keeps vanishing; run clusterify verify");
}

Result<std::vector<uint64_t>> EngineFs::list_orphan_dir(uint64_t dir) {
  std::vector<uint64_t> out;
  uint64_t off = 0;
  for (;;) {
    auto es = readdir(dir, off, 256);
    if (!es.ok()) return es.status();
    if (es->empty()) break;
    for (const auto& e : *es) {
      off = e.next_offset;
      if (e.name == "." || e.name == "..") continue;
      // Names are inode numbers; anything else is not ours to free.
      uint64_t n = 0;
      bool num = !e.name.empty() && e.name.size() < 12;
      for (char ch : e.name) num = num && ch >= '0' && ch <= '9';
      if (num) n = std::stoull(e.name);
      if (num && n == e.ino) out.push_back(n);
    }
  }
  return out;
}

Result<bool> EngineFs::free_orphan(uint64_t dir, uint64_t ino) {
  const std::string what = "freeing orphan inode " + std::to_string(ino) + " of orphan directory inode " + std::to_string(dir);
  Op op(*this);
  op.want_inode(dir, LockMode::kEX);
  op.want_inode(ino, LockMode::kEX);
  bool freed = false;
  Status s = run_op(op, [&]() -> Status {
    freed = false;
    DirWork d(*this, op);
    ext2_inode din;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, dir, &din, what));
    auto f = d.find(dir, din, orphan_name(ino));
    if (!f.ok()) return f.status();
    if (!*f) {  // freed or moved by someone else meanwhile
      if (dir == orphan_dir_) orphans_.erase(ino);
      return Status::OK();
    }
    if ((*f)->inode != ino) return Status::Corruption(what + ": the entry names inode " + std::to_string((*f)->inode));
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in))
      return Status::Corruption(what + ": the inode is not in use; run e2fsck -f on the unmounted filesystem");
    if (S_ISDIR(in.i_mode)) {
      // Another node that had the directory open may have created in it
      // after the rmdir: its entries would be lost with it. Leave it.
      auto empty = d.is_empty(ino, in);
      if (!empty.ok()) return empty.status();
      if (!*empty) return err(ENOTEMPTY, what + ": the removed directory got entries while open; left in place");
    }
    auto r = need_free_locks(*this, op, ino, in);
    if (!r.ok()) return r.status();
    if (*r) return op.retry();
    CEXT3_RETURN_IF_ERROR(d.remove_name(dir, din, orphan_name(ino)));
    if (S_ISDIR(in.i_mode) && din.i_links_count > 2) din.i_links_count -= 1;
    touch_dir_changed(*this, din);
    CEXT3_RETURN_IF_ERROR(write_inode(op, dir, din));
    CEXT3_RETURN_IF_ERROR(release_inode(*this, op, ino, in));
    if (dir == orphan_dir_) orphans_.erase(ino);
    freed = true;
    return Status::OK();
  });
  if (!s.ok()) return s;
  return freed;
}

Status EngineFs::move_orphan(uint64_t from, uint64_t to, uint64_t ino) {
  const std::string what = "moving orphan inode " + std::to_string(ino) + " from orphan directory inode " +
                           std::to_string(from) + " to " + std::to_string(to);
  if (from == to) return Status::OK();
  Op op(*this);
  op.want_inode(from, LockMode::kEX);
  op.want_inode(to, LockMode::kEX);
  op.want_inode(ino, LockMode::kEX);
  op.want_alloc(4);
  return run_op(op, [&]() -> Status {
    DirWork d(*this, op);
    ext2_inode fin;
    CEXT3_RETURN_IF_ERROR(read_dir_inode(*this, op, from, &fin, what));
    auto f = d.find(from, fin, orphan_name(ino));
    if (!f.ok()) return f.status();
    if (!*f) return Status::OK();
    ext2_inode in;
    CEXT3_RETURN_IF_ERROR(read_inode(op, ino, &in));
    if (!inode_in_use(in))
      return Status::Corruption(what + ": the inode is not in use; run e2fsck -f on the unmounted filesystem");
    auto room = orphan_room(*this, op, d, to, ino);
    if (!room.ok()) return room.status();
    CEXT3_RETURN_IF_ERROR(d.remove_name(from, fin, orphan_name(ino)));
    if (S_ISDIR(in.i_mode) && fin.i_links_count > 2) fin.i_links_count -= 1;
    touch_dir_changed(*this, fin);
    CEXT3_RETURN_IF_ERROR(write_inode(op, from, fin));
    // link_orphan sets the links (1, or 2 with ".." now naming `to`).
    return link_orphan(*this, op, d, *room, ino, in);
  });
}

}  // namespace cext3::engine
