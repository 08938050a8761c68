#include "cext3/node/cluster_disk.h"

#include <catch2/catch.hpp>

#include <sstream>

#include "cext3/block_device.h"
#include "cext3/memory_device.h"
#include "node/test_cluster.h"

using namespace cext3;
using namespace cext3::node;
using namespace cext3::node::testing;

TEST_CASE("ClusterDisk: records round-trip at the header's offsets", "[node][disk]") {
  for (uint32_t sector : {512u, 4096u}) {
    INFO("sector size " << sector);
    MemoryCluster mc(5, sector);
    auto disk = mc.disk(mc.device());
    CHECK(disk->heartbeat_offset(3) == kTestHeartbeatByte + 3 * 512);
    CHECK(disk->global_lock_offset() == kTestLocksByte);
    CHECK(disk->lease_offset(0) == kTestLocksByte + 512);

    cluster::HeartbeatRecord h;
    h.slot = 3;
    h.sequence = 42;
    h.generation = 9;
    h.node_name = "n3";
    h.address = "10.0.0.3:7000";
    REQUIRE(disk->write_heartbeat(h).ok());
    auto back = disk->read_heartbeat(3);
    REQUIRE(back.ok());
    CHECK(*back == h);
    // The bytes are where FORMAT.md says: record 3 of the heartbeat file.
    auto raw = cluster::decode_heartbeat(
        std::span<const uint8_t, 512>(mc.device().bytes().data() + kTestHeartbeatByte + 3 * 512, 512));
    REQUIRE(raw.ok());
    CHECK(raw->node_name == "n3");
    // Neighbours in the same (4 KiB) sector are untouched.
    for (uint32_t s : {2u, 4u}) {
      auto n = disk->read_heartbeat(s);
      REQUIRE(n.ok());
      CHECK(n->sequence == 0);
      CHECK(n->slot == s);
    }

    cluster::SlotLeaseRecord l;
    l.slot = 4;
    l.owned = 1;
    l.lease_generation = 77;
    l.owner = "n4";
    REQUIRE(disk->write_lease(l).ok());
    auto lb = disk->read_lease(4);
    REQUIRE(lb.ok());
    CHECK(*lb == l);
    cluster::LocksGlobalRecord g{5, 1, 12};
    REQUIRE(disk->write_global(g).ok());
    auto gb = disk->read_global();
    REQUIRE(gb.ok());
    CHECK(*gb == g);
    // The global record did not disturb lease 0 next to it.
    auto l0 = disk->read_lease(0);
    REQUIRE(l0.ok());
    CHECK(l0->owned == 0);

    auto all = disk->read_all_heartbeats();
    REQUIRE(all.ok());
    REQUIRE(all->size() == 5);
    CHECK((*all)[3].ok());
    CHECK((*all)[3]->sequence == 42);
    auto leases = disk->read_all_leases();
    REQUIRE(leases.ok());
    CHECK((*leases)[4]->owner == "n4");
  }
}

TEST_CASE("ClusterDisk: a damaged record fails alone, a misplaced one is named", "[node][disk]") {
  MemoryCluster mc(4);
  auto disk = mc.disk(mc.device());
  mc.device().bytes()[kTestHeartbeatByte + 2 * 512 + 100] ^= 0xFF;  // slot 2's heartbeat
  auto r = disk->read_heartbeat(2);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
  auto all = disk->read_all_heartbeats();
  REQUIRE(all.ok());
  CHECK((*all)[1].ok());
  CHECK_FALSE((*all)[2].ok());
  CHECK((*all)[2].status().message().find("slot 2") != std::string::npos);
  // Slot 1's sector holding a record that says slot 0.
  cluster::HeartbeatRecord h;
  h.slot = 0;
  cluster::encode_heartbeat(h, std::span<uint8_t, 512>(mc.device().bytes().data() + kTestHeartbeatByte + 512, 512));
  auto m = disk->read_heartbeat(1);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().message().find("names slot 0") != std::string::npos);
  CHECK(disk->read_heartbeat(4).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("ClusterDisk: open refuses what is not a cext3 filesystem", "[node][disk]") {
  MemoryDevice blank(4 << 20);
  auto r = ClusterDisk::open(blank);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kNotSupported);
  CHECK(r.status().message().find("clusterify convert") != std::string::npos);

  ScratchDir dir;
  REQUIRE_FALSE(dir.path().empty());
  const std::string img = dir.path() + "/plain.img";
  auto mk = run_command("truncate -s 16M " + shell_quote(img) + " && mke2fs -q -F -t ext3 " + shell_quote(img) + " 2>&1");
  REQUIRE(mk.exit_code == 0);
  auto dev = open_block_device(img);
  REQUIRE(dev.ok());
  auto p = ClusterDisk::open(**dev);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Status::Code::kNotSupported);
  CHECK(p.status().message().find("/.cext3") != std::string::npos);
}

TEST_CASE("ClusterDisk: open finds the system files where debugfs finds them", "[node][disk]") {
  auto bin = cext3_bin();
  if (!bin) return;
  ScratchDir dir;
  REQUIRE_FALSE(dir.path().empty());
  const std::string img = make_cluster_image(*bin, dir.path(), 3);
  auto dev = open_block_device(img);
  REQUIRE(dev.ok());
  auto disk = ClusterDisk::open(**dev);
  REQUIRE(disk.ok());
  CHECK((*disk)->slot_count() == 3);
  CHECK((*disk)->block_size() == 1024);
  CHECK((*disk)->timing() == cluster::Timing{});  // clusterify's defaults: 500/1000/3000/1000

  // debugfs "blocks" lists a file's data blocks; the first one times the
  // block size is where record 0 / the global record must be.
  auto first_block = [&](const std::string& path) {
    auto r = run_command("debugfs -R " + shell_quote("blocks " + path) + " " + shell_quote(img) + " 2>/dev/null");
    REQUIRE(r.exit_code == 0);
    std::istringstream in(r.out);
    uint64_t b = 0;
    in >> b;
    REQUIRE(b != 0);
    return b;
  };
  CHECK((*disk)->heartbeat_offset(0) == first_block("/.cext3/heartbeat") * 1024);
  CHECK((*disk)->global_lock_offset() == first_block("/.cext3/locks") * 1024);
  CHECK((*disk)->journal_offset(2) == first_block("/.cext3/journal.02") * 1024);
  CHECK((*disk)->journal_bytes(2) == 1024 * 1024);
  auto mmp = run_command("debugfs -R dump_mmp " + shell_quote(img) + " 2>/dev/null");
  REQUIRE(mmp.exit_code == 0);
  REQUIRE((*disk)->has_mmp());
  CHECK(mmp.out.find("block_number: " + std::to_string((*disk)->mmp_offset() / 1024) + "\n") != std::string::npos);

  // Records as clusterify wrote them: empty heartbeats, free leases.
  auto hb = (*disk)->read_all_heartbeats();
  REQUIRE(hb.ok());
  for (auto& r : *hb) {
    REQUIRE(r.ok());
    CHECK(r->sequence == 0);
  }
  auto g = (*disk)->read_global();
  REQUIRE(g.ok());
  CHECK(g->slot_count == 3);
}
