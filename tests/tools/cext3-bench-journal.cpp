// cext3-bench-journal: journal commit rates against raw writes on the same
// file (scripts/bench/journal.sh prints the ratios; docs/JOURNAL.md says
// what each one measures).
//
// Phases come in groups; inside a group the phases alternate for --rounds
// rounds of --seconds/--rounds each, and each prints the median of its
// rounds, so a burst of load from other work on the machine hits the
// reference and the journal alike. Per-round values go to stderr.
//
//   group "single" (one committer, one block per transaction):
//     raw-dsync        4 KiB O_DIRECT|O_DSYNC pwrite()s/s, one descriptor,
//                      spread over the journal's own blocks (the reference)
//     dev-write-flush  4 KiB BlockDevice::write + flush()/s (the floor of a
//                      write-then-flush commit)
//     dev-write-durable  4 KiB durable writes/s through the BlockDevice
//                      (IoRequest::durable; the floor of a one-flush commit)
//     commit-two       transactions/s, two-flush journal (no checksums)
//     commit-one       transactions/s, one-flush csum_v3 journal
//   group "group" (one-flush journal unless named -two):
//     group-1, group-N, group-N-two: transactions/s with 1 or N committers
//     group-handles, group-commits, group-flushes, group-durable-writes:
//                      what the last group-N round did (transactions
//                      committed, jbd2 commits written, and how they ended)
//   group "large" (--large-mib transactions, one committer):
//     raw-seq          sequential O_DIRECT MB/s: 1 MiB pwrite()s over the
//                      journal's own blocks, fdatasync at the end of each
//                      pass over them (what dd oflag=direct conv=fdatasync does)
//     raw-seq-sync     the same, but a fdatasync after every --large-mib
//                      (the least any durable commit of that size costs)
//     raw-seq-deep     the same bytes as raw-seq, 32 x 1 MiB requests in
//                      flight at once through the file backend (a journal
//                      commit keeps up to 16 in flight; raw-seq, like dd,
//                      one)
//     large-two, large-one  MB/s of logged data through commit(), two-flush
//                      and one-flush csum_v3 journal; the clock runs only
//                      inside commit() (building the Transaction is the
//                      caller's, like filling the reference's buffer);
//                      the log is checkpointed untimed when it is full, and
//                      each slice's journal makes one untimed warm-up commit
//                      (it allocates its staging buffer there, once in its
//                      life); stderr shows where commit() spent its time
//     large-two-e2e, large-one-e2e  the same including building each
//                      Transaction (add_block copies every image)
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "cext3/file_device.h"
#include "cext3/journal.h"

namespace cj = cext3::journal;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kBs = 4096;
// File layout (4 KiB blocks): in-place blocks the transactions log at
// [1, kJournalAt), the journal at [kJournalAt, +kJournalBlocks). The
// in-place area holds the largest transaction (--large-mib), so that
// checkpoints never write over the journal.
uint64_t kJournalAt = 2048;
uint64_t kJournalBlocks = 32768;  // --journal-mib, 128 MiB by default
uint64_t kFileBlocks = kJournalAt + kJournalBlocks;
// Raw references write over the journal's log blocks (not its superblock):
// the same place on the disk the log goes to.
uint64_t kRawAt = kJournalAt + 1;
uint64_t kRawBlocks = kJournalBlocks - 1;

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

// Sequential 1 MiB O_DIRECT writes over the log area for `secs`;
// fdatasync after every `sync_every` bytes and at the end (timed).
double raw_seq_mbs(const std::string& path, double secs, uint64_t sync_every) {
  int fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return -1;
  const size_t req = 1 << 20;
  cext3::AlignedBuffer b(req);
  std::memset(b.data(), 0x33, req);
  const uint64_t slots = kRawBlocks * kBs / req;
  const uint64_t per_sync = std::max<uint64_t>(1, sync_every / req);
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    if (::pwrite(fd, b.data(), req, static_cast<off_t>(kRawAt * kBs + (n % slots) * req)) != (ssize_t)req) {
      ::close(fd);
      return -1;
    }
    ++n;
    if (n % per_sync == 0 || n % slots == 0) ::fdatasync(fd);
  }
  ::fdatasync(fd);
  double r = n * (req / 1e6) / seconds_since(t0);
  ::close(fd);
  return r;
}

