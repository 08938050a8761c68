// Inodes: where they live, reading and writing them through the block
// cache, creating and freeing them, and their attributes.
//
// Invariant: an inode is read or written only while its inode-table block's
// lock (itb:<block>) is held by the op; its bitmap bit only under grp:<g> EX.
#include <sys/stat.h>

#include <cassert>
#include <cstring>
#include <ctime>
#include <random>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
// Bytes of a large inode the engine initializes (i_extra_isize), as the
// kernel does for 256-byte inodes: covers i_extra_isize..i_crtime_extra.
constexpr uint16_t kExtraIsize = 32;

uint32_t random_generation() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  return rng();
}
}  // namespace

uint64_t EngineFs::inode_block(uint64_t ino) const {
  const uint32_t g = group_of_ino(ino);
  const uint64_t index = (ino - 1) % geo_.inodes_per_group;
  return groups_[g].inode_table + index * geo_.inode_size / geo_.block_size;
}

std::vector<uint64_t> EngineFs::inodes_covered_by(const std::string& resource) {
  ResKey res;
  if (!parse_resource_name(resource, &res) || res_kind(res) != ResKind::kItb) return {};
  const uint64_t block = res_id(res);
  const uint64_t table_blocks = (uint64_t{geo_.inodes_per_group} * geo_.inode_size + geo_.block_size - 1) / geo_.block_size;
  const uint64_t per_block = geo_.block_size / geo_.inode_size;
  for (uint32_t g = 0; g < geo_.groups; ++g) {
    const uint64_t t = groups_[g].inode_table;
    if (block < t || block >= t + table_blocks) continue;
    std::vector<uint64_t> out;
    const uint64_t first = uint64_t{g} * geo_.inodes_per_group + (block - t) * per_block + 1;
    for (uint64_t i = 0; i < per_block; ++i) out.push_back(first + i);
    return out;
  }
  return {};
}

static uint32_t inode_offset(const EngineFs::Geometry& geo, uint64_t ino) {
  const uint64_t index = (ino - 1) % geo.inodes_per_group;
  return uint32_t((index * geo.inode_size) % geo.block_size);
}

Status EngineFs::read_inode(Op& op, uint64_t ino, ext2_inode* out) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  auto b = read_meta(op, inode_block(ino), inode_res(ino));
  if (!b.ok()) return b.status();
  std::memcpy(out, *b + inode_offset(geo_, ino), sizeof(ext2_inode));
  return Status::OK();
}

Status EngineFs::write_inode(Op& op, uint64_t ino, const ext2_inode& in) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  auto b = write_meta(op, inode_block(ino), inode_res(ino));
  if (!b.ok()) return b.status();
  std::memcpy(*b + inode_offset(geo_, ino), &in, sizeof(ext2_inode));
  return Status::OK();
}

Result<uint32_t> EngineFs::new_inode(Op& op, uint32_t mode) {
  const uint32_t ino = op.reserved_ino_;
  if (ino == 0) return Status::InvalidArgument("new_inode without Op::want_new_inode");
  assert(op.holds_inode(ino, LockMode::kEX));
  const uint32_t g = group_of_ino(ino);
  const uint32_t bit = (ino - 1) % geo_.inodes_per_group;
  auto bm = write_meta(op, groups_[g].inode_bitmap, grp_key(g));
  if (!bm.ok()) return bm.status();
  uint8_t* bits = *bm;
  if (bits[bit / 8] & (1u << (bit % 8)))
    return Status::Corruption("reserved inode " + std::to_string(ino) + " is already in use in the bitmap");
  bits[bit / 8] |= uint8_t(1u << (bit % 8));
  groups_[g].d_free_inodes -= 1;
  if (S_ISDIR(mode)) groups_[g].d_used_dirs += 1;
  auto tb = write_meta(op, inode_block(ino), inode_res(ino));
  if (!tb.ok()) return tb.status();
  uint8_t* slot = *tb + inode_offset(geo_, ino);
  std::memset(slot, 0, geo_.inode_size);
  if (geo_.inode_size >= EXT2_GOOD_OLD_INODE_SIZE + kExtraIsize) {
    const uint16_t extra = kExtraIsize;
    std::memcpy(slot + EXT2_GOOD_OLD_INODE_SIZE, &extra, 2);
  }
  reserved_inodes_.erase(ino);
  op.reserved_ino_ = 0;
  return ino;
}

