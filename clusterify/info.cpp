// clusterify info: what the cluster metadata says, for operators and scripts.
#include <cstdio>
#include <ctime>
#include <sstream>
#include <string>

#include "cext3/cluster/inspect.h"
#include "cext3/cluster/layout.h"
#include "commands.h"
#include "device.h"
#include "json.h"

namespace clusterify {
namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

std::string uuid_str(const std::array<uint8_t, 16>& u) {
  char b[40];
  std::snprintf(b, sizeof b, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2],
                u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return b;
}

std::string mib(uint64_t blocks, uint32_t bs) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB", static_cast<double>(blocks) * bs / (1024.0 * 1024.0));
  return b;
}

std::string hb_age(const cext3::cluster::SlotInfo& s, uint64_t now) {
  if (!s.heartbeat_ok) return "damaged";
  if (s.heartbeat.sequence == 0) return "never";
  const char* left = s.heartbeat.stopped() ? ", left cleanly" : "";
  if (s.heartbeat.time_ns > now) return std::string("in the future") + left;
  char b[64];
  std::snprintf(b, sizeof b, "%.1f s ago%s", static_cast<double>(now - s.heartbeat.time_ns) / 1e9, left);
  return b;
}

void print_json(const cext3::cluster::ClusterInfo& ci) {
  using namespace cext3::cluster;
  const uint64_t now = now_ns();
  std::ostringstream o;
  o << "{\"device\":" << json_str(ci.device) << ",\"clusterified\":" << json_bool(ci.clusterified)
    << ",\"block_size\":" << ci.block_size << ",\"groups\":" << ci.groups << ",\"blocks\":" << ci.blocks_count
    << ",\"free_blocks\":" << ci.free_blocks << ",\"mmp\":{\"enabled\":" << json_bool(ci.mmp.enabled);
  if (ci.mmp.enabled)
    o << ",\"block\":" << ci.mmp.block << ",\"clean\":" << json_bool(ci.mmp.clean()) << ",\"sequence\":" << ci.mmp.sequence
      << ",\"node\":" << json_str(ci.mmp.node) << ",\"interval\":" << ci.mmp.interval
      << ",\"in_use_by_cluster\":" << json_bool(ci.mmp.in_use_by_cluster()) << ",\"state\":" << json_str(ci.mmp.describe());
  o << "}";
  if (ci.clusterified) {
    const ClusterHeader& h = ci.header.header;
    o << ",\"format_version\":" << h.version << ",\"generation\":" << h.generation << ",\"uuid\":" << json_str(uuid_str(h.uuid))
      << ",\"header_copy_a_valid\":" << json_bool(ci.header.a_valid) << ",\"header_copy_b_valid\":"
      << json_bool(ci.header.b_valid) << ",\"current_copy\":" << json_str(ci.header.current ? "B" : "A")
      << ",\"slot_count\":" << h.slot_count << ",\"group_policy\":" << json_str(to_string(h.policy))
      << ",\"timing\":{\"heartbeat_interval_ms\":" << h.timing.heartbeat_interval_ms << ",\"io_timeout_ms\":"
      << h.timing.io_timeout_ms << ",\"dead_after_ms\":" << h.timing.dead_after_ms << ",\"fence_margin_ms\":"
      << h.timing.fence_margin_ms << "},\"coordinator_epoch\":" << ci.locks.coordinator_epoch << ",\"slots\":[";
    for (size_t i = 0; i < ci.slots.size(); ++i) {
      const SlotInfo& s = ci.slots[i];
      if (i) o << ",";
      o << "{\"slot\":" << s.slot << ",\"groups\":" << s.groups << ",\"free_blocks\":" << s.free_blocks
        << ",\"journal\":{\"inode\":" << s.journal_inode << ",\"first_block\":" << s.journal_first_block
        << ",\"blocks\":" << s.journal_blocks << ",\"valid\":" << json_bool(s.journal_ok) << ",\"clean\":"
        << json_bool(s.journal_clean) << ",\"sequence\":" << s.journal_sequence << "},\"heartbeat\":{\"valid\":"
        << json_bool(s.heartbeat_ok) << ",\"sequence\":" << s.heartbeat.sequence << ",\"time_ns\":" << s.heartbeat.time_ns
        << ",\"age_ns\":"
        << (s.heartbeat.sequence && s.heartbeat.time_ns <= now ? std::to_string(now - s.heartbeat.time_ns) : "null")
        << ",\"node\":" << json_str(s.heartbeat.node_name) << ",\"address\":" << json_str(s.heartbeat.address)
        << ",\"stopped\":" << json_bool(s.heartbeat.stopped())
        << "},\"lease\":{\"valid\":" << json_bool(s.lease_ok) << ",\"owned\":" << json_bool(s.lease.owned)
        << ",\"owner\":" << json_str(s.lease.owner) << ",\"journal_dirty\":" << json_bool(s.lease.journal_dirty)
        << ",\"recovery_generation\":" << s.lease.recovery_generation << "},\"live\":"
        << json_bool(slot_is_live(ci, s, now)) << ",\"dirty\":" << json_bool(slot_is_dirty(s)) << "}";
    }
    o << "]";
  }
  o << "}\n";
  std::fputs(o.str().c_str(), stdout);
}

