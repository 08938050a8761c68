#include <catch2/catch.hpp>

#include "cext3/cluster/crc32c.h"
#include "cext3/cluster/group_map.h"
#include "cext3/cluster/header.h"

using namespace cext3::cluster;

namespace {

ClusterHeader sample_header(uint32_t slots, uint32_t groups) {
  ClusterHeader h;
  h.generation = 7;
  for (int i = 0; i < 16; ++i) h.uuid[i] = static_cast<uint8_t>(i * 17 + 3);
  h.slot_count = slots;
  h.block_size = 1024;
  h.blocks_count = groups * 8192ull;
  h.policy = GroupPolicy::kBalanced;
  h.system_dir_inode = 12;
  h.files.push_back({SystemFileKind::kCluster, 0, 13, 5000, 2});
  h.files.push_back({SystemFileKind::kHeartbeat, 0, 14, 5002, 1});
  h.files.push_back({SystemFileKind::kLocks, 0, 15, 5003, 1});
  for (uint32_t s = 0; s < slots; ++s) h.files.push_back({SystemFileKind::kJournal, s, 16 + s, 6000 + 1024ull * s, 1024});
  h.group_slot = make_group_map(GroupPolicy::kBalanced, groups, slots).value();
  return h;
}

}  // namespace

TEST_CASE("cluster header round-trips through its encoding", "[cluster][header]") {
  for (uint32_t groups : {1u, 3u, 8u, 1000u, 40000u}) {
    ClusterHeader h = sample_header(1, groups);
    uint32_t copy = header_copy_size(static_cast<uint32_t>(h.files.size()), groups, 1024);
    REQUIRE(copy % 1024 == 0);
    auto enc = encode_header(h, copy);
    REQUIRE(enc.ok());
    REQUIRE(enc->size() == copy);
    auto dec = decode_header(*enc);
    REQUIRE(dec.ok());
    CHECK(*dec == h);
    REQUIRE(dec->find(SystemFileKind::kJournal, 0) != nullptr);
    CHECK(dec->find(SystemFileKind::kJournal, 1) == nullptr);
  }
}

TEST_CASE("cluster header rejects any flipped bit and a too-small copy", "[cluster][header]") {
  ClusterHeader h = sample_header(4, 16);
  uint32_t used = header_encoded_bytes(static_cast<uint32_t>(h.files.size()), 16);
  CHECK_FALSE(encode_header(h, used - 1).ok());
  auto enc = encode_header(h, 1024).value();
  for (uint32_t byte = 0; byte < used; byte += 7) {
    auto bad = enc;
    bad[byte] ^= 0x10;
    CHECK_FALSE(decode_header(bad).ok());
  }
  // Bytes past the used region are padding and not covered.
  auto padded = enc;
  padded[used + 1] ^= 0xFF;
  CHECK(decode_header(padded).ok());
}

TEST_CASE("A/B choice takes the valid copy with the higher generation", "[cluster][header]") {
  ClusterHeader h = sample_header(2, 10);
  auto a = encode_header(h, 1024).value();
  ClusterHeader h2 = h;
  h2.generation = 8;
  h2.slot_count = 3;
  auto b = encode_header(h2, 1024).value();
  std::vector<uint8_t> file(a);
  file.insert(file.end(), b.begin(), b.end());
  auto c = choose_header(file);
  REQUIRE(c.ok());
  CHECK(c->current == 1);
  CHECK(c->header.slot_count == 3);
  // Tear copy B (as a crash during its update would): A still wins.
  file[1024 + 30] ^= 1;
  c = choose_header(file);
  REQUIRE(c.ok());
  CHECK(c->current == 0);
  CHECK_FALSE(c->b_valid);
  CHECK(c->header.generation == 7);
  // Both torn: corruption.
  file[30] ^= 1;
  CHECK_FALSE(choose_header(file).ok());
}

TEST_CASE("group map: every group in exactly one slot, every slot gets groups", "[cluster][groupmap]") {
  for (auto policy : {GroupPolicy::kContiguous, GroupPolicy::kBalanced}) {
    for (uint32_t groups : {1u, 2u, 5u, 7u, 16u, 100u, 129u}) {
      for (uint32_t slots : {1u, 2u, 3u, 4u, 8u, 16u}) {
        auto m = make_group_map(policy, groups, slots);
        if (groups < slots) {
          CHECK_FALSE(m.ok());
          continue;
        }
        REQUIRE(m.ok());
        REQUIRE(m->size() == groups);
        auto by = groups_by_slot(*m, slots);
        size_t total = 0;
        for (uint32_t s = 0; s < slots; ++s) {
          CHECK(!by[s].empty());
          // Fair share: sizes differ by at most one group.
          CHECK(by[s].size() >= groups / slots);
          CHECK(by[s].size() <= (groups + slots - 1) / slots);
          total += by[s].size();
          if (policy == GroupPolicy::kContiguous)
            for (size_t i = 1; i < by[s].size(); ++i) CHECK(by[s][i] == by[s][i - 1] + 1);
        }
        CHECK(total == groups);
        for (uint32_t g = 0; g < groups; ++g) CHECK((*m)[g] < slots);
      }
    }
  }
  CHECK(make_group_map(GroupPolicy::kBalanced, 10, 4).value()[5] == 1);
  CHECK(make_group_map(GroupPolicy::kContiguous, 8, 4).value() == std::vector<uint16_t>{0, 0, 1, 1, 2, 2, 3, 3});
  CHECK_FALSE(make_group_map(GroupPolicy::kContiguous, 8, 0).ok());
}
