#include "cext3/nbd_device.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <thread>

#include "backend_suite.h"
#include "nbdkit_server.h"

using namespace cext3;
using cext3::testing::NbdkitServer;
using Transport = NbdkitServer::Transport;

namespace {

// nbdkit is a declared dependency of the test suite: a missing nbdkit fails
// the test with the fixture's one-line reason instead of skipping.
std::unique_ptr<NbdkitServer> require_server(std::unique_ptr<NbdkitServer> s, const std::string& err) {
  if (!s) FAIL(err);
  return s;
}

std::unique_ptr<BlockDevice> require_open(const std::string& uri, const OpenOptions& opts = {}) {
  auto r = open_nbd_device(uri, opts);
  if (!r.ok()) FAIL(r.status().message());
  return std::move(r).value();
}

std::vector<uint8_t> pread_file(const std::string& path, uint64_t offset, size_t len) {
  std::vector<uint8_t> out(len);
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, out.data(), len, static_cast<off_t>(offset)) == static_cast<ssize_t>(len));
  ::close(fd);
  return out;
}

void make_zero_file(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  ::close(fd);
}

}  // namespace

TEST_CASE("nbd device passes the backend suite over a Unix socket", "[blockdev][nbd]") {
  std::string err;
  auto srv = require_server(NbdkitServer::memory(16u << 20, Transport::kUnix, &err), err);
  testing::run_backend_suite([&] { return require_open(srv->uri()); });
}

TEST_CASE("nbd device passes the backend suite over TCP on 127.0.0.1", "[blockdev][nbd]") {
  std::string err;
  auto srv = require_server(NbdkitServer::memory(16u << 20, Transport::kTcpLoopback, &err), err);
  REQUIRE(srv->uri().rfind("nbd://127.0.0.1:", 0) == 0);
  testing::run_backend_suite([&] { return require_open(srv->uri()); });
}

TEST_CASE("nbd device takes sector size and request limit from the server", "[blockdev][nbd]") {
  std::string err;
  // The server demands 4 KiB alignment and takes at most 64 KiB per request:
  // the device must report 4096-byte sectors and split large requests.
  auto srv = require_server(
      NbdkitServer::start("memory", {"size=16M", "blocksize-minimum=4096", "blocksize-maximum=65536"},
                          Transport::kUnix, false, &err, {"--filter=blocksize-policy"}),
      err);
  auto dev = require_open(srv->uri(), {.queue_depth = 4});
  CHECK(dev->sector_size() == 4096);
  CHECK(dev->size() == 16u << 20);

  auto big = testing::pattern(1u << 20, 77);  // 16 pieces of 64 KiB, 4 in flight
  REQUIRE(dev->write(3u << 20, big.data(), big.size()).ok());
  std::vector<uint8_t> back(big.size());
  REQUIRE(dev->read(3u << 20, back.data(), back.size()).ok());
  CHECK(back == big);

  std::vector<uint8_t> half(512);
  CHECK(dev->read(512, half.data(), 512).code() == Status::Code::kInvalidArgument);

  testing::run_backend_suite([&] { return require_open(srv->uri()); });
}

TEST_CASE("nbd writes through the file plugin land in the file", "[blockdev][nbd]") {
  testing::NbdScratchDir dir;
  REQUIRE(dir.ok());
  const std::string img = dir.file("disk.img");
  make_zero_file(img, 8u << 20);
  std::string err;
  auto srv = require_server(NbdkitServer::file(img, Transport::kUnix, &err), err);
  auto dev = require_open(srv->uri());
  REQUIRE(dev->size() == 8u << 20);

  auto a = testing::pattern(8192, 5);
  auto b = testing::pattern(512, 6);
  std::vector<IoRequest> batch = {{IoRequest::Op::kWrite, 4096, a.data(), a.size()},
                                  {IoRequest::Op::kWrite, (8u << 20) - 512, b.data(), b.size()}};
  REQUIRE(dev->submit(batch).ok());
  REQUIRE(dev->flush().ok());
  CHECK(pread_file(img, 4096, a.size()) == a);
  CHECK(pread_file(img, (8u << 20) - 512, b.size()) == b);
  // Bytes next to the writes are untouched.
  CHECK(pread_file(img, 0, 4096) == std::vector<uint8_t>(4096, 0));
}

