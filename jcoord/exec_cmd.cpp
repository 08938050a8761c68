// `jcoord exec OP ARGS...`: filesystem operations on a running node, by path.
// Thin: paths are resolved and calls made through daemon::RemoteFilesystem.
#include "exec_cmd.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>

#include "cext3/daemon/remote_fs.h"

using namespace cext3;
using daemon::resolve_parent;
using daemon::resolve_path;

namespace {

int err(const std::string& what, const Status& s) {
  std::fprintf(stderr, "jcoord exec: %s: %s\n", what.c_str(), s.message().c_str());
  return 1;
}
int usage(const std::string& msg) {
  std::fprintf(stderr, "jcoord exec: %s (see `jcoord exec help`)\n", msg.c_str());
  return 2;
}

const char* kHelp =
    "jcoord exec [--config FILE | --socket PATH] OP ARGS...   (paths are absolute, inside the cext3 filesystem)\n"
    "  stat PATH                 inode, type, mode, links, owner, size, times\n"
    "  ls PATH                   directory entries: inode type name\n"
    "  mkdir PATH [MODE]         MODE octal, default 755\n"
    "  create PATH [MODE]        empty regular file, default 644\n"
    "  mknod PATH c|b|p|s [MAJOR MINOR] [MODE]\n"
    "  put LOCALFILE PATH        create or replace PATH with LOCALFILE's bytes (- = stdin)\n"
    "  get PATH                  write PATH's bytes to stdout\n"
    "  write PATH OFFSET [LOCALFILE]   write LOCALFILE (default stdin) at OFFSET\n"
    "  read PATH OFFSET LENGTH   bytes to stdout\n"
    "  truncate PATH SIZE\n"
    "  rm PATH | rmdir PATH\n"
    "  mv SRC DST [noreplace|exchange]\n"
    "  ln EXISTING NEWPATH       hard link\n"
    "  symlink TARGET PATH | readlink PATH\n"
    "  chmod MODE PATH | chown UID:GID PATH | touch PATH [MTIME_SECONDS]\n"
    "  setxattr PATH NAME VALUE | getxattr PATH NAME | listxattr PATH | rmxattr PATH NAME\n"
    "  fsync PATH | sync | statfs\n"
    "Changes are acknowledged once committed in the node's journal.\n";

bool parse_octal(const std::string& s, uint32_t* v) {
  if (s.empty() || s.find_first_not_of("01234567") != std::string::npos || s.size() > 6) return false;
  *v = static_cast<uint32_t>(std::stoul(s, nullptr, 8));
  return *v <= 07777;
}
bool parse_u64(const std::string& s, uint64_t* v) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) return false;
  *v = std::stoull(s);
  return true;
}

const char* type_name(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "dir";
    case S_IFLNK: return "symlink";
    case S_IFCHR: return "chardev";
    case S_IFBLK: return "blockdev";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
  }
  return "unknown";
}

bool read_local(const std::string& path, std::vector<uint8_t>* out) {
  if (path == "-") {
    out->assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return true;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return !f.bad();
}

bool write_stdout(const std::vector<uint8_t>& b) {
  return std::fwrite(b.data(), 1, b.size(), stdout) == b.size() && std::fflush(stdout) == 0;
}

}  // namespace

