// cext3-posix-suite: the project's POSIX semantics suite. It makes system
// calls in a fresh directory under DIR and checks results and errno values,
// one line per check ("PASS name" / "FAIL name: what happened"), then a
// summary line; exit 1 if any check failed, 2 on a usage error.
//
//   cext3-posix-suite DIR [--as-uid N] [--as-gid N]
//
// The reference is the kernel's own ext3 on a loop device: every check here
// must pass there. Run as root, the permission checks fork a child that drops
// to an unprivileged uid/gid (default 65534, "nobody"); not as root, those
// checks are reported as SKIP (a second identity is needed for them).
//
// Timestamps: small ext3 images have 128-byte inodes and whole-second times,
// so "did it change" checks first move the time into the past (utimensat) or
// wait for the next second once for a batch of ctime checks.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace {

// ---- result bookkeeping ----------------------------------------------------

struct Results {
  int passed = 0, failed = 0, skipped = 0;
  // While a child process runs checks, it writes its results here instead of
  // printing; the parent reads them back (so every line comes from one place).
  int report_fd = -1;
};
Results g_results;

void record(bool ok, const std::string& name, const std::string& detail) {
  if (g_results.report_fd >= 0) {
    std::string line = std::string(ok ? "P" : "F") + "\t" + name + "\t" + detail + "\n";
    // Lines are short; a pipe write of < PIPE_BUF bytes is atomic.
    if (write(g_results.report_fd, line.data(), line.size()) < 0) _exit(3);
    return;
  }
  if (ok) {
    ++g_results.passed;
    std::printf("PASS %s\n", name.c_str());
  } else {
    ++g_results.failed;
    // " -> " separates the detail: check names themselves contain ": ".
    if (detail.empty())
      std::printf("FAIL %s\n", name.c_str());
    else
      std::printf("FAIL %s -> %s\n", name.c_str(), detail.c_str());
  }
  std::fflush(stdout);
}

void skip(const std::string& name, const std::string& why) {
  if (g_results.report_fd >= 0) {
    std::string line = "S\t" + name + "\t" + why + "\n";
    if (write(g_results.report_fd, line.data(), line.size()) < 0) _exit(3);
    return;
  }
  ++g_results.skipped;
  std::printf("SKIP %s -> %s\n", name.c_str(), why.c_str());
  std::fflush(stdout);
}

std::string errname(int e) {
  if (e == 0) return "success";
  const char* n = strerrorname_np(e);
  return n ? n : ("errno " + std::to_string(e));
}

void check(const std::string& name, bool ok, const std::string& detail = "") { record(ok, name, ok ? "" : detail); }

// rc is the syscall's return value; success means rc >= 0.
void expect_ok(const std::string& name, long rc) {
  int e = errno;
  record(rc >= 0, name, rc >= 0 ? "" : "failed with " + errname(e));
}

void expect_errno(const std::string& name, long rc, int want) {
  int e = errno;
  if (rc >= 0)
    record(false, name, "succeeded, expected " + errname(want));
  else
    record(e == want, name, e == want ? "" : "got " + errname(e) + ", expected " + errname(want));
}

// expect_errno for calls that return an fd: a wrongly opened fd is closed.
void expect_open_errno(const std::string& name, int fd, int want) {
  int e = errno;
  if (fd >= 0) close(fd);
  errno = e;
  expect_errno(name, fd, want);
}

// ---- small helpers ---------------------------------------------------------

std::string g_base;      // the suite's own directory under DIR
std::string g_dir_real;  // DIR, resolved
std::string P(const std::string& rel) { return g_base + "/" + rel; }

bool write_file(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return false;
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  return close(fd) == 0 && ok;
}

// The whole content, or "<errno name>" prefixed with '!' on failure.
std::string read_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "!" + errname(errno);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  if (n < 0) out = "!" + errname(errno);
  close(fd);
  return out;
}

std::string read_fd_at(int fd, off_t off, size_t len) {
  std::string out(len, '\0');
  ssize_t n = pread(fd, out.data(), len, off);
  if (n < 0) return "!" + errname(errno);
  out.resize(static_cast<size_t>(n));
  return out;
}

struct stat st_of(const std::string& path, bool follow = false) {
  struct stat st {};
  if ((follow ? stat(path.c_str(), &st) : lstat(path.c_str(), &st)) != 0) st.st_ino = 0;
  return st;
}

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Moves a path's atime/mtime into the past, so that an update shows.
constexpr time_t kPast = 1000000000;  // 2001-09-09
void set_past(const std::string& path) {
  struct timespec ts[2] = {{kPast, 0}, {kPast, 0}};
  utimensat(AT_FDCWD, path.c_str(), ts, AT_SYMLINK_NOFOLLOW);
}
// "Now", as a filesystem would stamp it: within a minute of the clock.
bool is_recent(time_t t) {
  time_t now = time(nullptr);
  return t > now - 60 && t <= now + 5;
}
std::string tstr(time_t t) { return std::to_string(static_cast<long long>(t)); }

bool zeros(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

std::string mode_str(mode_t m) {
  char b[16];
  std::snprintf(b, sizeof b, "%o", static_cast<unsigned>(m));
  return b;
}

std::set<std::string> list_dir(const std::string& path, std::vector<std::pair<std::string, unsigned char>>* types = nullptr) {
  std::set<std::string> names;
  DIR* d = opendir(path.c_str());
  if (!d) return names;
  while (dirent* e = readdir(d)) {
    names.insert(e->d_name);
    if (types) types->emplace_back(e->d_name, e->d_type);
  }
  closedir(d);
  return names;
}

// Removes a tree bottom-up; returns false (and names the culprit) on the
// first failure, which the caller reports.
bool remove_tree(const std::string& path, std::string& why) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    why = path + ": lstat " + errname(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    chmod(path.c_str(), 0700);  // permission checks leave mode 000 directories behind
    for (const auto& n : list_dir(path)) {
      if (n == "." || n == "..") continue;
      if (!remove_tree(path + "/" + n, why)) return false;
    }
    if (rmdir(path.c_str()) != 0) {
      why = path + ": rmdir " + errname(errno);
      return false;
    }
  } else if (unlink(path.c_str()) != 0) {
    why = path + ": unlink " + errname(errno);
    return false;
  }
  return true;
}

// Waits until the wall clock is in a later second than `t` (plus a margin,
// so coarse kernel clocks have moved too).
void wait_past_second(time_t t) {
  while (time(nullptr) <= t) {
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, nullptr);
  }
  struct timespec d = {0, 50 * 1000 * 1000};
  nanosleep(&d, nullptr);
}

// ---- unprivileged children -------------------------------------------------

uid_t g_uid = 65534;
gid_t g_gid = 65534;
bool g_root = false;

