// Unit tests of the journal writer, checkpointer and replayer on a memory
// device. Interop with e2fsprogs and the kernel is in
// tests/integration/journal_*.sh; crash states in crash_test.cpp.
#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <cstring>
#include <map>
#include <random>
#include <chrono>
#include <thread>

#include "cext3/journal.h"
#include "cext3/memory_device.h"
#include "cext3/recording_device.h"
#include "journal/jbd2_format.h"

namespace cj = cext3::journal;

namespace {

constexpr uint32_t kBs = 4096;
constexpr uint64_t kJournalFirst = 16;  // fs block of journal block 0

std::vector<uint8_t> image_of(uint64_t block, uint32_t version) {
  std::vector<uint8_t> v(kBs);
  std::mt19937 rng(static_cast<uint32_t>(block * 7919 + version));
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

std::vector<uint8_t> read_fs_block(cext3::MemoryDevice& dev, uint64_t b) {
  return std::vector<uint8_t>(dev.bytes().begin() + b * kBs, dev.bytes().begin() + (b + 1) * kBs);
}

struct Fixture {
  cext3::MemoryDevice dev{256 * kBs};
  cj::JournalMap map;
  explicit Fixture(uint64_t jblocks = 32, uint32_t incompat = cj::kIncompatRevoke) {
    map = cj::JournalMap::contiguous(kBs, kJournalFirst, jblocks).value();
    cj::FormatOptions fo;
    fo.sequence = 7;
    fo.uuid[0] = 0x42;
    fo.feature_incompat = incompat;
    REQUIRE(cj::format_journal(dev, map, fo).ok());
  }
};

}  // namespace

TEST_CASE("journal: format writes a clean v2 superblock", "[journal]") {
  Fixture f;
  auto info = cj::read_journal_info(f.dev, f.map);
  REQUIRE(info.ok());
  CHECK(info->blocktype == 4);
  CHECK(info->clean());
  CHECK(info->sequence == 7);
  CHECK(info->first == 1);
  CHECK(info->maxlen == 32);
  CHECK(info->block_size == kBs);
  CHECK((info->feature_incompat & cj::kIncompatRevoke) != 0);
}

TEST_CASE("journal: committed blocks replay in place, uncommitted state stays clean", "[journal]") {
  for (uint32_t incompat : {cj::kIncompatRevoke, cj::kIncompatRevoke | cj::kIncompatCsumV3,
                            cj::kIncompatRevoke | cj::kIncompat64Bit}) {
    INFO("incompat " << incompat);
    Fixture f(32, incompat);
    auto j = cj::Journal::open(f.dev, f.map);
    REQUIRE(j.ok());
    cj::Transaction t;
    REQUIRE(t.add_block(100, image_of(100, 1)).ok());
    auto magic_block = image_of(101, 1);
    cj::format::put32(magic_block.data(), cj::format::kMagic);  // must be escaped
    REQUIRE(t.add_block(101, magic_block).ok());
    auto tid = (*j)->commit(std::move(t));
    REQUIRE(tid.ok());
    CHECK(tid.value() == 7);
    CHECK_FALSE(cj::read_journal_info(f.dev, f.map)->clean());
    // Nothing in place yet.
    CHECK(read_fs_block(f.dev, 100) == std::vector<uint8_t>(kBs, 0));
    j.value().reset();  // "crash": drop the writer without checkpoint
    auto rep = cj::recover_journal(f.dev, f.map);
    REQUIRE(rep.ok());
    CHECK(rep->transactions == 1);
    CHECK(rep->blocks_replayed == 2);
    CHECK(rep->new_sequence == 9);  // end tid 8, plus one, as e2fsck does
    CHECK(read_fs_block(f.dev, 100) == image_of(100, 1));
    CHECK(read_fs_block(f.dev, 101) == magic_block);
    CHECK(cj::read_journal_info(f.dev, f.map)->clean());
    // A second replay is a no-op.
    auto again = cj::recover_journal(f.dev, f.map);
    REQUIRE(again.ok());
    CHECK(again->was_clean);
  }
}

TEST_CASE("journal: revoke suppresses older images, later images win, wrap-around", "[journal]") {
  Fixture f(16);  // 15 log blocks: forces checkpoints and wrap
  auto j = cj::Journal::open(f.dev, f.map);
  REQUIRE(j.ok());
  std::map<uint64_t, std::vector<uint8_t>> expect;
  for (uint32_t v = 1; v <= 12; ++v) {
    cj::Transaction t;
    for (uint64_t b = 100; b < 103; ++b) {
      REQUIRE(t.add_block(b + v % 3, image_of(b + v % 3, v)).ok());
      expect[b + v % 3] = image_of(b + v % 3, v);
    }
    if (v == 11) {
      t.revoke(200);  // never logged: harmless
    }
    REQUIRE((*j)->commit(std::move(t)).ok());
  }
  cj::Transaction last;
  last.revoke(102);  // 102's newest image must not come back
  REQUIRE((*j)->commit(std::move(last)).ok());
  auto before_102 = read_fs_block(f.dev, 102);
  j.value().reset();
  auto rep = cj::recover_journal(f.dev, f.map);
  REQUIRE(rep.ok());
  CHECK(rep->transactions >= 1);
  for (auto& [b, img] : expect)
    if (b != 102) CHECK(read_fs_block(f.dev, b) == img);
  CHECK(read_fs_block(f.dev, 102) == before_102);
}

TEST_CASE("journal: checkpoint writes in place and empties the log", "[journal]") {
  Fixture f;
  auto j = cj::Journal::open(f.dev, f.map);
  REQUIRE(j.ok());
  cj::Transaction t;
  REQUIRE(t.add_block(120, image_of(120, 3)).ok());
  REQUIRE((*j)->commit(std::move(t)).ok());
  REQUIRE((*j)->checkpoint().ok());
  CHECK(read_fs_block(f.dev, 120) == image_of(120, 3));
  auto info = cj::read_journal_info(f.dev, f.map);
  CHECK(info->clean());
  CHECK(info->sequence == 8);
  CHECK((*j)->free_blocks() == 31);
}

TEST_CASE("journal: forced checkpoint of chosen blocks revokes them", "[journal]") {
  Fixture f;
  auto j = cj::Journal::open(f.dev, f.map);
  REQUIRE(j.ok());
  cj::Transaction t;
  REQUIRE(t.add_block(130, image_of(130, 1)).ok());
  REQUIRE(t.add_block(131, image_of(131, 1)).ok());
  REQUIRE((*j)->commit(std::move(t)).ok());
  std::vector<uint64_t> give_away{130};
  REQUIRE((*j)->checkpoint_blocks(cj::Transaction{}, give_away).ok());
  CHECK(read_fs_block(f.dev, 130) == image_of(130, 1));
  // Another node now changes 130 in place; our replay must not undo it.
  auto theirs = image_of(130, 99);
  std::memcpy(f.dev.bytes().data() + 130 * kBs, theirs.data(), kBs);
  j.value().reset();
  REQUIRE(cj::recover_journal(f.dev, f.map).ok());
  CHECK(read_fs_block(f.dev, 130) == theirs);
  CHECK(read_fs_block(f.dev, 131) == image_of(131, 1));
}

TEST_CASE("journal: a transaction larger than the journal is refused clearly", "[journal]") {
  Fixture f(8);
  auto j = cj::Journal::open(f.dev, f.map);
  REQUIRE(j.ok());
  cj::Transaction t;
  for (uint64_t b = 100; b < 110; ++b) REQUIRE(t.add_block(b, image_of(b, 1)).ok());
  auto r = (*j)->commit(std::move(t));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == cext3::Status::Code::kNoSpace);
  CHECK(r.status().message().find("larger journal") != std::string::npos);
}

