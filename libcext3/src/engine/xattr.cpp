// Extended attributes: get, list, set, remove, stored exactly as the
// kernel's ext3/ext4 driver stores them (format in xattr_format.h).
//
// Placement, as the kernel does it: a value goes into the inode body when
// the inode has room there (256-byte inodes, after i_extra_isize), else into
// the xattr block (i_file_acl); an attribute that no longer fits in the
// inode moves to the block. Block entries stay sorted; hashes are set.
//
// The xattr block may be shared by several inodes (h_refcount > 1: copies
// made by the kernel's block sharing, or cp --preserve). A change to a
// shared block is copy-on-write: this inode gets a new block holding its new
// set, the old block's refcount drops by one. A block of refcount 1 is
// rewritten in place, and freed when its last entry goes. i_blocks counts
// the xattr block.
//
// POSIX ACLs (system.posix_acl_access/default) arrive and leave in the VFS
// format and are stored in ext3's compact format (xattr_acl.h). Setting an
// access ACL sets the mode's permission bits from it (group bits from the
// mask when there is one); an ACL the mode alone expresses is not stored, as
// the kernel does. A default ACL on a non-directory is refused (EACCES).
//
// Locks: the inode's itb:<block> (PR to read, EX to change) and the xattr
// block's own resource xab:<block> in the same mode (a shared block is
// referenced from many inode-table blocks). A new xattr block is locked
// xab:<new> EX before it is taken (EngineFs::peek_free_block). Freeing a
// block needs its group's grp:<g> EX. Every change is one op, so one
// transaction. ctime moves on every change.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cstring>
#include <optional>

#include "engine/engine_impl.h"
#include "engine/xattr_acl.h"
#include "engine/xattr_format.h"

