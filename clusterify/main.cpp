// clusterify: offline conversion of an ext3 filesystem into the cext3 layout,
// and its verification, report, slot changes and revert.
// The program is thin: it parses arguments, opens the device, calls libcext3
// and prints. Exit codes: 0 success, 1 refused or failed (one line on
// stderr: what, why, what to do), 2 usage; verify uses fsck(8) codes.
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <utility>
#include <string>
#include <vector>

#include "cext3/cluster/convert.h"
#include "cext3/cluster/preflight.h"
#include "cext3/node/heartbeat.h"
#include "commands.h"
#include "device.h"
#include "journal_cmd.h"

namespace clusterify {

int fail(const std::string& cmd, const cext3::Status& s) {
  std::fprintf(stderr, "clusterify %s: %s\n", cmd.c_str(), s.message().c_str());
  return 1;
}

// A progress line on a terminal for the phases that can take long; nothing
// when stderr is not a terminal (scripts, tests).
cext3::cluster::ProgressFn make_progress() {
  if (!isatty(STDERR_FILENO)) return {};
  return [](const char* phase, uint64_t done, uint64_t total) {
    unsigned pct = total ? static_cast<unsigned>(done * 100 / total) : 100;
    std::fprintf(stderr, "\r%-48s %3u%%", phase, pct);
    if (done >= total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

}  // namespace clusterify

namespace {

struct ConvertArgs {
  std::string device;
  uint32_t slots = 0;
  uint32_t journal_mib = 0;
  std::string policy = "contiguous";
  bool no_mmp = false;
  bool dry_run = false;
  bool yes = false;
  // Cluster timing; 0 = the default in cluster::Timing.
  uint32_t heartbeat_ms = 0, dead_after_ms = 0, fence_margin_ms = 0, io_timeout_ms = 0;
};

// A subcommand that works on one DEVICE (all of them do).
CLI::App* add_command(CLI::App& app, const char* name, const char* help, std::string& device) {
  CLI::App* c = app.add_subcommand(name, help);
  c->add_option("DEVICE", device, "image file, block device or nbd:// URI")->required();
  return c;
}

int run_convert(const ConvertArgs& a) {
  using namespace cext3::cluster;
  ConvertOptions o;
  o.slots = a.slots;
  o.journal_size_mib = a.journal_mib;
  o.policy = a.policy == "balanced" ? GroupPolicy::kBalanced : GroupPolicy::kContiguous;
  o.mmp = !a.no_mmp;
  o.dry_run = a.dry_run;
  if (a.heartbeat_ms) o.timing.heartbeat_interval_ms = a.heartbeat_ms;
  if (a.dead_after_ms) o.timing.dead_after_ms = a.dead_after_ms;
  if (a.fence_margin_ms) o.timing.fence_margin_ms = a.fence_margin_ms;
  if (a.io_timeout_ms) o.timing.io_timeout_ms = a.io_timeout_ms;
  if (cext3::Status ts = cext3::node::validate_timing(o.timing); !ts.ok()) return clusterify::fail("convert", ts);
  auto dev = clusterify::open_device_for_change(a.device, a.dry_run);
  if (!dev.ok()) return clusterify::fail("convert", dev.status());
  if (a.no_mmp && !a.dry_run)
    std::fprintf(stderr,
                 "clusterify convert: warning: --no-mmp: nothing will stop a stock kernel or e2fsck from using %s "
                 "while the cluster is live; only use it where no machine mounts the disk outside jcoord\n",
                 a.device.c_str());
  auto r = convert_to_cluster(**dev, o, clusterify::make_progress());
  if (!r.ok()) return clusterify::fail("convert", r.status());
  std::fputs(describe_convert(*r).c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Installed as fsck.cext3 (a symlink), fsck(8) calls "fsck.cext3 [-a|-p|-n|-y|-f] DEVICE":
  // that is "clusterify verify", with fsck's -a meaning -p.
  std::vector<std::string> fsck_args;
  std::vector<char*> fsck_argv;
  const std::string self = argv[0];
  if (self.size() >= 10 && self.compare(self.size() - 10, 10, "fsck.cext3") == 0) {
    fsck_args.push_back(argv[0]);
    fsck_args.push_back("verify");
    for (int i = 1; i < argc; ++i) fsck_args.push_back(std::string(argv[i]) == "-a" ? "-p" : argv[i]);
    for (auto& a : fsck_args) fsck_argv.push_back(a.data());
    fsck_argv.push_back(nullptr);
    argc = static_cast<int>(fsck_args.size());
    argv = fsck_argv.data();
  }
  CLI::App app{"clusterify: convert an ext3 filesystem in place for shared-disk cluster use, "
               "verify it, report on it, change its slot count, and revert it"};
  app.require_subcommand(1);
  // Each subcommand: its options, and what runs when it is chosen.
  std::vector<std::pair<CLI::App*, std::function<int()>>> commands;

  ConvertArgs ca;
  auto* convert = add_command(app, "convert", "convert a clean, unmounted ext3 in place (atomic)", ca.device);
  convert->add_option("--slots,-N", ca.slots, "number of node slots (1-255)")->required();
  convert->add_option("--journal-size,-J", ca.journal_mib, "journal size per slot in MiB (default: from fs size)");
  convert->add_option("--group-policy", ca.policy, "contiguous (slot i gets one run of groups) or balanced (round robin)")
      ->check(CLI::IsMember({"contiguous", "balanced"}));
  convert->add_flag("--no-mmp", ca.no_mmp, "do not enable multi-mount protection (prints a warning)");
  convert->add_option("--heartbeat-interval-ms", ca.heartbeat_ms, "cluster timing: heartbeat interval (default 400)");
  convert->add_option("--dead-after-ms", ca.dead_after_ms, "cluster timing: a silent node is dead after this (default 2500)");
  convert->add_option("--fence-margin-ms", ca.fence_margin_ms,
                      "cluster timing: wait past a node's fence deadline before recovery (default 700)");
  convert->add_option("--io-timeout-ms", ca.io_timeout_ms,
                      "cluster timing: a slower heartbeat write does not count (default 700)");
  convert->add_flag("--dry-run,-n", ca.dry_run, "print the plan, write nothing");
  convert->add_flag("--yes,-y", ca.yes, "do not ask for confirmation");
  commands.push_back({convert, [&] { return run_convert(ca); }});

  clusterify::InfoArgs ia;
  auto* info = add_command(app, "info", "report slots, groups, free space, journals, heartbeats, MMP", ia.device);
  info->add_flag("--json", ia.json, "machine-readable output");
  commands.push_back({info, [&] { return clusterify::run_info(ia); }});

  clusterify::VerifyArgs va;
  auto* verify = add_command(app, "verify", "fsck-style check of every cluster invariant, then e2fsck", va.device);
  verify->add_flag("-n", va.no_change, "check only, change nothing");
  verify->add_flag("-p", va.preen, "repair what is safe automatically");
  verify->add_flag("-y", va.yes, "repair everything");
  verify->add_flag("-f", va.force, "check even if clean (always on for the cluster checks)");
  verify->add_flag("--json", va.json, "machine-readable output");
  commands.push_back({verify, [&] { return clusterify::run_verify(va); }});

  clusterify::RevertArgs ra;
  auto* revert = add_command(app, "revert", "remove the cluster metadata: back to plain ext3 (atomic)", ra.device);
  revert->add_flag("--dry-run", ra.dry_run, "print what would be removed, write nothing");
  commands.push_back({revert, [&] { return clusterify::run_revert(ra); }});

  clusterify::SlotsArgs sa;
  auto* slots = add_command(app, "slots", "change the slot count offline (atomic)", sa.device);
  slots->add_option("--set", sa.slots, "new slot count")->required();
  slots->add_option("--journal-size,-J", sa.journal_mib, "size of new journals in MiB (default: as the existing)");
  slots->add_flag("--dry-run", sa.dry_run, "print the plan, write nothing");
  commands.push_back({slots, [&] { return clusterify::run_slots(sa); }});

  add_journal_command(app);

  CLI11_PARSE(app, argc, argv);
  for (auto& [cmd, run] : commands)
    if (*cmd) return run();
  return run_journal_command(app);
}