TEST_CASE("journal: a dirty journal is refused for writing until replayed", "[journal]") {
  Fixture f;
  {
    auto j = cj::Journal::open(f.dev, f.map);
    cj::Transaction t;
    REQUIRE(t.add_block(100, image_of(100, 1)).ok());
    REQUIRE((*j)->commit(std::move(t)).ok());
  }
  auto again = cj::Journal::open(f.dev, f.map);
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().code() == cext3::Status::Code::kBusy);
}

namespace {
// A device whose flush takes as long as a real cache flush, so concurrent
// committers pile up behind the one in flight.
class SlowFlushDevice : public cext3::MemoryDevice {
 public:
  using MemoryDevice::MemoryDevice;
  cext3::Status flush() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return MemoryDevice::flush();
  }
};
}  // namespace

namespace {
// kThreads threads each commit `per_thread` single-block transactions, thread
// i always logging block first_block + i with version k = 0, 1, ...; returns
// the journal's statistics once every thread is done and the journal closed.
constexpr int kThreads = 8;
cj::JournalStats commit_from_threads(cext3::BlockDevice& dev, const cj::JournalMap& map, uint64_t first_block,
                                     int per_thread) {
  auto j = cj::Journal::open(dev, map);
  REQUIRE(j.ok());
  std::vector<std::thread> th;
  std::atomic<int> failures{0};
  for (int i = 0; i < kThreads; ++i)
    th.emplace_back([&, i] {
      for (int k = 0; k < per_thread; ++k) {
        cj::Transaction t;
        if (!t.add_block(first_block + i, image_of(first_block + i, k)).ok()) ++failures;
        if (!(*j)->commit(std::move(t)).ok()) ++failures;
      }
    });
  for (auto& t : th) t.join();
  CHECK(failures == 0);
  auto st = (*j)->stats();
  CHECK(st.handles == static_cast<uint64_t>(kThreads * per_thread));
  CHECK(st.commits <= st.handles);
  return st;
}
}  // namespace