void EngineFs::init_new_inode(const Caller& c, uint32_t mode, const ext2_inode* parent, ext2_inode* out) {
  std::memset(out, 0, sizeof(*out));
  uint32_t perm = mode & 07777 & ~(c.umask & 0777);
  uint32_t gid = c.gid;
  if (parent != nullptr && (parent->i_mode & S_ISGID)) {
    gid = parent->i_gid | (uint32_t(parent->osd2.linux2.l_i_gid_high) << 16);
    if (S_ISDIR(mode)) perm |= S_ISGID;
  }
  out->i_mode = uint16_t((mode & S_IFMT) | perm);
  out->i_uid = uint16_t(c.uid & 0xFFFF);
  out->osd2.linux2.l_i_uid_high = uint16_t(c.uid >> 16);
  out->i_gid = uint16_t(gid & 0xFFFF);
  out->osd2.linux2.l_i_gid_high = uint16_t(gid >> 16);
  const uint32_t t = now();
  out->i_atime = out->i_ctime = out->i_mtime = t;
  out->i_generation = random_generation();
}

Status EngineFs::free_inode(Op& op, uint64_t ino, ext2_inode& inode) {
  const uint32_t g = group_of_ino(ino);
  if (!op.holds(grp_key(g), LockMode::kEX))
    return Status::InvalidArgument("free_inode without grp:" + std::to_string(g) + " (Op::want_group)");
  const uint32_t bit = uint32_t((ino - 1) % geo_.inodes_per_group);
  auto bm = write_meta(op, groups_[g].inode_bitmap, grp_key(g));
  if (!bm.ok()) return bm.status();
  uint8_t* bits = *bm;
  if (!(bits[bit / 8] & (1u << (bit % 8))))
    return Status::Corruption("freeing inode " + std::to_string(ino) + " that the bitmap says is free");
  bits[bit / 8] &= uint8_t(~(1u << (bit % 8)));
  groups_[g].d_free_inodes += 1;
  if (S_ISDIR(inode.i_mode)) groups_[g].d_used_dirs -= 1;
  inode.i_links_count = 0;
  inode.i_dtime = now();
  return write_inode(op, ino, inode);
}

Attr EngineFs::make_attr(uint64_t ino, const ext2_inode& in) const {
  Attr a;
  a.ino = ino;
  a.mode = in.i_mode;
  a.nlink = in.i_links_count;
  // An orphan's one name is the engine's (/.cext3/orphan.NN): to its user
  // it has none, as an unlinked open file. (mu_ is held: called in ops.)
  if (orphans_.count(ino) != 0) a.nlink = 0;
  a.uid = in.i_uid | (uint32_t(in.osd2.linux2.l_i_uid_high) << 16);
  a.gid = in.i_gid | (uint32_t(in.osd2.linux2.l_i_gid_high) << 16);
  a.size = inode_size(in);
  a.blocks512 = in.i_blocks;
  if (S_ISCHR(in.i_mode) || S_ISBLK(in.i_mode)) {
    // ext3 keeps (major << 8) | minor in i_block[0] when both fit a byte,
    // else the "new" encoding in i_block[1]; both equal the low 32 bits of
    // glibc's makedev(major, minor), which is what Attr::rdev carries.
    a.rdev = in.i_block[0] != 0 ? in.i_block[0] : in.i_block[1];
  }
  a.generation = in.i_generation;
  a.atime = {int64_t(in.i_atime), 0};
  a.mtime = {int64_t(in.i_mtime), 0};
  a.ctime = {int64_t(in.i_ctime), 0};
  return a;
}

uint64_t EngineFs::inode_size(const ext2_inode& in) {
  uint64_t s = in.i_size;
  if (S_ISREG(in.i_mode)) s |= uint64_t(in.i_size_high) << 32;
  return s;
}

void EngineFs::set_inode_size(ext2_inode& in, uint64_t size) const {
  in.i_size = uint32_t(size);
  if (S_ISREG(in.i_mode)) in.i_size_high = uint32_t(size >> 32);
}

uint32_t EngineFs::now() const { return uint32_t(::time(nullptr)); }

bool EngineFs::is_fast_symlink(const ext2_inode& in) {
  return S_ISLNK(in.i_mode) && in.i_size < sizeof(in.i_block) &&
         (in.i_blocks == 0 || (in.i_file_acl != 0 && in.i_blocks <= 8));
}

}  // namespace cext3::engine