// Sequential writes with a deep queue: batches of 32 x 1 MiB requests
// through the file backend's submit() (libaio, all in flight at once, from
// 32 MiB of distinct memory), a flush after each pass over the log area
// and at the end. The same bytes per pass as raw_seq_mbs, but not limited
// by the round trip of one synchronous write at a time.
double raw_seq_deep_mbs(cext3::BlockDevice& dev, double secs) {
  const size_t req = 1 << 20, per_batch = 32;
  cext3::AlignedBuffer b(req * per_batch);
  std::memset(b.data(), 0x3C, b.size());
  const uint64_t slots = kRawBlocks * kBs / req;
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    std::vector<cext3::IoRequest> batch;
    for (size_t i = 0; i < per_batch; ++i, ++n) {
      if (n % slots == 0 && n > 0 && !batch.empty()) break;  // a pass ends: flush below
      batch.push_back({cext3::IoRequest::Op::kWrite, kRawAt * kBs + (n % slots) * req, b.data() + i * req, req});
    }
    if (!dev.submit(batch).ok()) return -1;
    if (n % slots == 0 && !dev.flush().ok()) return -1;
  }
  if (!dev.flush().ok()) return -1;
  return n * (req / 1e6) / seconds_since(t0);
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
                   unsigned threads, double secs, cj::JournalStats* stats) {
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
  if (stats) *stats = (*j)->stats();
  return r;
}

struct LargeRate {
  double commit_mbs = -1;  // bytes logged / time inside commit()
  double e2e_mbs = -1;     // bytes logged / time building + committing
};

LargeRate large_mbs(cext3::BlockDevice& dev, const cj::JournalMap& map, bool csum, cj::CommitMode mode,
                    double secs, unsigned per) {
  LargeRate out;
  auto j = fresh_journal(dev, map, csum, mode);
  if (!j.ok()) return out;
  std::vector<uint8_t> img(kBs, 0x77);
  uint64_t n = 0;
  auto build = [&](cj::Transaction& txn) {
    for (unsigned i = 0; i < per; ++i) {
      img[8] = static_cast<uint8_t>(n);
      if (!txn.add_block(1 + i, img).ok()) return false;
    }
    return true;
  };
  // One untimed commit first: a journal allocates its staging buffer (as
  // large as its largest transaction) on the first commit of that size and
  // reuses it for the rest of its life. A node's journal lives for hours, a
  // slice here for a fraction of a second, so those one-time page faults
  // stay off the clock (their time is printed on stderr).
  double warmup_ms = 0;
  {
    cj::Transaction txn;
    if (!build(txn)) return out;
    auto c0 = Clock::now();
    if (!(*j)->commit(std::move(txn)).ok()) return out;
    warmup_ms = seconds_since(c0) * 1e3;
  }
  const cj::JournalStats st0 = (*j)->stats();
  double in_commit = 0, in_build = 0;
  while (in_commit + in_build < secs) {
    auto b0 = Clock::now();
    cj::Transaction txn;
    if (!build(txn)) return out;
    // Checkpoints are not what this measures: keep them off the clock.
    if ((*j)->free_blocks() < (*j)->blocks_needed(txn) && !(*j)->checkpoint().ok()) return out;
    auto c0 = Clock::now();
    in_build += std::chrono::duration<double>(c0 - b0).count();
    if (!(*j)->commit(std::move(txn)).ok()) return out;
    in_commit += seconds_since(c0);
    ++n;
  }
  const double mb = n * per * (kBs / 1e6);
  out.commit_mbs = mb / in_commit;
  out.e2e_mbs = mb / (in_commit + in_build);
  cj::JournalStats st = (*j)->stats();
  st.commits -= st0.commits;
  st.checkpoints -= st0.checkpoints;
  st.merge_ns -= st0.merge_ns;
  st.stage_ns -= st0.stage_ns;
  st.body_write_ns -= st0.body_write_ns;
  st.flush_ns -= st0.flush_ns;
  st.commit_write_ns -= st0.commit_write_ns;
  st.finish_ns -= st0.finish_ns;
  auto ms = [&](uint64_t ns) { return ns / 1e6 / std::max<uint64_t>(1, st.commits); };
  std::fprintf(stderr,
               "  %s %u MiB: warm-up commit %.1f ms, then %llu commits, %llu checkpoints; per commit ms: merge %.2f "
               "stage %.2f body %.2f flush %.2f commit %.2f finish %.2f (sum %.2f of %.2f in commit())\n",
               mode == cj::CommitMode::kTwoFlush ? "two" : "one", per / 256, warmup_ms,
               static_cast<unsigned long long>(st.commits), static_cast<unsigned long long>(st.checkpoints),
               ms(st.merge_ns), ms(st.stage_ns), ms(st.body_write_ns), ms(st.flush_ns), ms(st.commit_write_ns),
               ms(st.finish_ns),
               ms(st.merge_ns + st.stage_ns + st.body_write_ns + st.flush_ns + st.commit_write_ns + st.finish_ns),
               in_commit * 1e3 / std::max<uint64_t>(1, n));
  return out;
}

