// Extended attributes: read-only in this build.
//
// getxattr/listxattr read what ext3 stores: entries in the inode's extra
// space (256-byte inodes, after i_extra_isize, magic 0xEA020000, value
// offsets from the first entry) and in the xattr block (i_file_acl, a
// 32-byte header with magic and refcount, value offsets from the block
// start). setxattr/removexattr answer ENOTSUP ("not implemented in this
// build"): nothing is written, so existing attributes are never lost.
// Existing xattr blocks are freed with their inode (free_inode_blocks,
// shared-block refcount honoured).
//
// Locks: the inode's itb:<block> PR, and for the xattr block its own
// resource xab:<block> PR (a shared block may be referenced from many
// inode-table blocks).
#include <cstring>

#include "engine/engine_impl.h"

namespace cext3::engine {

using locks::LockMode;

namespace {
constexpr uint32_t kXattrMagic = 0xEA020000;
constexpr uint32_t kBlockHeaderBytes = 32;
constexpr uint32_t kEntryBytes = 16;  // before the name

// Name prefixes by e_name_index (Linux fs/ext4/xattr.c).
const char* prefix_of(uint8_t index) {
  switch (index) {
    case 1: return "user.";
    case 2: return "system.posix_acl_access";
    case 3: return "system.posix_acl_default";
    case 4: return "trusted.";
    case 6: return "security.";
    case 7: return "system.";
    case 8: return "system.richacl";
    default: return nullptr;
  }
}

struct Found {
  std::string name;
  std::vector<uint8_t> value;
};

uint32_t le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint16_t le16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Walk entries in [entries, end); values at value_base + e_value_offs,
// which must lie in [value_base, end).
Status walk(const uint8_t* entries, const uint8_t* end, const uint8_t* value_base, std::vector<Found>* out,
            const std::string& where) {
  const uint8_t* p = entries;
  while (p + 4 <= end && le32(p) != 0) {
    if (p + kEntryBytes > end) return Status::Corruption(where + ": xattr entry runs past its area");
    const uint8_t name_len = p[0], index = p[1];
    const uint16_t offs = le16(p + 2);
    const uint32_t inum = le32(p + 4), size = le32(p + 8);
    if (p + kEntryBytes + name_len > end) return Status::Corruption(where + ": xattr name runs past its area");
    if (inum != 0) return Status::NotSupported(where + ": xattr value in an inode (ea_inode) is not ext3");
    const uint8_t* v = value_base + offs;
    if (v < value_base || v + size > end) return Status::Corruption(where + ": xattr value lies outside its area");
    if (const char* pre = prefix_of(index)) {
      Found f;
      f.name = std::string(pre) + std::string(reinterpret_cast<const char*>(p + kEntryBytes), name_len);
      f.value.assign(v, v + size);
      out->push_back(std::move(f));
    }
    p += (kEntryBytes + name_len + 3) & ~3u;
  }
  return Status::OK();
}

Status no_such_inode(uint64_t ino) {
  return Status::NotFound("inode " + std::to_string(ino) + " is not in use (deleted or never created)");
}
}  // namespace

namespace {
Status not_in_this_build(uint64_t ino) {
  return Status::FromErrno(EOPNOTSUPP, "changing extended attributes of inode " + std::to_string(ino) +
                                           ": not implemented in this build of the engine (reading works)");
}
}  // namespace

// Every attribute of `ino` (in-inode first, then the block). Asks for the
// block's lock with op.retry() when the op does not hold it.
static Status collect(EngineFs& fs, Op& op, uint64_t ino, std::vector<Found>* out) {
  const auto& geo = fs.geo();
  auto tb = fs.read_meta(op, fs.inode_block(ino), fs.inode_res(ino));
  if (!tb.ok()) return tb.status();
  const uint8_t* raw = *tb + ((ino - 1) % geo.inodes_per_group) * geo.inode_size % geo.block_size;
  ext2_inode in;
  std::memcpy(&in, raw, sizeof in);
  if (in.i_links_count == 0 || in.i_mode == 0) return no_such_inode(ino);
  const std::string where = "inode " + std::to_string(ino);
  if (geo.inode_size > EXT2_GOOD_OLD_INODE_SIZE + 4) {
    const uint16_t extra = le16(raw + EXT2_GOOD_OLD_INODE_SIZE);
    const uint8_t* end = raw + geo.inode_size;
    const uint8_t* hdr = raw + EXT2_GOOD_OLD_INODE_SIZE + extra;
    if (extra % 4 == 0 && hdr + 4 <= end && le32(hdr) == kXattrMagic)
      CEXT3_RETURN_IF_ERROR(walk(hdr + 4, end, hdr + 4, out, where));
  }
  if (in.i_file_acl != 0) {
    const uint64_t xb = in.i_file_acl;
    if (xb >= geo.blocks_count) return Status::Corruption(where + ": xattr block outside the filesystem");
    if (!op.holds(xab_key(xb), LockMode::kPR)) {
      op.want(xab_key(xb), LockMode::kPR);
      return op.retry();
    }
    auto b = fs.read_meta(op, xb, xab_key(xb));
    if (!b.ok()) return b.status();
    if (le32(*b) != kXattrMagic) return Status::Corruption(where + ": xattr block without its magic");
    CEXT3_RETURN_IF_ERROR(walk(*b + kBlockHeaderBytes, *b + geo.block_size, *b, out, where + " xattr block"));
  }
  return Status::OK();
}

Status EngineFs::setxattr(uint64_t ino, std::string_view, std::span<const uint8_t>, int) {
  return not_in_this_build(ino);
}
Status EngineFs::removexattr(uint64_t ino, std::string_view) { return not_in_this_build(ino); }

Result<std::vector<uint8_t>> EngineFs::getxattr(uint64_t ino, std::string_view name) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  std::vector<uint8_t> value;
  Status s = run_op(op, [&]() -> Status {
    std::vector<Found> all;
    CEXT3_RETURN_IF_ERROR(collect(*this, op, ino, &all));
    for (auto& f : all)
      if (f.name == name) {
        value = std::move(f.value);
        return Status::OK();
      }
    return Status::FromErrno(ENODATA, "inode " + std::to_string(ino) + " has no attribute " + std::string(name));
  });
  if (!s.ok()) return s;
  return value;
}

Result<std::vector<std::string>> EngineFs::listxattr(uint64_t ino) {
  if (!valid_ino(ino)) return Status::FromErrno(EINVAL, "inode " + std::to_string(ino) + " is out of range");
  Op op(*this);
  op.want_inode(ino, LockMode::kPR);
  std::vector<std::string> names;
  Status s = run_op(op, [&]() -> Status {
    std::vector<Found> all;
    CEXT3_RETURN_IF_ERROR(collect(*this, op, ino, &all));
    names.clear();
    for (auto& f : all) names.push_back(std::move(f.name));
    return Status::OK();
  });
  if (!s.ok()) return s;
  return names;
}

}  // namespace cext3::engine
