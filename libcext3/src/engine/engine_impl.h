// EngineFs: the implementation of engine::Filesystem, and the internal
// services the namespace code (fs_namespace.cpp, dir_block.*) builds on.
//
// Who writes what:
//  * core (this header, fs_mount.cpp, block_cache.cpp, running_txn.cpp,
//    inode_table.cpp, allocator.cpp, block_map.cpp, fs_files.cpp,
//    local_locks.cpp, op.cpp, xattr.cpp): mount/unmount, the block cache,
//    transactions, locks, inodes, allocation, block maps, file data,
//    setattr/getattr/statfs/fsync/sync, on_lock_leaving, xattrs;
//  * namespace (fs_namespace.cpp): the members marked "namespace" below
//    (lookup, readdir, mkdir, create, mknod, symlink, link, unlink, rmdir,
//    rename, readlink), on top of the services here.
//
// Byte order: ext3 is little-endian on disk and the engine reads and writes
// libext2fs's structs (struct ext2_inode, ext2_super_block,
// ext2_group_desc) by memcpy, so it runs on little-endian hosts only
// (x86-64, arm64 little-endian). fs_mount.cpp refuses a big-endian build.
//
// ---------------------------------------------------------------- locking
// Every operation is one Op. The order is always:
//   1. cluster locks (LockProvider), every resource the op needs, in sorted
//      order of ResKey (so two ops never wait for each other in a cycle);
//   2. the engine mutex `mu_` (one op at a time changes the in-memory state;
//      the running transaction snapshot therefore sees whole ops only);
//   3. the op's body: reads/writes cached blocks, allocates, frees;
//   4. release mu_, bump the LVB version of every EX resource whose blocks
//      the op changed, release the cluster locks; in sync-ops mode wait for
//      the commit holding the op to be durable first.
// Nobody waits for a cluster lock while holding mu_ or commit_mu_. An op
// that discovers in its body that it needs a lock it did not take (a name
// resolved to another inode than the one locked, blocks to free in a group
// not held, a new inode whose table block is not held) calls
// op.want_...() then `return op.retry();` BEFORE changing anything; run_op()
// then releases everything and starts the op again with the larger set.
//
// Lock order of the engine's own mutexes: commit_mu_ -> mu_ -> cache
// internals. on_lock_leaving takes commit_mu_ then mu_ (briefly).
//
// ---------------------------------------------------------------- coherence
// A cached metadata block remembers the resource covering it (ResKey) and the
// LVB version of that resource it was read under. When an op acquires a
// resource and the LVB version differs from the one this node last saw,
// every cached block of that resource is dropped (another node changed it).
// When an EX holder changed covered blocks it publishes version + 1 at
// unlock. Before an EX leaves the node (on_lock_leaving) the running
// transaction is committed and the blocks the journal holds for the resource
// are written in place and revoked (Journal::checkpoint_blocks).
//
// ---------------------------------------------------------------- data
// File data blocks are never journaled. An op's data writes are kept as
// whole-block images in the running transaction's write-back set
// (data_writeback.cpp); its commit hands them to the journal as ordered
// data, so a newly allocated block is on the disk before the commit that
// makes an inode point to it. Blocks freed in
// a transaction that is not yet durable are never reallocated before it is
// (so a crash cannot leave an old file pointing at new data).
#pragma once

#include <ext2fs/ext2_fs.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cext3/cluster/header.h"
#include "cext3/cluster/layout.h"
#include "cext3/engine/filesystem.h"
#include "cext3/journal.h"

