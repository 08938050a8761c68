#include "cext3/ext2fs_io.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "backend_suite.h"
#include "cext3/memory_device.h"
#include "cext3/nbd_device.h"
#include "nbdkit_server.h"

using namespace cext3;
using cext3::testing::NbdkitServer;
using cext3::testing::NbdScratchDir;

namespace {

struct CommandResult {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command, capturing stdout (stderr goes to stdout too when the
// command says 2>&1).
CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string q(const std::string& s) { return "'" + s + "'"; }

// A fresh ext3 image made by the real mke2fs.
void make_ext3(const std::string& img, unsigned block_size, unsigned size_mib) {
  auto r = run("mke2fs -q -t ext3 -F -b " + std::to_string(block_size) + " " + q(img) + " " +
               std::to_string(size_mib) + "M 2>&1");
  if (r.exit_code != 0) FAIL("mke2fs failed (e2fsprogs is a declared test dependency): " + r.out);
}

// dumpe2fs -h as "Field name" -> "value".
std::map<std::string, std::string> dumpe2fs_header(const std::string& img) {
  auto r = run("dumpe2fs -h " + q(img) + " 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  std::map<std::string, std::string> fields;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    fields[line.substr(0, colon)] = value;
  }
  return fields;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void spill(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

std::unique_ptr<MemoryDevice> load_into_memory(const std::string& img, uint32_t sector_size) {
  auto bytes = slurp(img);
  REQUIRE(bytes.size() % sector_size == 0);
  auto dev = std::make_unique<MemoryDevice>(bytes.size(), sector_size, "memory:" + img);
  dev->bytes() = std::move(bytes);
  return dev;
}

std::string uuid_text(const uint8_t* u) {
  char s[37];
  std::snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return s;
}

// The superblock libext2fs read through the bridge equals what dumpe2fs
// read from the image with its own I/O.
void check_superblock_matches(ext2_filsys fs, const std::map<std::string, std::string>& d) {
  CHECK(d.at("Block count") == std::to_string(ext2fs_blocks_count(fs->super)));
  CHECK(d.at("Inode count") == std::to_string(fs->super->s_inodes_count));
  CHECK(d.at("Block size") == std::to_string(fs->blocksize));
  CHECK(d.at("Free blocks") == std::to_string(ext2fs_free_blocks_count(fs->super)));
  CHECK(d.at("Free inodes") == std::to_string(fs->super->s_free_inodes_count));
  CHECK(d.at("Blocks per group") == std::to_string(fs->super->s_blocks_per_group));
  CHECK(d.at("Inodes per group") == std::to_string(fs->super->s_inodes_per_group));
  CHECK(d.at("Filesystem UUID") == uuid_text(fs->super->s_uuid));
  CHECK(d.at("Journal inode") == std::to_string(fs->super->s_journal_inum));
  CHECK(ext2fs_has_feature_journal(fs->super));
  CHECK(d.at("Filesystem features").find("has_journal") != std::string::npos);
}

void must(errcode_t e, const char* what) {
  if (e != 0) FAIL(std::string(what) + ": " + error_message(e) + " / bridge: " + ext2fs_io_last_error());
}

// Real libext2fs work through the bridge: a directory and a small file.
void add_dir_and_file(ext2_filsys fs, const std::vector<uint8_t>& content) {
  must(ext2fs_read_bitmaps(fs), "ext2fs_read_bitmaps");
  must(ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, "cext3dir"), "ext2fs_mkdir");

  ext2_ino_t ino = 0;
  must(ext2fs_new_inode(fs, EXT2_ROOT_INO, LINUX_S_IFREG | 0644, nullptr, &ino), "ext2fs_new_inode");
  errcode_t e = ext2fs_link(fs, EXT2_ROOT_INO, "file", ino, EXT2_FT_REG_FILE);
  if (e == EXT2_ET_DIR_NO_SPACE) {
    must(ext2fs_expand_dir(fs, EXT2_ROOT_INO), "ext2fs_expand_dir");
    e = ext2fs_link(fs, EXT2_ROOT_INO, "file", ino, EXT2_FT_REG_FILE);
  }
  must(e, "ext2fs_link");
  ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
  struct ext2_inode inode{};
  inode.i_mode = LINUX_S_IFREG | 0644;
  inode.i_links_count = 1;
  inode.i_atime = inode.i_ctime = inode.i_mtime = static_cast<uint32_t>(time(nullptr));
  must(ext2fs_write_new_inode(fs, ino, &inode), "ext2fs_write_new_inode");

  ext2_file_t f = nullptr;
  must(ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &f), "ext2fs_file_open");
  unsigned int written = 0;
  must(ext2fs_file_write(f, content.data(), static_cast<unsigned>(content.size()), &written), "ext2fs_file_write");
  CHECK(written == content.size());
  must(ext2fs_file_close(f), "ext2fs_file_close");
}

// The real tools agree: e2fsck finds nothing, debugfs shows the directory
// and the file's exact bytes.
void check_image_with_tools(const std::string& img, const std::vector<uint8_t>& content) {
  auto fsck = run("e2fsck -fn " + q(img) + " 2>&1");
  INFO(fsck.out);
  CHECK(fsck.exit_code == 0);
  auto ls = run("debugfs -R 'ls -l /' " + q(img) + " 2>/dev/null");
  CHECK(ls.exit_code == 0);
  CHECK(ls.out.find("cext3dir") != std::string::npos);
  CHECK(ls.out.find(" file") != std::string::npos);
  auto cat = run("debugfs -R 'cat /file' " + q(img) + " 2>/dev/null");
  CHECK(cat.exit_code == 0);
  CHECK(cat.out.size() == content.size());
  CHECK(std::vector<uint8_t>(cat.out.begin(), cat.out.end()) == content);
}

}  // namespace

TEST_CASE("libext2fs over a MemoryDevice through the bridge", "[ext2fs_io]") {
  for (unsigned block_size : {1024u, 4096u}) {
    // 4096-byte sectors under 1024-byte blocks: every block write is a
    // read-modify-write of a sector, as are the superblock's write_byte calls.
    for (uint32_t sector_size : {512u, 4096u}) {
      DYNAMIC_SECTION("block size " << block_size << ", sector size " << sector_size) {
        NbdScratchDir dir;
        REQUIRE(dir.ok());
        const std::string img = dir.file("fs.img");
        make_ext3(img, block_size, 16);
        const auto dumped = dumpe2fs_header(img);

        auto dev = load_into_memory(img, sector_size);
        const auto content = testing::pattern(5000, block_size + sector_size);
        {
          Ext2fsDeviceBinding binding(*dev);
          CHECK(std::string(binding.name()).rfind("cext3dev:", 0) == 0);
          auto fs = binding.open_filesystem(EXT2_FLAG_RW | EXT2_FLAG_64BITS);
          if (!fs.ok()) FAIL(fs.status().message());
          check_superblock_matches(*fs, dumped);
          add_dir_and_file(*fs, content);
          io_stats stats = nullptr;
          REQUIRE((*fs)->io->manager->get_stats((*fs)->io, &stats) == 0);
          CHECK(stats->bytes_read > 0);
          ext2_filsys raw = *fs;
          must(ext2fs_close_free(&raw), "ext2fs_close_free");
        }
        CHECK(dev->flush_count() > 0);
        const std::string out = dir.file("out.img");
        spill(out, dev->bytes());
        check_image_with_tools(out, content);
      }
    }
  }
}

TEST_CASE("libext2fs over an nbdkit export through the bridge", "[ext2fs_io][nbd]") {
  for (unsigned block_size : {1024u, 4096u}) {
    DYNAMIC_SECTION("block size " << block_size) {
      NbdScratchDir dir;
      REQUIRE(dir.ok());
      const std::string img = dir.file("fs.img");
      make_ext3(img, block_size, 16);
      const auto dumped = dumpe2fs_header(img);
      const auto content = testing::pattern(3000, 7 * block_size);
      std::string err;
      // TCP: ext2fs_open2 cuts a name at '?' (its "name?io_options" form), so
      // an nbd+unix:///?socket= URI cannot be passed to it directly.
      auto srv = NbdkitServer::file(img, NbdkitServer::Transport::kTcpLoopback, &err);
      if (!srv) FAIL(err);

      SECTION("an open NbdDevice bound by Ext2fsDeviceBinding") {
        auto dev = open_nbd_device(srv->uri(), {});
        if (!dev.ok()) FAIL(dev.status().message());
        Ext2fsDeviceBinding binding(**dev);
        auto fs = binding.open_filesystem(EXT2_FLAG_RW | EXT2_FLAG_64BITS);
        if (!fs.ok()) FAIL(fs.status().message());
        check_superblock_matches(*fs, dumped);
        add_dir_and_file(*fs, content);
        ext2_filsys raw = *fs;
        must(ext2fs_close_free(&raw), "ext2fs_close_free");
      }
      SECTION("the NBD URI handed to ext2fs_open2 directly") {
        ext2_filsys fs = nullptr;
        must(ext2fs_open2(srv->uri().c_str(), nullptr, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, cext3_io_manager(),
                          &fs),
             "ext2fs_open2 on the NBD URI");
        check_superblock_matches(fs, dumped);
        add_dir_and_file(fs, content);
        must(ext2fs_close_free(&fs), "ext2fs_close_free");
      }
      srv->stop();  // the server has written everything to the image by now
      check_image_with_tools(img, content);
    }
  }
}

TEST_CASE("the bridge opens an image path through the file backend", "[ext2fs_io]") {
  NbdScratchDir dir;
  REQUIRE(dir.ok());
  const std::string img = dir.file("fs.img");
  make_ext3(img, 1024, 8);
  const auto dumped = dumpe2fs_header(img);
  ext2_filsys fs = nullptr;
  errcode_t e = ext2fs_open2(img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, cext3_io_manager(), &fs);
  if (e != 0) FAIL(status_from_errcode(e, "opening " + img).message());
  check_superblock_matches(fs, dumped);
  must(ext2fs_close_free(&fs), "ext2fs_close_free");
}

TEST_CASE("bridge channel semantics: byte offsets, read-modify-write, bounds, errors", "[ext2fs_io]") {
  MemoryDevice dev(64 * 1024, 4096);
  auto& bytes = dev.bytes();
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  const auto original = bytes;
  Ext2fsDeviceBinding binding(dev);
  io_manager m = cext3_io_manager();

  io_channel ch = nullptr;
  REQUIRE(m->open(binding.name(), IO_FLAG_RW, &ch) == 0);
  REQUIRE(ch->block_size == 1024);

  SECTION("block writes smaller than a sector touch only their bytes") {
    std::vector<uint8_t> blk(1024, 0xAB);
    REQUIRE(m->write_blk64(ch, 5, 1, blk.data()) == 0);  // bytes 5120..6143, inside sector 1
    for (size_t i = 0; i < bytes.size(); ++i) {
      const bool inside = i >= 5120 && i < 6144;
      if (bytes[i] != (inside ? 0xAB : original[i])) FAIL("byte " << i << " is wrong");
    }
    std::vector<uint8_t> back(1024);
    REQUIRE(m->read_blk64(ch, 5, 1, back.data()) == 0);
    CHECK(back == blk);
  }
  SECTION("write_byte and negative counts are byte-granular across sectors") {
    const char msg[] = "straddles two sectors";
    REQUIRE(m->write_byte(ch, 4096 - 5, sizeof msg, msg) == 0);
    CHECK(std::memcmp(bytes.data() + 4096 - 5, msg, sizeof msg) == 0);
    CHECK(bytes[4096 - 6] == original[4096 - 6]);
    CHECK(bytes[4096 - 5 + sizeof msg] == original[4096 - 5 + sizeof msg]);
    REQUIRE(m->set_blksize(ch, 4096) == 0);
    std::vector<uint8_t> back(sizeof msg + 10);
    // count < 0 means bytes; block 1 at 4096-byte blocks starts at 4096.
    REQUIRE(m->read_blk64(ch, 1, -static_cast<int>(back.size()), back.data()) == 0);
    CHECK(std::memcmp(back.data(), msg + 5, sizeof msg - 5) == 0);
  }
  SECTION("a large unaligned write keeps its neighbours") {
    auto data = testing::pattern(3 * 4096 + 100, 9);
    REQUIRE(m->write_byte(ch, 1000, static_cast<int>(data.size()), data.data()) == 0);
    CHECK(std::equal(data.begin(), data.end(), bytes.begin() + 1000));
    CHECK(std::equal(original.begin(), original.begin() + 1000, bytes.begin()));
    CHECK(std::equal(original.begin() + 1000 + data.size(), original.end(), bytes.begin() + 1000 + data.size()));
  }
  SECTION("reads past the end zero-fill and say short read; writes past the end change nothing") {
    std::vector<uint8_t> buf(2048, 0xFF);
    CHECK(m->read_blk64(ch, 63, 2, buf.data()) == EXT2_ET_SHORT_READ);  // block 63 is the last
    CHECK(std::equal(buf.begin(), buf.begin() + 1024, original.end() - 1024));
    CHECK(std::all_of(buf.begin() + 1024, buf.end(), [](uint8_t b) { return b == 0; }));
    CHECK(m->write_blk64(ch, 63, 2, buf.data()) == EXT2_ET_SHORT_WRITE);
    CHECK(bytes == original);
    CHECK(ext2fs_io_last_error().find("past the end") != std::string::npos);
  }
  SECTION("offset= option shifts every access") {
    REQUIRE(m->set_option(ch, "offset", "8192") == 0);
    std::vector<uint8_t> buf(1024);
    REQUIRE(m->read_blk64(ch, 1, 1, buf.data()) == 0);
    CHECK(std::equal(buf.begin(), buf.end(), original.begin() + 8192 + 1024));
    CHECK(m->set_option(ch, "offset", "12x") == EXT2_ET_INVALID_ARGUMENT);
    CHECK(m->set_option(ch, "nonsense", "1") == EXT2_ET_INVALID_ARGUMENT);
  }
  SECTION("zeroout writes zeros, discard is declared unsupported, flush reaches the device") {
    REQUIRE(m->zeroout(ch, 3, 5) == 0);
    CHECK(std::all_of(bytes.begin() + 3072, bytes.begin() + 8192, [](uint8_t b) { return b == 0; }));
    CHECK(bytes[3071] == original[3071]);
    CHECK(bytes[8192] == original[8192]);
    CHECK(m->discard(ch, 0, 1) == EXT2_ET_UNIMPLEMENTED);
    const unsigned before = dev.flush_count();
    REQUIRE(m->flush(ch) == 0);
    CHECK(dev.flush_count() == before + 1);
  }
  SECTION("concurrent sub-sector writes to one sector are not torn") {
    // Two threads each own every other 512-byte piece of the same two
    // sectors; without the write lock a read-modify-write loses the other's.
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        for (int round = 0; round < 200; ++round) {
          for (unsigned piece = t; piece < 16; piece += 2) {
            std::vector<uint8_t> v(512, static_cast<uint8_t>(t + 1));
            if (m->write_byte(ch, piece * 512, 512, v.data()) != 0) return;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    for (unsigned piece = 0; piece < 16; ++piece)
      CHECK(bytes[piece * 512 + 100] == static_cast<uint8_t>(piece % 2 + 1));
  }
  REQUIRE(m->close(ch) == 0);

  SECTION("read-only channels, unknown names, read-only devices, unbound devices") {
    io_channel ro = nullptr;
    REQUIRE(m->open(binding.name(), 0, &ro) == 0);
    std::vector<uint8_t> blk(1024);
    CHECK(m->write_blk64(ro, 0, 1, blk.data()) == EROFS);
    CHECK(bytes == original);
    REQUIRE(m->close(ro) == 0);

    io_channel none = nullptr;
    CHECK(m->open("cext3dev:999999999", IO_FLAG_RW, &none) == EXT2_ET_BAD_DEVICE_NAME);
    CHECK(ext2fs_io_last_error().find("no BlockDevice is registered") != std::string::npos);

    io_channel left = nullptr;
    auto other = std::make_unique<MemoryDevice>(8192, 512);
    auto b2 = std::make_unique<Ext2fsDeviceBinding>(*other);
    REQUIRE(m->open(b2->name(), IO_FLAG_RW, &left) == 0);
    b2.reset();  // misuse: the binding goes away under an open channel
    CHECK(m->read_blk64(left, 0, 1, blk.data()) == ENODEV);
    REQUIRE(m->close(left) == 0);
  }
}

TEST_CASE("bridge refuses to open a read-only device read-write", "[ext2fs_io][nbd]") {
  NbdScratchDir dir;
  REQUIRE(dir.ok());
  const std::string img = dir.file("fs.img");
  make_ext3(img, 1024, 8);
  const auto before = slurp(img);
  std::string err;
  auto srv = NbdkitServer::file(img, NbdkitServer::Transport::kUnix, &err, /*read_only=*/true);
  if (!srv) FAIL(err);
  auto dev = open_nbd_device(srv->uri(), {});
  if (!dev.ok()) FAIL(dev.status().message());
  Ext2fsDeviceBinding binding(**dev);
  auto fs = binding.open_filesystem(EXT2_FLAG_RW);
  REQUIRE_FALSE(fs.ok());
  CHECK(fs.status().errno_value() == EROFS);
  CHECK(fs.status().message().find("read-only") != std::string::npos);
  auto ro = binding.open_filesystem(0);
  REQUIRE(ro.ok());
  ext2_filsys raw = *ro;
  must(ext2fs_close_free(&raw), "ext2fs_close_free");
  srv->stop();
  CHECK(slurp(img) == before);
}