// One 4 KiB write + flush() through the backend per iteration, or one
// durable write: the floors under the two ways a commit can end.
double dev_write_rate(cext3::BlockDevice& dev, double secs, bool durable) {
  cext3::AlignedBuffer b(kBs);
  uint64_t n = 0;
  auto t0 = Clock::now();
  while (seconds_since(t0) < secs) {
    cext3::IoRequest r{cext3::IoRequest::Op::kWrite, (kRawAt + n % kRawBlocks) * kBs, b.data(), kBs};
    r.durable = durable;
    if (durable) {
      if (!dev.submit(std::span<cext3::IoRequest>(&r, 1)).ok()) return -1;
    } else if (!dev.write(r.offset, r.buf, r.len).ok() || !dev.flush().ok()) {
      return -1;
    }
    ++n;
  }
  return n / seconds_since(t0);
}

double median(std::vector<double> v) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Runs each named phase once per round, alternating, and prints medians.
class Rounds {
 public:
  void add(const std::string& name, std::function<double()> f) { phases_.push_back({name, std::move(f)}); }
  bool run(unsigned rounds) {
    std::map<std::string, std::vector<double>> got;
    for (unsigned r = 0; r < rounds; ++r)
      for (auto& [name, f] : phases_) {
        double v = f();
        if (v < 0) {
          std::fprintf(stderr, "phase %s failed\n", name.c_str());
          return false;
        }
        std::fprintf(stderr, "round %u %s %.1f\n", r + 1, name.c_str(), v);
        got[name].push_back(v);
      }
    for (auto& [name, f] : phases_) {
      (void)f;
      std::printf("%s %.1f\n", name.c_str(), median(got[name]));
      std::fflush(stdout);
    }
    return true;
  }

