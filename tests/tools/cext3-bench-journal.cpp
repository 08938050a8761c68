// cext3-bench-journal: journal commit rates against raw synchronous writes
// on the same file (scripts/bench/journal.sh prints the ratios).
//
//   raw-dsync     4 KiB O_DIRECT|O_DSYNC pwrite()s per second (the reference)
//   commit-two    single-block transactions/s, two flushes per commit
//   commit-one    single-block transactions/s, one flush (csum_v3 journal)
//   group-N       transactions/s with N committer threads (one-flush journal)
//   raw-seq       sequential O_DIRECT MB/s (1 MiB writes, fdatasync at end)
//   large-two     MB/s of --large-mib transactions, two-flush journal
//   large-one     the same, one-flush csum_v3 journal
//
// Each phase runs for about --seconds and prints "name value".
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "cext3/file_device.h"
#include "cext3/journal.h"

namespace cj = cext3::journal;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kBs = 4096;
// File layout (4 KiB blocks): journal at [kJournalAt, +kJournalBlocks),
// raw-write area after it.
constexpr uint64_t kJournalAt = 256;
constexpr uint64_t kJournalBlocks = 32768;  // 128 MiB
constexpr uint64_t kRawAt = kJournalAt + kJournalBlocks;
constexpr uint64_t kRawBlocks = 16384;      // 64 MiB
constexpr uint64_t kFileBlocks = kRawAt + kRawBlocks;

int fail(const std::string& m) {
  std::fprintf(stderr, "cext3-bench-journal: %s\n", m.c_str());
  return 1;
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Raw synchronous 4 KiB writes: the best a one-write-per-commit log could do.
double raw_dsync(const std::string& path, double secs) {
  int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_DSYNC | O_CLOEXEC);
  if (fd < 0) return -1;
  cext3::AlignedBuffer b(kBs);
  std::memset(b.data(), 0x5A, kBs);
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    if (::pwrite(fd, b.data(), kBs, static_cast<off_t>((kRawAt + n % kRawBlocks) * kBs)) != kBs) {
      ::close(fd);
      return -1;
    }
    ++n;
  }
  double r = n / seconds_since(t0);
  ::close(fd);
  return r;
}

double raw_seq_mbs(const std::string& path, double secs) {
  int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return -1;
  const size_t req = 1 << 20;
  cext3::AlignedBuffer b(req);
  std::memset(b.data(), 0x33, req);
  uint64_t n = 0;
  const uint64_t slots = kRawBlocks * kBs / req;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs && n < slots) {
    if (::pwrite(fd, b.data(), req, static_cast<off_t>(kRawAt * kBs + (n % slots) * req)) != (ssize_t)req) {
      ::close(fd);
      return -1;
    }
    ++n;
  }
  ::fdatasync(fd);
  double r = n * (req / 1e6) / seconds_since(t0);
  ::close(fd);
  return r;
}

cext3::Result<std::unique_ptr<cj::Journal>> fresh_journal(cext3::BlockDevice& dev, const cj::JournalMap& map,
                                                          bool csum, cj::CommitMode mode) {
  cj::FormatOptions fo;
  fo.zero_log = false;
  if (csum) fo.feature_incompat |= cj::kIncompatCsumV3;
  CEXT3_RETURN_IF_ERROR(cj::format_journal(dev, map, fo));
  cj::JournalOptions jo;
  jo.mode = mode;
  return cj::Journal::open(dev, map, jo);
}

// Commits/s of single-block transactions from `threads` threads.
double commit_rate(cext3::BlockDevice& dev, const cj::JournalMap& map, bool csum, cj::CommitMode mode,
                   unsigned threads, double secs, uint64_t* flushes) {
  auto j = fresh_journal(dev, map, csum, mode);
  if (!j.ok()) return -1;
  std::atomic<uint64_t> done{0};
  std::atomic<bool> bad{false};
  auto t0 = Clock::now();
  std::vector<std::thread> th;
  for (unsigned t = 0; t < threads; ++t)
    th.emplace_back([&, t] {
      std::vector<uint8_t> img(kBs, static_cast<uint8_t>(t));
      uint64_t k = 0;
      while (seconds_since(t0) < secs) {
        cj::Transaction txn;
        img[8] = static_cast<uint8_t>(k++);
        if (!txn.add_block(1 + t * 16 + k % 16, img).ok() || !(*j)->commit(std::move(txn)).ok()) {
          bad = true;
          return;
        }
        ++done;
      }
    });
  for (auto& x : th) x.join();
  if (bad) return -1;
  double r = done / seconds_since(t0);
  if (flushes) *flushes = (*j)->stats().flushes;
  return r;
}