namespace cext3::engine {

// ------------------------------------------------------------ resources
// A lock resource as a number, sortable: kind in the top 8 bits, id below.
// Sorted ResKey order is the global lock order.
using ResKey = uint64_t;
// kXab: a shared xattr block ("xab:<block>"): it may be referenced by
// inodes of many inode-table blocks, so it has its own lock.
// kRename: one cluster-wide lock every rename across directories takes in
// EX, as the kernel's s_vfs_rename_mutex and OCFS2's rename lock: the
// "not into its own subtree" check is only exact if no other node moves a
// directory at the same time.
enum class ResKind : uint8_t { kSb = 1, kGdt = 2, kGrp = 3, kItb = 4, kOrph = 5, kXab = 6, kRename = 7 };
inline ResKey res_key(ResKind k, uint64_t id) { return (uint64_t(k) << 56) | (id & ((1ull << 56) - 1)); }
inline ResKind res_kind(ResKey r) { return ResKind(r >> 56); }
inline uint64_t res_id(ResKey r) { return r & ((1ull << 56) - 1); }
inline ResKey itb_key(uint64_t inode_table_block) { return res_key(ResKind::kItb, inode_table_block); }
inline ResKey grp_key(uint32_t group) { return res_key(ResKind::kGrp, group); }
inline ResKey gdt_key(uint64_t gdt_block) { return res_key(ResKind::kGdt, gdt_block); }
inline ResKey sb_key() { return res_key(ResKind::kSb, 0); }
inline ResKey rename_key() { return res_key(ResKind::kRename, 0); }
inline ResKey xab_key(uint64_t xattr_block) { return res_key(ResKind::kXab, xattr_block); }
// "itb:1234", "grp:3", "gdt:2", "sb", "orph:1", "rename" (docs/ENGINE.md).
std::string resource_name(ResKey r);
// Inverse of resource_name; false for a name the engine does not use.
bool parse_resource_name(const std::string& name, ResKey* out);

// Internal status used by Op::retry(): not an error, run_op() retries.
bool is_retry(const Status& s);

class EngineFs;

// ------------------------------------------------------------ operation
// One filesystem operation: the cluster locks it holds and the journal
// handle (blocks it dirtied in the running transaction). Use through
// EngineFs::run_op:
//
//   Op op(*this);
//   op.want_inode(parent, locks::LockMode::kEX);
//   op.want_new_inode(parent, /*dir=*/true);      // mkdir: reserve an inode
//   return run_op(op, [&]() -> Status { ... body ... });
//
// Not thread-safe: one Op per thread.
class Op {
 public:
  explicit Op(EngineFs& fs) : fs_(fs) {}
  ~Op();
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  // ---- before begin() or inside the body followed by `return retry();`
  void want(ResKey r, locks::LockMode m);
  // The inode-table block of `ino` (covers its inode, indirect blocks and,
  // for a directory, its directory blocks).
  void want_inode(uint64_t ino, locks::LockMode m);
  // grp:<g> EX (bitmaps of group g): needed to allocate or free in g.
  void want_group(uint32_t g);
  // The op will allocate up to about `blocks` blocks: take this slot's own
  // groups EX, and, when they have fewer free blocks than that, borrow
  // other slots' groups with free space.
  void want_alloc(uint64_t blocks);
  // The op will create one inode: reserves one (near `parent`, directories
  // spread) and locks its inode-table block EX; take it in the body with
  // EngineFs::new_inode(). Implies want_alloc(1 + dir).
  void want_new_inode(uint64_t parent, bool is_dir);

  // ---- lifecycle (run_op calls these)
  Status begin();
  // Called by run_op after the body: releases mu_ and the locks (bumping
  // LVB versions of changed EX resources); in sync-ops mode makes the op
  // durable first. Returns `body` or the first failure after it.
  Status end(Status body);
  // Ask run_op to release everything and start the body again with the
  // wanted set (after want_...()). Only valid before the body changed any
  // block (checked: a retry after a change is an error).
  Status retry();
  bool retry_requested() const { return retry_; }

  // ---- during the body
  bool holds(ResKey r, locks::LockMode m) const;
  bool holds_inode(uint64_t ino, locks::LockMode m) const;
  // The inode reserved by want_new_inode (0 if none).
  uint32_t reserved_inode() const { return reserved_ino_; }
  // Dirtied anything yet (retry() after a change is a bug).
  bool changed() const { return !changed_res_.empty() || data_written_; }
  // A read-only op's last step: give up mu_ and keep the cluster locks, so
  // slow work that needs only them (disk reads of file data) does not stop
  // other ops. Nothing cached may be touched after it.
  void release_mu();

