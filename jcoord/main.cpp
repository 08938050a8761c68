// jcoord: the per-node cluster daemon. The program is thin: it parses
// arguments and calls libcext3 (daemon/, node/, locks/).
#include <CLI/CLI.hpp>
#include <yaml-cpp/yaml.h>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "cext3/block_device.h"
#include "cext3/daemon/config.h"
#include "cext3/daemon/control.h"
#include "cext3/daemon/node_daemon.h"
#include "cext3/daemon/slot_recovery.h"
#include "cext3/engine/orphans.h"
#include "cext3/node/cluster_disk.h"
#include "cext3/node/fence.h"
#include "cext3/node/mmp.h"
#include "exec_cmd.h"

using namespace cext3;

namespace {

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

int fail(const std::string& msg, int rc = kExitError) {
  std::fprintf(stderr, "jcoord: %s\n", msg.c_str());
  return rc;
}

// The control socket named by --socket, or by the config's control_socket.
Result<std::string> socket_path(const std::string& socket, const std::string& config) {
  if (!socket.empty()) return socket;
  if (config.empty()) return Status::InvalidArgument("name the node with --config FILE or --socket PATH");
  auto c = daemon::load_node_config(config);
  if (!c.ok()) return c.status();
  return c->control_socket;
}

Result<YAML::Node> request(const std::string& path, const std::string& line) {
  auto cl = daemon::ControlClient::connect(path);
  if (!cl.ok()) return cl.status();
  auto r = (*cl)->request(line);
  if (!r.ok()) return r.status();
  try {
    YAML::Node n = YAML::Load(*r);
    if (!n["ok"] || !n["ok"].as<bool>())
      return Status::InvalidArgument(n["error"] ? n["error"].as<std::string>() : std::string("request failed"));
    return n;
  } catch (const YAML::Exception& e) {
    return Status::Corruption("unreadable reply from jcoord: " + std::string(e.what()));
  }
}

std::string str(const YAML::Node& n, const char* key, const std::string& dflt = "-") {
  return n[key] && !n[key].IsNull() ? n[key].as<std::string>() : dflt;
}

void print_status(const YAML::Node& s) {
  std::printf("node %s  slot %s  generation %s  pid %s%s\n", str(s, "node").c_str(), str(s, "slot").c_str(),
              str(s, "generation").c_str(), str(s, "pid").c_str(),
              s["fenced"].as<bool>() ? "  FENCED" : "");
  std::printf("device %s  locks at %s\n", str(s, "device").c_str(), str(s, "address").c_str());
  std::printf("coordinator: slot %s, epoch %s%s\n", str(s["coordinator"], "slot", "none").c_str(),
              str(s["coordinator"], "epoch").c_str(), s["locks"]["is_master"].as<bool>() ? " (this node)" : "");
  std::printf("\n%-5s %-9s %-16s %-22s %9s %8s %-6s %s\n", "slot", "state", "node", "address", "hb age", "seq",
              "lease", "journal");
  for (const auto& sl : s["slots"]) {
    std::string state = str(sl, "liveness");
    if (sl["self"].as<bool>()) state += "*";
    std::string age = sl["heartbeat_age_ms"] ? sl["heartbeat_age_ms"].as<std::string>() + " ms" : "-";
    std::string lease = sl["lease"] ? (sl["lease"]["owned"].as<bool>() ? "owned" : "free") : "?";
    if (sl["lease"] && sl["lease"]["journal_dirty"].as<bool>()) lease += ",dirty";
    std::string j = "?";
    if (sl["journal"] && sl["journal"]["sequence"])
      j = std::string(sl["journal"]["clean"].as<bool>() ? "clean" : "DIRTY") + " seq " +
          sl["journal"]["sequence"].as<std::string>();
    std::string node = str(sl, "node", "");
    std::printf("%-5s %-9s %-16s %-22s %9s %8s %-6s %s\n", str(sl, "slot").c_str(), state.c_str(),
                node.empty() ? "-" : node.c_str(), str(sl, "address", "-").c_str(), age.c_str(),
                str(sl, "sequence").c_str(), lease.c_str(), j.c_str());
  }
  const auto& l = s["locks"];
  std::printf("\nlocks: %s grants, %s cached re-grants, %s callbacks; held here:\n", str(l, "grants").c_str(),
              str(l, "cached_grants").c_str(), str(l, "callbacks").c_str());
  if (l["held"].size() == 0) std::printf("  (none)\n");
  for (const auto& h : l["held"])
    std::printf("  %-32s %-2s holders %s waiters %s\n", str(h, "resource").c_str(), str(h, "mode").c_str(),
                str(h, "holders").c_str(), str(h, "waiters").c_str());
  if (l["is_master"].as<bool>()) {
    std::printf("master table:\n");
    if (l["master"].size() == 0) std::printf("  (empty)\n");
    for (const auto& m : l["master"]) {
      std::string g;
      for (const auto& e : m["granted"]) g += " " + str(e, "slot") + ":" + str(e, "mode");
      std::printf("  %-32s granted%s  waiting %s\n", str(m, "resource").c_str(), g.empty() ? " -" : g.c_str(),
                  str(m, "waiting").c_str());
    }
  }
}

int cmd_recover(const std::string& device, uint32_t slot, bool yes) {
  OpenOptions oo;
  oo.direct = true;
  auto dev = open_block_device(device, oo);
  if (!dev.ok()) return fail(dev.status().message());
  auto disk = node::ClusterDisk::open(**dev);
  if (!disk.ok()) return fail(disk.status().message());
  node::ClusterDisk& d = **disk;
  if (slot >= d.slot_count())
    return fail("slot " + std::to_string(slot) + " does not exist: " + device + " has " +
                std::to_string(d.slot_count()) + " slots (0.." + std::to_string(d.slot_count() - 1) + ")");
  // The slot's node must be dead: watch its heartbeat for dead_after plus
  // the fence margin; any change means it is alive and its journal is in use.
  auto before = d.read_heartbeat(slot);
  if (!before.ok()) return fail(before.status().message());
  const auto& t = d.header().timing;
  if (!yes) {
    std::fprintf(stderr, "jcoord: watching slot %u's heartbeat for %u ms to make sure its node is dead...\n", slot,
                 t.dead_after_ms + t.fence_margin_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(t.dead_after_ms + t.fence_margin_ms));
    auto after = d.read_heartbeat(slot);
    if (!after.ok()) return fail(after.status().message());
    if (after->sequence != before->sequence)
      return fail("slot " + std::to_string(slot) + " is live (node '" + after->node_name +
                  "' is heartbeating): it recovers its own journal; stop it first");
  }
  auto r = daemon::recover_slot(d, slot, /*keep_owner=*/false);
  if (!r.ok()) return fail(r.status().message());
  std::printf("slot %u: %s; %u transactions, %llu blocks replayed; lease released (recovery generation %llu)\n", slot,
              r->replay.was_clean ? "journal was clean" : "journal replayed", r->replay.transactions,
              static_cast<unsigned long long>(r->replay.blocks_replayed),
              static_cast<unsigned long long>(r->recovery_generation));
  auto leases = d.read_all_leases();
  bool busy = !leases.ok();
  if (leases.ok())
    for (const auto& l : *leases)
      if (!l.ok() || l->owned || l->journal_dirty) busy = true;
  if (!busy) {
    // Nobody else can be writing, so nothing is open: free every slot's
    // orphans (files unlinked while open, left by nodes that died).
    for (uint32_t s = 0; s < d.slot_count(); ++s) {
      auto o = engine::free_orphans_offline(**dev, s);
      if (!o.ok()) return fail(o.status().message());
      if (*o) std::printf("slot %u: %zu orphans (unlinked while open) freed\n", s, *o);
    }
    // The derived counts of every group can be made exact again (a dead
    // node takes its unfolded deltas with it).
    auto n = daemon::recount_all_groups(d);
    if (!n.ok()) return fail(n.status().message());
    std::printf("no slot is owned or dirty: group counts recomputed (%u descriptors corrected)\n", *n);
    if (d.has_mmp()) {
      Status s = node::mark_mmp_clean(d);
      if (!s.ok()) return fail(s.message());
      std::printf("MMP marked clean\n");
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"jcoord: per-node daemon that mounts a cext3 disk and coordinates with the other nodes "
               "(membership by disk heartbeat, slot leases, self-fencing, cluster locks, recovery)"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "show help for every subcommand");

  std::string config, socket, mount_dir;
  auto* start = app.add_subcommand("start", "run this node in the foreground until SIGTERM or `jcoord stop`");
  start->add_option("--config", config, "YAML configuration file (see docs/jcoord.yaml.example)")->required();
  std::string device_override;
  start->add_option("--mount", mount_dir, "serve the filesystem at DIR through FUSE (overrides the config's `mount`); "
                                          "`umount DIR` then stops the node cleanly");
  start->add_option("--device", device_override, "the shared disk (overrides the config's `device`; mount.cext3 passes it)");

  bool json = false;
  auto* status = app.add_subcommand("status", "show slots, liveness, heartbeat ages, coordinator, locks, journals");
  status->add_flag("--json", json, "print the raw JSON reply");
  auto* stop = app.add_subcommand("stop", "ask a running node to leave the cluster cleanly and exit");
  bool wait_stop = false;
  stop->add_flag("--wait", wait_stop, "return only when the node has exited");
  for (auto* sc : {status, stop}) {
    sc->add_option("--config", config, "the node's configuration file (to find its control socket)");
    sc->add_option("--socket", socket, "the node's control socket");
  }

  std::string resource, mode_s, lvb;
  uint64_t timeout_ms = 30000, hold_ms = 0;
  bool try_only = false;
  auto* lock = app.add_subcommand("lock", "take a cluster lock through a running node, hold it, release it");
  lock->add_option("RESOURCE", resource, "lock name")->required();
  lock->add_option("MODE", mode_s, "NL, PR or EX")->required();
  lock->add_option("--config", config, "the node's configuration file");
  lock->add_option("--socket", socket, "the node's control socket");
  lock->add_option("--timeout-ms", timeout_ms, "give up after this long (default 30000)");
  lock->add_flag("--try", try_only, "fail at once instead of waiting behind a conflicting holder");
  lock->add_option("--hold-ms", hold_ms, "hold the lock this long before releasing it (default 0)");
  lock->add_option("--lvb", lvb, "with EX: hex value block to store on release");

  std::string device;
  uint32_t slot = 0;
  bool yes = false;
  auto* recover = app.add_subcommand("recover", "offline: replay a dead slot's journal and release its lease");
  recover->add_option("DEVICE", device, "the shared disk")->required();
  recover->add_option("--slot", slot, "slot number")->required();
  recover->add_flag("--yes", yes, "skip watching the heartbeat (you know the node is down)");

  auto* exec = app.add_subcommand("exec", "run a filesystem operation on a running node, by path "
                                          "(`jcoord exec help` lists them)");
  std::vector<std::string> exec_args;
  exec->add_option("--config", config, "the node's configuration file");
  exec->add_option("--socket", socket, "the node's control socket");
  exec->add_option("OP", exec_args, "operation and its arguments");
  exec->positionals_at_end();

  CLI11_PARSE(app, argc, argv);

  if (start->parsed()) {
    auto c = daemon::load_node_config(config);
    if (!c.ok()) return fail(c.status().message());
    if (!mount_dir.empty()) c->mount = mount_dir;
    if (!device_override.empty()) c->device = device_override;
    return daemon::run_node(*c);
  }
  if (recover->parsed()) return cmd_recover(device, slot, yes);
  if (exec->parsed() && (exec_args.empty() || exec_args[0] == "help")) return run_exec("", exec_args);

  auto path = socket_path(socket, config);
  if (!path.ok()) return fail(path.status().message(), kExitUsage);
  if (exec->parsed()) return run_exec(*path, exec_args);
  if (status->parsed()) {
    if (json) {
      auto cl = daemon::ControlClient::connect(*path);
      if (!cl.ok()) return fail(cl.status().message());
      auto r = (*cl)->request("status");
      if (!r.ok()) return fail(r.status().message());
      std::printf("%s\n", r->c_str());
      return 0;
    }
    auto r = request(*path, "status");
    if (!r.ok()) return fail(r.status().message());
    print_status(*r);
    return 0;
  }
  if (stop->parsed()) {
    // The control socket is local, so the node's pid is this machine's.
    auto st = request(*path, "status");
    if (!st.ok()) return fail(st.status().message());
    const pid_t pid = (*st)["pid"].as<pid_t>();
    auto r = request(*path, "stop");
    if (!r.ok()) return fail(r.status().message());
    if (wait_stop) {
      for (int i = 0; i < 600; ++i) {
        if (::kill(pid, 0) != 0 && errno == ESRCH) return 0;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      return fail("node (pid " + std::to_string(pid) + ") has not exited after 60 s; see its log");
    }
    return 0;
  }
  if (lock->parsed()) {
    auto cl = daemon::ControlClient::connect(*path);
    if (!cl.ok()) return fail(cl.status().message());
    std::string line = "lock " + resource + " " + mode_s + " " + std::to_string(timeout_ms) + (try_only ? " try" : "");
    auto r = (*cl)->request(line);
    if (!r.ok()) return fail(r.status().message());
    std::printf("%s\n", r->c_str());
    YAML::Node n = YAML::Load(*r);
    if (!n["ok"].as<bool>()) return kExitError;
    std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
    auto u = (*cl)->request("unlock " + n["id"].as<std::string>() + (lvb.empty() ? "" : " " + lvb));
    if (!u.ok()) return fail(u.status().message());
    std::printf("%s\n", u->c_str());
    YAML::Node un = YAML::Load(*u);
    return un["ok"].as<bool>() ? 0 : kExitError;
  }
  return kExitUsage;
}
