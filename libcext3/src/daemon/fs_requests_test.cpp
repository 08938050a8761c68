// The exec request layer: encoding, argument checks, errno mapping and the
// durable acknowledgement, against a recording test double of the engine.
#include "cext3/daemon/fs_requests.h"

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include "cext3/daemon/control.h"

using namespace cext3;
using namespace cext3::daemon;

namespace {

// Records what it was asked; lookup of "missing" fails with ENOENT.
class RecordingFs final : public engine::Filesystem {
 public:
  std::vector<std::string> calls;
  int syncs = 0;
  std::vector<uint8_t> written;

  Result<engine::Attr> lookup(uint64_t parent, std::string_view name) override {
    calls.push_back("lookup " + std::to_string(parent) + " " + std::string(name));
    if (name == "missing") return Status::FromErrno(ENOENT, "lookup missing");
    engine::Attr a;
    a.ino = 12;
    a.mode = S_IFREG | 0644;
    a.mtime = {1700000000, 5};
    return a;
  }
  Result<engine::Attr> getattr(uint64_t) override { return Status::FromErrno(ENOSYS, "getattr"); }
  Result<std::vector<engine::DirEntry>> readdir(uint64_t, uint64_t, size_t) override {
    return std::vector<engine::DirEntry>{{2, 2, ".", 12}, {13, 1, "a b", 24}};
  }
  Result<engine::Attr> mkdir(uint64_t, std::string_view name, uint32_t mode, const engine::Caller& c) override {
    calls.push_back("mkdir " + std::string(name) + " " + std::to_string(mode) + " " + std::to_string(c.uid) + " " +
                    std::to_string(c.umask));
    return engine::Attr{};
  }
  Result<engine::Attr> create(uint64_t, std::string_view, uint32_t, const engine::Caller&) override {
    return engine::Attr{};
  }
  Result<engine::Attr> mknod(uint64_t, std::string_view, uint32_t, uint32_t, const engine::Caller&) override {
    return engine::Attr{};
  }
  Result<engine::Attr> symlink(uint64_t, std::string_view, std::string_view target, const engine::Caller&) override {
    calls.push_back("symlink " + std::string(target));
    return engine::Attr{};
  }
  Result<engine::Attr> link(uint64_t, uint64_t, std::string_view) override { return engine::Attr{}; }
  Status unlink(uint64_t, std::string_view name) override {
    calls.push_back("unlink " + std::string(name));
    return Status::OK();
  }
  Status rmdir(uint64_t, std::string_view) override { return Status::FromErrno(ENOTEMPTY, "rmdir"); }
  Status rename(uint64_t, std::string_view, uint64_t, std::string_view, uint32_t flags) override {
    calls.push_back("rename " + std::to_string(flags));
    return Status::OK();
  }
  Result<std::string> readlink(uint64_t) override { return std::string("t%x y"); }
  Status open(uint64_t) override { return Status::OK(); }
  Status release(uint64_t) override { return Status::OK(); }
  Result<size_t> read(uint64_t, uint64_t, std::span<uint8_t> out) override {
    const size_t n = std::min<size_t>(out.size(), 3);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(0xA0 + i);
    return n;
  }
  Result<size_t> write(uint64_t, uint64_t, std::span<const uint8_t> data) override {
    written.assign(data.begin(), data.end());
    return data.size();
  }
  Result<engine::Attr> setattr(uint64_t, const engine::SetAttr& ch) override {
    calls.push_back("setattr size=" + (ch.size ? std::to_string(*ch.size) : std::string("-")) +
                    " mode=" + (ch.mode ? std::to_string(*ch.mode) : std::string("-")));
    return engine::Attr{};
  }
  Status setxattr(uint64_t, std::string_view, std::span<const uint8_t>, int) override { return Status::OK(); }
  Result<std::vector<uint8_t>> getxattr(uint64_t, std::string_view) override {
    return Status::FromErrno(ENODATA, "no such attribute");
  }
  Result<std::vector<std::string>> listxattr(uint64_t) override { return std::vector<std::string>{}; }
  Status removexattr(uint64_t, std::string_view) override { return Status::OK(); }
  Status fsync(uint64_t) override { return Status::OK(); }
  Status sync() override {
    ++syncs;
    return Status::OK();
  }
  Result<engine::FsStats> statfs() override { return engine::FsStats{}; }
  void on_lock_leaving(const std::string&, locks::LockMode, locks::LockMode) override {}
  std::vector<uint64_t> inodes_covered_by(const std::string&) override { return {}; }
  Status unmount() override { return Status::OK(); }
};

std::string req(RecordingFs& fs, const std::string& line, bool durable = true) {
  std::vector<std::string> w{"exec"};
  auto rest = split_words(line);
  w.insert(w.end(), rest.begin(), rest.end());
  return handle_fs_request(fs, w, durable);
}

}  // namespace