TEST_CASE("journal: concurrent committers share one commit and one flush", "[journal]") {
  SlowFlushDevice dev(256 * kBs);
  auto map = cj::JournalMap::contiguous(kBs, kJournalFirst, 64).value();
  REQUIRE(cj::format_journal(dev, map, {}).ok());
  auto st = commit_from_threads(dev, map, 150, 10);
  // Batching must actually happen: far fewer jbd2 commits than handles.
  CHECK(st.commits * 2 < st.handles);
  CHECK(st.flushes <= 2 * st.commits + 2 * st.checkpoints + 2);
}

TEST_CASE("journal: concurrent committers share commits (group commit)", "[journal]") {
  Fixture f(24);
  constexpr int kPer = 20;
  commit_from_threads(f.dev, f.map, 220, kPer);
  REQUIRE(cj::recover_journal(f.dev, f.map).ok());
  for (int i = 0; i < kThreads; ++i) CHECK(read_fs_block(f.dev, 220 + i) == image_of(220 + i, kPer - 1));
}

TEST_CASE("journal: hardware and table CRC-32C agree", "[journal]") {
  std::vector<uint8_t> buf(4099);
  std::mt19937 rng(5);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t len : {0u, 1u, 7u, 8u, 9u, 1024u, 4099u})
    CHECK(cj::format::crc32c_raw(0x12345678u, buf.data(), len) ==
          cj::format::crc32c_table(0x12345678u, buf.data(), len));
  // Standard check value: crc32c("123456789") with inversion is 0xE3069283.
  const char* s = "123456789";
  CHECK((cj::format::crc32c_raw(~0u, s, 9) ^ ~0u) == 0xE3069283u);
}

TEST_CASE("journal: one-pass copy of a data block matches copy, escape and tag checksum", "[journal]") {
  std::array<uint8_t, 16> uuid{};
  uuid[3] = 9;
  for (uint32_t incompat : {0u, cj::kIncompatCsumV2, cj::kIncompatCsumV3}) {
    const auto g = cj::format::make_geometry(kBs, incompat, uuid.data());
    for (bool magic : {false, true}) {
      INFO("incompat " << incompat << " magic " << magic);
      auto src = image_of(7, 7);
      if (magic) cj::format::put32(src.data(), cj::format::kMagic);
      std::vector<uint8_t> want = src;
      if (magic) cj::format::put32(want.data(), 0);
      std::vector<uint8_t> got(kBs, 0xEE);
      bool escaped = false;
      const uint32_t csum = cj::format::copy_data_block(g, 1234, got.data(), src.data(), &escaped);
      CHECK(escaped == magic);
      CHECK(got == want);
      CHECK(csum == cj::format::tag_checksum(g, 1234, want.data()));
    }
  }
}

