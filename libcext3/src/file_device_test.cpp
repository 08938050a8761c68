#include "cext3/file_device.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "backend_suite.h"

using namespace cext3;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kImageSize = 16u << 20;

// A fresh directory under $CEXT3_SCRATCH, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() {
    const char* env = std::getenv("CEXT3_SCRATCH");
    fs::path root = env && *env ? fs::path(env) : fs::temp_directory_path();
    fs::create_directories(root);
    std::string tmpl = (root / "file_device.XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A zero-filled sparse image file of the given size.
std::string make_image(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  ::close(fd);
  return path;
}

std::unique_ptr<BlockDevice> open_ok(const std::string& path, OpenOptions opts = {}) {
  auto r = open_file_device(path, opts);
  INFO("open " << path << ": " << r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

const FileDevice& as_file(const BlockDevice& d) {
  auto* f = dynamic_cast<const FileDevice*>(&d);
  REQUIRE(f != nullptr);
  return *f;
}

// Bytes of a file read with plain pread on a separate descriptor, through
// the page cache: what any other program would see.
std::vector<uint8_t> pread_file(const std::string& path, uint64_t offset, size_t len) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> v(len);
  REQUIRE(::pread(fd, v.data(), len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len));
  ::close(fd);
  return v;
}

// Run a shell command; its output goes to the test log only on failure.
int run(const std::string& cmd, std::string* out = nullptr) {
  std::string full = cmd + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) text.append(buf, n);
  int st = ::pclose(p);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A loop device over a file, always detached at the end.
class LoopDevice {
 public:
  LoopDevice(const std::string& file, unsigned sector_size) {
    std::string out;
    int rc = run("losetup --find --show --sector-size " + std::to_string(sector_size) + " '" + file + "'", &out);
    if (rc == 0 && out.rfind("/dev/", 0) == 0) {
      dev_ = out;
    } else {
      why_not_ = "losetup not permitted or failed (" + out + ")";
    }
  }
  ~LoopDevice() {
    if (!dev_.empty()) run("losetup -d " + dev_);
  }
  bool ok() const { return !dev_.empty(); }
  const std::string& dev() const { return dev_; }
  const std::string& why_not() const { return why_not_; }

 private:
  std::string dev_;
  std::string why_not_;
};

// A mount, always unmounted at the end.
class Mount {
 public:
  Mount(const std::string& what, const std::string& where, const std::string& type) : where_(where) {
    fs::create_directories(where);
    std::string out;
    std::string cmd = "mount " + (type.empty() ? std::string() : "-t " + type + " ") + "'" + what + "' '" + where + "'";
    if (run(cmd, &out) == 0) {
      mounted_ = true;
    } else {
      why_not_ = "mount not permitted or failed (" + out + ")";
    }
  }
  ~Mount() {
    if (mounted_) run("umount '" + where_ + "'");
  }
  bool ok() const { return mounted_; }
  const std::string& why_not() const { return why_not_; }

 private:
  std::string where_;
  bool mounted_ = false;
  std::string why_not_;
};

}  // namespace

TEST_CASE("file device passes the backend suite at queue depth 1 and 32", "[blockdev][file]") {
  ScratchDir dir;
  for (unsigned qd : {1u, 32u}) {
    INFO("queue depth " << qd);
    int n = 0;
    testing::run_backend_suite([&] {
      auto path = make_image(dir.file("suite" + std::to_string(qd) + "_" + std::to_string(n++) + ".img"), kImageSize);
      OpenOptions o;
      o.queue_depth = qd;
      auto dev = open_ok(path, o);
      const FileDevice& f = as_file(*dev);
      CHECK_FALSE(f.is_block_device());
      CHECK(f.queue_depth() == qd);
      CHECK(dev->size() == kImageSize);
      // Either direct, or buffered with a stated reason.
      CHECK(f.direct_io() == f.buffered_reason().empty());
      return dev;
    });
  }
}

TEST_CASE("file device writes land in the file and reads see the file", "[blockdev][file]") {
  ScratchDir dir;
  auto path = make_image(dir.file("data.img"), kImageSize);
  auto dev = open_ok(path);
  const uint32_t ss = dev->sector_size();

  // Aligned single write, unaligned single write, a 3 MiB write (split into
  // several in-flight pieces), and a batch mixing aligned and unaligned memory.
  AlignedBuffer a(8192);
  auto pa = testing::pattern(a.size(), 11);
  std::memcpy(a.data(), pa.data(), pa.size());
  REQUIRE(dev->write(0, a.data(), a.size()).ok());

  std::vector<uint8_t> raw(5 * ss + 3);
  auto pu = testing::pattern(5 * ss, 12);
  std::memcpy(raw.data() + 3, pu.data(), pu.size());
  REQUIRE(dev->write(64 * 1024, raw.data() + 3, pu.size()).ok());

  auto big = testing::pattern(3u << 20, 13);
  REQUIRE(dev->write(4u << 20, big.data(), big.size()).ok());

  std::vector<std::vector<uint8_t>> parts;
  std::vector<IoRequest> batch;
  for (int i = 0; i < 10; ++i) parts.push_back(testing::pattern(2 * ss + 1, 20 + i));
  for (int i = 0; i < 10; ++i) {
    // Offset the memory by i bytes: half the requests are bounced.
    batch.push_back({IoRequest::Op::kWrite, (9u << 20) + uint64_t(i) * 4 * ss, parts[i].data() + (i % 2), 2 * ss});
  }
  REQUIRE(dev->submit(batch).ok());
  REQUIRE(dev->flush().ok());

  CHECK(pread_file(path, 0, a.size()) == pa);
  CHECK(pread_file(path, 64 * 1024, pu.size()) == pu);
  CHECK(pread_file(path, 4u << 20, big.size()) == big);
  for (int i = 0; i < 10; ++i) {
    std::vector<uint8_t> want(parts[i].begin() + (i % 2), parts[i].begin() + (i % 2) + 2 * ss);
    CHECK(pread_file(path, (9u << 20) + uint64_t(i) * 4 * ss, 2 * ss) == want);
  }

  // The other direction: bytes another program wrote through the page cache
  // are what the device reads (O_DIRECT reads see dirty cached pages).
  auto other = testing::pattern(3 * ss, 14);
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::pwrite(fd, other.data(), other.size(), 12 << 20) == static_cast<ssize_t>(other.size()));
    ::close(fd);
  }
  std::vector<uint8_t> back(other.size() + 1);
  REQUIRE(dev->read(12u << 20, back.data() + 1, other.size()).ok());
  CHECK(std::equal(other.begin(), other.end(), back.begin() + 1));

  // A 3 MiB read into unaligned memory comes back whole.
  std::vector<uint8_t> bigback(big.size() + 7);
  REQUIRE(dev->read(4u << 20, bigback.data() + 7, big.size()).ok());
  CHECK(std::equal(big.begin(), big.end(), bigback.begin() + 7));
}