 private:
  std::vector<std::pair<std::string, std::function<double()>>> phases_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"journal commit rates vs raw writes on one file"};
  std::string path;
  double secs = 1.5;
  unsigned rounds = 3;
  unsigned threads = 8;
  unsigned large_mib = 4;
  std::string phases = "single,group,large";
  app.add_option("file", path, "scratch file (created, about 136 MiB)")->required();
  app.add_option("--seconds", secs, "time per phase, split over the rounds");
  app.add_option("--rounds", rounds, "alternations of the phases of a group (medians are printed)")
      ->check(CLI::Range(1, 99));
  app.add_option("--threads", threads, "committers for the group-commit phase");
  app.add_option("--large-mib", large_mib, "size of each large transaction in MiB")->check(CLI::Range(1, 1024));
  app.add_option("--phases", phases, "comma-separated groups to run: single, group, large");
  unsigned journal_mib = 128;
  app.add_option("--journal-mib", journal_mib, "journal size in MiB")->check(CLI::Range(8, 4096));
  CLI11_PARSE(app, argc, argv);
  kJournalAt = std::max<uint64_t>(2048, uint64_t{large_mib} * 256 + 16);
  kJournalBlocks = uint64_t{journal_mib} * 256;
  kFileBlocks = kJournalAt + kJournalBlocks;
  kRawAt = kJournalAt + 1;
  kRawBlocks = kJournalBlocks - 1;
  std::set<std::string> want;
  {
    std::stringstream ss(phases);
    for (std::string p; std::getline(ss, p, ',');) {
      if (p != "single" && p != "group" && p != "large")
        return fail("unknown phase group '" + p + "'; use single, group, large");
      want.insert(p);
    }
  }

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
  cext3::BlockDevice& d = **dev;
  const double slice = secs / rounds;

  if (want.count("single")) {
    Rounds r;
    r.add("raw-dsync", [&] { return raw_dsync(path, slice); });
    r.add("dev-write-flush", [&] { return dev_write_rate(d, slice, false); });
    r.add("dev-write-durable", [&] { return dev_write_rate(d, slice, true); });
    r.add("commit-two", [&] { return commit_rate(d, *map, false, cj::CommitMode::kTwoFlush, 1, slice, nullptr); });
    r.add("commit-one", [&] { return commit_rate(d, *map, true, cj::CommitMode::kOneFlush, 1, slice, nullptr); });
    if (!r.run(rounds)) return fail("a single-block phase failed");
  }
  if (want.count("group")) {
    cj::JournalStats gst;
    Rounds r;
    r.add("group-1", [&] { return commit_rate(d, *map, true, cj::CommitMode::kOneFlush, 1, slice, nullptr); });
    r.add("group-" + std::to_string(threads),
          [&] { return commit_rate(d, *map, true, cj::CommitMode::kOneFlush, threads, slice, &gst); });
    r.add("group-" + std::to_string(threads) + "-two",
          [&] { return commit_rate(d, *map, false, cj::CommitMode::kTwoFlush, threads, slice, nullptr); });
    if (!r.run(rounds)) return fail("a group-commit phase failed");
    // Of the last group-N round: how its commits ended (each jbd2 commit
    // ends with one flush or one durable write).
    std::printf("group-handles %llu\n", static_cast<unsigned long long>(gst.handles));
    std::printf("group-commits %llu\n", static_cast<unsigned long long>(gst.commits));
    std::printf("group-flushes %llu\n", static_cast<unsigned long long>(gst.flushes));
    std::printf("group-durable-writes %llu\n", static_cast<unsigned long long>(gst.durable_writes));
  }
  if (want.count("large")) {
    const unsigned per = large_mib * 256;
    LargeRate two, one;
    Rounds r;
    r.add("raw-seq", [&] { return raw_seq_mbs(path, slice, kRawBlocks * kBs); });
    r.add("raw-seq-sync", [&] { return raw_seq_mbs(path, slice, uint64_t{large_mib} << 20); });
    r.add("raw-seq-deep", [&] { return raw_seq_deep_mbs(d, slice); });
    r.add("large-two", [&] {
      two = large_mbs(d, *map, false, cj::CommitMode::kTwoFlush, slice, per);
      return two.commit_mbs;
    });
    r.add("large-two-e2e", [&] { return two.e2e_mbs; });
    r.add("large-one", [&] {
      one = large_mbs(d, *map, true, cj::CommitMode::kOneFlush, slice, per);
      return one.commit_mbs;
    });
    r.add("large-one-e2e", [&] { return one.e2e_mbs; });
    if (!r.run(rounds)) return fail("a large-transaction phase failed");
  }
  return 0;
}