namespace {
// A journal of kLargeLog blocks on a memory device behind a recording
// device, for transactions large enough (over 16 MiB) to be written while
// they are built.
constexpr uint64_t kLargeLog = 8192;      // journal blocks, superblock included (32 MiB)
constexpr uint64_t kLargeInPlace = 8300;  // first in-place block the transactions log
struct LargeFixture {
  cext3::MemoryDevice mem{(kLargeInPlace + 4300) * kBs};
  std::unique_ptr<cext3::RecordingDevice> dev;
  cj::JournalMap map = cj::JournalMap::contiguous(kBs, kJournalFirst, kLargeLog).value();
  explicit LargeFixture(uint32_t incompat) {
    cext3::RecordingOptions ro;
    ro.keep_in_memory = true;
    dev = std::move(cext3::RecordingDevice::create(mem, ro).value());
    cj::FormatOptions fo;
    fo.feature_incompat = incompat;
    fo.zero_log = false;  // a fresh memory device is zero already
    REQUIRE(cj::format_journal(*dev, map, fo).ok());
  }
  // A distinct image per (block, version), cheap enough for thousands of
  // blocks under the sanitizers (splitmix64 words).
  static std::vector<uint8_t> quick_image(uint64_t block, uint32_t v) {
    std::vector<uint8_t> im(kBs);
    uint64_t x = block * 0x9E3779B97F4A7C15ull + v;
    for (size_t i = 0; i < kBs; i += 8) {
      x += 0x9E3779B97F4A7C15ull;
      uint64_t z = x;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      std::memcpy(im.data() + i, &z, 8);
    }
    return im;
  }
  // n blocks from kLargeInPlace, version v; every 97th begins with the magic.
  static cj::Transaction txn(uint64_t n, uint32_t v, std::map<uint64_t, std::vector<uint8_t>>* expect) {
    cj::Transaction t;
    for (uint64_t i = 0; i < n; ++i) {
      auto im = quick_image(kLargeInPlace + i, v);
      if (i % 97 == 5) cj::format::put32(im.data(), cj::format::kMagic);
      REQUIRE(t.add_block(kLargeInPlace + i, im).ok());
      (*expect)[kLargeInPlace + i] = im;
    }
    return t;
  }
  // Index of the last write of a jbd2 commit block in the record log.
  size_t last_commit_write(const cext3::RecordLog& log) const {
    size_t at = log.records.size();
    for (size_t i = 0; i < log.records.size(); ++i) {
      const auto& r = log.records[i];
      if (r.type != cext3::LogRecord::Type::kWrite) continue;
      for (uint64_t off = 0; off < r.length; off += kBs)
        if (cj::format::get32(r.data.data() + off) == cj::format::kMagic &&
            cj::format::get32(r.data.data() + off + 4) == cj::format::kCommitBlock)
          at = i;
    }
    return at;
  }
};
}  // namespace

TEST_CASE("journal: large transactions are written while built and replay exactly", "[journal]") {
  for (uint32_t incompat : {cj::kIncompatRevoke, cj::kIncompatRevoke | cj::kIncompatCsumV3}) {
    INFO("incompat " << incompat);
    LargeFixture f(incompat);
    auto j = cj::Journal::open(*f.dev, f.map);
    REQUIRE(j.ok());
    const bool two = (*j)->mode() == cj::CommitMode::kTwoFlush;
    std::map<uint64_t, std::vector<uint8_t>> expect;
    // 4200 blocks (16.4 MiB), then 4100 that do not fit behind them: a
    // forced checkpoint, and the second transaction wraps past the end of
    // the log.
    for (auto [n, v] : {std::pair<uint64_t, uint32_t>{4200, 1}, {4100, 2}}) {
      auto t = LargeFixture::txn(n, v, &expect);
      cj::Transaction ordered_too = std::move(t);
      REQUIRE(ordered_too.add_ordered_data(kLargeInPlace + 4290, image_of(kLargeInPlace + 4290, v)).ok());
      expect[kLargeInPlace + 4290] = image_of(kLargeInPlace + 4290, v);
      REQUIRE((*j)->commit(std::move(ordered_too)).ok());
      const auto log = f.dev->log();
      const size_t c = f.last_commit_write(log);
      REQUIRE(c < log.records.size());
      // Made durable before commit() returned.
      CHECK(log.records.back().type == cext3::LogRecord::Type::kFlush);
      if (two) {
        // The commit block is written only after a flush that followed
        // every body write.
        REQUIRE(c > 0);
        CHECK(log.records[c - 1].type == cext3::LogRecord::Type::kFlush);
        CHECK(log.records[c].length == kBs);
      }
    }
    CHECK((*j)->stats().checkpoints == 1);
    j.value().reset();  // crash without a checkpoint
    auto rep = cj::recover_journal(*f.dev, f.map);
    REQUIRE(rep.ok());
    CHECK(rep->transactions == 1);
    CHECK(rep->blocks_replayed == 4100);
    for (auto& [b, im] : expect) CHECK(read_fs_block(f.mem, b) == im);
  }
}