double large_mbs(cext3::BlockDevice& dev, const cj::JournalMap& map, bool csum, cj::CommitMode mode, double secs,
                 unsigned per) {
  auto j = fresh_journal(dev, map, csum, mode);
  if (!j.ok()) return -1;
  std::vector<uint8_t> img(kBs, 0x77);
  uint64_t n = 0;
  double in_commit = 0;
  auto t0 = Clock::now();
  // Stay inside one pass over the log so no checkpoint is timed.
  while (seconds_since(t0) < secs && (n + 1) * (per + 2) < kJournalBlocks - 1) {
    cj::Transaction txn;
    for (unsigned i = 0; i < per; ++i)
      if (!txn.add_block(1 + i, img).ok()) return -1;
    auto c0 = Clock::now();
    if (!(*j)->commit(std::move(txn)).ok()) return -1;
    in_commit += seconds_since(c0);
    ++n;
  }
  std::fprintf(stderr, "large: %.3f s of %.3f s inside commit()\n", in_commit, seconds_since(t0));
  return n * per * (kBs / 1e6) / seconds_since(t0);
}

// The floor under every commit: one 4 KiB write plus flush() through the
// BlockDevice backend (what each commit flush costs before any journal work).
double dev_write_flush(cext3::BlockDevice& dev, double secs) {
  cext3::AlignedBuffer b(kBs);
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    if (!dev.write((kRawAt + n % kRawBlocks) * kBs, b.data(), kBs).ok() || !dev.flush().ok()) return -1;
    ++n;
  }
  return n / seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"journal commit rates vs raw synchronous writes on one file"};
  std::string path;
  double secs = 1.5;
  unsigned threads = 8;
  unsigned large_mib = 4;
  app.add_option("file", path, "scratch file (created, about 200 MiB)")->required();
  app.add_option("--seconds", secs, "duration of each phase");
  app.add_option("--threads", threads, "committers for the group-commit phase");
  app.add_option("--large-mib", large_mib, "size of each large transaction in MiB")->check(CLI::Range(1, 48));
  CLI11_PARSE(app, argc, argv);

  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return fail("cannot create " + path + ": " + std::strerror(errno));
  // Allocate every block up front so no phase pays for allocation.
  std::vector<char> zero(1 << 20, 0);
  for (uint64_t off = 0; off < kFileBlocks * kBs; off += zero.size())
    if (::pwrite(fd, zero.data(), zero.size(), static_cast<off_t>(off)) != (ssize_t)zero.size())
      return fail("cannot fill " + path + ": " + std::strerror(errno));
  ::fsync(fd);
  ::close(fd);

  cext3::OpenOptions oo;
  oo.direct = true;
  auto dev = cext3::open_file_device(path, oo);
  if (!dev.ok()) return fail(dev.status().message());
  auto map = cj::JournalMap::contiguous(kBs, kJournalAt, kJournalBlocks);
  if (!map.ok()) return fail(map.status().message());

  double raw = raw_dsync(path, secs);
  if (raw <= 0) return fail("raw O_DIRECT|O_DSYNC writes failed: " + std::string(std::strerror(errno)));
  std::printf("raw-dsync %.1f\n", raw);
  std::printf("dev-write-flush %.1f\n", dev_write_flush(**dev, secs));
  uint64_t fl = 0;
  double two = commit_rate(**dev, *map, false, cj::CommitMode::kTwoFlush, 1, secs, &fl);
  std::printf("commit-two %.1f\n", two);
  double one = commit_rate(**dev, *map, true, cj::CommitMode::kOneFlush, 1, secs, &fl);
  std::printf("commit-one %.1f\n", one);
  uint64_t gfl = 0;
  double g1 = one;
  double gn = commit_rate(**dev, *map, true, cj::CommitMode::kOneFlush, threads, secs, &gfl);
  std::printf("group-1 %.1f\n", g1);
  std::printf("group-%u %.1f\n", threads, gn);
  double gn2 = commit_rate(**dev, *map, false, cj::CommitMode::kTwoFlush, threads, secs, nullptr);
  std::printf("group-%u-two %.1f\n", threads, gn2);
  std::printf("group-flushes %llu\n", static_cast<unsigned long long>(gfl));
  double seq = raw_seq_mbs(path, secs);
  std::printf("raw-seq %.1f\n", seq);
  double big2 = large_mbs(**dev, *map, false, cj::CommitMode::kTwoFlush, secs, large_mib * 256);
  std::printf("large-two %.1f\n", big2);
  double big1 = large_mbs(**dev, *map, true, cj::CommitMode::kOneFlush, secs, large_mib * 256);
  std::printf("large-one %.1f\n", big1);
  if (two < 0 || one < 0 || gn < 0 || seq < 0 || big2 < 0 || big1 < 0) return fail("a phase failed");
  return 0;
}
