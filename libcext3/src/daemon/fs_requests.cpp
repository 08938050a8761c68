// `exec` requests: parse one line, call the engine, reply in JSON.
// Nothing here knows the on-disk format; it only translates.
#include "cext3/daemon/fs_requests.h"

#include <sys/stat.h>
#include <sys/xattr.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include "cext3/hex.h"
#include "cext3/json.h"

namespace cext3::daemon {
namespace {

using engine::Attr;
using engine::Filesystem;

// Largest data a single read or write request carries (2 MiB of hex).
constexpr uint64_t kMaxIo = 1024 * 1024;

std::string error_reply(int err, const std::string& msg) {
  const char* name = err ? strerrorname_np(err) : nullptr;
  return "{\"ok\":false,\"errno\":" + std::to_string(err) + ",\"errname\":" + json_str(name ? name : "") +
         ",\"error\":" + json_str(msg) + "}";
}
std::string error_reply(const Status& s) { return error_reply(s.errno_value(), s.message()); }
std::string usage(const std::string& text) { return error_reply(EINVAL, "usage: exec " + text); }

bool parse_u64(const std::string& s, uint64_t* v, int base = 10) {
  if (s.empty() || s.size() > 20) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long x = std::strtoull(s.c_str(), &end, base);
  if (errno || *end || s[0] == '-' || s[0] == '+') return false;
  *v = x;
  return true;
}
bool parse_i64(const std::string& s, int64_t* v) {
  if (s.empty() || s.size() > 20) return false;
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end) return false;
  *v = x;
  return true;
}
// "SEC" or "SEC.NSEC"
bool parse_time(const std::string& s, engine::Timespec* t) {
  auto dot = s.find('.');
  int64_t sec = 0;
  uint64_t nsec = 0;
  if (!parse_i64(s.substr(0, dot), &sec)) return false;
  if (dot != std::string::npos && (!parse_u64(s.substr(dot + 1), &nsec) || nsec >= 1000000000)) return false;
  t->sec = sec;
  t->nsec = static_cast<uint32_t>(nsec);
  return true;
}

std::string hex(const uint8_t* p, size_t n) { return to_hex(p, n); }
// "-" is the explicit empty value (an empty word cannot be sent).
bool unhex(const std::string& s, std::vector<uint8_t>* out) {
  if (s == "-") {
    out->clear();
    return true;
  }
  return from_hex(s, out);
}

std::string time_json(const engine::Timespec& t) {
  char b[48];
  if (t.nsec) std::snprintf(b, sizeof b, "%lld.%09u", static_cast<long long>(t.sec), t.nsec);
  else std::snprintf(b, sizeof b, "%lld", static_cast<long long>(t.sec));
  return b;
}

std::string attr_fields(const Attr& a) {
  return "\"ino\":" + std::to_string(a.ino) + ",\"mode\":" + std::to_string(a.mode) +
         ",\"nlink\":" + std::to_string(a.nlink) + ",\"uid\":" + std::to_string(a.uid) +
         ",\"gid\":" + std::to_string(a.gid) + ",\"size\":" + std::to_string(a.size) +
         ",\"blocks\":" + std::to_string(a.blocks512) + ",\"rdev\":" + std::to_string(a.rdev) +
         ",\"generation\":" + std::to_string(a.generation) + ",\"atime\":" + time_json(a.atime) +
         ",\"mtime\":" + time_json(a.mtime) + ",\"ctime\":" + time_json(a.ctime);
}
std::string attr_reply(const Attr& a) { return "{\"ok\":true," + attr_fields(a) + "}"; }
std::string ok_reply() { return "{\"ok\":true}"; }

// A request whose change must be durable before the reply (durable mode).
std::string durable_reply(Filesystem& fs, bool durable, const std::string& reply) {
  if (!durable) return reply;
  Status s = fs.sync();
  if (!s.ok()) return error_reply(s.errno_value(), "the operation was done but its commit failed: " + s.message());
  return reply;
}

struct Args {
  const std::vector<std::string>& w;
  // w[0] == "exec", w[1] == op; argument i is w[2 + i].
  size_t count() const { return w.size() - 2; }
  const std::string& at(size_t i) const { return w[2 + i]; }
};

engine::Caller parse_caller(const Args& a, size_t from, bool* ok) {
  // Optional trailing "uid=N gid=N umask=N".
  engine::Caller c;
  *ok = true;
  for (size_t i = from; i < a.count(); ++i) {
    const std::string& kv = a.at(i);
    auto eq = kv.find('=');
    uint64_t v = 0;
    if (eq == std::string::npos || !parse_u64(kv.substr(eq + 1), &v, kv.compare(0, eq, "umask") == 0 ? 8 : 10) ||
        v > 0xFFFFFFFFu) {
      *ok = false;
      return c;
    }
    const std::string k = kv.substr(0, eq);
    if (k == "uid") c.uid = static_cast<uint32_t>(v);
    else if (k == "gid") c.gid = static_cast<uint32_t>(v);
    else if (k == "umask") c.umask = static_cast<uint32_t>(v) & 0777;
    else {
      *ok = false;
      return c;
    }
  }
  return c;
}

}  // namespace

