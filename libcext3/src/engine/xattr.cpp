// Extended attributes. Not implemented in this build: every call answers
// ENOTSUP (what the kernel returns for a filesystem without xattr support),
// so callers fall back honestly instead of losing data. Existing xattr
// blocks are kept as they are, and freed with their inode
// (EngineFs::free_inode_blocks, shared-block refcount honoured).
#include "engine/engine_impl.h"

namespace cext3::engine {

namespace {
Status not_in_this_build(uint64_t ino) {
  return Status::FromErrno(EOPNOTSUPP, "extended attributes of inode " + std::to_string(ino) +
                                           ": not implemented in this build of the engine");
}
}  // namespace

Status EngineFs::setxattr(uint64_t ino, std::string_view, std::span<const uint8_t>, int) {
  return not_in_this_build(ino);
}
Result<std::vector<uint8_t>> EngineFs::getxattr(uint64_t ino, std::string_view) { return not_in_this_build(ino); }
Result<std::vector<std::string>> EngineFs::listxattr(uint64_t ino) { return not_in_this_build(ino); }
Status EngineFs::removexattr(uint64_t ino, std::string_view) { return not_in_this_build(ino); }

}  // namespace cext3::engine