int run_exec(const std::string& socket, const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "help") {
    std::fputs(kHelp, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  auto fsr = daemon::RemoteFilesystem::connect(socket);
  if (!fsr.ok()) return err("connecting", fsr.status());
  engine::Filesystem& fs = **fsr;
  const std::string& op = args[0];
  const size_t n = args.size() - 1;
  auto a = [&](size_t i) -> const std::string& { return args[1 + i]; };
  engine::Caller caller;
  caller.uid = getuid();
  caller.gid = getgid();
  caller.umask = 0;

  if (op == "stat") {
    if (n != 1) return usage("stat PATH");
    auto r = resolve_path(fs, a(0));
    if (!r.ok()) return err(a(0), r.status());
    std::printf("inode %llu type %s mode %04o links %u uid %u gid %u size %llu blocks %llu mtime %lld ctime %lld\n",
                static_cast<unsigned long long>(r->ino), type_name(r->mode), r->mode & 07777, r->nlink, r->uid, r->gid,
                static_cast<unsigned long long>(r->size), static_cast<unsigned long long>(r->blocks512),
                static_cast<long long>(r->mtime.sec), static_cast<long long>(r->ctime.sec));
    return 0;
  }
  if (op == "ls") {
    if (n != 1) return usage("ls PATH");
    auto d = resolve_path(fs, a(0));
    if (!d.ok()) return err(a(0), d.status());
    uint64_t off = 0;
    for (;;) {
      auto es = fs.readdir(d->ino, off, 1000);
      if (!es.ok()) return err(a(0), es.status());
      if (es->empty()) break;
      for (const auto& e : *es) std::printf("%llu %u %s\n", static_cast<unsigned long long>(e.ino), e.file_type, e.name.c_str());
      off = es->back().next_offset;
    }
    return 0;
  }
  if (op == "mkdir" || op == "create") {
    uint32_t mode = op == "mkdir" ? 0755 : 0644;
    if (n < 1 || n > 2 || (n == 2 && !parse_octal(a(1), &mode))) return usage(op + " PATH [MODE_OCTAL]");
    auto p = resolve_parent(fs, a(0));
    if (!p.ok()) return err(a(0), p.status());
    auto r = op == "mkdir" ? fs.mkdir(p->first, p->second, mode, caller)
                           : fs.create(p->first, p->second, S_IFREG | mode, caller);
    if (!r.ok()) return err(a(0), r.status());
    std::printf("%llu\n", static_cast<unsigned long long>(r->ino));
    return 0;
  }
  if (op == "mknod") {
    if (n < 2) return usage("mknod PATH c|b|p|s [MAJOR MINOR] [MODE]");
    static const std::map<std::string, uint32_t> kinds{{"c", S_IFCHR}, {"b", S_IFBLK}, {"p", S_IFIFO}, {"s", S_IFSOCK}};
    auto k = kinds.find(a(1));
    if (k == kinds.end()) return usage("mknod: type must be c, b, p or s");
    uint64_t maj = 0, min = 0;
    size_t next = 2;
    if (k->second == S_IFCHR || k->second == S_IFBLK) {
      if (n < 4 || !parse_u64(a(2), &maj) || !parse_u64(a(3), &min) || maj > 4095 || min > 0xFFFFF)
        return usage("mknod PATH c|b MAJOR MINOR [MODE]");
      next = 4;
    }
    uint32_t mode = 0644;
    if (n > next + 1 || (n == next + 1 && !parse_octal(a(next), &mode))) return usage("mknod: bad MODE");
    auto p = resolve_parent(fs, a(0));
    if (!p.ok()) return err(a(0), p.status());
    auto r = fs.mknod(p->first, p->second, k->second | mode,
                      static_cast<uint32_t>(makedev(static_cast<unsigned>(maj), static_cast<unsigned>(min))), caller);
    if (!r.ok()) return err(a(0), r.status());
    std::printf("%llu\n", static_cast<unsigned long long>(r->ino));
    return 0;
  }
  if (op == "put") {
    if (n != 2) return usage("put LOCALFILE PATH");
    std::vector<uint8_t> data;
    if (!read_local(a(0), &data)) return usage("cannot read local file " + a(0));
    auto p = resolve_parent(fs, a(1));
    if (!p.ok()) return err(a(1), p.status());
    auto f = fs.lookup(p->first, p->second);
    if (!f.ok() && f.status().errno_value() == ENOENT) f = fs.create(p->first, p->second, S_IFREG | 0644, caller);
    if (!f.ok()) return err(a(1), f.status());
    if (!S_ISREG(f->mode)) return err(a(1), Status::FromErrno(EISDIR, "not a regular file"));
    engine::SetAttr t;
    t.size = 0;
    auto tr = fs.setattr(f->ino, t);
    if (!tr.ok()) return err(a(1), tr.status());
    auto w = fs.write(f->ino, 0, data);
    if (!w.ok()) return err(a(1), w.status());
    return 0;
  }
  if (op == "get" || op == "read") {
    if ((op == "get" && n != 1) || (op == "read" && n != 3)) return usage(op == "get" ? "get PATH" : "read PATH OFFSET LENGTH");
    auto f = resolve_path(fs, a(0));
    if (!f.ok()) return err(a(0), f.status());
    uint64_t off = 0, len = f->size;
    if (op == "read" && (!parse_u64(a(1), &off) || !parse_u64(a(2), &len))) return usage("read PATH OFFSET LENGTH");
    std::vector<uint8_t> buf;
    while (len > 0) {
      std::vector<uint8_t> chunk(std::min<uint64_t>(len, 1 << 20));
      auto r = fs.read(f->ino, off, chunk);
      if (!r.ok()) return err(a(0), r.status());
      chunk.resize(*r);
      if (!write_stdout(chunk)) return usage("cannot write to standard output");
      if (*r == 0) break;
      off += *r;
      len -= *r;
    }
    return 0;
  }
  if (op == "write") {
    uint64_t off = 0;
    if (n < 2 || n > 3 || !parse_u64(a(1), &off)) return usage("write PATH OFFSET [LOCALFILE]");
    std::vector<uint8_t> data;
    if (!read_local(n == 3 ? a(2) : "-", &data)) return usage("cannot read local file " + a(2));
    auto f = resolve_path(fs, a(0));
    if (!f.ok()) return err(a(0), f.status());
    auto w = fs.write(f->ino, off, data);
    if (!w.ok()) return err(a(0), w.status());
    return 0;
  }
  if (op == "truncate" || op == "chmod" || op == "chown" || op == "touch") {
    engine::SetAttr ch;
    std::string path;
    if (op == "truncate") {
      uint64_t sz = 0;
      if (n != 2 || !parse_u64(a(1), &sz)) return usage("truncate PATH SIZE");
      ch.size = sz;
      path = a(0);
    } else if (op == "chmod") {
      uint32_t m = 0;
      if (n != 2 || !parse_octal(a(0), &m)) return usage("chmod MODE_OCTAL PATH");
      ch.mode = m;
      path = a(1);
    } else if (op == "chown") {
      uint64_t u = 0, g = 0;
      const auto colon = n == 2 ? a(0).find(':') : std::string::npos;
      if (colon == std::string::npos || !parse_u64(a(0).substr(0, colon), &u) ||
          !parse_u64(a(0).substr(colon + 1), &g) || u > 0xFFFFFFFFu || g > 0xFFFFFFFFu)
        return usage("chown UID:GID PATH");
      ch.uid = static_cast<uint32_t>(u);
      ch.gid = static_cast<uint32_t>(g);
      path = a(1);
    } else {
      uint64_t t = static_cast<uint64_t>(time(nullptr));
      if (n < 1 || n > 2 || (n == 2 && !parse_u64(a(1), &t))) return usage("touch PATH [MTIME_SECONDS]");
      ch.mtime = engine::Timespec{static_cast<int64_t>(t), 0};
      ch.atime = ch.mtime;
      path = a(0);
    }
    auto f = resolve_path(fs, path);
    if (!f.ok()) return err(path, f.status());
    auto r = fs.setattr(f->ino, ch);
    if (!r.ok()) return err(path, r.status());
    return 0;
  }
  if (op == "rm" || op == "rmdir") {
    if (n != 1) return usage(op + " PATH");
    auto p = resolve_parent(fs, a(0));
    if (!p.ok()) return err(a(0), p.status());
    Status s = op == "rm" ? fs.unlink(p->first, p->second) : fs.rmdir(p->first, p->second);
    return s.ok() ? 0 : err(a(0), s);
  }
  if (op == "mv") {
    uint32_t flags = 0;
    if (n < 2 || n > 3) return usage("mv SRC DST [noreplace|exchange]");
    if (n == 3) {
      if (a(2) == "noreplace") flags = engine::kRenameNoReplace;
      else if (a(2) == "exchange") flags = engine::kRenameExchange;
      else return usage("mv: flag must be noreplace or exchange");
    }
    auto s = resolve_parent(fs, a(0));
    if (!s.ok()) return err(a(0), s.status());
    auto d = resolve_parent(fs, a(1));
    if (!d.ok()) return err(a(1), d.status());
    Status st = fs.rename(s->first, s->second, d->first, d->second, flags);
    return st.ok() ? 0 : err(a(0) + " -> " + a(1), st);
  }
  if (op == "ln") {
    if (n != 2) return usage("ln EXISTING NEWPATH");
    auto f = resolve_path(fs, a(0));
    if (!f.ok()) return err(a(0), f.status());
    auto d = resolve_parent(fs, a(1));
    if (!d.ok()) return err(a(1), d.status());
    auto r = fs.link(f->ino, d->first, d->second);
    return r.ok() ? 0 : err(a(1), r.status());
  }
  if (op == "symlink") {
    if (n != 2) return usage("symlink TARGET PATH");
    auto d = resolve_parent(fs, a(1));
    if (!d.ok()) return err(a(1), d.status());
    auto r = fs.symlink(d->first, d->second, a(0), caller);
    return r.ok() ? 0 : err(a(1), r.status());
  }
  if (op == "readlink") {
    if (n != 1) return usage("readlink PATH");
    auto f = resolve_path(fs, a(0));
    if (!f.ok()) return err(a(0), f.status());
    auto t = fs.readlink(f->ino);
    if (!t.ok()) return err(a(0), t.status());
    std::printf("%s\n", t->c_str());
    return 0;
  }
  if (op == "setxattr" || op == "getxattr" || op == "listxattr" || op == "rmxattr") {
    const size_t want = op == "setxattr" ? 3 : op == "listxattr" ? 1 : 2;
    if (n != want) return usage(op + (op == "setxattr" ? " PATH NAME VALUE" : op == "listxattr" ? " PATH" : " PATH NAME"));
    auto f = resolve_path(fs, a(0));
    if (!f.ok()) return err(a(0), f.status());
    if (op == "setxattr") {
      std::vector<uint8_t> v(a(2).begin(), a(2).end());
      Status s = fs.setxattr(f->ino, a(1), v, 0);
      return s.ok() ? 0 : err(a(0), s);
    }
    if (op == "getxattr") {
      auto v = fs.getxattr(f->ino, a(1));
      if (!v.ok()) return err(a(0), v.status());
      write_stdout(*v);
      std::printf("\n");
      return 0;
    }
    if (op == "rmxattr") {
      Status s = fs.removexattr(f->ino, a(1));
      return s.ok() ? 0 : err(a(0), s);
    }
    auto l = fs.listxattr(f->ino);
    if (!l.ok()) return err(a(0), l.status());
    for (const auto& x : *l) std::printf("%s\n", x.c_str());
    return 0;
  }
  if (op == "fsync") {
    if (n != 1) return usage("fsync PATH");
    auto f = resolve_path(fs, a(0));
    if (!f.ok()) return err(a(0), f.status());
    Status s = fs.fsync(f->ino);
    return s.ok() ? 0 : err(a(0), s);
  }
  if (op == "sync") {
    Status s = fs.sync();
    return s.ok() ? 0 : err("sync", s);
  }
  if (op == "statfs") {
    auto s = fs.statfs();
    if (!s.ok()) return err("statfs", s.status());
    std::printf("block_size %u blocks %llu free_blocks %llu avail_blocks %llu inodes %llu free_inodes %llu\n",
                s->block_size, static_cast<unsigned long long>(s->blocks), static_cast<unsigned long long>(s->free_blocks),
                static_cast<unsigned long long>(s->avail_blocks), static_cast<unsigned long long>(s->inodes),
                static_cast<unsigned long long>(s->free_inodes));
    return 0;
  }
  return usage("unknown operation '" + op + "'");
}