 private:
  friend class EngineFs;
  struct Held {
    locks::LockMode mode;
    LockProvider::Held h;
  };
  Status lock_all();
  void unlock_all(bool publish);

  EngineFs& fs_;
  std::map<ResKey, locks::LockMode> wanted_;  // sorted: the lock order
  std::map<ResKey, Held> held_;
  std::set<ResKey> changed_res_;  // EX resources whose blocks changed
  bool data_written_ = false;
  bool has_mu_ = false;
  bool retry_ = false;
  uint64_t alloc_blocks_ = 0;
  bool new_inode_ = false, new_inode_dir_ = false, borrowed_for_inode_ = false;
  uint64_t new_inode_parent_ = 0;
  uint32_t reserved_ino_ = 0;
  uint64_t op_seq_ = 0;  // running-transaction sequence the op joined
  // A shrinking truncate's partial last block: bytes [tail_offset_, end)
  // of block tail_block_ are zeroed on disk only once the shrink is
  // committed (Op::end, still under the inode's lock). Zeroing them before
  // would destroy file data if the machine died before the commit: the old
  // size would come back with its last block cut (all-or-nothing broken).
  uint64_t tail_block_ = 0;
  uint32_t tail_offset_ = 0;
};

// ------------------------------------------------------------ block cache
// One cached metadata block.
struct CachedBlock {
  std::vector<uint8_t> data;
  ResKey res = 0;          // the lock that covers it
  uint64_t version = 0;    // LVB version of `res` when read
  bool dirty = false;      // changed since the last commit snapshot
};

// ------------------------------------------------------------ the engine
class EngineFs final : public Filesystem {
 public:
  // Geometry, read once at mount (the superblock and descriptors are
  // read-only copies; counts in them are only the folded base values).
  struct Geometry {
    uint32_t block_size = 0;
    uint32_t log_block_size = 0;     // block_size = 1024 << log_block_size
    uint64_t blocks_count = 0;
    uint32_t first_data_block = 0;
    uint32_t blocks_per_group = 0;
    uint32_t inodes_per_group = 0;
    uint32_t inodes_count = 0;
    uint32_t inode_size = 128;
    uint32_t first_ino = 11;
    uint32_t groups = 0;
    uint32_t addr_per_block = 0;     // block_size / 4
    uint32_t desc_per_block = 0;
    uint64_t gdt_first_block = 0;    // first group-descriptor block
    uint64_t sb_block = 0;           // fs block holding the primary superblock
    uint32_t sb_offset_in_block = 0; // 0 with 1 KiB blocks (block 1), else 1024 (in block 0)
    uint64_t max_file_size = 0;      // ext3's limit for this block size (EFBIG past it)
    uint64_t reserved_blocks = 0;    // s_r_blocks_count (root's reserve, for statfs avail)
    bool large_file = false;
    uint32_t hash_seed[4] = {0, 0, 0, 0};  // s_hash_seed (for dir_index)
    uint8_t def_hash_version = 0;           // s_def_hash_version
    bool unsigned_hash = false;             // EXT2_FLAGS_UNSIGNED_HASH
    bool dir_index = false;
  };
  struct GroupInfo {
    uint64_t block_bitmap = 0, inode_bitmap = 0, inode_table = 0;
    // Folded base (descriptor at mount / after our last fold) ...
    int64_t base_free_blocks = 0, base_free_inodes = 0, base_used_dirs = 0;
    // ... and this node's unfolded changes (docs/ENGINE.md "Derived counters").
    int64_t d_free_blocks = 0, d_free_inodes = 0, d_used_dirs = 0;
    uint16_t slot = 0;
  };

  EngineFs(BlockDevice& dev, const MountOptions& opts);
  ~EngineFs() override;

