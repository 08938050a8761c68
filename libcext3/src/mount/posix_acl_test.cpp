#include "mount/posix_acl.h"

#include <catch2/catch.hpp>

using namespace cext3::mount;

namespace {
std::vector<AclEntry> acl(std::initializer_list<AclEntry> l) { return std::vector<AclEntry>(l); }
}  // namespace

TEST_CASE("posix acl: the xattr format round-trips and rejects what the kernel rejects", "[mount][acl]") {
  auto a = acl({{kAclUserObj, 7, 0}, {kAclUser, 5, 1000}, {kAclGroupObj, 5, 0}, {kAclMask, 5, 0}, {kAclOther, 0, 0}});
  auto bytes = acl_xattr(a);
  REQUIRE(bytes.size() == 4 + 5 * 8);
  CHECK(bytes[0] == 2);  // version 2, little-endian
  auto back = parse_acl_xattr(bytes);
  REQUIRE(back);
  REQUIRE(back->size() == 5);
  CHECK((*back)[1].tag == kAclUser);
  CHECK((*back)[1].id == 1000);
  CHECK((*back)[1].perm == 5);
  // Unnamed entries carry id -1 on the wire, as the kernel writes them.
  CHECK(bytes[4 + 4] == 0xFF);

  auto bad = bytes;
  bad[0] = 1;
  CHECK_FALSE(parse_acl_xattr(bad));
  bad = bytes;
  bad.pop_back();
  CHECK_FALSE(parse_acl_xattr(bad));
  bad = bytes;
  bad[4 + 2] = 8;  // perm beyond rwx
  CHECK_FALSE(parse_acl_xattr(bad));
  CHECK_FALSE(parse_acl_xattr(acl_xattr(acl({{kAclUserObj, 7, 0}, {kAclOther, 0, 0}}))));  // no group entry
}

TEST_CASE("posix acl: a new inode inherits the parent's default ACL, masked by the mode asked", "[mount][acl]") {
  // setfacl -d -m u:1000:rwx,m:rwx on the directory; open(O_CREAT, 0666).
  auto d = acl({{kAclUserObj, 7, 0}, {kAclUser, 7, 1000}, {kAclGroupObj, 5, 0}, {kAclMask, 7, 0}, {kAclOther, 5, 0}});
  auto n = acl_for_new_inode(d, 0666);
  CHECK(n.mode == 0664);  // user 6, mask 7&6 = 6, other 5&6 = 4
  REQUIRE(n.access);
  CHECK((*n.access)[0].perm == 6);  // user_obj
  CHECK((*n.access)[1].perm == 7);  // the named entry keeps its bits (the mask limits it)
  CHECK((*n.access)[3].perm == 6);  // mask
  CHECK((*n.access)[4].perm == 4);  // other

  // A default ACL of only the three base entries is the mode itself: no
  // access ACL is stored, and the umask plays no part.
  auto base = acl({{kAclUserObj, 7, 0}, {kAclGroupObj, 0, 0}, {kAclOther, 0, 0}});
  auto m = acl_for_new_inode(base, 0777);
  CHECK(m.mode == 0700);
  CHECK_FALSE(m.access);
  CHECK(acl_for_new_inode(base, 02755).mode == 02700);  // setgid survives
}

TEST_CASE("posix acl: chmod rewrites the entries that mirror the mode", "[mount][acl]") {
  auto a = acl({{kAclUserObj, 7, 0}, {kAclUser, 7, 1000}, {kAclGroupObj, 5, 0}, {kAclMask, 7, 0}, {kAclOther, 5, 0}});
  auto c = acl_after_chmod(a, 0640);
  CHECK(c[0].perm == 6);
  CHECK(c[1].perm == 7);  // named: unchanged
  CHECK(c[2].perm == 5);  // group_obj: unchanged when there is a mask
  CHECK(c[3].perm == 4);  // mask = group bits
  CHECK(c[4].perm == 0);
  auto plain = acl_after_chmod(acl({{kAclUserObj, 7, 0}, {kAclGroupObj, 5, 0}, {kAclOther, 5, 0}}), 0751);
  CHECK(plain[1].perm == 5);
  CHECK(plain[2].perm == 1);
}
