#include "cext3/cluster/group_counts.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "cext3/block_device.h"

using namespace cext3;
using namespace cext3::cluster;

namespace {

std::string scratch_dir() {
  const char* s = std::getenv("CEXT3_SCRATCH");
  std::string base = s ? s : "/tmp";
  std::string cmd = "mkdir -p '" + base + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::string tmpl = base + "/groupcounts.XXXXXX";
  REQUIRE(mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

int run(const std::string& cmd) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("group counts: recomputed from bitmaps, written back, e2fsck agrees", "[cluster][counts]") {
  for (const char* bs : {"1024", "4096"}) {
    INFO("block size " << bs);
    const std::string dir = scratch_dir();
    const std::string img = dir + "/fs.img";
    // 4 KiB blocks: smaller groups (-g) so the image has several.
    const std::string groups = std::string(bs) == "4096" ? " -g 4096" : "";
    REQUIRE(run("mke2fs -q -F -t ext3 -b " + std::string(bs) + groups + " -N 2048 '" + img + "' 40M") == 0);
    // Some directories and files spread over groups, made by debugfs (which
    // keeps the descriptor counts right).
    std::string cmds = dir + "/cmds";
    {
      std::string script;
      for (int i = 0; i < 12; ++i) script += "mkdir d" + std::to_string(i) + "\n";
      script += "write /etc/services d3/services\nwrite /etc/passwd d7/passwd\n";
      FILE* f = std::fopen(cmds.c_str(), "w");
      REQUIRE(f);
      std::fputs(script.c_str(), f);
      std::fclose(f);
    }
    REQUIRE(run("debugfs -w -f '" + cmds + "' '" + img + "'") == 0);
    REQUIRE(run("e2fsck -fn '" + img + "'") == 0);

    OpenOptions oo;
    auto dev = open_block_device(img, oo);
    REQUIRE(dev.ok());
    auto geo = read_ext3_geometry(**dev);
    REQUIRE(geo.ok());
    REQUIRE(geo->group_count >= 2);

    // On a consistent filesystem the recount equals what the descriptors say.
    uint32_t dirs = 0;
    for (uint32_t g = 0; g < geo->group_count; ++g) {
      auto c = count_group(**dev, *geo, g);
      auto d = read_group_counts(**dev, *geo, g);
      REQUIRE(c.ok());
      REQUIRE(d.ok());
      CHECK(*c == *d);
      dirs += c->used_dirs;
    }
    CHECK(dirs >= 14);  // root, lost+found, d0..d11

    // Wrong counts (as a dead node's unfolded deltas leave them): e2fsck
    // complains; the recount and write-back make it clean again.
    std::vector<std::pair<uint32_t, GroupCounts>> wrong;
    for (uint32_t g = 0; g < geo->group_count; ++g) wrong.push_back({g, GroupCounts{g + 1, g + 2, g + 3}});
    auto w = write_group_counts(**dev, *geo, wrong);
    REQUIRE(w.ok());
    CHECK(*w == geo->group_count);
    REQUIRE(write_superblock_totals(**dev, *geo).ok());
    CHECK(run("e2fsck -fn '" + img + "'") == 4);

    std::vector<std::pair<uint32_t, GroupCounts>> right;
    for (uint32_t g = 0; g < geo->group_count; ++g) {
      auto c = count_group(**dev, *geo, g);
      REQUIRE(c.ok());
      right.push_back({g, *c});
    }
    auto w2 = write_group_counts(**dev, *geo, right);
    REQUIRE(w2.ok());
    CHECK(*w2 == geo->group_count);
    REQUIRE(write_superblock_totals(**dev, *geo).ok());
    CHECK(run("e2fsck -fn '" + img + "'") == 0);
    // A second pass changes nothing.
    auto w3 = write_group_counts(**dev, *geo, right);
    REQUIRE(w3.ok());
    CHECK(*w3 == 0);
    dev->reset();
    run("rm -rf '" + dir + "'");
  }
}

TEST_CASE("group counts: a device that is not ext3 is refused in one line", "[cluster][counts]") {
  const std::string dir = scratch_dir();
  const std::string img = dir + "/zero.img";
  REQUIRE(run("truncate -s 4M '" + img + "'") == 0);
  auto dev = open_block_device(img, OpenOptions{});
  REQUIRE(dev.ok());
  auto geo = read_ext3_geometry(**dev);
  REQUIRE_FALSE(geo.ok());
  CHECK(geo.status().code() == Status::Code::kNotSupported);
  CHECK(geo.status().message().find('\n') == std::string::npos);
  dev->reset();
  run("rm -rf '" + dir + "'");
}
