#include "cext3/node/mmp.h"

#include <catch2/catch.hpp>

#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::node;
using namespace cext3::node::testing;

namespace {

// debugfs dump_mmp's "sequence: ..." value.
std::string dumped_sequence(const std::string& img) {
  auto r = run_command("debugfs -R dump_mmp " + shell_quote(img) + " 2>/dev/null");
  REQUIRE(r.exit_code == 0);
  auto at = r.out.find("sequence: ");
  REQUIRE(at != std::string::npos);
  return r.out.substr(at + 10, r.out.find('\n', at) - at - 10);
}

std::string dumped_field(const std::string& img, const std::string& field) {
  auto r = run_command("debugfs -R dump_mmp " + shell_quote(img) + " 2>/dev/null");
  auto at = r.out.find(field + ": ");
  REQUIRE(at != std::string::npos);
  at += field.size() + 2;
  return r.out.substr(at, r.out.find('\n', at) - at);
}

}  // namespace

TEST_CASE("MMP: in use while live makes e2fsck refuse; clean lets it pass again", "[node][mmp]") {
  auto bin = cext3_bin();
  if (!bin) return;
  ScratchDir dir;
  REQUIRE_FALSE(dir.path().empty());
  const std::string img = make_cluster_image(*bin, dir.path(), 2);
  REQUIRE(dumped_sequence(img) == "ff4d4d50");
  REQUIRE(run_command("e2fsck -fn " + shell_quote(img) + " >/dev/null 2>&1").exit_code == 0);

  auto dev = open_block_device(img);
  REQUIRE(dev.ok());
  auto disk = ClusterDisk::open(**dev);
  REQUIRE(disk.ok());
  REQUIRE((*disk)->has_mmp());
  auto before = read_mmp(**disk);
  REQUIRE(before.ok());
  CHECK(before->magic == kMmpMagic);
  CHECK(before->sequence == kMmpSeqClean);

  REQUIRE(mark_mmp_in_use(**disk, "n1").ok());
  CHECK(dumped_sequence(img) == "e24d4d50");
  CHECK(dumped_field(img, "node_name") == "cext3:n1");
  CHECK(dumped_field(img, "magic") == "0x4d4d50");
  auto fsck = run_command("e2fsck -fn " + shell_quote(img) + " 2>&1");
  INFO(fsck.out);
  CHECK(fsck.exit_code == 12);  // refused: "being checked" / in use
  auto live = read_mmp(**disk);
  REQUIRE(live.ok());
  CHECK(live->sequence == kMmpSeqFsck);
  CHECK(live->node_name == "cext3:n1");
  // A second node joining does not rewrite it (the first writer's name stays).
  REQUIRE(mark_mmp_in_use(**disk, "n2").ok());
  CHECK(dumped_field(img, "node_name") == "cext3:n1");

  REQUIRE(mark_mmp_clean(**disk).ok());
  CHECK(dumped_sequence(img) == "ff4d4d50");
  auto clean = run_command("e2fsck -fn " + shell_quote(img) + " 2>&1");
  INFO(clean.out);
  CHECK(clean.exit_code == 0);
}

TEST_CASE("MMP: without mmp (--no-mmp) every call is a no-op", "[node][mmp]") {
  auto bin = cext3_bin();
  if (!bin) return;
  ScratchDir dir;
  REQUIRE_FALSE(dir.path().empty());
  const std::string img = make_cluster_image(*bin, dir.path(), 2, "--no-mmp");
  auto dev = open_block_device(img);
  REQUIRE(dev.ok());
  auto disk = ClusterDisk::open(**dev);
  REQUIRE(disk.ok());
  CHECK_FALSE((*disk)->has_mmp());
  auto before = run_command("md5sum < " + shell_quote(img)).out;
  CHECK(mark_mmp_in_use(**disk, "n1").ok());
  CHECK(mark_mmp_clean(**disk).ok());
  auto m = read_mmp(**disk);
  REQUIRE(m.ok());
  CHECK(m->magic == 0);
  CHECK(run_command("md5sum < " + shell_quote(img)).out == before);
}

TEST_CASE("MMP: a block without the MMP magic is refused, not overwritten", "[node][mmp]") {
  MemoryCluster mc(2);
  auto d = ClusterDisk::attach(mc.device(), mc.header(), 1000);  // block 1000: zeros
  REQUIRE(d.ok());
  auto r = read_mmp(**d);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
  CHECK(mark_mmp_in_use(**d, "n").code() == Status::Code::kCorruption);
  CHECK(mc.device().bytes()[1000 * 1024 + 4] == 0);
}
