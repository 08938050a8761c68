#include "mount/posix_acl.h"

#include "cluster/le_bytes.h"

namespace cext3::mount {
namespace {
constexpr uint32_t kVersion = 2;
constexpr size_t kHeader = 4, kEntry = 8;

using cluster::get_le16;
using cluster::get_le32;
using cluster::put_le16;
using cluster::put_le32;
}  // namespace

std::optional<std::vector<AclEntry>> parse_acl_xattr(std::span<const uint8_t> v) {
  if (v.size() < kHeader || (v.size() - kHeader) % kEntry != 0 || get_le32(v.data()) != kVersion) return std::nullopt;
  std::vector<AclEntry> out;
  bool user_obj = false, group_obj = false, other = false;
  for (size_t off = kHeader; off < v.size(); off += kEntry) {
    AclEntry e{get_le16(&v[off]), get_le16(&v[off + 2]), get_le32(&v[off + 4])};
    if (e.perm & ~7u) return std::nullopt;
    switch (e.tag) {
      case kAclUserObj: user_obj = true; break;
      case kAclGroupObj: group_obj = true; break;
      case kAclOther: other = true; break;
      case kAclUser: case kAclGroup: case kAclMask: break;
      default: return std::nullopt;
    }
    out.push_back(e);
  }
  if (!user_obj || !group_obj || !other) return std::nullopt;
  return out;
}

std::vector<uint8_t> acl_xattr(const std::vector<AclEntry>& acl) {
  std::vector<uint8_t> out(kHeader + kEntry * acl.size());
  put_le32(out.data(), kVersion);
  size_t off = kHeader;
  for (const auto& e : acl) {
    put_le16(&out[off], e.tag);
    put_le16(&out[off + 2], e.perm);
    put_le32(&out[off + 4], (e.tag == kAclUser || e.tag == kAclGroup) ? e.id : 0xFFFFFFFFu);
    off += kEntry;
  }
  return out;
}

AclForNewInode acl_for_new_inode(const std::vector<AclEntry>& parent_default, uint32_t mode) {
  // Each mode class and its ACL entry mask each other; named entries or a
  // mask entry mean the mode alone cannot express the ACL.
  std::vector<AclEntry> acl = parent_default;
  uint32_t m = mode & 0777;
  bool equivalent = true;
  AclEntry* group_obj = nullptr;
  AclEntry* mask = nullptr;
  for (auto& e : acl) {
    switch (e.tag) {
      case kAclUserObj:
        e.perm &= (m >> 6) & 7;
        m &= (uint32_t(e.perm) << 6) | ~0700u;
        break;
      case kAclUser: case kAclGroup: equivalent = false; break;
      case kAclGroupObj: group_obj = &e; break;
      case kAclOther:
        e.perm &= m & 7;
        m &= e.perm | ~07u;
        break;
      case kAclMask: mask = &e; equivalent = false; break;
      default: break;
    }
  }
  AclEntry* g = mask ? mask : group_obj;
  if (g) {
    g->perm &= (m >> 3) & 7;
    m &= (uint32_t(g->perm) << 3) | ~070u;
  }
  AclForNewInode out;
  out.mode = (mode & 07000) | (m & 0777);
  if (!equivalent) out.access = std::move(acl);
  return out;
}

std::vector<AclEntry> acl_after_chmod(std::vector<AclEntry> acl, uint32_t mode) {
  AclEntry* group_obj = nullptr;
  AclEntry* mask = nullptr;
  for (auto& e : acl) {
    if (e.tag == kAclUserObj) e.perm = uint16_t((mode >> 6) & 7);
    else if (e.tag == kAclOther) e.perm = uint16_t(mode & 7);
    else if (e.tag == kAclGroupObj) group_obj = &e;
    else if (e.tag == kAclMask) mask = &e;
  }
  // With a mask the group bits are the mask's; the owning group's own
  // entry keeps its permissions (POSIX.1e).
  if (mask) mask->perm = uint16_t((mode >> 3) & 7);
  else if (group_obj) group_obj->perm = uint16_t((mode >> 3) & 7);
  return acl;
}

}  // namespace cext3::mount
