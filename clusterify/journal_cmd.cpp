// The `clusterify journal` subcommand: thin wrapper over cext3/journal.h.
#include "journal_cmd.h"

#include <cstdio>
#include <string>

#include "cext3/journal.h"
#include "device.h"

namespace {

struct JournalArgs {
  std::string device;
  bool main_journal = false;
  uint32_t inode = 0;
  bool all = false;
  bool dry_run = false;
};

JournalArgs g_args;

cext3::Result<cext3::journal::JournalMap> locate(const JournalArgs& a) {
  if (a.main_journal == (a.inode != 0))
    return cext3::Status::InvalidArgument("give exactly one of --main (the filesystem's journal) or --inode N");
  return cext3::journal::JournalMap::from_image_inode(a.device, a.main_journal ? 0 : a.inode);
}

int run_dump(const JournalArgs& a) {
  auto map = locate(a);
  if (!map.ok()) return clusterify::fail("journal dump", map.status());
  auto dev = clusterify::open_device_read_only(a.device);
  if (!dev.ok()) return clusterify::fail("journal dump", dev.status());
  auto text = cext3::journal::dump_journal(*dev.value(), map.value(), a.all);
  if (!text.ok()) return clusterify::fail("journal dump", text.status());
  std::fputs(text->c_str(), stdout);
  return 0;
}

int run_replay(const JournalArgs& a) {
  auto map = locate(a);
  if (!map.ok()) return clusterify::fail("journal replay", map.status());
  auto dev = clusterify::open_device_for_change(a.device, a.dry_run);
  if (!dev.ok()) return clusterify::fail("journal replay", dev.status());
  cext3::journal::RecoverOptions opts;
  opts.dry_run = a.dry_run;
  auto rep = a.main_journal ? cext3::journal::recover_fs_journal(*dev.value(), map.value(), opts)
                            : cext3::journal::recover_journal(*dev.value(), map.value(), opts);
  if (!rep.ok()) return clusterify::fail("journal replay", rep.status());
  const auto& r = rep.value();
  if (r.was_clean) {
    std::printf("journal is clean: nothing to replay\n");
    return 0;
  }
  std::printf("%s%u transaction(s) %u..%u, %llu block(s) replayed, %llu revoked (%llu revoke records); "
              "scan stopped: %s\n",
              a.dry_run ? "would replay " : "replayed ", r.transactions, r.first_tid,
              r.end_tid == r.first_tid ? r.first_tid : r.end_tid - 1,
              static_cast<unsigned long long>(r.blocks_replayed), static_cast<unsigned long long>(r.blocks_revoked),
              static_cast<unsigned long long>(r.revoke_records), r.stop_reason.c_str());
  if (!a.dry_run) std::printf("journal marked clean, next sequence %u\n", r.new_sequence);
  return 0;
}

}  // namespace

void add_journal_command(CLI::App& app) {
  auto* j = app.add_subcommand("journal", "dump or replay a jbd2 journal (the filesystem's or a per-slot one)");
  j->require_subcommand(1);
  auto add_common = [](CLI::App* c) {
    c->add_option("DEVICE", g_args.device, "image file or block device")->required();
    c->add_flag("--main", g_args.main_journal, "the filesystem's own journal (s_journal_inum, inode 8)");
    c->add_option("--inode", g_args.inode, "a journal stored in regular file inode N (per-slot journals)");
  };
  auto* dump = j->add_subcommand("dump", "list the journal's superblock and transactions (like debugfs logdump)");
  add_common(dump);
  dump->add_flag("--all,-a", g_args.all, "also walk a clean journal from its first block");
  auto* replay = j->add_subcommand("replay", "replay committed transactions in place and mark the journal clean");
  add_common(replay);
  replay->add_flag("--dry-run", g_args.dry_run, "scan and report, write nothing");
}

int run_journal_command(CLI::App& app) {
  CLI::App* j = app.get_subcommand("journal");
  if (!j || !*j) return 2;
  if (*j->get_subcommand("dump")) return run_dump(g_args);
  if (*j->get_subcommand("replay")) return run_replay(g_args);
  return 2;
}
