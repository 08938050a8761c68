// POSIX ACLs: the two formats a value travels in.
//
//  * the VFS format (what setxattr/getxattr of system.posix_acl_access and
//    system.posix_acl_default carry, as setfacl/getfacl use it): a 4-byte
//    version 2, then 8-byte entries {u16 tag, u16 perm, u32 id}, id
//    0xFFFFFFFF where the tag has none;
//  * ext3's disk format: a 4-byte version 1, then 4-byte short entries
//    {tag, perm} for USER_OBJ, GROUP_OBJ, MASK and OTHER, and 8-byte entries
//    {tag, perm, id} for USER and GROUP.
//
// A value is checked as the kernel's posix_acl_valid does before it is
// stored: tags in the order USER_OBJ, USER..., GROUP_OBJ, GROUP..., MASK,
// OTHER, each of USER_OBJ/GROUP_OBJ/OTHER exactly once, ids of USER and of
// GROUP strictly ascending, a MASK whenever there is a USER or GROUP entry,
// permissions within rwx.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cext3/status.h"

namespace cext3::engine::xattr {

struct AclEntry {
  uint16_t tag = 0;
  uint16_t perm = 0;
  uint32_t id = 0;  // USER and GROUP only
};

inline constexpr uint16_t kAclUserObj = 0x01, kAclUser = 0x02, kAclGroupObj = 0x04, kAclGroup = 0x08,
                          kAclMask = 0x10, kAclOther = 0x20;

// VFS value -> entries. An empty value or a header without entries is "no
// ACL" (nullopt: the attribute is removed, as the kernel does). EOPNOTSUPP
// for a version other than 2, EINVAL for a malformed or invalid ACL.
Result<std::optional<std::vector<AclEntry>>> acl_from_vfs(std::span<const uint8_t> value);
std::vector<uint8_t> acl_to_vfs(const std::vector<AclEntry>& acl);

// ext3 disk value <-> entries. Reading checks the version and the sizes
// (corruption otherwise).
Result<std::vector<AclEntry>> acl_from_disk(std::span<const uint8_t> value);
std::vector<uint8_t> acl_to_disk(const std::vector<AclEntry>& acl);

// The permission bits (0777) the ACL implies for the file mode: owner from
// USER_OBJ, group from MASK when present else GROUP_OBJ, other from OTHER.
// *equivalent says the mode alone expresses the ACL (only the three base
// entries): the kernel then stores no ACL at all.
uint32_t acl_mode_bits(const std::vector<AclEntry>& acl, bool* equivalent);

}  // namespace cext3::engine::xattr