void print_text(const cext3::cluster::ClusterInfo& ci) {
  using namespace cext3::cluster;
  const uint64_t now = now_ns();
  const uint32_t bs = ci.block_size;
  if (!ci.clusterified) {
    std::printf("%s: plain ext3 filesystem, not clusterified (no /.cext3)\n", ci.device.c_str());
    std::printf("  %llu blocks of %u bytes, %u groups, %s free\n", static_cast<unsigned long long>(ci.blocks_count), bs,
                ci.groups, mib(ci.free_blocks, bs).c_str());
    std::printf("  convert it with: clusterify convert %s --slots N\n", ci.device.c_str());
    return;
  }
  const ClusterHeader& h = ci.header.header;
  std::printf("%s: cext3 cluster filesystem (format %u, generation %llu)\n", ci.device.c_str(), h.version,
              static_cast<unsigned long long>(h.generation));
  std::printf("  cluster uuid %s\n", uuid_str(h.uuid).c_str());
  std::printf("  %llu blocks of %u bytes, %u groups, %s free\n", static_cast<unsigned long long>(ci.blocks_count), bs,
              ci.groups, mib(ci.free_blocks, bs).c_str());
  std::printf("  header copies: A %s, B %s; current %s\n", ci.header.a_valid ? "valid" : "INVALID",
              ci.header.b_valid ? "valid" : "INVALID", ci.header.current ? "B" : "A");
  std::printf("  slots: %u, group policy %s\n", h.slot_count, to_string(h.policy));
  std::printf("  timing: heartbeat every %u ms, I/O timeout %u ms, dead after %u ms, fence margin %u ms\n",
              h.timing.heartbeat_interval_ms, h.timing.io_timeout_ms, h.timing.dead_after_ms, h.timing.fence_margin_ms);
  if (ci.mmp.enabled)
    std::printf("  MMP: block %llu, %s (sequence 0x%x, node '%s', interval %u s)\n",
                static_cast<unsigned long long>(ci.mmp.block), ci.mmp.describe().c_str(), ci.mmp.sequence,
                ci.mmp.node.c_str(), ci.mmp.interval);
  else
    std::printf("  MMP: off\n");
  if (ci.locks_ok)
    std::printf("  coordinator: %s, epoch %llu\n",
                ci.locks.coordinator_slot == kNoSlot ? "none" : ("slot " + std::to_string(ci.locks.coordinator_slot)).c_str(),
                static_cast<unsigned long long>(ci.locks.coordinator_epoch));
  else
    std::printf("  locks: DAMAGED (%s)\n", ci.locks_error.c_str());
  for (const SlotInfo& s : ci.slots) {
    std::printf("  slot %u: %u groups, %s free; %s ", s.slot, s.groups, mib(s.free_blocks, bs).c_str(),
                journal_file_name(s.slot).c_str());
    if (s.journal_ok)
      std::printf("%s (sequence %u, %s)", s.journal_clean ? "clean" : "DIRTY", s.journal_sequence,
                  mib(s.journal_blocks, bs).c_str());
    else
      std::printf("INVALID (%s)", s.journal_error.c_str());
    std::printf("; heartbeat %s", hb_age(s, now).c_str());
    if (s.heartbeat_ok && s.heartbeat.sequence)
      std::printf(" by %s at %s", s.heartbeat.node_name.c_str(), s.heartbeat.address.c_str());
    if (s.lease_ok)
      std::printf("; lease %s%s", s.lease.owned ? ("held by " + s.lease.owner).c_str() : "free",
                  s.lease.journal_dirty ? ", journal marked dirty" : "");
    std::printf("%s\n", slot_is_live(ci, s, now) ? " [LIVE]" : "");
  }
}

}  // namespace

int run_info(const InfoArgs& a) {
  auto dev = open_device_read_only(a.device);
  if (!dev.ok()) return fail("info", dev.status());
  auto ci = cext3::cluster::read_cluster_info(**dev);
  if (!ci.ok()) return fail("info", ci.status());
  if (a.json) print_json(*ci);
  else print_text(*ci);
  return 0;
}

}  // namespace clusterify