TEST_CASE("nbd device refuses writes on a read-only export or when opened read-only", "[blockdev][nbd]") {
  testing::NbdScratchDir dir;
  REQUIRE(dir.ok());
  const std::string img = dir.file("ro.img");
  make_zero_file(img, 8u << 20);
  {
    std::ofstream f(img, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1024);
    f.write("cext3-ro", 8);
  }
  std::string err;
  auto ro_srv = require_server(NbdkitServer::file(img, Transport::kUnix, &err, /*read_only=*/true), err);
  auto dev = require_open(ro_srv->uri());
  CHECK(dev->read_only());
  std::vector<uint8_t> buf(512, 0xEE);
  Status s = dev->write(1024, buf.data(), buf.size());
  CHECK(s.errno_value() == EROFS);
  CHECK(s.message().find("read-only") != std::string::npos);
  CHECK(s.message().find("server exports it read-only") != std::string::npos);
  std::vector<IoRequest> batch = {{IoRequest::Op::kWrite, 0, buf.data(), buf.size()}};
  CHECK_FALSE(dev->submit(batch).ok());
  CHECK(dev->flush().ok());  // contract: a no-op on a read-only device
  REQUIRE(dev->read(1024, buf.data(), 512).ok());
  CHECK(std::memcmp(buf.data(), "cext3-ro", 8) == 0);
  CHECK(pread_file(img, 0, 512) == std::vector<uint8_t>(512, 0));

  auto rw_srv = require_server(NbdkitServer::file(img, Transport::kUnix, &err), err);
  auto dev2 = require_open(rw_srv->uri(), {.read_only = true});
  CHECK(dev2->read_only());
  Status s2 = dev2->write(0, buf.data(), 512);
  CHECK(s2.errno_value() == EROFS);
  CHECK(s2.message().find("opened read-only") != std::string::npos);
  CHECK(pread_file(img, 0, 512) == std::vector<uint8_t>(512, 0));
}

TEST_CASE("nbd open errors are one clear line", "[blockdev][nbd]") {
  testing::NbdScratchDir dir;
  REQUIRE(dir.ok());

  SECTION("no server on the Unix socket") {
    auto r = open_nbd_device("nbd+unix:///?socket=" + dir.file("nobody.sock"), {});
    REQUIRE_FALSE(r.ok());
    INFO(r.status().message());
    CHECK(r.status().message().find("no NBD server is listening") != std::string::npos);
    CHECK(r.status().message().find('\n') == std::string::npos);
  }
  SECTION("no server on the TCP port") {
    // Start and stop a server to learn a port that nothing listens on now.
    std::string err;
    auto srv = require_server(NbdkitServer::memory(1u << 20, Transport::kTcpLoopback, &err), err);
    const std::string uri = srv->uri();
    srv->stop();
    auto r = open_nbd_device(uri, {});
    REQUIRE_FALSE(r.ok());
    INFO(r.status().message());
    CHECK(r.status().errno_value() == ECONNREFUSED);
    CHECK(r.status().message().find("no NBD server is listening") != std::string::npos);
  }
  SECTION("unknown scheme") {
    for (const char* uri : {"http://127.0.0.1/disk", "nbd+vsock:///?port=1", "/dev/sdb"}) {
      auto r = open_nbd_device(uri, {});
      REQUIRE_FALSE(r.ok());
      CHECK(r.status().code() == Status::Code::kInvalidArgument);
      CHECK(r.status().message().find("not a supported NBD URI") != std::string::npos);
    }
  }
  SECTION("the URI may not make libnbd read local files") {
    auto r = open_nbd_device("nbds+unix:///?socket=" + dir.file("x.sock") + "&tls-psk-file=/etc/passwd", {});
    REQUIRE_FALSE(r.ok());
    INFO(r.status().message());
    CHECK(r.status().message().find("cannot open NBD export") == 0);
  }
  SECTION("the server requires TLS") {
    const std::string psk = dir.file("keys.psk");
    std::ofstream(psk) << "alice:000102030405060708090a0b0c0d0e0f\n";
    std::string err;
    auto srv = require_server(NbdkitServer::start("memory", {"size=1M"}, Transport::kUnix, false, &err,
                                                  {"--tls=require", "--tls-psk=" + psk}),
                              err);
    auto r = open_nbd_device(srv->uri(), {});
    REQUIRE_FALSE(r.ok());
    INFO(r.status().message());
    CHECK(r.status().message().find("TLS") != std::string::npos);
    CHECK(r.status().message().find("nbds://") != std::string::npos);
  }
}