namespace cext3::engine {

using locks::LockMode;

namespace {

uint16_t le16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Everything stored for one inode.
struct Stored {
  ext2_inode inode{};
  bool has_ibody = false;
  uint32_t ibody_offset = 0;  // of the area (magic included) in the inode-table block
  uint32_t ibody_bytes = 0;
  std::vector<xattr::Entry> ibody;
  uint64_t block = 0;  // i_file_acl
  uint32_t refcount = 0;
  std::vector<xattr::Entry> in_block;
};

std::string where_of(uint64_t ino) { return "inode " + std::to_string(ino); }

// Read the inode and its attributes. The xattr block's lock is wanted in
// `mode` (op.retry() when the op does not hold it yet).
Status load_stored(EngineFs& fs, Op& op, uint64_t ino, LockMode mode, Stored* st) {
  const auto& geo = fs.geo();
  auto tb = fs.read_meta(op, fs.inode_block(ino), fs.inode_res(ino));
  if (!tb.ok()) return tb.status();
  const uint32_t off = uint32_t(((ino - 1) % geo.inodes_per_group) * geo.inode_size % geo.block_size);
  const uint8_t* raw = *tb + off;
  std::memcpy(&st->inode, raw, sizeof st->inode);
  const std::string where = where_of(ino);
  if (st->inode.i_links_count == 0 || st->inode.i_mode == 0)
    return Status::NotFound(where + " is not in use (deleted or never created)");
  // The kernel's test for room after i_extra_isize: the magic must fit.
  if (geo.inode_size > EXT2_GOOD_OLD_INODE_SIZE) {
    const uint16_t extra = le16(raw + EXT2_GOOD_OLD_INODE_SIZE);
    if (extra % 4 == 0 && EXT2_GOOD_OLD_INODE_SIZE + extra + 4u <= geo.inode_size) {
      st->has_ibody = true;
      st->ibody_offset = off + EXT2_GOOD_OLD_INODE_SIZE + extra;
      st->ibody_bytes = geo.inode_size - EXT2_GOOD_OLD_INODE_SIZE - extra;
      CEXT3_RETURN_IF_ERROR(
          xattr::parse_ibody(std::span<const uint8_t>(*tb + st->ibody_offset, st->ibody_bytes), &st->ibody, where));
    }
  }
  st->block = st->inode.i_file_acl;
  if (st->block != 0) {
    if (st->block < geo.first_data_block || st->block >= geo.blocks_count)
      return Status::Corruption(where + ": xattr block " + std::to_string(st->block) +
                                " lies outside the filesystem; run e2fsck");
    if (!op.holds(xab_key(st->block), mode)) {
      op.want(xab_key(st->block), mode);
      return op.retry();
    }
    auto b = fs.read_meta(op, st->block, xab_key(st->block));
    if (!b.ok()) return b.status();
    CEXT3_RETURN_IF_ERROR(
        xattr::parse_block(std::span<const uint8_t>(*b, geo.block_size), &st->in_block, &st->refcount, where));
  }
  return Status::OK();
}

bool same_attr(const xattr::Entry& e, uint8_t index, const std::string& name) {
  return e.index == index && e.name == name;
}

// Remove the attribute from `list`; true if it was there.
bool take_out(std::vector<xattr::Entry>& list, uint8_t index, const std::string& name) {
  for (auto it = list.begin(); it != list.end(); ++it)
    if (same_attr(*it, index, name)) {
      list.erase(it);
      return true;
    }
  return false;
}

// One change: `value` set (nullptr: remove). `absent_ok`: removing an
// absent attribute is no error (an ACL set to "none"). `perm_bits`: new
// permission bits for the mode (an access ACL).
struct Change {
  uint8_t index = 0;
  std::string name;
  std::optional<std::vector<uint8_t>> value;
  int flags = 0;
  bool absent_ok = false;
  bool default_acl = false;
  std::optional<uint32_t> perm_bits;
};

Status apply(EngineFs& fs, Op& op, uint64_t ino, const Change& c) {
  const auto& geo = fs.geo();
  const std::string where = where_of(ino);
  const std::string shown = xattr::full_name(c.index, c.name);
  Stored st;
  CEXT3_RETURN_IF_ERROR(load_stored(fs, op, ino, LockMode::kEX, &st));
  if (c.default_acl && !S_ISDIR(st.inode.i_mode) && c.value)
    return Status::FromErrno(EACCES, where + ": a default ACL is only for directories");

  // ---- the new sets (nothing written yet)
  std::vector<xattr::Entry> ibody = st.ibody, in_block = st.in_block;
  const bool was_in_ibody = take_out(ibody, c.index, c.name);
  const bool was_in_block = take_out(in_block, c.index, c.name);
  const bool exists = was_in_ibody || was_in_block;
  if (c.value && (c.flags & XATTR_CREATE) && exists)
    return Status::FromErrno(EEXIST, where + " already has " + shown + " (XATTR_CREATE)");
  if (!exists && ((c.flags & XATTR_REPLACE) || (!c.value && !c.absent_ok)))
    return Status::FromErrno(ENODATA, where + " has no attribute " + shown);
  bool to_block = false;
  if (c.value) {
    xattr::Entry e{c.index, c.name, *c.value};
    std::vector<xattr::Entry> try_ibody = ibody;
    try_ibody.push_back(e);
    if (st.has_ibody && xattr::ibody_fits(try_ibody, st.ibody_bytes)) {
      ibody = std::move(try_ibody);
    } else {
      in_block.push_back(std::move(e));
      to_block = true;
      if (!xattr::block_fits(in_block, geo.block_size))
        return Status::FromErrno(ENOSPC, where + ": " + shown + " (" + std::to_string(c.value->size()) +
                                             " bytes) does not fit beside the other attributes in the inode's " +
                                             std::to_string(geo.block_size) + "-byte xattr block");
    }
  }
  const bool ibody_changed = was_in_ibody || (c.value && !to_block);
  const bool block_changed = was_in_block || to_block;

  // ---- the locks the block change needs (before any change: retry is
  // only allowed while nothing is dirty)
  enum class Plan { kNone, kRewrite, kNew, kDropRef, kFree } plan = Plan::kNone;
  if (block_changed) {
    if (in_block.empty()) plan = st.block == 0 ? Plan::kNone : (st.refcount > 1 ? Plan::kDropRef : Plan::kFree);
    else plan = (st.block != 0 && st.refcount <= 1) ? Plan::kRewrite : Plan::kNew;
  }
  uint64_t new_block = 0;
  if (plan == Plan::kFree && !op.holds(grp_key(fs.group_of_block(st.block)), LockMode::kEX)) {
    op.want_group(fs.group_of_block(st.block));
    return op.retry();
  }
  if (plan == Plan::kNew) {
    bool any_group = false;
    for (uint32_t g : fs.own_groups()) any_group = any_group || op.holds(grp_key(g), LockMode::kEX);
    if (!any_group) {
      op.want_alloc(1);
      return op.retry();
    }
    auto cand = fs.peek_free_block(op, fs.goal_for_inode(ino));
    if (!cand.ok()) return cand.status();
    if (*cand == 0)
      return Status::NoSpace(where + ": no free block for its xattr block in this node's groups; free space");
    if (!op.holds(xab_key(*cand), LockMode::kEX)) {
      op.want(xab_key(*cand), LockMode::kEX);
      return op.retry();
    }
    // Locked in an earlier round; still free now that we hold its group?
    auto again = fs.peek_free_block(op, *cand);
    if (!again.ok()) return again.status();
    if (*again != *cand) {
      op.want(xab_key(*again), LockMode::kEX);
      return op.retry();
    }
    new_block = *cand;
  }

  // ---- write
  const uint32_t spb = geo.block_size / 512;
  switch (plan) {
    case Plan::kNone: break;
    case Plan::kRewrite: {
      auto w = fs.write_meta(op, st.block, xab_key(st.block));
      if (!w.ok()) return w.status();
      xattr::encode_block(in_block, 1, std::span<uint8_t>(*w, geo.block_size));
      break;
    }
    case Plan::kNew: {
      auto got = fs.alloc_block(op, new_block);
      if (!got.ok()) return got.status();
      if (*got != new_block)
        return Status::Corruption("engine bug: allocator handed out block " + std::to_string(*got) +
                                  " instead of the peeked free block " + std::to_string(new_block));
      auto w = fs.new_meta(op, new_block, xab_key(new_block));
      if (!w.ok()) return w.status();
      xattr::encode_block(in_block, 1, std::span<uint8_t>(*w, geo.block_size));
      if (st.block != 0) {
        auto old = fs.write_meta(op, st.block, xab_key(st.block));  // shared: drop our reference
        if (!old.ok()) return old.status();
        put32(*old + 4, st.refcount - 1);
      } else {
        st.inode.i_blocks += spb;
      }
      st.inode.i_file_acl = uint32_t(new_block);
      break;
    }
    case Plan::kDropRef:
    case Plan::kFree: {
      if (plan == Plan::kDropRef) {
        auto old = fs.write_meta(op, st.block, xab_key(st.block));
        if (!old.ok()) return old.status();
        put32(*old + 4, st.refcount - 1);
      } else {
        CEXT3_RETURN_IF_ERROR(fs.free_blocks(op, st.block, 1, /*metadata=*/true));
      }
      st.inode.i_file_acl = 0;
      st.inode.i_blocks = st.inode.i_blocks >= spb ? st.inode.i_blocks - spb : 0;
      break;
    }
  }
  if (ibody_changed) {
    auto w = fs.write_meta(op, fs.inode_block(ino), fs.inode_res(ino));
    if (!w.ok()) return w.status();
    xattr::encode_ibody(ibody, std::span<uint8_t>(*w + st.ibody_offset, st.ibody_bytes));
  }
  if (c.perm_bits) st.inode.i_mode = uint16_t((st.inode.i_mode & ~0777u) | (*c.perm_bits & 0777u));
  st.inode.i_ctime = fs.now();
  return fs.write_inode(op, ino, st.inode);
}

bool is_acl(uint8_t index) { return index == xattr::kPosixAclAccess || index == xattr::kPosixAclDefault; }

}  // namespace

Status EngineFs::setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value, int flags) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
    return Status::FromErrno(EINVAL, "setxattr flags " + std::to_string(flags) + ": only XATTR_CREATE and XATTR_REPLACE");
  if (value.size() > xattr::kVfsValueMax)
    return Status::FromErrno(E2BIG, "xattr value of " + std::to_string(value.size()) + " bytes is over the 64 KiB limit");
  Change c;
  CEXT3_RETURN_IF_ERROR(xattr::split_name(name, &c.index, &c.name));
  c.flags = flags;
  if (is_acl(c.index)) {
    auto acl = xattr::acl_from_vfs(value);
    if (!acl.ok()) return acl.status();
    c.default_acl = c.index == xattr::kPosixAclDefault;
    c.absent_ok = true;  // "no ACL" removes it, present or not
    if (acl->has_value()) {
      bool equivalent = false;
      if (!c.default_acl) c.perm_bits = xattr::acl_mode_bits(**acl, &equivalent);
      if (!equivalent) c.value = xattr::acl_to_disk(**acl);
    }
  } else {
    c.value.emplace(value.begin(), value.end());
  }
  Op op(*this);
  op.want_inode(ino, LockMode::kEX);
  return run_op(op, [&]() -> Status { return apply(*this, op, ino, c); });
}