  // --- Filesystem: core (fs_files.cpp, fs_mount.cpp, xattr.cpp)
  Result<Attr> getattr(uint64_t ino) override;
  Result<size_t> read(uint64_t ino, uint64_t offset, std::span<uint8_t> out) override;
  Result<size_t> write(uint64_t ino, uint64_t offset, std::span<const uint8_t> data) override;
  Result<Attr> setattr(uint64_t ino, const SetAttr& changes) override;
  Status setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value, int flags) override;
  Result<std::vector<uint8_t>> getxattr(uint64_t ino, std::string_view name) override;
  Result<std::vector<std::string>> listxattr(uint64_t ino) override;
  Status removexattr(uint64_t ino, std::string_view name) override;
  Status fsync(uint64_t ino) override;
  Status sync() override;
  Result<FsStats> statfs() override;
  void on_lock_leaving(const std::string& resource, locks::LockMode from, locks::LockMode to) override;
  std::vector<uint64_t> inodes_covered_by(const std::string& resource) override;
  Status unmount() override;

  // --- Filesystem: namespace (fs_namespace.cpp)
  Result<Attr> lookup(uint64_t parent, std::string_view name) override;
  Result<std::vector<DirEntry>> readdir(uint64_t ino, uint64_t offset, size_t max_entries) override;
  Result<Attr> mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c) override;
  Result<Attr> create(uint64_t parent, std::string_view name, uint32_t mode, const Caller& c) override;
  Result<Attr> mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev,
                     const Caller& c) override;
  Result<Attr> symlink(uint64_t parent, std::string_view name, std::string_view target,
                       const Caller& c) override;
  Result<Attr> link(uint64_t ino, uint64_t new_parent, std::string_view new_name) override;
  Status unlink(uint64_t parent, std::string_view name) override;
  Status rmdir(uint64_t parent, std::string_view name) override;
  Status rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                uint32_t flags) override;
  Result<std::string> readlink(uint64_t ino) override;

  // --- Filesystem: open files (orphan.cpp)
  Status open(uint64_t ino) override;
  Status release(uint64_t ino) override;

  // ================================================================ orphans
  // docs/ENGINE.md "Orphans". An inode whose last name goes is linked into
  // this slot's orphan directory (/.cext3/orphan.NN, entry named by its
  // inode number) in the same op, then freed by free_orphan once
  // `open:<ino>` EX is granted (no node holds it open: an open holds PR).
  //
  // This slot's orphan directory (0: none yet, or a read-only mount).
  uint64_t orphan_dir() {
    std::lock_guard<std::mutex> g(mu_);
    return orphan_dir_;
  }
  // Not inside an op: make this slot's orphan directory if it has none.
  Status ensure_orphan_dir();
  // mu_ held (inside an op): `ino` is in this slot's orphan directory.
  bool is_local_orphan(uint64_t ino) const { return orphans_.count(ino) != 0; }
  // mu_ held (inside an op): `ino` was just linked into orphan directory `dir`.
  void note_orphan(uint64_t dir, uint64_t ino) {
    if (dir == orphan_dir_) orphans_.insert(ino);
  }
  // Not inside an op: the op that orphaned `ino` has ended; free it now
  // unless a node holds it open (then the scan or the last release does).
  void orphan_unlinked(uint64_t ino);
  // A dead slot's orphans (adopt_orphans in orphans.h): each one nobody has
  // open is freed, the others move into this slot's orphan directory.
  Status adopt_orphans_of(uint32_t slot);
  // One pass over this slot's orphans; `wait` bounds each open-lock try.
  // Returns how many are left.
  Result<size_t> scan_orphans(std::chrono::milliseconds wait);

  // Directory ops behind the orphans (fs_namespace.cpp), each one op.
  // /.cext3/orphan.NN of `slot`, made when absent and `create`; 0 if absent.
  Result<uint64_t> find_orphan_dir(uint32_t slot, bool create);
  // Inode numbers named in orphan directory `dir`.
  Result<std::vector<uint64_t>> list_orphan_dir(uint64_t dir);
  // Remove `ino`'s entry from orphan directory `dir` and free it (blocks
  // and inode). The caller holds open:<ino> EX. False: no such entry.
  Result<bool> free_orphan(uint64_t dir, uint64_t ino);
  // Move `ino`'s entry from orphan directory `from` to `to`.
  Status move_orphan(uint64_t from, uint64_t to, uint64_t ino);

  // ================================================================ services
  // Everything below is called inside an op's body (mu_ held, the covering
  // locks held by `op`; checked on every block access) unless it says otherwise.

  // Run `body` as one operation: begin (locks, mu_), body, end. Retries when
  // the body returns op.retry(). At most a few dozen rounds, then EBUSY.
  template <class Body>
  Status run_op(Op& op, Body&& body) {
    for (int round = 0; round < 64; ++round) {
      Status s = op.begin();
      if (!s.ok()) return s;
      s = body();
      if (op.retry_requested()) {
        op.end(Status::OK());
        continue;
      }
      return op.end(std::move(s));
    }
    return Status::FromErrno(EBUSY, "operation kept finding its locks stale after 64 rounds; retry it");
  }

  const Geometry& geo() const { return geo_; }
  const MountOptions& options() const { return opts_; }
  bool sync_ops() const { return opts_.sync_ops; }

  // --- inodes (inode_table.cpp)
  bool valid_ino(uint64_t ino) const { return ino >= 1 && ino <= geo_.inodes_count; }
  uint32_t group_of_ino(uint64_t ino) const { return uint32_t((ino - 1) / geo_.inodes_per_group); }
  // Inode-table block holding `ino` and the covering resource.
  uint64_t inode_block(uint64_t ino) const;
  ResKey inode_res(uint64_t ino) const { return itb_key(inode_block(ino)); }
  // The 128-byte ext3 inode (bytes past 128 of a large inode are kept as
  // they are on disk). Needs inode_res(ino) PR or EX.
  Status read_inode(Op& op, uint64_t ino, ext2_inode* out);
  // Needs EX. Marks the inode-table block dirty in the running transaction.
  Status write_inode(Op& op, uint64_t ino, const ext2_inode& in);
  // Take the inode reserved by op.want_new_inode(): mark it used in its
  // group's bitmap, count it (and a directory) in the deltas, zero its slot
  // (for 256-byte inodes i_extra_isize = 32) and return its number. The
  // caller fills the inode with init_new_inode() and writes it.
  Result<uint32_t> new_inode(Op& op, uint32_t mode);
  // Fill a fresh inode: type|(mode & ~umask & 07777), owner from `c`,
  // gid and S_ISGID (directories) inherited from a setgid `parent`, all
  // times now, links 0, generation random. `parent` may be null.
  void init_new_inode(const Caller& c, uint32_t mode, const ext2_inode* parent, ext2_inode* out);
  // The inode's group bitmap must be held (op.want_group(group_of_ino)).
  // Clears the bitmap bit, counts it free (and a directory), sets i_dtime,
  // links 0 and writes the inode. Its blocks must already be freed
  // (free_inode_blocks).
  Status free_inode(Op& op, uint64_t ino, ext2_inode& inode);
  // Attr as getattr returns it.
  Attr make_attr(uint64_t ino, const ext2_inode& in) const;

  // --- inode fields
  static uint64_t inode_size(const ext2_inode& in);  // i_size | i_size_high (regular files)
  void set_inode_size(ext2_inode& in, uint64_t size) const;
  uint32_t now() const;  // seconds since the epoch (ext3 keeps seconds)
  // A fast symlink keeps its target in i_block (no data block).
  static bool is_fast_symlink(const ext2_inode& in);

  // --- metadata blocks (block_cache.cpp). `res` must be held by op (PR or
  // EX for read, EX for write). Pointers are valid until the op ends.
  Result<const uint8_t*> read_meta(Op& op, uint64_t blk, ResKey res);
  Result<uint8_t*> write_meta(Op& op, uint64_t blk, ResKey res);
  // A block just allocated as metadata (indirect or directory block):
  // zero-filled, not read from disk, dirty.
  Result<uint8_t*> new_meta(Op& op, uint64_t blk, ResKey res);

  // --- block allocation (allocator.cpp). Needs grp:<g> EX of the group it
  // takes from (op.want_alloc does it for own groups).
  // One block near `goal` (0: this slot's first group with space).
  // ENOSPC when no held group has a free block.
  Result<uint64_t> alloc_block(Op& op, uint64_t goal);
  // The first free, reusable block at or after `goal` in goal's group if
  // held, else in any group the op holds EX (0: none), without taking it.
  // For a block that needs its own lock before it is taken (an xattr
  // block, xab:<block>): peek, lock, retry, then check peek(op, b) == b and
  // alloc_block(op, b) returns b. Defined in xattr_block_alloc.cpp.
  Result<uint64_t> peek_free_block(Op& op, uint64_t goal);
  // Free `count` blocks from `first`. `metadata`: the blocks were journaled
  // (indirect, directory, xattr blocks): also revoked in the journal. Needs
  // grp:<g> EX of their group(s): call prepare_free_* first.
  Status free_blocks(Op& op, uint64_t first, uint64_t count, bool metadata);
  // A goal block for new blocks of `ino`: its group's first data block if
  // this slot owns it, else 0 (the allocator picks an own group).
  uint64_t goal_for_inode(uint64_t ino) const;

  // --- block maps (block_map.cpp): direct, indirect, double, triple.
  // Physical block of logical block `lblk` of `ino` (0 = hole). With
  // `alloc` a hole is filled: the block (and any missing indirect blocks,
  // journaled under inode_res(ino)) is allocated near the inode's goal and
  // in.i_blocks grows; *fresh says the returned block is new (its contents
  // on disk are garbage: the caller writes it whole or uses new_meta()).
  // The caller writes `in` back (write_inode).
  Result<uint64_t> bmap(Op& op, uint64_t ino, ext2_inode& in, uint64_t lblk, bool alloc, bool* fresh = nullptr);
  // Lock check before a truncate or a free of all blocks: every group
  // holding a block to free must be held EX. Walks the map; for each
  // missing group calls op.want_group(g); returns op.retry() if any was
  // missing, OK if all are held. Changes nothing.
  Status prepare_truncate(Op& op, uint64_t ino, const ext2_inode& in, uint64_t new_size);
  // Free every block past `new_size` (and indirect blocks that become
  // empty), set the size, zero the tail of the last partial block on disk.
  // Call prepare_truncate first. Writes the inode.
  Status truncate(Op& op, uint64_t ino, ext2_inode& in, uint64_t new_size);
  // Free all blocks (data, indirect, and the xattr block's reference).
  // For unlink/rmdir of the last link. Call prepare_truncate(op, ino, in, 0)
  // first. Leaves i_size as is; writes the inode.
  Status free_inode_blocks(Op& op, uint64_t ino, ext2_inode& in);

  // --- file data (fs_files.cpp); inode_res(ino) EX held.
  // Write `data` at `offset` (allocating, zero-filling fresh blocks),
  // update i_size/i_blocks/mtime/ctime in `in` and write the inode.
  // Used by write() and for slow symlink targets.
  Status write_data(Op& op, uint64_t ino, ext2_inode& in, uint64_t offset, std::span<const uint8_t> data);
  // Read up to out.size() bytes (stops at i_size; holes are zeros).
  Result<size_t> read_data(Op& op, uint64_t ino, const ext2_inode& in, uint64_t offset, std::span<uint8_t> out);
  // read_data in two steps, so the disk reads may run after op.release_mu():
  // plan_read (mu_ held) fills holes and the blocks with a write-back image
  // and lists the disk reads; run_reads does them.
  struct DiskRead {
    uint64_t phys, count;  // `count` blocks from `phys`
    uint8_t* dst;          // where bytes [boff, boff + len) of them go
    uint32_t boff;
    uint32_t len;
  };
  struct ReadPlan {
    size_t bytes = 0;  // what the read returns (up to i_size)
    std::vector<DiskRead> reads;
  };
  Result<ReadPlan> plan_read(Op& op, uint64_t ino, const ext2_inode& in, uint64_t offset, std::span<uint8_t> out);
  Status run_reads(const ReadPlan& plan);

  // --- file data write-back (data_writeback.cpp); mu_ held.
  // A pointer to the running transaction's image of data block `blk`, made
  // if absent: zeros for a `fresh` block, left as it is when the caller
  // overwrites it `whole`, else the latest contents (buffered or on disk).
  // Marks the op as having written data.
  Result<uint8_t*> data_block_for_write(Op& op, uint64_t blk, bool fresh, bool whole);
  // The newest buffered image of `blk` (running, else committing), or null.
  const std::vector<uint8_t>* latest_data_image(uint64_t blk) const;
  // Data block `blk` was freed: its running image must never be written.
  void drop_buffered_data(uint64_t blk);

  // --- transactions (running_txn.cpp). Not inside an op.
  // Commit the running transaction (if it has anything) and wait until
  // every op that ended before this call is durable.
  Status commit_and_wait();
  // Zero bytes [offset, block end) of data block `blk` on disk (Op::end,
  // after a shrinking truncate has committed). Not inside an op's body.
  Status zero_committed_tail(uint64_t blk, uint32_t offset);

 private:
  friend class Op;
  friend Result<std::unique_ptr<Filesystem>> Filesystem::mount(BlockDevice&, const MountOptions&);

  // fs_mount.cpp
  Status load();
  Status fold_counters();

  // block_cache.cpp
  CachedBlock* cached(uint64_t blk);
  Result<CachedBlock*> load_block(uint64_t blk, ResKey res);
  void dirty_block(Op& op, uint64_t blk, CachedBlock& cb);
  // A freed metadata block: forget the cached image and its running-txn entry.
  void forget_block(uint64_t blk);
  void maybe_evict();
  static constexpr size_t kCacheSoftLimit = 65536;
  void drop_resource_cache(ResKey res);
  // Acquired `res` with LVB version `v`: drop stale copies.
  void observe_version(ResKey res, uint64_t v);
  uint64_t known_version(ResKey res) const;

  // running_txn.cpp
  Status commit_locked();  // commit_mu_ held by the caller
  bool running_too_big() const;  // mu_ held
  // data_writeback.cpp: the running images exceed kDataWritebackLimitBytes
  // (mu_ held).
  bool running_data_too_big() const;
  static constexpr uint64_t kDataWritebackLimitBytes = 32ull << 20;
  void commit_thread_main();
  void stop_commit_thread();

  // allocator.cpp
  Result<uint64_t> alloc_in_group(Op& op, uint32_t g, uint64_t goal_in_group);
  // A free, unreserved inode in a group the op holds (0: the op now wants
  // another slot's group; begin() relocks and asks again).
  Result<uint32_t> pick_inode(Op& op, uint64_t parent, bool is_dir);
  // The reserved inode's bit is still clear (its group held by op).
  bool inode_still_free(Op& op, uint32_t ino);
  bool block_reusable(uint64_t blk) const;

 public:
  std::vector<uint32_t> own_groups() const;
  uint32_t group_of_block(uint64_t blk) const;
  uint64_t group_first_block(uint32_t g) const;
  uint64_t group_block_count(uint32_t g) const;
  // Logical blocks one tree node of `depth` levels below it addresses
  // (addr_per_block ^ depth).
  uint64_t level_span(int depth) const;
  // Largest file-data chunk one op of write() handles.
  static constexpr uint64_t kWriteChunkBlocks = 256;

 private:

  // block_map.cpp helpers
  Status free_tree(Op& op, uint64_t ino, uint64_t blk, int depth, uint64_t first_lblk, uint64_t from_lblk,
                   bool leaf_meta, bool* now_empty, uint64_t* freed);
  Status free_map_from(Op& op, uint64_t ino, ext2_inode& in, uint64_t from_lblk);
  // Zero bytes [size, end of its block) of a regular file's block (in its
  // write-back image). Only for bytes past the committed end of file (a
  // grow): they are invisible until the op commits.
  Status zero_block_tail(Op& op, uint64_t ino, ext2_inode& in, uint64_t size);
  Status collect_groups(Op& op, uint64_t ino, uint64_t blk, int depth, uint64_t first_lblk, uint64_t from_lblk,
                        std::set<uint32_t>* groups);

  BlockDevice& dev_;
  MountOptions opts_;
  Geometry geo_;
  std::vector<GroupInfo> groups_;
  cluster::ClusterHeader header_;
  std::unique_ptr<journal::Journal> journal_;
  bool mounted_ = false;

  // Lock order: commit_mu_ -> mu_.
  std::mutex commit_mu_;
  std::mutex mu_;

  // --- under mu_
  std::unordered_map<uint64_t, CachedBlock> cache_;
  std::unordered_map<ResKey, std::unordered_set<uint64_t>> cache_by_res_;
  std::unordered_map<ResKey, uint64_t> res_version_;  // LVB version last seen
  // Blocks of each resource that have an image in the journal (running or
  // committed and not yet forced out): checkpoint_blocks() on lock leave.
  std::unordered_map<ResKey, std::set<uint64_t>> journaled_by_res_;
  std::set<uint64_t> running_dirty_;     // blocks dirty in the running txn
  std::vector<uint64_t> running_revokes_;
  // Data write-back (data_writeback.cpp): block -> whole-block image.
  // running_data_: written by ops since the last commit snapshot.
  // committing_data_: the snapshot the commit in progress writes; only the
  // committer (commit_mu_ held) changes it, under mu_, so it may read it
  // without mu_.
  std::map<uint64_t, std::vector<uint8_t>> running_data_;
  std::map<uint64_t, std::vector<uint8_t>> committing_data_;
  uint64_t running_seq_ = 1;             // sequence of the running transaction
  // Blocks freed by a transaction not yet durable -> its sequence.
  std::unordered_map<uint64_t, uint64_t> freed_pending_;
  std::set<uint32_t> reserved_inodes_;   // picked by an op, not yet taken
  // Every block with an image in the journal not known to be in place
  // (never evicted from the cache).
  std::unordered_set<uint64_t> journaled_blocks_;
  uint64_t commit_threshold_ = 64;       // commit when the running txn has this many blocks

  // --- durability (under dur_mu_)
  std::mutex dur_mu_;
  std::condition_variable dur_cv_;
  uint64_t durable_seq_ = 0;     // every transaction <= this is durable
  Status journal_error_;         // first commit failure: the engine refuses writes after it

  // --- commit thread
  std::thread commit_thread_;
  std::condition_variable commit_cv_;  // with mu_
  bool stop_commit_thread_ = false;

  // --- own group locks and the slot's own groups
  std::vector<uint32_t> own_groups_;

  // --- open files and orphans (orphan.cpp)
  // Try to free orphan `ino` of directory `dir`: open:<ino> EX within `wait`.
  // *freed false when some node holds it open.
  Status try_free_orphan(uint64_t dir, uint64_t ino, std::chrono::milliseconds wait, bool* freed);
  Status start_orphans();  // at mount: find/make the directory, free its leftovers, start the scan
  void stop_orphan_scan();
  void orphan_scan_main();
  bool open_locally(uint64_t ino);
  struct OpenFile {
    uint32_t count = 0;        // local open()s not yet released
    bool locking = false;      // the first open is taking open:<ino> PR
    LockProvider::Held held;   // that PR
  };
  std::mutex open_mu_;         // not held with mu_ or across cluster lock waits
  std::condition_variable open_cv_;
  std::unordered_map<uint64_t, OpenFile> open_files_;
  std::mutex orphan_dir_mu_;  // one maker of the orphan directory at a time
  uint64_t orphan_dir_ = 0;   // under mu_
  std::set<uint64_t> orphans_;  // under mu_: entries of this slot's orphan directory
 public:
  size_t orphans_at_mount() const { return orphans_at_mount_; }
 private:
  size_t orphans_at_mount_ = 0;  // left from the slot's previous life
  std::thread orphan_thread_;
  std::mutex orphan_scan_mu_;
  std::condition_variable orphan_scan_cv_;
  bool stop_orphan_scan_ = false;
};

// "open:<ino>": held PR by every node with the inode open (not an Op
// resource: held across ops, never cached blocks).
std::string open_resource(uint64_t ino);

}  // namespace cext3::engine