std::string pct_encode(const std::string& raw) {
  static const char* d = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : raw) {
    if (std::isalnum(c) || std::strchr("._~/+=,:@-", c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += d[c >> 4];
      out += d[c & 15];
    }
  }
  return out;
}

bool pct_decode(const std::string& enc, std::string* raw) {
  raw->clear();
  for (size_t i = 0; i < enc.size(); ++i) {
    if (enc[i] != '%') {
      *raw += enc[i];
      continue;
    }
    if (i + 2 >= enc.size()) return false;  // needs two hex digits
    std::vector<uint8_t> b;
    if (!unhex(enc.substr(i + 1, 2), &b) || b.size() != 1) return false;
    *raw += static_cast<char>(b[0]);
    i += 2;
  }
  return true;
}

std::string handle_fs_request(Filesystem& fs, const std::vector<std::string>& w, bool durable) {
  if (w.size() < 2) return usage("OP ARG... (ops: lookup getattr readdir mkdir create mknod symlink link unlink "
                                 "rmdir rename readlink read write setattr setxattr getxattr listxattr "
                                 "removexattr fsync sync statfs)");
  const std::string& op = w[1];
  Args a{w};
  uint64_t ino = 0, parent = 0, x = 0, y = 0;
  std::string name, name2;
  auto need = [&](size_t n) { return a.count() >= n; };
  auto name_at = [&](size_t i, std::string* out) { return pct_decode(a.at(i), out); };

  if (op == "lookup") {
    if (a.count() != 2 || !parse_u64(a.at(0), &parent) || !name_at(1, &name)) return usage("lookup PARENT NAME");
    auto r = fs.lookup(parent, name);
    return r.ok() ? attr_reply(*r) : error_reply(r.status());
  }
  if (op == "getattr") {
    if (a.count() != 1 || !parse_u64(a.at(0), &ino)) return usage("getattr INO");
    auto r = fs.getattr(ino);
    return r.ok() ? attr_reply(*r) : error_reply(r.status());
  }
  if (op == "readdir") {
    // readdir INO [OFFSET [MAX]]
    uint64_t off = 0, max = 1000;
    if (a.count() < 1 || a.count() > 3 || !parse_u64(a.at(0), &ino) || (a.count() > 1 && !parse_u64(a.at(1), &off)) ||
        (a.count() > 2 && (!parse_u64(a.at(2), &max) || max == 0 || max > 100000)))
      return usage("readdir INO [OFFSET [MAX]]");
    auto r = fs.readdir(ino, off, max);
    if (!r.ok()) return error_reply(r.status());
    std::string j = "{\"ok\":true,\"entries\":[";
    for (size_t i = 0; i < r->size(); ++i) {
      const auto& e = (*r)[i];
      j += std::string(i ? "," : "") + "{\"ino\":" + std::to_string(e.ino) + ",\"type\":" +
           std::to_string(e.file_type) + ",\"name\":" + json_str(pct_encode(e.name)) + ",\"next\":" +
           std::to_string(e.next_offset) + "}";
    }
    return j + "]}";
  }
  if (op == "mkdir" || op == "create" || op == "mknod") {
    // mkdir|create PARENT NAME MODE_OCTAL [uid= gid= umask=]; mknod PARENT NAME MODE_OCTAL RDEV [...]
    const size_t fixed = op == "mknod" ? 4 : 3;
    bool cok = false;
    if (!need(fixed) || !parse_u64(a.at(0), &parent) || !name_at(1, &name) || !parse_u64(a.at(2), &x, 8) ||
        x > 0177777 || (op == "mknod" && !parse_u64(a.at(3), &y)))
      return usage(op + " PARENT NAME MODE_OCTAL" + (op == "mknod" ? " RDEV" : "") + " [uid=N gid=N umask=OCTAL]");
    engine::Caller c = parse_caller(a, fixed, &cok);
    if (!cok) return usage(op + ": trailing arguments must be uid=N, gid=N or umask=OCTAL");
    Result<Attr> r = op == "mkdir"    ? fs.mkdir(parent, name, static_cast<uint32_t>(x), c)
                     : op == "create" ? fs.create(parent, name, static_cast<uint32_t>(x), c)
                                      : fs.mknod(parent, name, static_cast<uint32_t>(x), static_cast<uint32_t>(y), c);
    return r.ok() ? durable_reply(fs, durable, attr_reply(*r)) : error_reply(r.status());
  }
  if (op == "symlink") {
    bool cok = false;
    if (!need(3) || !parse_u64(a.at(0), &parent) || !name_at(1, &name) || !name_at(2, &name2))
      return usage("symlink PARENT NAME TARGET [uid=N gid=N]");
    engine::Caller c = parse_caller(a, 3, &cok);
    if (!cok) return usage("symlink: trailing arguments must be uid=N or gid=N");
    auto r = fs.symlink(parent, name, name2, c);
    return r.ok() ? durable_reply(fs, durable, attr_reply(*r)) : error_reply(r.status());
  }
  if (op == "link") {
    if (a.count() != 3 || !parse_u64(a.at(0), &ino) || !parse_u64(a.at(1), &parent) || !name_at(2, &name))
      return usage("link INO NEW_PARENT NEW_NAME");
    auto r = fs.link(ino, parent, name);
    return r.ok() ? durable_reply(fs, durable, attr_reply(*r)) : error_reply(r.status());
  }
  if (op == "unlink" || op == "rmdir") {
    if (a.count() != 2 || !parse_u64(a.at(0), &parent) || !name_at(1, &name)) return usage(op + " PARENT NAME");
    Status s = op == "unlink" ? fs.unlink(parent, name) : fs.rmdir(parent, name);
    return s.ok() ? durable_reply(fs, durable, ok_reply()) : error_reply(s);
  }
  if (op == "rename") {
    // rename PARENT NAME NEW_PARENT NEW_NAME [noreplace|exchange]
    uint32_t flags = 0;
    if (a.count() < 4 || a.count() > 5 || !parse_u64(a.at(0), &parent) || !name_at(1, &name) ||
        !parse_u64(a.at(2), &x) || !name_at(3, &name2))
      return usage("rename PARENT NAME NEW_PARENT NEW_NAME [noreplace|exchange]");
    if (a.count() == 5) {
      if (a.at(4) == "noreplace") flags = engine::kRenameNoReplace;
      else if (a.at(4) == "exchange") flags = engine::kRenameExchange;
      else return usage("rename: the flag must be noreplace or exchange");
    }
    Status s = fs.rename(parent, name, x, name2, flags);
    return s.ok() ? durable_reply(fs, durable, ok_reply()) : error_reply(s);
  }
  if (op == "readlink") {
    if (a.count() != 1 || !parse_u64(a.at(0), &ino)) return usage("readlink INO");
    auto r = fs.readlink(ino);
    return r.ok() ? "{\"ok\":true,\"target\":" + json_str(pct_encode(*r)) + "}" : error_reply(r.status());
  }
  if (op == "read") {
    if (a.count() != 3 || !parse_u64(a.at(0), &ino) || !parse_u64(a.at(1), &x) || !parse_u64(a.at(2), &y) ||
        y > kMaxIo)
      return usage("read INO OFFSET LENGTH (LENGTH at most " + std::to_string(kMaxIo) + ")");
    std::vector<uint8_t> buf(y);
    auto r = fs.read(ino, x, buf);
    if (!r.ok()) return error_reply(r.status());
    return "{\"ok\":true,\"length\":" + std::to_string(*r) + ",\"data\":\"" + hex(buf.data(), *r) + "\"}";
  }
  if (op == "write") {
    std::vector<uint8_t> data;
    if (a.count() != 3 || !parse_u64(a.at(0), &ino) || !parse_u64(a.at(1), &x) || !unhex(a.at(2), &data) ||
        data.size() > kMaxIo)
      return usage("write INO OFFSET HEXDATA (at most " + std::to_string(kMaxIo) + " bytes)");
    auto r = fs.write(ino, x, data);
    if (!r.ok()) return error_reply(r.status());
    return durable_reply(fs, durable, "{\"ok\":true,\"written\":" + std::to_string(*r) + "}");
  }
  if (op == "setattr") {
    // setattr INO key=value... (mode=OCTAL uid= gid= size= atime=SEC[.NSEC] mtime=)
    if (a.count() < 2 || !parse_u64(a.at(0), &ino)) return usage("setattr INO mode=OCTAL|uid=N|gid=N|size=N|atime=T|mtime=T ...");
    engine::SetAttr ch;
    for (size_t i = 1; i < a.count(); ++i) {
      const std::string& kv = a.at(i);
      auto eq = kv.find('=');
      if (eq == std::string::npos) return usage("setattr: '" + kv + "' is not key=value");
      const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
      uint64_t n = 0;
      engine::Timespec t;
      if (k == "mode" && parse_u64(v, &n, 8) && n <= 07777) ch.mode = static_cast<uint32_t>(n);
      else if (k == "uid" && parse_u64(v, &n) && n <= 0xFFFFFFFFu) ch.uid = static_cast<uint32_t>(n);
      else if (k == "gid" && parse_u64(v, &n) && n <= 0xFFFFFFFFu) ch.gid = static_cast<uint32_t>(n);
      else if (k == "size" && parse_u64(v, &n)) ch.size = n;
      else if (k == "atime" && parse_time(v, &t)) ch.atime = t;
      else if (k == "mtime" && parse_time(v, &t)) ch.mtime = t;
      else return usage("setattr: cannot use '" + kv + "' (keys: mode=OCTAL uid gid size atime mtime)");
    }
    auto r = fs.setattr(ino, ch);
    return r.ok() ? durable_reply(fs, durable, attr_reply(*r)) : error_reply(r.status());
  }
  if (op == "setxattr") {
    // setxattr INO NAME HEXVALUE [create|replace]
    std::vector<uint8_t> v;
    int flags = 0;
    if (a.count() < 3 || a.count() > 4 || !parse_u64(a.at(0), &ino) || !name_at(1, &name) || !unhex(a.at(2), &v))
      return usage("setxattr INO NAME HEXVALUE|- [create|replace]");
    if (a.count() == 4) {
      if (a.at(3) == "create") flags = XATTR_CREATE;
      else if (a.at(3) == "replace") flags = XATTR_REPLACE;
      else return usage("setxattr: the flag must be create or replace");
    }
    Status s = fs.setxattr(ino, name, v, flags);
    return s.ok() ? durable_reply(fs, durable, ok_reply()) : error_reply(s);
  }
  if (op == "getxattr") {
    if (a.count() != 2 || !parse_u64(a.at(0), &ino) || !name_at(1, &name)) return usage("getxattr INO NAME");
    auto r = fs.getxattr(ino, name);
    return r.ok() ? "{\"ok\":true,\"value\":\"" + hex(r->data(), r->size()) + "\"}" : error_reply(r.status());
  }
  if (op == "listxattr") {
    if (a.count() != 1 || !parse_u64(a.at(0), &ino)) return usage("listxattr INO");
    auto r = fs.listxattr(ino);
    if (!r.ok()) return error_reply(r.status());
    std::string j = "{\"ok\":true,\"names\":[";
    for (size_t i = 0; i < r->size(); ++i) j += std::string(i ? "," : "") + json_str(pct_encode((*r)[i]));
    return j + "]}";
  }
  if (op == "removexattr") {
    if (a.count() != 2 || !parse_u64(a.at(0), &ino) || !name_at(1, &name)) return usage("removexattr INO NAME");
    Status s = fs.removexattr(ino, name);
    return s.ok() ? durable_reply(fs, durable, ok_reply()) : error_reply(s);
  }
  if (op == "fsync") {
    if (a.count() != 1 || !parse_u64(a.at(0), &ino)) return usage("fsync INO");
    Status s = fs.fsync(ino);
    return s.ok() ? ok_reply() : error_reply(s);
  }
  if (op == "sync") {
    if (a.count() != 0) return usage("sync");
    Status s = fs.sync();
    return s.ok() ? ok_reply() : error_reply(s);
  }
  if (op == "statfs") {
    if (a.count() != 0) return usage("statfs");
    auto r = fs.statfs();
    if (!r.ok()) return error_reply(r.status());
    return "{\"ok\":true,\"block_size\":" + std::to_string(r->block_size) + ",\"blocks\":" +
           std::to_string(r->blocks) + ",\"free_blocks\":" + std::to_string(r->free_blocks) +
           ",\"avail_blocks\":" + std::to_string(r->avail_blocks) + ",\"inodes\":" + std::to_string(r->inodes) +
           ",\"free_inodes\":" + std::to_string(r->free_inodes) + ",\"name_max\":" + std::to_string(r->name_max) + "}";
  }
  return error_reply(EINVAL, "exec: unknown operation '" + op +
                                 "' (ops: lookup getattr readdir mkdir create mknod symlink link unlink rmdir rename "
                                 "readlink read write setattr setxattr getxattr listxattr removexattr fsync sync statfs)");
}

}  // namespace cext3::daemon
