// RemoteFilesystem: the engine's API (engine::Filesystem, inode numbers, as
// FUSE's low-level API) served by a running jcoord over its control socket.
// What `jcoord exec` and the multi-node tests use; the same calls work on an
// in-process engine, so a program can switch between the two.
//
// One RemoteFilesystem is one control-socket session (see control.h): not
// thread-safe; open one per thread. on_lock_leaving and unmount belong to
// the node that runs the engine and are refused here (EPERM).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "cext3/engine/filesystem.h"

namespace cext3::daemon {

class ControlClient;

class RemoteFilesystem final : public engine::Filesystem {
 public:
  // `durable`: replies to changes only once committed (the node's default).
  static Result<std::unique_ptr<RemoteFilesystem>> connect(const std::string& socket_path, bool durable = true);
  ~RemoteFilesystem() override;

  Result<engine::Attr> lookup(uint64_t parent, std::string_view name) override;
  Result<engine::Attr> getattr(uint64_t ino) override;
  Result<std::vector<engine::DirEntry>> readdir(uint64_t ino, uint64_t offset, size_t max_entries) override;
  Result<engine::Attr> mkdir(uint64_t parent, std::string_view name, uint32_t mode, const engine::Caller& c) override;
  Result<engine::Attr> create(uint64_t parent, std::string_view name, uint32_t mode, const engine::Caller& c) override;
  Result<engine::Attr> mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev,
                             const engine::Caller& c) override;
  Result<engine::Attr> symlink(uint64_t parent, std::string_view name, std::string_view target,
                               const engine::Caller& c) override;
  Result<engine::Attr> link(uint64_t ino, uint64_t new_parent, std::string_view new_name) override;
  Status unlink(uint64_t parent, std::string_view name) override;
  Status rmdir(uint64_t parent, std::string_view name) override;
  Status rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                uint32_t flags = 0) override;
  Result<std::string> readlink(uint64_t ino) override;
  // The control socket has no open files (remote_fs.cpp says what these do).
  Status open(uint64_t ino) override;
  Status release(uint64_t ino) override;
  Result<size_t> read(uint64_t ino, uint64_t offset, std::span<uint8_t> out) override;
  Result<size_t> write(uint64_t ino, uint64_t offset, std::span<const uint8_t> data) override;
  Result<engine::Attr> setattr(uint64_t ino, const engine::SetAttr& changes) override;
  Status setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value, int flags) override;
  Result<std::vector<uint8_t>> getxattr(uint64_t ino, std::string_view name) override;
  Result<std::vector<std::string>> listxattr(uint64_t ino) override;
  Status removexattr(uint64_t ino, std::string_view name) override;
  Status fsync(uint64_t ino) override;
  Status sync() override;
  Result<engine::FsStats> statfs() override;
  void on_lock_leaving(const std::string&, locks::LockMode, locks::LockMode) override {}
  std::vector<uint64_t> inodes_covered_by(const std::string&) override { return {}; }
  Status unmount() override;

 private:
  explicit RemoteFilesystem(std::unique_ptr<ControlClient> c);
  std::unique_ptr<ControlClient> client_;
};

// Path helpers over any Filesystem (absolute paths, "/" separated; no
// symlinks are followed, as lstat).
Result<engine::Attr> resolve_path(engine::Filesystem& fs, std::string_view path);
// The parent directory's inode and the last name of `path` ("/a/b" -> (ino of /a, "b")).
Result<std::pair<uint64_t, std::string>> resolve_parent(engine::Filesystem& fs, std::string_view path);

}  // namespace cext3::daemon
