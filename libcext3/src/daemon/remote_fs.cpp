// RemoteFilesystem: engine calls as `exec` request lines (fs_requests.h).
#include "cext3/daemon/remote_fs.h"

#include <sys/xattr.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>

#include "cext3/daemon/control.h"
#include "cext3/daemon/fs_requests.h"
#include "cext3/hex.h"

namespace cext3::daemon {
namespace {

using engine::Attr;

std::string enc(std::string_view s) { return pct_encode(std::string(s)); }

std::string hex(const uint8_t* p, size_t n) { return to_hex(p, n); }
bool unhex(const std::string& s, std::vector<uint8_t>* out) { return from_hex(s, out); }

engine::Timespec parse_time(const YAML::Node& n) {
  engine::Timespec t;
  const std::string s = n.as<std::string>();
  auto dot = s.find('.');
  t.sec = std::stoll(s.substr(0, dot));
  if (dot != std::string::npos) t.nsec = static_cast<uint32_t>(std::stoul(s.substr(dot + 1)));
  return t;
}

Attr parse_attr(const YAML::Node& n) {
  Attr a;
  a.ino = n["ino"].as<uint64_t>();
  a.mode = n["mode"].as<uint32_t>();
  a.nlink = n["nlink"].as<uint32_t>();
  a.uid = n["uid"].as<uint32_t>();
  a.gid = n["gid"].as<uint32_t>();
  a.size = n["size"].as<uint64_t>();
  a.blocks512 = n["blocks"].as<uint64_t>();
  a.rdev = n["rdev"].as<uint32_t>();
  a.generation = n["generation"].as<uint32_t>();
  a.atime = parse_time(n["atime"]);
  a.mtime = parse_time(n["mtime"]);
  a.ctime = parse_time(n["ctime"]);
  return a;
}

std::string caller_words(const engine::Caller& c) {
  char b[64];
  std::snprintf(b, sizeof b, " uid=%u gid=%u umask=%o", c.uid, c.gid, c.umask);
  return b;
}

// Sends `line`; a reply with ok:false becomes a Status with its errno.
Result<YAML::Node> call(ControlClient& cl, const std::string& line) {
  auto r = cl.request(line);
  if (!r.ok()) return r.status();
  try {
    YAML::Node n = YAML::Load(*r);
    if (n["ok"] && n["ok"].as<bool>()) return n;
    const int err = n["errno"] ? n["errno"].as<int>() : EIO;
    const std::string msg = n["error"] ? n["error"].as<std::string>() : std::string("request failed");
    return Status::FromErrno(err ? err : EIO, msg);
  } catch (const YAML::Exception& e) {
    return Status::Corruption("unreadable reply from jcoord: " + std::string(e.what()));
  }
}

Result<Attr> attr_call(ControlClient& cl, const std::string& line) {
  auto n = call(cl, line);
  if (!n.ok()) return n.status();
  return parse_attr(*n);
}

Status status_call(ControlClient& cl, const std::string& line) {
  auto n = call(cl, line);
  return n.ok() ? Status::OK() : n.status();
}

}  // namespace

RemoteFilesystem::RemoteFilesystem(std::unique_ptr<ControlClient> c) : client_(std::move(c)) {}
RemoteFilesystem::~RemoteFilesystem() = default;

Result<std::unique_ptr<RemoteFilesystem>> RemoteFilesystem::connect(const std::string& socket_path, bool durable) {
  auto cl = ControlClient::connect(socket_path);
  if (!cl.ok()) return cl.status();
  CEXT3_RETURN_IF_ERROR(status_call(**cl, std::string("set durable ") + (durable ? "on" : "off")));
  return std::unique_ptr<RemoteFilesystem>(new RemoteFilesystem(std::move(*cl)));
}

Result<Attr> RemoteFilesystem::lookup(uint64_t parent, std::string_view name) {
  return attr_call(*client_, "exec lookup " + std::to_string(parent) + " " + enc(name));
}
Result<Attr> RemoteFilesystem::getattr(uint64_t ino) {
  return attr_call(*client_, "exec getattr " + std::to_string(ino));
}
Result<std::vector<engine::DirEntry>> RemoteFilesystem::readdir(uint64_t ino, uint64_t offset, size_t max_entries) {
  auto n = call(*client_, "exec readdir " + std::to_string(ino) + " " + std::to_string(offset) + " " +
                              std::to_string(max_entries));
  if (!n.ok()) return n.status();
  std::vector<engine::DirEntry> v;
  for (const auto& e : (*n)["entries"]) {
    engine::DirEntry d;
    d.ino = e["ino"].as<uint64_t>();
    d.file_type = static_cast<uint8_t>(e["type"].as<unsigned>());
    if (!pct_decode(e["name"].as<std::string>(), &d.name))
      return Status::Corruption("jcoord sent a badly encoded name");
    d.next_offset = e["next"].as<uint64_t>();
    v.push_back(std::move(d));
  }
  return v;
}
Result<Attr> RemoteFilesystem::mkdir(uint64_t parent, std::string_view name, uint32_t mode, const engine::Caller& c) {
  char m[16];
  std::snprintf(m, sizeof m, "%o", mode);
  return attr_call(*client_, "exec mkdir " + std::to_string(parent) + " " + enc(name) + " " + m + caller_words(c));
}
Result<Attr> RemoteFilesystem::create(uint64_t parent, std::string_view name, uint32_t mode, const engine::Caller& c) {
  char m[16];
  std::snprintf(m, sizeof m, "%o", mode);
  return attr_call(*client_, "exec create " + std::to_string(parent) + " " + enc(name) + " " + m + caller_words(c));
}
Result<Attr> RemoteFilesystem::mknod(uint64_t parent, std::string_view name, uint32_t mode, uint32_t rdev,
                                     const engine::Caller& c) {
  char m[16];
  std::snprintf(m, sizeof m, "%o", mode);
  return attr_call(*client_, "exec mknod " + std::to_string(parent) + " " + enc(name) + " " + m + " " +
                                 std::to_string(rdev) + caller_words(c));
}
Result<Attr> RemoteFilesystem::symlink(uint64_t parent, std::string_view name, std::string_view target,
                                       const engine::Caller& c) {
  return attr_call(*client_, "exec symlink " + std::to_string(parent) + " " + enc(name) + " " + enc(target) +
                                 " uid=" + std::to_string(c.uid) + " gid=" + std::to_string(c.gid));
}
Result<Attr> RemoteFilesystem::link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  return attr_call(*client_, "exec link " + std::to_string(ino) + " " + std::to_string(new_parent) + " " +
                                 enc(new_name));
}
Status RemoteFilesystem::unlink(uint64_t parent, std::string_view name) {
  return status_call(*client_, "exec unlink " + std::to_string(parent) + " " + enc(name));
}
Status RemoteFilesystem::rmdir(uint64_t parent, std::string_view name) {
  return status_call(*client_, "exec rmdir " + std::to_string(parent) + " " + enc(name));
}
Status RemoteFilesystem::rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                                std::string_view new_name, uint32_t flags) {
  std::string f = (flags & engine::kRenameNoReplace) ? " noreplace" : (flags & engine::kRenameExchange) ? " exchange" : "";
  return status_call(*client_, "exec rename " + std::to_string(parent) + " " + enc(name) + " " +
                                   std::to_string(new_parent) + " " + enc(new_name) + f);
}
// The control-socket protocol has no open-file requests: a session holds
// nothing open on the node, so the node's engine frees an inode at its last
// unlink unless one of the node's own (FUSE) users has it open. open() is
// therefore a pass-through to getattr (it fails as the engine's would when
// the inode is not in use) and release() has nothing to give back. A client
// that needs unlinked-but-open semantics must run in the node's process
// (the FUSE mount does) and call engine::Filesystem::open/release there.
Status RemoteFilesystem::open(uint64_t ino) { return getattr(ino).status(); }
Status RemoteFilesystem::release(uint64_t ino) {
  (void)ino;
  return Status::OK();
}