TEST_CASE("exec: names are percent-encoded both ways", "[daemon][exec]") {
  for (std::string raw : {std::string("plain.txt"), std::string("a b%c"), std::string("\xff\x01/x"),
                          std::string("")}) {
    std::string back;
    REQUIRE(pct_decode(pct_encode(raw), &back));
    CHECK(back == raw);
    CHECK(pct_encode(raw).find(' ') == std::string::npos);
  }
  std::string out;
  CHECK_FALSE(pct_decode("abc%", &out));
  CHECK_FALSE(pct_decode("abc%4", &out));
  CHECK_FALSE(pct_decode("%zz", &out));
}

TEST_CASE("exec: requests reach the engine decoded; errors carry errno and its name", "[daemon][exec]") {
  RecordingFs fs;
  CHECK(req(fs, "lookup 2 a%20b").find("\"ok\":true,\"ino\":12") != std::string::npos);
  CHECK(fs.calls.back() == "lookup 2 a b");
  CHECK(req(fs, "lookup 2 a").find("\"mtime\":1700000000.000000005") != std::string::npos);
  const std::string e = req(fs, "lookup 2 missing");
  CHECK(e.find("\"errno\":2,\"errname\":\"ENOENT\"") != std::string::npos);
  CHECK(req(fs, "rmdir 2 d").find("\"errname\":\"ENOTEMPTY\"") != std::string::npos);
  CHECK(req(fs, "getxattr 12 user.x").find("\"errname\":\"ENODATA\"") != std::string::npos);

  req(fs, "mkdir 2 d 750 uid=7 umask=27");
  CHECK(fs.calls.back() == "mkdir d 488 7 23");  // 0750 = 488, umask 027 = 23
  req(fs, "rename 2 a 2 b noreplace");
  CHECK(fs.calls.back() == "rename " + std::to_string(engine::kRenameNoReplace));
  req(fs, "setattr 12 size=100 mode=4755");
  CHECK(fs.calls.back() == "setattr size=100 mode=2541");
  CHECK(req(fs, "readlink 12").find("\"target\":\"t%25x%20y\"") != std::string::npos);
  CHECK(req(fs, "read 12 0 10").find("\"length\":3,\"data\":\"a0a1a2\"") != std::string::npos);
  CHECK(req(fs, "readdir 2").find("\"name\":\"a%20b\",\"next\":24") != std::string::npos);
}

TEST_CASE("exec: a change is acknowledged after a commit only in durable sessions", "[daemon][exec]") {
  RecordingFs fs;
  CHECK(req(fs, "write 12 0 00ff10").find("\"written\":3") != std::string::npos);
  CHECK(fs.written == std::vector<uint8_t>{0x00, 0xff, 0x10});
  CHECK(fs.syncs == 1);
  req(fs, "unlink 2 x", /*durable=*/false);
  CHECK(fs.syncs == 1);
  req(fs, "lookup 2 x");  // reads never wait for a commit
  CHECK(fs.syncs == 1);
  req(fs, "write 12 5 -");
  CHECK(fs.written.empty());
}

TEST_CASE("exec: malformed requests are refused in one line without reaching the engine", "[daemon][exec]") {
  RecordingFs fs;
  for (const char* bad : {"lookup", "lookup x a", "lookup 2 a%2", "mkdir 2 d 9", "mkdir 2 d 755 uid=x",
                          "write 12 0 abc", "write 12 0 zz", "read 12 0 99999999", "setattr 12 colour=red",
                          "rename 2 a 2 b sideways", "readdir 2 0 0", "frobnicate 1"}) {
    INFO(bad);
    const std::string r = req(fs, bad);
    CHECK(r.find("\"ok\":false") != std::string::npos);
    CHECK(r.find("\"errname\":\"EINVAL\"") != std::string::npos);
    CHECK(r.find('\n') == std::string::npos);
  }
  CHECK(fs.calls.empty());
  CHECK(fs.syncs == 0);
}
