// POSIX ACLs: VFS format <-> ext3's disk format, validation, mode bits
// (xattr_acl.h).
#include "engine/xattr_acl.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "cluster/le_bytes.h"

namespace cext3::engine::xattr {

namespace {
constexpr uint32_t kVfsVersion = 2;
constexpr uint32_t kDiskVersion = 1;
constexpr uint32_t kUndefinedId = 0xFFFFFFFF;

void add16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(uint8_t(v));
  out.push_back(uint8_t(v >> 8));
}
void add32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
bool has_id(uint16_t tag) { return tag == kAclUser || tag == kAclGroup; }

Status invalid(const std::string& why) {
  return Status::FromErrno(EINVAL, "POSIX ACL value rejected (" + why + "); pass an ACL as setfacl builds it");
}

// The ordering and uniqueness rules of a valid ACL (xattr_acl.h).
Status validate(const std::vector<AclEntry>& acl) {
  // Expected position of each tag kind, in order.
  enum Stage { kWantUserObj, kUsers, kGroups, kAfterMask, kDone };
  Stage st = kWantUserObj;
  bool needs_mask = false, have_mask = false;
  uint32_t prev_uid = 0, prev_gid = 0;
  bool any_uid = false, any_gid = false;
  for (const AclEntry& e : acl) {
    if (e.perm & ~uint16_t(7)) return invalid("permission bits other than rwx");
    switch (e.tag) {
      case kAclUserObj:
        if (st != kWantUserObj) return invalid("USER_OBJ missing, repeated or out of order");
        st = kUsers;
        break;
      case kAclUser:
        if (st != kUsers) return invalid("USER entry out of order");
        if (any_uid && e.id <= prev_uid) return invalid("USER ids not strictly ascending");
        prev_uid = e.id;
        any_uid = true;
        needs_mask = true;
        break;
      case kAclGroupObj:
        if (st != kUsers) return invalid("GROUP_OBJ missing, repeated or out of order");
        st = kGroups;
        break;
      case kAclGroup:
        if (st != kGroups) return invalid("GROUP entry out of order");
        if (any_gid && e.id <= prev_gid) return invalid("GROUP ids not strictly ascending");
        prev_gid = e.id;
        any_gid = true;
        needs_mask = true;
        break;
      case kAclMask:
        if (st != kGroups) return invalid("MASK repeated or out of order");
        have_mask = true;
        st = kAfterMask;
        break;
      case kAclOther:
        if (st != kAfterMask && st != kGroups) return invalid("OTHER repeated or out of order");
        if (needs_mask && !have_mask) return invalid("USER or GROUP entries without a MASK");
        st = kDone;
        break;
      default:
        return invalid("unknown tag " + std::to_string(e.tag));
    }
  }
  if (st != kDone) return invalid("USER_OBJ, GROUP_OBJ and OTHER are each required once");
  return Status::OK();
}
}  // namespace

Result<std::optional<std::vector<AclEntry>>> acl_from_vfs(std::span<const uint8_t> value) {
  using Out = std::optional<std::vector<AclEntry>>;
  if (value.empty()) return Out{};
  if (value.size() < 4) return invalid("shorter than its header");
  const uint32_t version = cluster::get_le32(value.data());
  if (version != kVfsVersion)
    return Status::FromErrno(EOPNOTSUPP, "POSIX ACL value of version " + std::to_string(version) +
                                             " (only version 2 exists); pass an ACL as setfacl builds it");
  if ((value.size() - 4) % 8 != 0) return invalid("size is not a header plus 8-byte entries");
  std::vector<AclEntry> acl;
  for (size_t off = 4; off < value.size(); off += 8) {
    AclEntry e;
    e.tag = cluster::get_le16(value.data() + off);
    e.perm = cluster::get_le16(value.data() + off + 2);
    e.id = has_id(e.tag) ? cluster::get_le32(value.data() + off + 4) : 0;
    acl.push_back(e);
  }
  if (acl.empty()) return Out{};
  CEXT3_RETURN_IF_ERROR(validate(acl));
  return Out(std::move(acl));
}

std::vector<uint8_t> acl_to_vfs(const std::vector<AclEntry>& acl) {
  std::vector<uint8_t> out;
  add32(out, kVfsVersion);
  for (const AclEntry& e : acl) {
    add16(out, e.tag);
    add16(out, e.perm);
    add32(out, has_id(e.tag) ? e.id : kUndefinedId);
  }
  return out;
}

Result<std::vector<AclEntry>> acl_from_disk(std::span<const uint8_t> value) {
  if (value.size() < 4 || cluster::get_le32(value.data()) != kDiskVersion)
    return Status::Corruption("stored POSIX ACL without ext3's version-1 header; run e2fsck");
  std::vector<AclEntry> acl;
  size_t off = 4;
  while (off < value.size()) {
    if (value.size() - off < 4) return Status::Corruption("stored POSIX ACL ends inside an entry; run e2fsck");
    AclEntry e;
    e.tag = cluster::get_le16(value.data() + off);
    e.perm = cluster::get_le16(value.data() + off + 2);
    off += 4;
    if (has_id(e.tag)) {
      if (value.size() - off < 4) return Status::Corruption("stored POSIX ACL ends inside an entry; run e2fsck");
      e.id = cluster::get_le32(value.data() + off);
      off += 4;
    } else if (e.tag != kAclUserObj && e.tag != kAclGroupObj && e.tag != kAclMask && e.tag != kAclOther) {
      return Status::Corruption("stored POSIX ACL with unknown tag " + std::to_string(e.tag) + "; run e2fsck");
    }
    acl.push_back(e);
  }
  return acl;
}

std::vector<uint8_t> acl_to_disk(const std::vector<AclEntry>& acl) {
  std::vector<uint8_t> out;
  add32(out, kDiskVersion);
  for (const AclEntry& e : acl) {
    add16(out, e.tag);
    add16(out, e.perm);
    if (has_id(e.tag)) add32(out, e.id);
  }
  return out;
}

uint32_t acl_mode_bits(const std::vector<AclEntry>& acl, bool* equivalent) {
  uint32_t mode = 0, group_obj = 0;
  bool mask = false, extended = false;
  for (const AclEntry& e : acl) {
    switch (e.tag) {
      case kAclUserObj: mode |= uint32_t(e.perm & 7) << 6; break;
      case kAclGroupObj: group_obj = e.perm & 7; break;
      case kAclMask:
        mask = true;
        extended = true;
        mode |= uint32_t(e.perm & 7) << 3;
        break;
      case kAclOther: mode |= e.perm & 7; break;
      default: extended = true; break;
    }
  }
  if (!mask) mode |= group_obj << 3;
  *equivalent = !extended;
  return mode;
}

}  // namespace cext3::engine::xattr