Result<std::string> RemoteFilesystem::readlink(uint64_t ino) {
  auto n = call(*client_, "exec readlink " + std::to_string(ino));
  if (!n.ok()) return n.status();
  std::string t;
  if (!pct_decode((*n)["target"].as<std::string>(), &t)) return Status::Corruption("jcoord sent a badly encoded target");
  return t;
}
Result<size_t> RemoteFilesystem::read(uint64_t ino, uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const size_t want = std::min<size_t>(out.size() - done, 1024 * 1024);
    auto n = call(*client_, "exec read " + std::to_string(ino) + " " + std::to_string(offset + done) + " " +
                                std::to_string(want));
    if (!n.ok()) return n.status();
    std::vector<uint8_t> b;
    if (!unhex((*n)["data"].as<std::string>(), &b) || b.size() > want)
      return Status::Corruption("jcoord sent malformed read data");
    std::copy(b.begin(), b.end(), out.begin() + static_cast<ptrdiff_t>(done));
    done += b.size();
    if (b.size() < want) break;  // end of file
  }
  return done;
}
Result<size_t> RemoteFilesystem::write(uint64_t ino, uint64_t offset, std::span<const uint8_t> data) {
  size_t done = 0;
  do {
    const size_t n = std::min<size_t>(data.size() - done, 1024 * 1024);
    auto r = call(*client_, "exec write " + std::to_string(ino) + " " + std::to_string(offset + done) + " " +
                                (n ? hex(data.data() + done, n) : std::string("-")));
    if (!r.ok()) return r.status();
    done += n;
  } while (done < data.size());
  return done;
}
Result<Attr> RemoteFilesystem::setattr(uint64_t ino, const engine::SetAttr& ch) {
  std::string line = "exec setattr " + std::to_string(ino);
  char b[64];
  if (ch.mode) {
    std::snprintf(b, sizeof b, " mode=%o", *ch.mode);
    line += b;
  }
  if (ch.uid) line += " uid=" + std::to_string(*ch.uid);
  if (ch.gid) line += " gid=" + std::to_string(*ch.gid);
  if (ch.size) line += " size=" + std::to_string(*ch.size);
  for (auto [key, t] : {std::pair{"atime", ch.atime}, std::pair{"mtime", ch.mtime}}) {
    if (!t) continue;
    std::snprintf(b, sizeof b, " %s=%lld.%09u", key, static_cast<long long>(t->sec), t->nsec);
    line += b;
  }
  return attr_call(*client_, line);
}
Status RemoteFilesystem::setxattr(uint64_t ino, std::string_view name, std::span<const uint8_t> value, int flags) {
  std::string f = (flags & XATTR_CREATE) ? " create" : (flags & XATTR_REPLACE) ? " replace" : "";
  return status_call(*client_, "exec setxattr " + std::to_string(ino) + " " + enc(name) + " " +
                                   (value.empty() ? std::string("-") : hex(value.data(), value.size())) + f);
}
Result<std::vector<uint8_t>> RemoteFilesystem::getxattr(uint64_t ino, std::string_view name) {
  auto n = call(*client_, "exec getxattr " + std::to_string(ino) + " " + enc(name));
  if (!n.ok()) return n.status();
  std::vector<uint8_t> v;
  if (!unhex((*n)["value"].as<std::string>(), &v)) return Status::Corruption("jcoord sent a malformed value");
  return v;
}
Result<std::vector<std::string>> RemoteFilesystem::listxattr(uint64_t ino) {
  auto n = call(*client_, "exec listxattr " + std::to_string(ino));
  if (!n.ok()) return n.status();
  std::vector<std::string> v;
  for (const auto& e : (*n)["names"]) {
    std::string s;
    if (!pct_decode(e.as<std::string>(), &s)) return Status::Corruption("jcoord sent a badly encoded name");
    v.push_back(std::move(s));
  }
  return v;
}
Status RemoteFilesystem::removexattr(uint64_t ino, std::string_view name) {
  return status_call(*client_, "exec removexattr " + std::to_string(ino) + " " + enc(name));
}
Status RemoteFilesystem::fsync(uint64_t ino) { return status_call(*client_, "exec fsync " + std::to_string(ino)); }
Status RemoteFilesystem::sync() { return status_call(*client_, "exec sync"); }
Result<engine::FsStats> RemoteFilesystem::statfs() {
  auto n = call(*client_, "exec statfs");
  if (!n.ok()) return n.status();
  engine::FsStats s;
  s.block_size = (*n)["block_size"].as<uint32_t>();
  s.blocks = (*n)["blocks"].as<uint64_t>();
  s.free_blocks = (*n)["free_blocks"].as<uint64_t>();
  s.avail_blocks = (*n)["avail_blocks"].as<uint64_t>();
  s.inodes = (*n)["inodes"].as<uint64_t>();
  s.free_inodes = (*n)["free_inodes"].as<uint64_t>();
  s.name_max = (*n)["name_max"].as<uint32_t>();
  return s;
}
Status RemoteFilesystem::unmount() {
  return Status::FromErrno(EPERM, "a remote client cannot unmount the node's engine; stop the node (`jcoord stop`)");
}

Result<Attr> resolve_path(engine::Filesystem& fs, std::string_view path) {
  if (path.empty() || path[0] != '/') return Status::InvalidArgument("path '" + std::string(path) + "' is not absolute");
  auto cur = fs.getattr(engine::kRootIno);
  if (!cur.ok()) return cur.status();
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    if (i >= path.size()) break;
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    auto next = fs.lookup(cur->ino, path.substr(i, j - i));
    if (!next.ok()) return next.status();
    cur = std::move(next);
    i = j;
  }
  return cur;
}

Result<std::pair<uint64_t, std::string>> resolve_parent(engine::Filesystem& fs, std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  const size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == std::string_view::npos || slash + 1 >= path.size())
    return Status::InvalidArgument("path '" + std::string(path) + "' has no last component to create or remove");
  auto dir = resolve_path(fs, slash == 0 ? std::string_view("/") : path.substr(0, slash));
  if (!dir.ok()) return dir.status();
  return std::pair<uint64_t, std::string>{dir->ino, std::string(path.substr(slash + 1))};
}

}  // namespace cext3::daemon