Status EngineFs::removexattr(uint64_t ino, std::string_view name) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Change c;
  CEXT3_RETURN_IF_ERROR(xattr::split_name(name, &c.index, &c.name));
  Op op(*this);
  op.want_inode(ino, LockMode::kEX);
  return run_op(op, [&]() -> Status { return apply(*this, op, ino, c); });
}

Result<std::vector<uint8_t>> EngineFs::getxattr(uint64_t ino, std::string_view name) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  std::vector<uint8_t> value;
  uint8_t index = 0;
  Status s = run_op(op, [&]() -> Status {
    Stored st;
    CEXT3_RETURN_IF_ERROR(load_stored(*this, op, ino, LockMode::kPR, &st));
    for (auto* list : {&st.ibody, &st.in_block})
      for (auto& e : *list)
        if (xattr::full_name(e.index, e.name) == name) {
          value = std::move(e.value);
          index = e.index;
          return Status::OK();
        }
    return Status::FromErrno(ENODATA, where_of(ino) + " has no attribute " + std::string(name));
  });
  if (!s.ok()) return s;
  if (is_acl(index)) {
    auto acl = xattr::acl_from_disk(value);
    if (!acl.ok()) return acl.status().Annotate(where_of(ino) + " " + std::string(name));
    return xattr::acl_to_vfs(*acl);
  }
  return value;
}

Result<std::vector<std::string>> EngineFs::listxattr(uint64_t ino) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  std::vector<std::string> names;
  Status s = run_op(op, [&]() -> Status {
    Stored st;
    CEXT3_RETURN_IF_ERROR(load_stored(*this, op, ino, LockMode::kPR, &st));
    names.clear();
    for (auto* list : {&st.ibody, &st.in_block})
      for (auto& e : *list) {
        std::string n = xattr::full_name(e.index, e.name);
        if (!n.empty()) names.push_back(std::move(n));
      }
    return Status::OK();
  });
  if (!s.ok()) return s;
  return names;
}

}  // namespace cext3::engine