TEST_CASE("nbd device reports server I/O errors and a lost connection", "[blockdev][nbd]") {
  std::string err;
  SECTION("server fails reads with EIO") {
    auto srv = require_server(NbdkitServer::start("memory", {"size=8M", "error=EIO", "error-pread-rate=100%"},
                                                  Transport::kUnix, false, &err, {"--filter=error"}),
                              err);
    auto dev = require_open(srv->uri());
    std::vector<uint8_t> buf(4096);
    Status s = dev->read(0, buf.data(), buf.size());
    CHECK(s.code() == Status::Code::kIoError);
    CHECK(s.errno_value() == EIO);
    CHECK(s.message().find("NBD read of 4096 bytes at offset 0 failed") != std::string::npos);
    CHECK(dev->write(0, buf.data(), buf.size()).ok());  // writes still work
  }
  SECTION("server dies while requests are in flight") {
    // Every read takes 2 s on the server; it is killed after 200 ms.
    auto srv = require_server(NbdkitServer::start("memory", {"size=8M", "rdelay=2"}, Transport::kUnix, false,
                                                  &err, {"--filter=delay"}),
                              err);
    auto dev = require_open(srv->uri(), {.queue_depth = 4});
    std::vector<std::vector<uint8_t>> bufs(16, std::vector<uint8_t>(4096));
    std::vector<IoRequest> batch;
    for (size_t i = 0; i < bufs.size(); ++i) batch.push_back({IoRequest::Op::kRead, i * 4096, bufs[i].data(), 4096});
    Status result;
    std::thread t([&] { result = dev->submit(batch); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    srv->stop();
    t.join();
    CHECK_FALSE(result.ok());
    INFO(result.message());
    CHECK(result.message().find("connection to the NBD server is gone") != std::string::npos);
    // Later calls fail at once with the same clear reason.
    Status again = dev->read(0, bufs[0].data(), 4096);
    INFO(again.message());
    CHECK(again.message().find("connection to the NBD server is gone") != std::string::npos);
  }
}

TEST_CASE("nbd device without server flush says so and treats flush as a no-op", "[blockdev][nbd]") {
  std::string err;
  auto srv = require_server(
      NbdkitServer::start("eval",
                          {"get_size=echo 1048576", "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
                           "pwrite=cat >/dev/null", "can_write=exit 0"},
                          Transport::kUnix, false, &err),
      err);
  auto dev = require_open(srv->uri());
  CHECK(dev->name().find("server cannot flush") != std::string::npos);
  std::vector<uint8_t> buf(512, 1);
  CHECK(dev->write(0, buf.data(), buf.size()).ok());
  CHECK(dev->flush().ok());
}

TEST_CASE("nbd device serves concurrent callers on one connection", "[blockdev][nbd]") {
  std::string err;
  auto srv = require_server(NbdkitServer::memory(16u << 20, Transport::kUnix, &err), err);
  auto dev = require_open(srv->uri(), {.queue_depth = 4});
  constexpr int kThreads = 4;
  constexpr int kRounds = 20;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        // Each thread owns its own 1 MiB region: 8 writes of 16 KiB in a batch,
        // then a flush, then the same 8 read back in a batch.
        const uint64_t base = uint64_t(t) << 20;
        std::vector<std::vector<uint8_t>> data, back;
        std::vector<IoRequest> w, r;
        for (int i = 0; i < 8; ++i) {
          data.push_back(testing::pattern(16384, 1000 * t + 10 * round + i));
          back.emplace_back(16384);
        }
        for (int i = 0; i < 8; ++i) {
          w.push_back({IoRequest::Op::kWrite, base + uint64_t(i) * 65536, data[i].data(), 16384});
          r.push_back({IoRequest::Op::kRead, base + uint64_t(i) * 65536, back[i].data(), 16384});
        }
        if (!dev->submit(w).ok() || !dev->flush().ok() || !dev->submit(r).ok()) ++failures;
        for (int i = 0; i < 8; ++i)
          if (back[i] != data[i]) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
}