TEST_CASE("journal: a failed write in a large transaction's body fails the commit and writes no commit block",
          "[journal]") {
  for (uint32_t incompat : {cj::kIncompatRevoke, cj::kIncompatRevoke | cj::kIncompatCsumV3}) {
    INFO("incompat " << incompat);
    LargeFixture f(incompat);
    auto j = cj::Journal::open(*f.dev, f.map);
    REQUIRE(j.ok());
    cext3::FaultPlan faults;
    faults.fail_write = f.dev->writes_seen() + 3;  // a request in the middle of the body
    f.dev->set_faults(faults);
    std::map<uint64_t, std::vector<uint8_t>> expect;
    auto r = (*j)->commit(LargeFixture::txn(4200, 1, &expect));
    REQUIRE_FALSE(r.ok());
    CHECK(f.last_commit_write(f.dev->log()) == f.dev->log().records.size());  // none
    // The journal is aborted: later commits return the first error.
    std::map<uint64_t, std::vector<uint8_t>> later;
    CHECK_FALSE((*j)->commit(LargeFixture::txn(3, 2, &later)).ok());
    j.value().reset();
    auto rep = cj::recover_journal(*f.dev, f.map);
    REQUIRE(rep.ok());
    CHECK(rep->transactions == 0);
    CHECK(read_fs_block(f.mem, kLargeInPlace) == std::vector<uint8_t>(kBs, 0));
  }
}

TEST_CASE("journal: a checkpoint larger than one staging stretch writes every block in place", "[journal]") {
  // 2600 distinct blocks (over 10 MiB, more than one 8 MiB stretch) logged
  // by 1 MiB transactions, then one checkpoint.
  constexpr uint64_t kLog = 3000, kFirst = 4000, kBlocks = 2600;
  cext3::MemoryDevice mem((kFirst + kBlocks) * kBs);
  cext3::RecordingOptions ro;
  ro.keep_in_memory = true;
  auto dev = std::move(cext3::RecordingDevice::create(mem, ro).value());
  auto map = cj::JournalMap::contiguous(kBs, kJournalFirst, kLog).value();
  REQUIRE(cj::format_journal(*dev, map, {}).ok());
  auto j = cj::Journal::open(*dev, map);
  REQUIRE(j.ok());
  for (uint64_t first = 0; first < kBlocks; first += 250) {
    cj::Transaction t;
    for (uint64_t b = first; b < std::min(kBlocks, first + 250); ++b)
      REQUIRE(t.add_block(kFirst + b, image_of(kFirst + b, 3)).ok());
    REQUIRE((*j)->commit(std::move(t)).ok());
  }
  CHECK((*j)->stats().checkpoints == 0);
  const size_t before = dev->log().records.size();
  REQUIRE((*j)->checkpoint().ok());
  for (uint64_t b = 0; b < kBlocks; ++b) CHECK(read_fs_block(mem, kFirst + b) == image_of(kFirst + b, 3));
  CHECK(cj::read_journal_info(*dev, map)->clean());
  // Every in-place write precedes a flush that precedes the superblock
  // update marking the log empty.
  const auto log = dev->log();
  size_t last_in_place = 0, sb_write = 0;
  for (size_t i = before; i < log.records.size(); ++i) {
    const auto& r = log.records[i];
    if (r.type != cext3::LogRecord::Type::kWrite) continue;
    if (r.offset >= kFirst * kBs) last_in_place = i;
    if (r.offset == kJournalFirst * kBs) sb_write = i;
  }
  REQUIRE(sb_write > last_in_place);
  bool flushed_between = false;
  for (size_t i = last_in_place; i < sb_write; ++i)
    flushed_between |= log.records[i].type == cext3::LogRecord::Type::kFlush;
  CHECK(flushed_between);
}