// Runs `body` in a child process with uid/gid dropped; its checks come back
// through a pipe and are recorded here. A child that cannot drop privileges
// or dies is itself a failed check.
// Returns whether the body ran (false: skipped, said so).
bool as_user(const std::string& what, const std::function<void()>& body) {
  if (!g_root) {
    skip(what, "needs root to switch to an unprivileged uid");
    return false;
  }
  int p[2];
  if (pipe(p) != 0) {
    record(false, what + ": pipe", errname(errno));
    return false;
  }
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    record(false, what + ": fork", errname(errno));
    close(p[0]);
    close(p[1]);
    return false;
  }
  if (pid == 0) {
    close(p[0]);
    g_results.report_fd = p[1];
    if (setgroups(0, nullptr) != 0 || setgid(g_gid) != 0 || setuid(g_uid) != 0) {
      record(false, what + ": drop privileges", errname(errno));
      _exit(0);
    }
    // The directories above DIR are not under test: if the unprivileged uid
    // cannot pass them, nothing below says anything about the filesystem.
    std::string up;
    for (size_t pos = 1; (pos = g_dir_real.find('/', pos)) != std::string::npos; ++pos) {
      up = g_dir_real.substr(0, pos);
      if (access(up.c_str(), X_OK) != 0) {
        skip(what, up + " (above DIR) is not searchable by uid " + std::to_string(g_uid) +
                       "; run the suite in a directory every user can reach");
        _exit(0);
      }
    }
    body();
    _exit(0);
  }
  close(p[1]);
  std::string data;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  size_t pos = 0;
  bool ran = true;
  while (pos < data.size()) {
    size_t eol = data.find('\n', pos);
    if (eol == std::string::npos) break;
    std::string line = data.substr(pos, eol - pos);
    pos = eol + 1;
    size_t t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    if (t1 == std::string::npos || t2 == std::string::npos) continue;
    if (line[0] == 'S') {
      skip(line.substr(t1 + 1, t2 - t1 - 1), line.substr(t2 + 1));
      ran &= line.substr(t1 + 1, t2 - t1 - 1) != what;
    }
    else
      record(line[0] == 'P', line.substr(t1 + 1, t2 - t1 - 1), line.substr(t2 + 1));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    record(false, what + ": child process", "ended abnormally (status " + std::to_string(status) + ")");
  return ran;
}

// ---- the checks --------------------------------------------------------------

