// POSIX ACLs as the kernel hands them to a filesystem that enforces none
// itself (FUSE_CAP_POSIX_ACL): the xattr format of system.posix_acl_access
// and system.posix_acl_default (version 2 header, 8-byte entries), and the
// two rules the filesystem owes the kernel there (fuse_common.h):
//  * a new inode in a directory with a default ACL inherits it (the mode
//    is masked by the ACL instead of the umask; directories also inherit
//    the default ACL itself);
//  * chmod rewrites the ACL entries that mirror the mode bits.
// The rules are the kernel's own (fs/posix_acl.c: posix_acl_create_masq,
// __posix_acl_chmod), restated here.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace cext3::mount {

inline constexpr const char* kAclAccess = "system.posix_acl_access";
inline constexpr const char* kAclDefault = "system.posix_acl_default";

struct AclEntry {
  uint16_t tag = 0;   // kAclUserObj ...
  uint16_t perm = 0;  // rwx = 4 2 1
  uint32_t id = 0;    // uid / gid for kAclUser / kAclGroup
};
inline constexpr uint16_t kAclUserObj = 0x01, kAclUser = 0x02, kAclGroupObj = 0x04, kAclGroup = 0x08,
                          kAclMask = 0x10, kAclOther = 0x20;

// nullopt for a value that is not a well-formed version-2 ACL.
std::optional<std::vector<AclEntry>> parse_acl_xattr(std::span<const uint8_t> value);
std::vector<uint8_t> acl_xattr(const std::vector<AclEntry>& acl);

struct AclForNewInode {
  uint32_t mode = 0;                       // permission bits to create with
  std::optional<std::vector<AclEntry>> access;  // to store, unless the mode says it all
};
// A new inode whose parent has `parent_default`; `mode` as the caller asked
// (type bits are ignored and not returned).
AclForNewInode acl_for_new_inode(const std::vector<AclEntry>& parent_default, uint32_t mode);

// chmod to `mode` of an inode with access ACL `acl`: the ACL to store.
std::vector<AclEntry> acl_after_chmod(std::vector<AclEntry> acl, uint32_t mode);

}  // namespace cext3::mount