TEST_CASE("file device refuses bad paths and files with one clear line", "[blockdev][file]") {
  ScratchDir dir;

  SECTION("missing path") {
    auto r = open_file_device(dir.file("nope.img"), {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kNotFound);
    CHECK(r.status().errno_value() == ENOENT);
    CHECK(r.status().message().find(dir.file("nope.img")) != std::string::npos);
    CHECK(r.status().message().find('\n') == std::string::npos);
  }
  SECTION("directory") {
    auto r = open_file_device(dir.path().string(), {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().errno_value() == EISDIR);
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message().find("directory") != std::string::npos);
  }
  SECTION("size not a whole number of sectors") {
    auto path = make_image(dir.file("odd.img"), kImageSize + 100);
    auto r = open_file_device(path, {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message().find("not a multiple") != std::string::npos);
    CHECK(r.status().message().find(std::to_string(kImageSize + 100)) != std::string::npos);
  }
  SECTION("character device") {
    auto r = open_file_device("/dev/null", {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
    CHECK(r.status().message().find("character device") != std::string::npos);
  }
  SECTION("queue depth out of range") {
    auto path = make_image(dir.file("qd.img"), kImageSize);
    OpenOptions o;
    o.queue_depth = 0;
    auto r = open_file_device(path, o);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kInvalidArgument);
  }
  SECTION("read-only device refuses writes and leaves the file alone") {
    auto path = make_image(dir.file("ro.img"), kImageSize);
    auto marker = testing::pattern(4096, 5);
    {
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      REQUIRE(fd >= 0);
      REQUIRE(::pwrite(fd, marker.data(), marker.size(), 0) == 4096);
      ::close(fd);
    }
    ::chmod(path.c_str(), 0444);  // root ignores it; O_RDONLY is what matters
    OpenOptions o;
    o.read_only = true;
    auto dev = open_ok(path, o);
    CHECK(dev->read_only());
    std::vector<uint8_t> junk(4096, 0xEE);
    Status w = dev->write(0, junk.data(), junk.size());
    CHECK(w.code() == Status::Code::kNotSupported);
    CHECK(w.message().find("read-only") != std::string::npos);
    std::vector<IoRequest> batch = {{IoRequest::Op::kWrite, 0, junk.data(), 4096}};
    CHECK(dev->submit(batch).code() == Status::Code::kNotSupported);
    CHECK(dev->flush().ok());
    std::vector<uint8_t> back(4096);
    REQUIRE(dev->read(0, back.data(), back.size()).ok());
    CHECK(back == marker);
    CHECK(pread_file(path, 0, 4096) == marker);
  }
  SECTION("a batch with one bad request transfers nothing") {
    auto path = make_image(dir.file("batch.img"), kImageSize);
    auto dev = open_ok(path);
    auto good = testing::pattern(4096, 6);
    std::vector<IoRequest> batch = {{IoRequest::Op::kWrite, 0, good.data(), 4096},
                                    {IoRequest::Op::kWrite, kImageSize, good.data(), 4096}};
    Status s = dev->submit(batch);
    CHECK(s.code() == Status::Code::kInvalidArgument);
    CHECK(s.message().find("request 2 of 2") != std::string::npos);
    CHECK(pread_file(path, 0, 4096) == std::vector<uint8_t>(4096, 0));
  }
}

TEST_CASE("file device is safe to use from several threads at once", "[blockdev][file]") {
  ScratchDir dir;
  auto path = make_image(dir.file("threads.img"), kImageSize);
  OpenOptions o;
  o.queue_depth = 8;
  auto dev = open_ok(path, o);
  const uint32_t ss = dev->sector_size();

  // Each thread owns a 1 MiB region and fills it with its own pattern, in
  // writes of varying size, some single, some batched, some from unaligned
  // memory. 12 threads outnumber the device's contexts, so some must wait.
  constexpr uint64_t kRegion = 1u << 20;
  auto writer = [&](unsigned t, std::atomic<int>& failures) {
    auto data = testing::pattern(kRegion, 1000 + t);
    std::vector<uint8_t> unaligned(kRegion + 1);
    std::memcpy(unaligned.data() + 1, data.data(), kRegion);
    const uint64_t base = uint64_t(t) * kRegion;
    uint64_t pos = 0;
    unsigned step = 0;
    while (pos < kRegion) {
      const uint64_t len = std::min<uint64_t>(kRegion - pos, uint64_t(ss) * (1 + (step * 7) % 40));
      Status s;
      if (step % 3 == 0) {
        s = dev->write(base + pos, data.data() + pos, len);
      } else if (step % 3 == 1) {
        s = dev->write(base + pos, unaligned.data() + 1 + pos, len);
      } else {
        const uint64_t half = len / ss / 2 * ss;
        std::vector<IoRequest> b = {{IoRequest::Op::kWrite, base + pos, data.data() + pos, half},
                                    {IoRequest::Op::kWrite, base + pos + half, data.data() + pos + half, len - half}};
        s = dev->submit(b);
      }
      if (!s.ok()) ++failures;
      pos += len;
      ++step;
    }
    std::vector<uint8_t> back(kRegion);
    if (!dev->read(base, back.data(), kRegion).ok() || back != data) ++failures;
  };

  for (unsigned threads : {4u, 12u}) {
    INFO(threads << " threads");
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(writer, t, std::ref(failures));
    for (auto& th : pool) th.join();
    CHECK(failures == 0);
    REQUIRE(dev->flush().ok());
    for (unsigned t = 0; t < threads; ++t) {
      CHECK(pread_file(path, uint64_t(t) * kRegion, kRegion) == testing::pattern(kRegion, 1000 + t));
    }
  }
}

TEST_CASE("file device falls back to buffered I/O where O_DIRECT is refused", "[blockdev][file][mount]") {
  ScratchDir dir;
  // ramfs has no direct I/O at all: open(O_DIRECT) fails with EINVAL.
  Mount ramfs("ramfs", dir.file("ramfs"), "ramfs");
  if (!ramfs.ok()) {
    WARN("skipped: cannot mount a ramfs to test the O_DIRECT fallback: " << ramfs.why_not());
    return;
  }
  int n = 0;
  testing::run_backend_suite([&] {
    auto path = make_image(dir.file("ramfs/img" + std::to_string(n++)), kImageSize);
    OpenOptions o;
    o.direct = true;
    auto dev = open_ok(path, o);
    const FileDevice& f = as_file(*dev);
    CHECK_FALSE(f.direct_io());
    CHECK(f.buffered_reason().find("refuses O_DIRECT") != std::string::npos);
    CHECK(dev->sector_size() == 512);
    return dev;
  });
  // Written data is in the file for everyone else, too.
  auto path = make_image(dir.file("ramfs/data"), kImageSize);
  auto dev = open_ok(path);
  auto p = testing::pattern(8192, 77);
  REQUIRE(dev->write(8192, p.data(), p.size()).ok());
  REQUIRE(dev->flush().ok());
  CHECK(pread_file(path, 8192, p.size()) == p);
}

TEST_CASE("file device drives loop block devices", "[blockdev][file][loop]") {
  ScratchDir dir;
  for (unsigned sector : {512u, 4096u}) {
    INFO("loop sector size " << sector);
    auto backing = make_image(dir.file("loop" + std::to_string(sector) + ".img"), kImageSize);
    LoopDevice loop(backing, sector);
    if (!loop.ok()) {
      WARN("skipped: " << loop.why_not());
      return;
    }

    testing::run_backend_suite([&] {
      auto dev = open_ok(loop.dev());
      const FileDevice& f = as_file(*dev);
      CHECK(f.is_block_device());
      CHECK(f.direct_io());
      // What the kernel was told by losetup, read back through BLKSSZGET.
      CHECK(dev->sector_size() == sector);
      CHECK(dev->size() == kImageSize);
      return dev;
    });

    // What went to the block device is in the backing file.
    {
      auto dev = open_ok(loop.dev());
      auto p = testing::pattern(2 * sector, 99);
      REQUIRE(dev->write(3 * 4096, p.data(), p.size()).ok());
      REQUIRE(dev->flush().ok());
      dev.reset();
      REQUIRE(run("blockdev --flushbufs " + loop.dev()) == 0);
      CHECK(pread_file(backing, 3 * 4096, p.size()) == p);
    }

    // O_EXCL: a second exclusive opener is refused while the first holds it.
    OpenOptions ex;
    ex.exclusive = true;
    {
      auto first = open_ok(loop.dev(), ex);
      auto second = open_file_device(loop.dev(), ex);
      REQUIRE_FALSE(second.ok());
      CHECK(second.status().code() == Status::Code::kBusy);
      CHECK(second.status().message().find("is mounted or in use; unmount it first") != std::string::npos);
    }

    // ...and while the kernel has it mounted.
    std::string out;
    REQUIRE(run("mkfs.ext3 -q -F -b 4096 " + loop.dev(), &out) == 0);
    {
      Mount m(loop.dev(), dir.file("mnt" + std::to_string(sector)), "ext3");
      if (!m.ok()) {
        WARN("skipped the mounted-device check: " << m.why_not());
      } else {
        auto r = open_file_device(loop.dev(), ex);
        REQUIRE_FALSE(r.ok());
        CHECK(r.status().code() == Status::Code::kBusy);
        CHECK(r.status().message().find(loop.dev() + " is mounted or in use; unmount it first") == 0);
        // Without exclusive, a read-only open still works (for inspection).
        OpenOptions ro;
        ro.read_only = true;
        CHECK(open_file_device(loop.dev(), ro).ok());
      }
    }
    // Unmounted again: exclusive open succeeds.
    CHECK(open_file_device(loop.dev(), ex).ok());
  }
}