void test_errnos() {
  mkdir(P("e").c_str(), 0755);
  write_file(P("e/file"), "x");
  mkdir(P("e/dir").c_str(), 0755);
  write_file(P("e/dir/inner"), "y");

  expect_errno("EEXIST: mkdir over an existing directory", mkdir(P("e/dir").c_str(), 0755), EEXIST);
  expect_errno("EEXIST: mkdir over an existing file", mkdir(P("e/file").c_str(), 0755), EEXIST);
  expect_open_errno("EEXIST: open O_CREAT|O_EXCL of an existing file",
                    open(P("e/file").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);
  expect_errno("EEXIST: link to an existing name", link(P("e/file").c_str(), P("e/dir/inner").c_str()), EEXIST);
  expect_errno("EEXIST: symlink at an existing name", symlink("t", P("e/file").c_str()), EEXIST);
  expect_errno("EEXIST: mkfifo at an existing name", mkfifo(P("e/file").c_str(), 0644), EEXIST);
  symlink("nowhere", P("e/dangling").c_str());
  expect_open_errno("EEXIST: O_CREAT|O_EXCL on a dangling symlink",
                    open(P("e/dangling").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);

  expect_open_errno("ENOENT: open of a missing file", open(P("e/missing").c_str(), O_RDONLY), ENOENT);
  struct stat st;
  expect_errno("ENOENT: stat through a missing directory", stat(P("e/nodir/x").c_str(), &st), ENOENT);
  expect_errno("ENOENT: unlink of a missing name", unlink(P("e/missing").c_str()), ENOENT);
  expect_errno("ENOENT: rmdir of a missing name", rmdir(P("e/missing").c_str()), ENOENT);
  expect_errno("ENOENT: rename of a missing name", rename(P("e/missing").c_str(), P("e/x").c_str()), ENOENT);
  expect_errno("ENOENT: link of a missing name", link(P("e/missing").c_str(), P("e/x").c_str()), ENOENT);
  expect_open_errno("ENOENT: open through a dangling symlink", open(P("e/dangling").c_str(), O_RDONLY), ENOENT);
  expect_open_errno("ENOENT: O_CREAT in a missing directory", open(P("e/nodir/x").c_str(), O_CREAT | O_WRONLY, 0644), ENOENT);

  expect_open_errno("ENOTDIR: open with a file as a directory component", open(P("e/file/x").c_str(), O_RDONLY), ENOTDIR);
  expect_errno("ENOTDIR: mkdir under a file", mkdir(P("e/file/x").c_str(), 0755), ENOTDIR);
  expect_errno("ENOTDIR: rmdir of a file", rmdir(P("e/file").c_str()), ENOTDIR);
  expect_open_errno("ENOTDIR: O_DIRECTORY open of a file", open(P("e/file").c_str(), O_RDONLY | O_DIRECTORY), ENOTDIR);
  expect_errno("ENOTDIR: stat with a trailing slash on a file", stat((P("e/file") + "/").c_str(), &st), ENOTDIR);

  expect_open_errno("EISDIR: open a directory O_WRONLY", open(P("e/dir").c_str(), O_WRONLY), EISDIR);
  expect_open_errno("EISDIR: open a directory O_RDWR", open(P("e/dir").c_str(), O_RDWR), EISDIR);
  expect_open_errno("EISDIR: open a directory O_CREAT", open(P("e/dir").c_str(), O_CREAT | O_WRONLY, 0644), EISDIR);
  expect_errno("EISDIR: unlink of a directory", unlink(P("e/dir").c_str()), EISDIR);
  {
    int fd = open(P("e/dir").c_str(), O_RDONLY | O_DIRECTORY);
    char c;
    expect_errno("EISDIR: read(2) on a directory", fd < 0 ? (errno = EBADF, -1) : read(fd, &c, 1), EISDIR);
    if (fd >= 0) close(fd);
  }

  expect_errno("ENOTEMPTY: rmdir of a non-empty directory", rmdir(P("e/dir").c_str()), ENOTEMPTY);
  check("ENOTEMPTY: the directory and its entry are still there", read_file(P("e/dir/inner")) == "y");
  expect_errno("EINVAL: rmdir of \".\"", rmdir(P("e/dir/.").c_str()), EINVAL);
  expect_errno("EPERM: link(2) to a directory", link(P("e/dir").c_str(), P("e/dirlink").c_str()), EPERM);
}

void test_names() {
  mkdir(P("n").c_str(), 0755);
  std::string n255(255, 'a'), n256(256, 'b');
  int fd = open(P("n/" + n255).c_str(), O_CREAT | O_WRONLY, 0644);
  expect_ok("names: a 255-byte name can be created", fd);
  if (fd >= 0) close(fd);
  check("names: a 255-byte name is listed", list_dir(P("n")).count(n255) == 1);
  expect_ok("names: a 255-byte name can be unlinked", unlink(P("n/" + n255).c_str()));
  expect_open_errno("ENAMETOOLONG: create a 256-byte name", open(P("n/" + n256).c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
  expect_errno("ENAMETOOLONG: mkdir a 256-byte name", mkdir(P("n/" + n256).c_str(), 0755), ENAMETOOLONG);
  struct stat st;
  expect_errno("ENAMETOOLONG: lookup of a 256-byte name", stat(P("n/" + n256).c_str(), &st), ENAMETOOLONG);
  check("names: nothing was created by the refused calls", list_dir(P("n")).size() == 2);
  std::string odd = "sp ace\ttab\xc3\xa9-:;*?\\";
  expect_ok("names: bytes other than '/' and NUL are valid", (write_file(P("n/" + odd), "odd") ? 0 : -1));
  check("names: such a name reads back", read_file(P("n/" + odd)) == "odd" && list_dir(P("n")).count(odd) == 1);

  symlink("loop_b", P("n/loop_a").c_str());
  symlink("loop_a", P("n/loop_b").c_str());
  symlink("self", P("n/self").c_str());
  expect_open_errno("ELOOP: open through a two-link symlink loop", open(P("n/loop_a").c_str(), O_RDONLY), ELOOP);
  expect_errno("ELOOP: stat through a symlink loop", stat(P("n/loop_b").c_str(), &st), ELOOP);
  expect_open_errno("ELOOP: open of a self-referencing symlink", open(P("n/self").c_str(), O_RDONLY), ELOOP);
  expect_errno("ELOOP: a loop as a directory component", stat(P("n/loop_a/x").c_str(), &st), ELOOP);
  write_file(P("n/target"), "t");
  symlink("target", P("n/tlink").c_str());
  expect_open_errno("ELOOP: O_NOFOLLOW on a symlink", open(P("n/tlink").c_str(), O_RDONLY | O_NOFOLLOW), ELOOP);
  expect_ok("names: lstat of a loop symlink works", lstat(P("n/loop_a").c_str(), &st));
}

void test_renames() {
  mkdir(P("r").c_str(), 0755);
  // plain file rename
  write_file(P("r/a"), "content-a");
  ino_t ia = st_of(P("r/a")).st_ino;
  expect_ok("rename: a file to a new name", rename(P("r/a").c_str(), P("r/b").c_str()));
  check("rename: the old name is gone", !exists(P("r/a")));
  check("rename: the new name has the content and inode", read_file(P("r/b")) == "content-a" && st_of(P("r/b")).st_ino == ia);

  // over an existing file: the replaced inode lives on through an open fd
  write_file(P("r/victim"), "victim");
  int vfd = open(P("r/victim").c_str(), O_RDONLY);
  expect_ok("rename: a file over an existing file", rename(P("r/b").c_str(), P("r/victim").c_str()));
  check("rename over: the target has the source's content", read_file(P("r/victim")) == "content-a");
  struct stat vst {};
  fstat(vfd, &vst);
  check("rename over: the replaced inode has nlink 0", vst.st_nlink == 0, "nlink " + std::to_string(vst.st_nlink));
  check("rename over: the replaced inode is still readable through an fd", read_fd_at(vfd, 0, 100) == "victim");
  close(vfd);

  // two links of the same inode: rename is a no-op
  write_file(P("r/h1"), "h");
  link(P("r/h1").c_str(), P("r/h2").c_str());
  expect_ok("rename: between two links of one inode succeeds", rename(P("r/h1").c_str(), P("r/h2").c_str()));
  check("rename: between two links of one inode changes nothing", exists(P("r/h1")) && exists(P("r/h2")) && st_of(P("r/h2")).st_nlink == 2);
  expect_ok("rename: a name onto itself succeeds", rename(P("r/h2").c_str(), P("r/h2").c_str()));

  // directories
  mkdir(P("r/d1").c_str(), 0755);
  mkdir(P("r/d1/sub").c_str(), 0755);
  write_file(P("r/d1/sub/f"), "deep");
  mkdir(P("r/d2").c_str(), 0755);
  nlink_t d1_links = st_of(P("r/d1")).st_nlink, d2_links = st_of(P("r/d2")).st_nlink;
  expect_ok("rename: a directory into another directory", rename(P("r/d1/sub").c_str(), P("r/d2/sub").c_str()));
  check("rename dir: the content moved with it", read_file(P("r/d2/sub/f")) == "deep");
  check("rename dir: '..' of the moved directory is the new parent",
        st_of(P("r/d2/sub/..")).st_ino == st_of(P("r/d2")).st_ino);
  check("rename dir: the old parent lost a link", st_of(P("r/d1")).st_nlink == d1_links - 1,
        "nlink " + std::to_string(st_of(P("r/d1")).st_nlink) + ", was " + std::to_string(d1_links));
  check("rename dir: the new parent gained a link", st_of(P("r/d2")).st_nlink == d2_links + 1,
        "nlink " + std::to_string(st_of(P("r/d2")).st_nlink) + ", was " + std::to_string(d2_links));
  mkdir(P("r/empty").c_str(), 0755);
  mkdir(P("r/mover").c_str(), 0755);
  write_file(P("r/mover/m"), "m");
  expect_ok("rename: a directory over an empty directory", rename(P("r/mover").c_str(), P("r/empty").c_str()));
  check("rename dir over empty: the content is at the target", read_file(P("r/empty/m")) == "m" && !exists(P("r/mover")));
  mkdir(P("r/src").c_str(), 0755);
  expect_errno("ENOTEMPTY: rename a directory over a non-empty directory", rename(P("r/src").c_str(), P("r/d2").c_str()), ENOTEMPTY);
  check("ENOTEMPTY rename: both directories are unchanged", exists(P("r/src")) && read_file(P("r/d2/sub/f")) == "deep");
  expect_errno("EINVAL: rename a directory into its own subdirectory", rename(P("r/d2").c_str(), P("r/d2/sub/inside").c_str()), EINVAL);
  expect_errno("EINVAL: rename a directory into itself", rename(P("r/d2").c_str(), P("r/d2/inside").c_str()), EINVAL);
  write_file(P("r/plain"), "p");
  expect_errno("ENOTDIR: rename a directory over a file", rename(P("r/src").c_str(), P("r/plain").c_str()), ENOTDIR);
  expect_errno("EISDIR: rename a file over a directory", rename(P("r/plain").c_str(), P("r/src").c_str()), EISDIR);

  // renameat2 flags
  write_file(P("r/x"), "xx");
  write_file(P("r/y"), "yyy");
  expect_errno("RENAME_NOREPLACE: onto an existing name is EEXIST",
               renameat2(AT_FDCWD, P("r/x").c_str(), AT_FDCWD, P("r/y").c_str(), RENAME_NOREPLACE), EEXIST);
  check("RENAME_NOREPLACE: both files unchanged", read_file(P("r/x")) == "xx" && read_file(P("r/y")) == "yyy");
  expect_ok("RENAME_NOREPLACE: onto a free name works",
            renameat2(AT_FDCWD, P("r/x").c_str(), AT_FDCWD, P("r/z").c_str(), RENAME_NOREPLACE));
  check("RENAME_NOREPLACE: moved", read_file(P("r/z")) == "xx" && !exists(P("r/x")));
  ino_t iz = st_of(P("r/z")).st_ino, iy = st_of(P("r/y")).st_ino;
  expect_ok("RENAME_EXCHANGE: two files", renameat2(AT_FDCWD, P("r/z").c_str(), AT_FDCWD, P("r/y").c_str(), RENAME_EXCHANGE));
  check("RENAME_EXCHANGE: the names swapped their inodes",
        read_file(P("r/z")) == "yyy" && read_file(P("r/y")) == "xx" && st_of(P("r/z")).st_ino == iy && st_of(P("r/y")).st_ino == iz);
  mkdir(P("r/xd").c_str(), 0755);
  write_file(P("r/xd/in"), "in");
  expect_ok("RENAME_EXCHANGE: a file and a directory in different directories",
            renameat2(AT_FDCWD, P("r/z").c_str(), AT_FDCWD, P("r/d2/sub").c_str(), RENAME_EXCHANGE));
  check("RENAME_EXCHANGE: file and directory swapped",
        S_ISDIR(st_of(P("r/z")).st_mode) && read_file(P("r/z/f")) == "deep" && read_file(P("r/d2/sub")) == "yyy");
  check("RENAME_EXCHANGE: '..' of the exchanged directory follows it",
        st_of(P("r/z/..")).st_ino == st_of(P("r")).st_ino);
  expect_errno("RENAME_EXCHANGE: with a missing name is ENOENT",
               renameat2(AT_FDCWD, P("r/y").c_str(), AT_FDCWD, P("r/nothere").c_str(), RENAME_EXCHANGE), ENOENT);
  expect_errno("renameat2: NOREPLACE|EXCHANGE together is EINVAL",
               renameat2(AT_FDCWD, P("r/y").c_str(), AT_FDCWD, P("r/z").c_str(), RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);

  // a rename of 200 files within one directory and back keeps every one
  mkdir(P("r/many").c_str(), 0755);
  for (int i = 0; i < 200; ++i) write_file(P("r/many/f" + std::to_string(i)), std::to_string(i));
  bool ok = true;
  for (int i = 0; i < 200; ++i)
    ok &= rename(P("r/many/f" + std::to_string(i)).c_str(), P("r/many/renamed_" + std::to_string(i)).c_str()) == 0;
  for (int i = 0; i < 200; ++i) ok &= read_file(P("r/many/renamed_" + std::to_string(i))) == std::to_string(i);
  check("rename: 200 files renamed in one directory all read back", ok && list_dir(P("r/many")).size() == 202);
}

void test_links_and_truncate() {
  mkdir(P("l").c_str(), 0755);
  write_file(P("l/f"), "links");
  check("nlink: a new file has 1", st_of(P("l/f")).st_nlink == 1);
  expect_ok("link: a second name", link(P("l/f").c_str(), P("l/g").c_str()));
  check("nlink: 2 after link, same inode", st_of(P("l/f")).st_nlink == 2 && st_of(P("l/g")).st_ino == st_of(P("l/f")).st_ino);
  link(P("l/f").c_str(), P("l/h").c_str());
  check("nlink: 3 after a third name", st_of(P("l/g")).st_nlink == 3);
  unlink(P("l/f").c_str());
  check("nlink: 2 after an unlink, content intact", st_of(P("l/g")).st_nlink == 2 && read_file(P("l/h")) == "links");
  check("nlink: a new directory has 2", st_of(P("l")).st_nlink == 2, "nlink " + std::to_string(st_of(P("l")).st_nlink));
  mkdir(P("l/s1").c_str(), 0755);
  mkdir(P("l/s2").c_str(), 0755);
  check("nlink: a directory gains one per subdirectory", st_of(P("l")).st_nlink == 4);
  rmdir(P("l/s1").c_str());
  check("nlink: and loses one per removed subdirectory", st_of(P("l")).st_nlink == 3);

  // truncate
  int fd = open(P("l/t").c_str(), O_RDWR | O_CREAT, 0644);
  std::string data(10000, 'D');
  if (write(fd, data.data(), data.size()) != 10000) record(false, "truncate: setup write", errname(errno));
  expect_ok("truncate: shrink with ftruncate", ftruncate(fd, 3000));
  check("truncate: size after a shrink", st_of(P("l/t")).st_size == 3000);
  expect_ok("truncate: extend with ftruncate", ftruncate(fd, 20000));
  std::string after = read_fd_at(fd, 0, 20000);
  check("truncate: shrink then extend reads the old prefix then zeros",
        after.size() == 20000 && after.substr(0, 3000) == std::string(3000, 'D') && zeros(after.substr(3000)));
  expect_ok("truncate: truncate(2) by path to 0", truncate(P("l/t").c_str(), 0));
  check("truncate: size 0 and nothing to read", st_of(P("l/t")).st_size == 0 && read_fd_at(fd, 0, 10).empty());
  expect_ok("truncate: extend an empty file to 1 MiB", ftruncate(fd, 1 << 20));
  std::string big = read_fd_at(fd, 0, 1 << 20);
  check("truncate: the extension reads as zeros", big.size() == (1u << 20) && zeros(big));
  close(fd);
  write_file(P("l/otrunc"), "longer content");
  fd = open(P("l/otrunc").c_str(), O_WRONLY | O_TRUNC);
  off_t open_size = st_of(P("l/otrunc")).st_size;
  if (fd >= 0) close(fd);
  off_t closed_size = st_of(P("l/otrunc")).st_size;
  check("O_TRUNC: opening truncates to 0", fd >= 0 && open_size == 0 && closed_size == 0,
        "size " + std::to_string(open_size) + " while open, " + std::to_string(closed_size) + " after close");
  expect_errno("EISDIR: truncate(2) of a directory", truncate(P("l/s2").c_str(), 0), EISDIR);
  fd = open(P("l/otrunc").c_str(), O_WRONLY);
  expect_errno("EINVAL: ftruncate to a negative length", ftruncate(fd, -1), EINVAL);
  if (fd >= 0) close(fd);

  // O_APPEND
  write_file(P("l/app"), "start-");
  fd = open(P("l/app").c_str(), O_WRONLY | O_APPEND);
  lseek(fd, 0, SEEK_SET);
  ssize_t w1 = write(fd, "one-", 4);
  lseek(fd, 2, SEEK_SET);
  ssize_t w2 = write(fd, "two", 3);
  check("O_APPEND: writes go to the end whatever the offset", w1 == 4 && w2 == 3 && read_file(P("l/app")) == "start-one-two",
        "read " + read_file(P("l/app")));
  check("O_APPEND: the offset is at the end after a write", lseek(fd, 0, SEEK_CUR) == 13);
  close(fd);
  int fa = open(P("l/app").c_str(), O_WRONLY | O_APPEND), fb = open(P("l/app").c_str(), O_WRONLY | O_APPEND);
  bool ok = true;
  for (int i = 0; i < 50; ++i) {
    ok &= write(fa, "A", 1) == 1;
    ok &= write(fb, "B", 1) == 1;
  }
  close(fa);
  close(fb);
  std::string app = read_file(P("l/app"));
  check("O_APPEND: two descriptors interleave without overwriting", ok && app.size() == 113 &&
        std::count(app.begin(), app.end(), 'A') == 50 && std::count(app.begin(), app.end(), 'B') == 50);
}

void test_sparse_and_large() {
  mkdir(P("s").c_str(), 0755);
  int fd = open(P("s/sparse").c_str(), O_RDWR | O_CREAT, 0644);
  const off_t far = 10 << 20;
  ssize_t w = pwrite(fd, "Z", 1, far);
  check("sparse: a write 10 MiB in extends the size", w == 1 && st_of(P("s/sparse")).st_size == far + 1);
  struct stat st {};
  fstat(fd, &st);
  check("sparse: the hole takes no blocks", st.st_blocks * 512 < (1 << 20), std::to_string(st.st_blocks) + " blocks of 512 B");
  check("sparse: reading the hole gives zeros", zeros(read_fd_at(fd, 4 << 20, 65536)) && read_fd_at(fd, 4 << 20, 65536).size() == 65536);
  check("sparse: the byte after the hole reads back", read_fd_at(fd, far - 2, 10) == std::string("\0\0Z", 3));
  pwrite(fd, "head", 4, 0);
  pwrite(fd, "mid", 3, 400 * 1024);
  std::string gap = read_fd_at(fd, 4, 400 * 1024 - 4);
  check("sparse: a hole between two written blocks reads as zeros", gap.size() == 400 * 1024 - 4 && zeros(gap));
  check("sparse: read at EOF returns 0 bytes", read_fd_at(fd, far + 1, 10).empty());
  close(fd);

  // Far offsets reach the double/triple indirect blocks of ext3.
  fd = open(P("s/large").c_str(), O_RDWR | O_CREAT, 0644);
  const off_t g3 = 3LL << 30;
  std::string pat = "three-gib-marker";
  w = pwrite(fd, pat.data(), pat.size(), g3);
  check("large: a write at 3 GiB", w == static_cast<ssize_t>(pat.size()), "wrote " + std::to_string(w) + " " + errname(errno));
  check("large: reads back at 3 GiB", read_fd_at(fd, g3, pat.size()) == pat);
  fstat(fd, &st);
  check("large: size is 3 GiB + 16", st.st_size == g3 + static_cast<off_t>(pat.size()));
  check("large: the file stays sparse", st.st_blocks * 512 < (4 << 20), std::to_string(st.st_blocks) + " blocks of 512 B");
  close(fd);

  // A multi-block write with unaligned edges, then overwrite in the middle.
  std::string body;
  for (int i = 0; i < 100000; ++i) body.push_back(static_cast<char>('a' + (i * 7) % 26));
  write_file(P("s/body"), body);
  fd = open(P("s/body").c_str(), O_RDWR);
  pwrite(fd, "OVERWRITE", 9, 4093);
  close(fd);
  body.replace(4093, 9, "OVERWRITE");
  check("data: an unaligned overwrite across a block boundary", read_file(P("s/body")) == body);
}

void test_symlinks_and_special() {
  mkdir(P("y").c_str(), 0755);
  write_file(P("y/real"), "real content");
  std::string shortt = "real", longt(500, 'L');
  expect_ok("symlink: short target", symlink(shortt.c_str(), P("y/short").c_str()));
  expect_ok("symlink: 500-byte target", symlink(longt.c_str(), P("y/long").c_str()));
  char buf[1024];
  ssize_t n = readlink(P("y/short").c_str(), buf, sizeof buf);
  check("readlink: short target", n == static_cast<ssize_t>(shortt.size()) && std::string(buf, n) == shortt);
  n = readlink(P("y/long").c_str(), buf, sizeof buf);
  check("readlink: 500-byte target", n == 500 && std::string(buf, n) == longt);
  n = readlink(P("y/long").c_str(), buf, 10);
  check("readlink: a short buffer gets a truncated target", n == 10 && std::string(buf, 10) == longt.substr(0, 10));
  struct stat st = st_of(P("y/long"));
  check("symlink: lstat says a link of the target's length", S_ISLNK(st.st_mode) && st.st_size == 500);
  check("symlink: open follows it", read_file(P("y/short")) == "real content");
  check("symlink: stat follows it", st_of(P("y/short"), true).st_ino == st_of(P("y/real")).st_ino);
  expect_errno("EINVAL: readlink of a regular file", readlink(P("y/real").c_str(), buf, sizeof buf), EINVAL);
  mkdir(P("y/d").c_str(), 0755);
  write_file(P("y/d/inside"), "via dir link");
  symlink("d", P("y/dlink").c_str());
  check("symlink: a link to a directory works as a path component", read_file(P("y/dlink/inside")) == "via dir link");
  expect_errno("ENOTDIR: rmdir of a symlink to a directory", rmdir(P("y/dlink").c_str()), ENOTDIR);
  expect_ok("symlink: unlink removes the link, not the target", unlink(P("y/dlink").c_str()));
  check("symlink: the target survives", read_file(P("y/d/inside")) == "via dir link");

  expect_ok("mkfifo: creates", mkfifo(P("y/fifo").c_str(), 0644));
  check("mkfifo: stat says FIFO", S_ISFIFO(st_of(P("y/fifo")).st_mode));
  int rfd = open(P("y/fifo").c_str(), O_RDONLY | O_NONBLOCK);
  int wfd = rfd >= 0 ? open(P("y/fifo").c_str(), O_WRONLY | O_NONBLOCK) : -1;
  bool piped = false;
  if (rfd >= 0 && wfd >= 0 && write(wfd, "pipe", 4) == 4) {
    char pb[8];
    piped = read(rfd, pb, sizeof pb) == 4 && std::string(pb, 4) == "pipe";
  }
  check("mkfifo: data passes through the fifo", piped);
  if (rfd >= 0) close(rfd);
  if (wfd >= 0) close(wfd);
  check("mkfifo: the fifo stores no data", st_of(P("y/fifo")).st_size == 0);
  if (g_root) {
    expect_ok("mknod: a character device", mknod(P("y/chr").c_str(), S_IFCHR | 0600, makedev(1, 3)));
    st = st_of(P("y/chr"));
    check("mknod: type and device number", S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
    expect_ok("mknod: a block device with a large minor", mknod(P("y/blk").c_str(), S_IFBLK | 0600, makedev(8, 300)));
    st = st_of(P("y/blk"));
    check("mknod: block device number", S_ISBLK(st.st_mode) && major(st.st_rdev) == 8 && minor(st.st_rdev) == 300);
  } else {
    skip("mknod: device nodes", "needs root");
  }
  expect_ok("mknod: a socket node", mknod(P("y/sock").c_str(), S_IFSOCK | 0644, 0));
  check("mknod: stat says socket", S_ISSOCK(st_of(P("y/sock")).st_mode));

  // readdir: every name and d_type
  std::vector<std::pair<std::string, unsigned char>> types;
  auto names = list_dir(P("y"), &types);
  bool typed = true;
  for (auto& [name, t] : types) {
    if (t == DT_UNKNOWN) continue;  // allowed by POSIX: the caller must stat
    mode_t m = st_of(P("y/" + name)).st_mode;
    if (name == "." || name == "..") m = S_IFDIR;
    typed &= (t == DT_REG && S_ISREG(m)) || (t == DT_DIR && S_ISDIR(m)) || (t == DT_LNK && S_ISLNK(m)) ||
             (t == DT_FIFO && S_ISFIFO(m)) || (t == DT_CHR && S_ISCHR(m)) || (t == DT_BLK && S_ISBLK(m)) ||
             (t == DT_SOCK && S_ISSOCK(m));
  }
  std::set<std::string> want = {".", "..", "real", "short", "long", "d", "fifo", "sock"};
  if (g_root) want.insert({"chr", "blk"});
  check("readdir: exactly the created names plus . and ..", names == want, std::to_string(names.size()) + " names");
  check("readdir: d_type agrees with stat", typed);

  // a directory of many entries (several blocks, an htree on ext3)
  mkdir(P("y/big").c_str(), 0755);
  bool ok = true;
  for (int i = 0; i < 600; ++i) ok &= write_file(P("y/big/entry-with-a-longer-name-" + std::to_string(i)), "");
  auto bignames = list_dir(P("y/big"));
  check("readdir: 600 entries all listed once", ok && bignames.size() == 602, std::to_string(bignames.size()) + " names");
  for (int i = 0; i < 600; i += 2) ok &= unlink(P("y/big/entry-with-a-longer-name-" + std::to_string(i)).c_str()) == 0;
  bignames = list_dir(P("y/big"));
  bool right = bignames.size() == 302;
  for (int i = 1; i < 600; i += 2) right &= bignames.count("entry-with-a-longer-name-" + std::to_string(i)) == 1;
  check("readdir: after unlinking every other entry exactly the rest is listed", ok && right);
}

void test_xattrs() {
  mkdir(P("x").c_str(), 0755);
  std::string f = P("x/f");
  write_file(f, "x");
  expect_ok("xattr: setxattr user.a", setxattr(f.c_str(), "user.a", "value-a", 7, 0));
  char buf[4096];
  ssize_t n = getxattr(f.c_str(), "user.a", buf, sizeof buf);
  check("xattr: getxattr returns the value", n == 7 && std::string(buf, n) == "value-a", n < 0 ? errname(errno) : std::string(buf, std::max<ssize_t>(n, 0)));
  check("xattr: a size query returns the length", getxattr(f.c_str(), "user.a", nullptr, 0) == 7);
  expect_errno("ERANGE: getxattr into a too small buffer", getxattr(f.c_str(), "user.a", buf, 3), ERANGE);
  setxattr(f.c_str(), "user.b", "", 0, 0);
  n = getxattr(f.c_str(), "user.b", buf, sizeof buf);
  check("xattr: an empty value", n == 0, n < 0 ? errname(errno) : std::to_string(n));
  std::string bigv(900, 'v');
  expect_ok("xattr: a 900-byte value", setxattr(f.c_str(), "user.big", bigv.data(), bigv.size(), 0));
  n = getxattr(f.c_str(), "user.big", buf, sizeof buf);
  check("xattr: the 900-byte value reads back", n == 900 && std::string(buf, n) == bigv);
  n = listxattr(f.c_str(), buf, sizeof buf);
  std::set<std::string> names;
  for (ssize_t i = 0; i < n;) {
    std::string s(buf + i);
    names.insert(s);
    i += static_cast<ssize_t>(s.size()) + 1;
  }
  check("xattr: listxattr lists user.a, user.b, user.big",
        names.count("user.a") && names.count("user.b") && names.count("user.big"), std::to_string(names.size()) + " names");
  expect_errno("EEXIST: setxattr XATTR_CREATE on an existing name", setxattr(f.c_str(), "user.a", "z", 1, XATTR_CREATE), EEXIST);
  expect_errno("ENODATA: setxattr XATTR_REPLACE on a missing name", setxattr(f.c_str(), "user.none", "z", 1, XATTR_REPLACE), ENODATA);
  expect_ok("xattr: XATTR_REPLACE on an existing name", setxattr(f.c_str(), "user.a", "replaced", 8, XATTR_REPLACE));
  n = getxattr(f.c_str(), "user.a", buf, sizeof buf);
  check("xattr: the replaced value reads back", n == 8 && std::string(buf, n) == "replaced");
  expect_errno("ENODATA: getxattr of a missing name", getxattr(f.c_str(), "user.none", buf, sizeof buf), ENODATA);
  expect_ok("xattr: removexattr", removexattr(f.c_str(), "user.a"));
  expect_errno("ENODATA: getxattr after removexattr", getxattr(f.c_str(), "user.a", buf, sizeof buf), ENODATA);
  expect_errno("ENODATA: removexattr of a missing name", removexattr(f.c_str(), "user.a"), ENODATA);
  check("xattr: the other names are untouched", getxattr(f.c_str(), "user.big", buf, sizeof buf) == 900);
  expect_ok("xattr: on a directory", setxattr(P("x").c_str(), "user.dir", "d", 1, 0));
  check("xattr: the directory's value reads back", getxattr(P("x").c_str(), "user.dir", buf, sizeof buf) == 1);
  int fd = open(f.c_str(), O_RDONLY);
  expect_ok("xattr: fsetxattr through an fd", fsetxattr(fd, "user.fd", "viafd", 5, 0));
  check("xattr: fgetxattr through an fd", fgetxattr(fd, "user.fd", buf, sizeof buf) == 5);
  close(fd);
}

void test_unlinked_open() {
  mkdir(P("u").c_str(), 0755);
  int fd = open(P("u/f").c_str(), O_RDWR | O_CREAT, 0644);
  std::string first(5000, 'u');
  bool ok = write(fd, first.data(), first.size()) == 5000;
  expect_ok("unlinked open: unlink while open", unlink(P("u/f").c_str()));
  check("unlinked open: the name is gone", !exists(P("u/f")));
  struct stat st {};
  fstat(fd, &st);
  check("unlinked open: fstat says nlink 0", st.st_nlink == 0, "nlink " + std::to_string(st.st_nlink));
  check("unlinked open: still readable", ok && read_fd_at(fd, 0, 6000) == first);
  ssize_t w = pwrite(fd, "more", 4, 5000);
  check("unlinked open: still writable", w == 4, w < 0 ? errname(errno) : std::to_string(w));
  check("unlinked open: the write reads back", read_fd_at(fd, 4998, 10) == "uumore");
  fstat(fd, &st);
  check("unlinked open: fstat size follows the writes", st.st_size == 5004);
  expect_ok("unlinked open: ftruncate", ftruncate(fd, 100));
  check("unlinked open: truncated content", read_fd_at(fd, 0, 200) == std::string(100, 'u'));
  expect_ok("unlinked open: fsync", fsync(fd));
  expect_ok("unlinked open: the directory can be removed meanwhile", rmdir(P("u").c_str()));
  check("unlinked open: still readable after its directory is gone", read_fd_at(fd, 0, 10) == std::string(10, 'u'));
  expect_ok("unlinked open: close", close(fd));
  mkdir(P("u").c_str(), 0755);
}

void test_times() {
  mkdir(P("t").c_str(), 0755);
  std::string f = P("t/f");
  write_file(f, "t");
  // explicit times
  struct timespec ts[2] = {{1234567890, 0}, {1234567891, 0}};
  expect_ok("utimensat: explicit atime and mtime", utimensat(AT_FDCWD, f.c_str(), ts, 0));
  struct stat st = st_of(f);
  check("utimensat: both read back exactly", st.st_atim.tv_sec == 1234567890 && st.st_mtim.tv_sec == 1234567891,
        "atime " + tstr(st.st_atim.tv_sec) + " mtime " + tstr(st.st_mtim.tv_sec));
  struct timespec omit[2] = {{0, UTIME_OMIT}, {1500000000, 0}};
  utimensat(AT_FDCWD, f.c_str(), omit, 0);
  st = st_of(f);
  check("utimensat: UTIME_OMIT leaves atime alone", st.st_atim.tv_sec == 1234567890 && st.st_mtim.tv_sec == 1500000000);
  struct timespec now[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
  utimensat(AT_FDCWD, f.c_str(), now, 0);
  st = st_of(f);
  check("utimensat: UTIME_NOW sets the current time", is_recent(st.st_atim.tv_sec) && is_recent(st.st_mtim.tv_sec),
        "atime " + tstr(st.st_atim.tv_sec) + " mtime " + tstr(st.st_mtim.tv_sec));
  symlink("f", P("t/lnk").c_str());
  struct timespec lts[2] = {{1100000000, 0}, {1100000000, 0}};
  expect_ok("utimensat: AT_SYMLINK_NOFOLLOW on a symlink", utimensat(AT_FDCWD, P("t/lnk").c_str(), lts, AT_SYMLINK_NOFOLLOW));
  check("utimensat: the link's time changed, not the target's",
        st_of(P("t/lnk")).st_mtim.tv_sec == 1100000000 && st_of(f).st_mtim.tv_sec != 1100000000);

  // mtime on write and truncate
  set_past(f);
  int fd = open(f.c_str(), O_WRONLY);
  write(fd, "more", 4);
  close(fd);
  st = st_of(f);
  check("times: write updates mtime", is_recent(st.st_mtim.tv_sec), "mtime " + tstr(st.st_mtim.tv_sec));
  set_past(f);
  truncate(f.c_str(), 1);
  check("times: truncate updates mtime", is_recent(st_of(f).st_mtim.tv_sec));
  set_past(f);
  fd = open(f.c_str(), O_WRONLY | O_TRUNC);
  close(fd);
  check("times: O_TRUNC updates mtime", is_recent(st_of(f).st_mtim.tv_sec),
        "mtime " + tstr(st_of(f).st_mtim.tv_sec) + ", size " + std::to_string(st_of(f).st_size));

  // directory mtime on create, unlink, rename, mkdir, rmdir
  std::string d = P("t");
  set_past(d);
  write_file(P("t/new"), "n");
  check("times: create updates the directory's mtime", is_recent(st_of(d).st_mtim.tv_sec));
  set_past(d);
  unlink(P("t/new").c_str());
  check("times: unlink updates the directory's mtime", is_recent(st_of(d).st_mtim.tv_sec));
  set_past(d);
  mkdir(P("t/sub").c_str(), 0755);
  check("times: mkdir updates the directory's mtime", is_recent(st_of(d).st_mtim.tv_sec));
  set_past(d);
  rmdir(P("t/sub").c_str());
  check("times: rmdir updates the directory's mtime", is_recent(st_of(d).st_mtim.tv_sec));
  mkdir(P("t/other").c_str(), 0755);
  write_file(P("t/mv"), "mv");
  set_past(d);
  set_past(P("t/other"));
  rename(P("t/mv").c_str(), P("t/other/mv").c_str());
  check("times: rename updates both directories' mtime",
        is_recent(st_of(d).st_mtim.tv_sec) && is_recent(st_of(P("t/other")).st_mtim.tv_sec));
  set_past(d);
  link(f.c_str(), P("t/f2").c_str());
  check("times: link updates the directory's mtime", is_recent(st_of(d).st_mtim.tv_sec));

  // ctime: cannot be set, so one wait into the next second for the batch
  write_file(P("t/c_chmod"), "c");
  write_file(P("t/c_link"), "c");
  write_file(P("t/c_write"), "c");
  write_file(P("t/c_utime"), "c");
  write_file(P("t/c_xattr"), "c");
  write_file(P("t/c_unlink"), "c");
  link(P("t/c_unlink").c_str(), P("t/c_unlink2").c_str());
  write_file(P("t/c_rename"), "c");
  time_t before = 0;
  for (const char* n : {"c_chmod", "c_link", "c_write", "c_utime", "c_xattr", "c_unlink", "c_rename"})
    before = std::max(before, st_of(P(std::string("t/") + n)).st_ctim.tv_sec);
  wait_past_second(before);
  chmod(P("t/c_chmod").c_str(), 0600);
  link(P("t/c_link").c_str(), P("t/c_link2").c_str());
  fd = open(P("t/c_write").c_str(), O_WRONLY);
  write(fd, "w", 1);
  close(fd);
  struct timespec u[2] = {{1200000000, 0}, {1200000000, 0}};
  utimensat(AT_FDCWD, P("t/c_utime").c_str(), u, 0);
  setxattr(P("t/c_xattr").c_str(), "user.c", "c", 1, 0);
  unlink(P("t/c_unlink2").c_str());
  rename(P("t/c_rename").c_str(), P("t/c_renamed").c_str());
  auto later = [&](const std::string& n) { return st_of(P("t/" + n)).st_ctim.tv_sec > before; };
  check("times: chmod updates ctime", later("c_chmod"));
  check("times: link updates the file's ctime", later("c_link"));
  check("times: write updates ctime", later("c_write"));
  check("times: utimensat updates ctime", later("c_utime"));
  check("times: setxattr updates ctime", later("c_xattr"));
  check("times: unlink of a second name updates the file's ctime", later("c_unlink"));
  check("times: rename updates the renamed file's ctime", later("c_renamed"));
}

void test_ownership_and_modes() {
  mkdir(P("o").c_str(), 0755);
  umask(022);
  write_file(P("o/f"), "", 0666);
  check("umask: create 0666 under umask 022 gives 0644", (st_of(P("o/f")).st_mode & 07777) == 0644,
        mode_str(st_of(P("o/f")).st_mode & 07777));
  mkdir(P("o/d").c_str(), 0777);
  check("umask: mkdir 0777 under umask 022 gives 0755", (st_of(P("o/d")).st_mode & 07777) == 0755);
  expect_ok("chmod: to 0640", chmod(P("o/f").c_str(), 0640));
  check("chmod: reads back", (st_of(P("o/f")).st_mode & 07777) == 0640);
  if (g_root) {
    expect_ok("chown: to 1000:1001", chown(P("o/f").c_str(), 1000, 1001));
    struct stat st = st_of(P("o/f"));
    check("chown: reads back", st.st_uid == 1000 && st.st_gid == 1001);
    chown(P("o/f").c_str(), -1, 2002);
    st = st_of(P("o/f"));
    check("chown: -1 keeps the owner", st.st_uid == 1000 && st.st_gid == 2002);
    lchown(P("o/f").c_str(), 70000, 70000);
    st = st_of(P("o/f"));
    check("chown: ids above 65535", st.st_uid == 70000 && st.st_gid == 70000, std::to_string(st.st_uid));
    chmod(P("o/f").c_str(), 06755);
    chown(P("o/f").c_str(), 1000, 1000);
    check("chown: clears set-user-ID and set-group-ID of an executable", (st_of(P("o/f")).st_mode & 06000) == 0,
          mode_str(st_of(P("o/f")).st_mode & 07777));

    // setgid directory
    mkdir(P("o/sg").c_str(), 0775);
    chown(P("o/sg").c_str(), 0, 4321);
    chmod(P("o/sg").c_str(), 02775);
    write_file(P("o/sg/file"), "");
    mkdir(P("o/sg/sub").c_str(), 0755);
    st = st_of(P("o/sg/file"));
    check("setgid dir: a new file inherits the directory's group", st.st_gid == 4321, "gid " + std::to_string(st.st_gid));
    st = st_of(P("o/sg/sub"));
    check("setgid dir: a new subdirectory inherits the group", st.st_gid == 4321, "gid " + std::to_string(st.st_gid));
    check("setgid dir: a new subdirectory inherits the set-group-ID bit", (st.st_mode & S_ISGID) != 0, mode_str(st.st_mode & 07777));
    mkfifo(P("o/sg/fifo").c_str(), 0644);
    check("setgid dir: a new fifo inherits the group", st_of(P("o/sg/fifo")).st_gid == 4321);
    chmod(P("o/sg").c_str(), 02777);
  } else {
    skip("chown and setgid directories", "needs root");
  }
}

void test_as_unprivileged() {
  // The material, prepared as root.
  mkdir(P("p").c_str(), 0755);
  write_file(P("p/secret"), "secret", 0600);
  write_file(P("p/public"), "public", 0644);
  write_file(P("p/shared"), "shared", 0666);
  mkdir(P("p/closed").c_str(), 0700);
  write_file(P("p/closed/inner"), "inner", 0644);
  mkdir(P("p/searchonly").c_str(), 0711);
  write_file(P("p/searchonly/known"), "known", 0644);
  mkdir(P("p/open").c_str(), 0777);
  mkdir(P("p/sticky").c_str(), 01777);
  write_file(P("p/sticky/roots"), "root's", 0666);
  write_file(P("p/sticky/others"), "other's", 0666);
  write_file(P("p/suid"), "suid", 06777);
  // The umask (022) took the group/other write bits: set the modes meant.
  chmod(P("p/shared").c_str(), 0666);
  chmod(P("p/open").c_str(), 0777);
  chmod(P("p/sticky").c_str(), 01777);
  chmod(P("p/sticky/roots").c_str(), 0666);
  chmod(P("p/sticky/others").c_str(), 0666);
  chmod(P("p/suid").c_str(), 06777);
  if (g_root) chown(P("p/sticky/others").c_str(), g_uid + 1, g_gid + 1);

  bool ran = as_user("permissions as an unprivileged uid", [] {
    expect_open_errno("EACCES: read a 0600 file of another user", open(P("p/secret").c_str(), O_RDONLY), EACCES);
    expect_open_errno("EACCES: write a 0600 file of another user", open(P("p/secret").c_str(), O_WRONLY), EACCES);
    check("permissions: read a 0644 file of another user", read_file(P("p/public")) == "public", read_file(P("p/public")));
    expect_open_errno("EACCES: write a 0644 file of another user", open(P("p/public").c_str(), O_WRONLY), EACCES);
    expect_errno("EACCES: truncate a 0644 file of another user", truncate(P("p/public").c_str(), 0), EACCES);
    int fd = open(P("p/shared").c_str(), O_WRONLY);
    check("permissions: write a 0666 file of another user", fd >= 0 && write(fd, "S", 1) == 1, errname(errno));
    if (fd >= 0) close(fd);
    struct stat st;
    expect_errno("EACCES: search a 0700 directory of another user", stat(P("p/closed/inner").c_str(), &st), EACCES);
    expect_open_errno("EACCES: list a 0700 directory of another user", open(P("p/closed").c_str(), O_RDONLY | O_DIRECTORY), EACCES);
    expect_open_errno("EACCES: list a 0711 directory", open(P("p/searchonly").c_str(), O_RDONLY | O_DIRECTORY), EACCES);
    check("permissions: a known name in a 0711 directory is reachable", read_file(P("p/searchonly/known")) == "known");
    expect_open_errno("EACCES: create in a 0755 directory of another user",
                      open(P("p/new").c_str(), O_CREAT | O_WRONLY, 0644), EACCES);
    expect_errno("EACCES: unlink in a 0755 directory of another user", unlink(P("p/public").c_str()), EACCES);
    expect_errno("EACCES: mkdir in a 0755 directory of another user", mkdir(P("p/newdir").c_str(), 0755), EACCES);
    expect_errno("EPERM: chmod of another user's file", chmod(P("p/public").c_str(), 0777), EPERM);
    expect_errno("EPERM: chown of another user's file", chown(P("p/public").c_str(), getuid(), -1), EPERM);
    struct timespec t[2] = {{1300000000, 0}, {1300000000, 0}};
    expect_errno("EPERM: explicit utimensat on another user's file", utimensat(AT_FDCWD, P("p/shared").c_str(), t, 0), EPERM);
    expect_ok("permissions: utimensat to now on a writable file of another user",
              utimensat(AT_FDCWD, P("p/shared").c_str(), nullptr, 0));
    expect_errno("EACCES: utimensat to now on a read-only file of another user",
                 utimensat(AT_FDCWD, P("p/public").c_str(), nullptr, 0), EACCES);
    expect_errno("EACCES: setxattr on another user's 0644 file", setxattr(P("p/public").c_str(), "user.x", "x", 1, 0), EACCES);

    fd = open(P("p/open/mine").c_str(), O_CREAT | O_WRONLY, 0600);
    check("permissions: create in a 0777 directory", fd >= 0, errname(errno));
    if (fd >= 0) close(fd);
    st = st_of(P("p/open/mine"));
    check("permissions: the new file belongs to the creator", st.st_uid == getuid() && st.st_gid == getgid(),
          "uid " + std::to_string(st.st_uid) + " gid " + std::to_string(st.st_gid));
    expect_ok("permissions: chmod of one's own file", chmod(P("p/open/mine").c_str(), 0644));

    // sticky directory
    check("sticky: another user's 0666 file can be written", [] {
      int f = open(P("p/sticky/roots").c_str(), O_WRONLY);
      bool ok = f >= 0 && write(f, "W", 1) == 1;
      if (f >= 0) close(f);
      return ok;
    }());
    expect_errno("EPERM: sticky: unlink of root's file", unlink(P("p/sticky/roots").c_str()), EPERM);
    expect_errno("EPERM: sticky: unlink of a third user's file", unlink(P("p/sticky/others").c_str()), EPERM);
    expect_errno("EPERM: sticky: rename of another user's file", rename(P("p/sticky/roots").c_str(), P("p/sticky/moved").c_str()), EPERM);
    check("sticky: the others' files are still there", exists(P("p/sticky/roots")) && exists(P("p/sticky/others")));
    bool made = write_file(P("p/sticky/own"), "own");
    check("sticky: a user creates its own file", made, errname(errno));
    expect_ok("sticky: a user unlinks its own file", unlink(P("p/sticky/own").c_str()));

    // a write by a non-owner clears set-user-ID / set-group-ID
    fd = open(P("p/suid").c_str(), O_WRONLY);
    bool wrote = fd >= 0 && write(fd, "X", 1) == 1;
    if (fd >= 0) close(fd);
    st = st_of(P("p/suid"));
    check("permissions: a write by another user clears set-user-ID and set-group-ID", wrote && (st.st_mode & 06000) == 0,
          mode_str(st.st_mode & 07777));

    // setgid directory, creator not in the group
    if (exists(P("o/sg"))) {
      int f = open(P("o/sg/nonmember").c_str(), O_CREAT | O_WRONLY, 02755);
      check("setgid dir: a non-member can create (0777 dir)", f >= 0, errname(errno));
      if (f >= 0) close(f);
      st = st_of(P("o/sg/nonmember"));
      check("setgid dir: a non-member's new file gets the directory's group", st.st_gid == 4321, "gid " + std::to_string(st.st_gid));
      check("setgid dir: a non-member's new file loses the set-group-ID bit", (st.st_mode & S_ISGID) == 0, mode_str(st.st_mode & 07777));
    }
  });
  if (ran)
    check("sticky: root's file still has its content plus the user's write", read_file(P("p/sticky/roots")) == "Woot's",
          read_file(P("p/sticky/roots")));
}

void test_sync_and_statfs() {
  mkdir(P("z").c_str(), 0755);
  int fd = open(P("z/f").c_str(), O_RDWR | O_CREAT, 0644);
  struct statfs before {};
  statfs(P("z").c_str(), &before);
  std::string mb(1 << 20, 'M');
  bool ok = write(fd, mb.data(), mb.size()) == static_cast<ssize_t>(mb.size()) &&
            write(fd, mb.data(), mb.size()) == static_cast<ssize_t>(mb.size());
  expect_ok("fsync: a file returns 0", fsync(fd));
  expect_ok("fdatasync: a file returns 0", fdatasync(fd));
  int dfd = open(P("z").c_str(), O_RDONLY | O_DIRECTORY);
  expect_ok("fsync: a directory (fsyncdir) returns 0", fsync(dfd));
  expect_ok("syncfs: returns 0", syncfs(dfd));
  close(dfd);
  struct statfs after {};
  expect_ok("statfs: returns 0", statfs(P("z").c_str(), &after));
  check("statfs: block size and counts are sane",
        after.f_bsize >= 512 && after.f_blocks > 0 && after.f_bfree <= after.f_blocks && after.f_bavail <= after.f_bfree,
        "bsize " + std::to_string(after.f_bsize) + " blocks " + std::to_string(after.f_blocks) + " bfree " +
            std::to_string(after.f_bfree) + " bavail " + std::to_string(after.f_bavail));
  check("statfs: inode counts are sane", after.f_files > 0 && after.f_ffree <= after.f_files && after.f_ffree > 0);
  check("statfs: name length 255", after.f_namelen == 255, std::to_string(after.f_namelen));
  uint64_t used = (before.f_bfree - after.f_bfree) * static_cast<uint64_t>(after.f_bsize);
  check("statfs: free space drops by at least the 2 MiB written", ok && after.f_bfree < before.f_bfree && used >= (2u << 20),
        "dropped " + std::to_string(static_cast<long long>(before.f_bfree) - static_cast<long long>(after.f_bfree)) + " blocks");
  struct stat st {};
  fstat(fd, &st);
  check("stat: st_blocks covers the 2 MiB written", st.st_blocks * 512 >= (2 << 20), std::to_string(st.st_blocks));
  check("stat: st_blksize is sane", st.st_blksize >= 512, std::to_string(st.st_blksize));
  close(fd);
}

int usage() {
  std::fprintf(stderr, "usage: cext3-posix-suite DIR [--as-uid N] [--as-gid N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--as-uid" || a == "--as-gid") && i + 1 < argc) {
      long v = std::strtol(argv[++i], nullptr, 10);
      if (v <= 0) return usage();
      (a == "--as-uid" ? g_uid : g_gid) = static_cast<unsigned>(v);
    } else if (dir.empty() && a[0] != '-') {
      dir = a;
    } else {
      return usage();
    }
  }
  if (dir.empty()) return usage();
  g_root = geteuid() == 0;
  if (char* r = realpath(dir.c_str(), nullptr)) {
    g_dir_real = r;
    free(r);
  }
  umask(022);
  g_base = dir + "/posix-suite." + std::to_string(getpid());
  if (mkdir(g_base.c_str(), 0755) != 0) {
    std::fprintf(stderr, "cext3-posix-suite: cannot make %s: %s; give a writable directory\n", g_base.c_str(), std::strerror(errno));
    return 2;
  }
  std::printf("cext3-posix-suite in %s (%s, unprivileged checks as uid %u gid %u)\n", g_base.c_str(),
              g_root ? "root" : "not root", g_uid, g_gid);

  test_errnos();
  test_names();
  test_renames();
  test_links_and_truncate();
  test_sparse_and_large();
  test_symlinks_and_special();
  test_xattrs();
  test_unlinked_open();
  test_times();
  test_ownership_and_modes();
  test_as_unprivileged();
  test_sync_and_statfs();

  std::string why;
  check("cleanup: the suite's tree removes completely", remove_tree(g_base, why), why);
  std::printf("cext3-posix-suite: %d checks, %d passed, %d failed, %d skipped\n", g_results.passed + g_results.failed,
              g_results.passed, g_results.failed, g_results.skipped);
  return g_results.failed ? 1 : 0;
}
