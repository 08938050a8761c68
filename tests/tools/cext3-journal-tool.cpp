// cext3-journal-tool: drives libcext3's journal writer from shell tests.
//
//   cext3-journal-tool commit IMAGE [--inode N] [--mode auto|two|one]
//       [--checkpoint-after K] [--no-checkpoint] [--set-recover] --txn SPEC...
//   cext3-journal-tool fs-txn IMAGE --txn SPEC
//   cext3-journal-tool format IMAGE --inode N [--csum] [--sequence S]
//
// SPEC is a comma list of items, one transaction per --txn:
//   B       log fs block B with a pattern derived from (B, transaction number)
//   B=m     the same, but the image starts with the jbd2 magic (escaped)
//   -B      revoke block B
//   sb:L    log the primary superblock with its volume label set to L
// --inode 0 (the default) is the filesystem's own journal (s_journal_inum).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>

#include "cext3/block_device.h"
#include "cext3/journal.h"

namespace cj = cext3::journal;

namespace {

int die(const std::string& what, const cext3::Status& s) {
  std::fprintf(stderr, "cext3-journal-tool %s: %s\n", what.c_str(), s.message().c_str());
  return 1;
}

std::vector<uint8_t> pattern(uint64_t block, uint32_t txn, uint32_t bs) {
  std::vector<uint8_t> v(bs);
  std::mt19937 rng(static_cast<uint32_t>(block * 1000003u + txn));
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

uint64_t sb_block(uint32_t bs) { return bs == 1024 ? 1 : 0; }
size_t sb_off(uint32_t bs) { return bs == 1024 ? 0 : 1024; }

cext3::Result<cj::Transaction> parse_txn(cext3::BlockDevice& dev, uint32_t bs, const std::string& spec,
                                         uint32_t txn_no) {
  cj::Transaction t;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.rfind("sb:", 0) == 0) {
      std::vector<uint8_t> blk(bs);
      CEXT3_RETURN_IF_ERROR(dev.read(sb_block(bs) * bs, blk.data(), bs));
      char* label = reinterpret_cast<char*>(blk.data() + sb_off(bs) + 0x78);  // s_volume_name
      std::memset(label, 0, 16);
      std::strncpy(label, item.c_str() + 3, 16);
      CEXT3_RETURN_IF_ERROR(t.add_block(sb_block(bs), blk));
    } else if (item[0] == '-') {
      t.revoke(std::stoull(item.substr(1)));
    } else {
      bool magic = item.size() > 2 && item.substr(item.size() - 2) == "=m";
      uint64_t b = std::stoull(magic ? item.substr(0, item.size() - 2) : item);
      auto img = pattern(b, txn_no, bs);
      if (magic) {
        img[0] = 0xC0; img[1] = 0x3B; img[2] = 0x39; img[3] = 0x98;
      }
      CEXT3_RETURN_IF_ERROR(t.add_block(b, img));
    }
  }
  return t;
}

cext3::Status set_recover(cext3::BlockDevice& dev, uint32_t bs) {
  std::vector<uint8_t> blk(bs);
  CEXT3_RETURN_IF_ERROR(dev.read(sb_block(bs) * bs, blk.data(), bs));
  blk[sb_off(bs) + 0x60] |= 0x4;  // EXT3_FEATURE_INCOMPAT_RECOVER
  CEXT3_RETURN_IF_ERROR(dev.write(sb_block(bs) * bs, blk.data(), bs));
  return dev.flush();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"drive the cext3 journal writer for tests"};
  app.require_subcommand(1);
  std::string image, mode = "auto";
  uint32_t inode = 0, sequence = 1;
  std::vector<std::string> txns;
  int checkpoint_after = -1;
  bool no_checkpoint = false, recover_flag = false, csum = false;
  auto* commit = app.add_subcommand("commit", "commit transactions to a journal");
  commit->add_option("IMAGE", image)->required();
  commit->add_option("--inode", inode);
  commit->add_option("--mode", mode);
  commit->add_option("--checkpoint-after", checkpoint_after);
  commit->add_flag("--no-checkpoint", no_checkpoint);
  commit->add_flag("--set-recover", recover_flag);
  commit->add_option("--txn", txns)->required();
  auto* fstx = app.add_subcommand("fs-txn", "commit_and_checkpoint_fs_transaction");
  fstx->add_option("IMAGE", image)->required();
  fstx->add_option("--txn", txns)->required();
  auto* fmt = app.add_subcommand("format", "format a journal file");
  fmt->add_option("IMAGE", image)->required();
  fmt->add_option("--inode", inode)->required();
  fmt->add_flag("--csum", csum);
  fmt->add_option("--sequence", sequence);
  CLI11_PARSE(app, argc, argv);

  auto map = cj::JournalMap::from_image_inode(image, inode);
  if (!map.ok()) return die("locate", map.status());
  cext3::OpenOptions oo;
  oo.direct = false;
  auto dev = cext3::open_block_device(image, oo);
  if (!dev.ok()) return die("open", dev.status());
  const uint32_t bs = map->block_size();

  if (*fmt) {
    cj::FormatOptions fo;
    fo.sequence = sequence;
    if (csum) fo.feature_incompat |= cj::kIncompatCsumV3;
    auto s = cj::format_journal(**dev, *map, fo);
    return s.ok() ? 0 : die("format", s);
  }
  if (*fstx) {
    auto t = parse_txn(**dev, bs, txns.at(0), 1);
    if (!t.ok()) return die("fs-txn", t.status());
    auto r = cj::commit_and_checkpoint_fs_transaction(**dev, *map, t.value());
    if (!r.ok()) return die("fs-txn", r.status());
    std::printf("committed and checkpointed tid %u, %llu blocks\n", r->tid,
                static_cast<unsigned long long>(r->blocks_logged));
    return 0;
  }
  cj::JournalOptions jo;
  jo.mode = mode == "two" ? cj::CommitMode::kTwoFlush : mode == "one" ? cj::CommitMode::kOneFlush : cj::CommitMode::kAuto;
  auto j = cj::Journal::open(**dev, *map, jo);
  if (!j.ok()) return die("open journal", j.status());
  if (recover_flag) {
    auto s = set_recover(**dev, bs);
    if (!s.ok()) return die("set-recover", s);
  }
  for (size_t i = 0; i < txns.size(); ++i) {
    auto t = parse_txn(**dev, bs, txns[i], static_cast<uint32_t>(i + 1));
    if (!t.ok()) return die("txn", t.status());
    auto tid = (*j)->commit(std::move(t.value()));
    if (!tid.ok()) return die("commit", tid.status());
    std::printf("txn %zu -> tid %u\n", i + 1, tid.value());
    if (static_cast<int>(i + 1) == checkpoint_after) {
      auto s = (*j)->checkpoint();
      if (!s.ok()) return die("checkpoint", s);
    }
  }
  if (!no_checkpoint) {
    auto s = (*j)->checkpoint();
    if (!s.ok()) return die("checkpoint", s);
  }
  return 0;
}
