#include "cext3/recording_device.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backend_suite.h"
#include "cext3/memory_device.h"

using namespace cext3;

namespace {

// A fresh directory under $CEXT3_SCRATCH (or the system temp dir), removed
// when the test ends.
struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    const char* root = std::getenv("CEXT3_SCRATCH");
    std::filesystem::path base = root && *root ? root : std::filesystem::temp_directory_path().string();
    std::filesystem::create_directories(base);
    std::string tmpl = (base / "recdev.XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// What the test itself expects the log to hold.
struct Expected {
  Expected(LogRecord::Type t, uint64_t off = 0, std::vector<uint8_t> d = {}, uint64_t len = 0, uint16_t fl = 0)
      : type(t), offset(off), data(std::move(d)), length(len), flags(fl) {}
  LogRecord::Type type;
  uint64_t offset;
  std::vector<uint8_t> data;
  uint64_t length;
  uint16_t flags;
};

void check_log(const RecordLog& log, const std::vector<Expected>& want, uint32_t ss, uint64_t size) {
  CHECK(log.sector_size == ss);
  CHECK(log.device_size == size);
  CHECK_FALSE(log.truncated_tail);
  REQUIRE(log.records.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    INFO("record " << i);
    const LogRecord& r = log.records[i];
    CHECK(r.seq == i);
    CHECK(r.type == want[i].type);
    CHECK(r.flags == want[i].flags);
    if (want[i].type == LogRecord::Type::kWrite) {
      CHECK(r.offset == want[i].offset);
      CHECK(r.length == want[i].data.size());
      CHECK(r.data == want[i].data);
    } else if (want[i].type == LogRecord::Type::kWriteFailed) {
      CHECK(r.offset == want[i].offset);
      CHECK(r.length == want[i].length);
      CHECK(r.data.empty());
    }
  }
}

std::vector<uint8_t> bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void put_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("recording device passes the backend suite", "[blockdev][recording]") {
  ScratchDir dir;
  int n = 0;
  // Owned inner device, file log.
  testing::run_backend_suite([&] {
    RecordingOptions o;
    o.log_path = dir.file("suite" + std::to_string(n++) + ".log");
    auto d = RecordingDevice::create(std::make_unique<MemoryDevice>(16u << 20, 512), o);
    REQUIRE(d.ok());
    return std::unique_ptr<BlockDevice>(std::move(d).value());
  });
  // 4096-byte sectors, in-memory log.
  testing::run_backend_suite([&] {
    RecordingOptions o;
    o.keep_in_memory = true;
    auto d = RecordingDevice::create(std::make_unique<MemoryDevice>(16u << 20, 4096), o);
    REQUIRE(d.ok());
    return std::unique_ptr<BlockDevice>(std::move(d).value());
  });
}

TEST_CASE("the log holds exactly the writes and flushes issued in order", "[recording]") {
  ScratchDir dir;
  const uint32_t ss = 512;
  const uint64_t size = 1 << 20;
  MemoryDevice inner(size, ss);
  RecordingOptions o;
  o.log_path = dir.file("seq.log");
  o.keep_in_memory = true;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  RecordingDevice& dev = **rec;

  std::vector<Expected> want;
  auto w = [&](uint64_t off, size_t len, uint32_t seed) {
    auto d = testing::pattern(len, seed);
    REQUIRE(dev.write(off, d.data(), len).ok());
    want.push_back({LogRecord::Type::kWrite, off, d});
  };
  auto f = [&] {
    REQUIRE(dev.flush().ok());
    want.push_back({LogRecord::Type::kFlush});
  };
  w(0, 512, 1);
  w(4096, 8192, 2);
  w(512, 1024, 3);  // overlaps nothing above, touches sector 1-2
  f();
  w(4096, 512, 4);  // overwrites part of an earlier write
  std::vector<uint8_t> rb(4096);
  REQUIRE(dev.read(0, rb.data(), rb.size()).ok());  // reads are not logged
  // A batch: each write its own record, in batch order; reads skipped.
  std::vector<std::vector<uint8_t>> bd = {testing::pattern(1024, 5), testing::pattern(2048, 6),
                                          testing::pattern(512, 7)};
  std::vector<uint8_t> rbuf(512);
  std::vector<IoRequest> batch = {{IoRequest::Op::kWrite, 65536, bd[0].data(), 1024},
                                  {IoRequest::Op::kRead, 0, rbuf.data(), 512},
                                  {IoRequest::Op::kWrite, 131072, bd[1].data(), 2048},
                                  {IoRequest::Op::kWrite, 8192, bd[2].data(), 512}};
  REQUIRE(dev.submit(batch).ok());
  want.push_back({LogRecord::Type::kWrite, 65536, bd[0]});
  want.push_back({LogRecord::Type::kWrite, 131072, bd[1]});
  want.push_back({LogRecord::Type::kWrite, 8192, bd[2]});
  // Empty and malformed writes transfer nothing and are not logged.
  CHECK(dev.write(0, nullptr, 0).ok());
  CHECK(dev.write(3, rb.data(), 512).code() == Status::Code::kInvalidArgument);
  CHECK(dev.write(size, rb.data(), 512).code() == Status::Code::kInvalidArgument);
  f();
  f();
  w(size - 512, 512, 8);

  CHECK(dev.writes_seen() == 8);
  CHECK(dev.flushes_seen() == 3);
  CHECK(inner.flush_count() == 3);
  check_log(dev.log(), want, ss, size);
  REQUIRE(dev.sync_log().ok());
  auto parsed = record_log::read_file(o.log_path);
  REQUIRE(parsed.ok());
  check_log(*parsed, want, ss, size);

  // Replaying the log on a zero device gives the inner device's contents.
  std::vector<uint8_t> replay(size, 0);
  for (const LogRecord& r : parsed->records)
    if (r.type == LogRecord::Type::kWrite) std::memcpy(replay.data() + r.offset, r.data.data(), r.length);
  CHECK(replay == inner.bytes());

  // write_file reproduces the recorded bytes exactly.
  REQUIRE(record_log::write_file(*parsed, dir.file("copy.log")).ok());
  CHECK(bytes_of(dir.file("copy.log")) == bytes_of(o.log_path));
}

TEST_CASE("record log checksums and damage detection", "[recording]") {
  // The CRC-32C check value from the Castagnoli paper / RFC 3720.
  CHECK(record_log::crc32c("123456789", 9) == 0xE3069283u);
  CHECK(record_log::crc32c("", 0) == 0);

  ScratchDir dir;
  MemoryDevice inner(1 << 20, 512);
  RecordingOptions o;
  o.log_path = dir.file("dmg.log");
  {
    auto rec = RecordingDevice::create(inner, o);
    REQUIRE(rec.ok());
    auto a = testing::pattern(4096, 11), b = testing::pattern(1024, 12);
    REQUIRE((*rec)->write(0, a.data(), a.size()).ok());
    REQUIRE((*rec)->flush().ok());
    REQUIRE((*rec)->write(8192, b.data(), b.size()).ok());
  }
  const auto good = bytes_of(o.log_path);
  const size_t hdr = record_log::kHeaderSize, rh = record_log::kRecordHeaderSize;
  REQUIRE(good.size() == hdr + (rh + 4096) + rh + (rh + 1024));
  CHECK(std::memcmp(good.data(), "CX3RLOG", 8) == 0);

  // A flipped data byte is corruption.
  auto bad = good;
  bad[hdr + rh + 100] ^= 1;
  put_bytes(dir.file("bad.log"), bad);
  auto r1 = record_log::read_file(dir.file("bad.log"));
  REQUIRE_FALSE(r1.ok());
  CHECK(r1.status().code() == Status::Code::kCorruption);
  // A flipped header byte too.
  bad = good;
  bad[hdr + 17] ^= 0x80;
  auto r2 = record_log::parse(bad, "bad");
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.status().code() == Status::Code::kCorruption);
  // Not a log at all.
  std::vector<uint8_t> junk(200, 'x');
  CHECK(record_log::parse(junk, "junk").status().code() == Status::Code::kCorruption);

  // Cut inside the last write: the earlier records survive, the tail is flagged.
  auto cut = std::vector<uint8_t>(good.begin(), good.end() - 100);
  auto r3 = record_log::parse(cut, "cut");
  REQUIRE(r3.ok());
  CHECK(r3->truncated_tail);
  REQUIRE(r3->records.size() == 2);
  CHECK(r3->records[1].type == LogRecord::Type::kFlush);
  // Cut inside a record header.
  cut = std::vector<uint8_t>(good.begin(), good.begin() + hdr + rh + 4096 + 10);
  auto r4 = record_log::parse(cut, "cut");
  REQUIRE(r4.ok());
  CHECK(r4->truncated_tail);
  CHECK(r4->records.size() == 1);
}

TEST_CASE("fault injection: the Nth write fails with EIO and never reaches the device", "[recording][faults]") {
  const uint64_t size = 1 << 20;
  MemoryDevice inner(size, 512);
  RecordingOptions o;
  o.keep_in_memory = true;
  o.faults.fail_write = 3;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  RecordingDevice& dev = **rec;

  auto a = testing::pattern(4096, 21), b = testing::pattern(4096, 22), c = testing::pattern(4096, 23),
       d = testing::pattern(4096, 24);
  REQUIRE(dev.write(0, a.data(), 4096).ok());
  REQUIRE(dev.write(4096, b.data(), 4096).ok());
  const std::vector<uint8_t> before = inner.bytes();
  Status s = dev.write(0, c.data(), 4096);  // the third write
  CHECK(s.code() == Status::Code::kIoError);
  CHECK(s.errno_value() == EIO);
  CHECK(inner.bytes() == before);  // not passed down
  REQUIRE(dev.write(8192, d.data(), 4096).ok());  // later writes work again
  REQUIRE(dev.flush().ok());

  std::vector<Expected> want = {{LogRecord::Type::kWrite, 0, a},
                                {LogRecord::Type::kWrite, 4096, b},
                                {LogRecord::Type::kWriteFailed, 0, {}, 4096, LogRecord::kFlagInjected},
                                {LogRecord::Type::kWrite, 8192, d},
                                {LogRecord::Type::kFlush}};
  check_log(dev.log(), want, 512, size);
  std::vector<uint8_t> back(4096);
  REQUIRE(dev.read(0, back.data(), 4096).ok());
  CHECK(back == a);
}

TEST_CASE("fault injection: the Nth write of a batch fails alone", "[recording][faults]") {
  MemoryDevice inner(1 << 20, 512);
  RecordingOptions o;
  o.keep_in_memory = true;
  o.faults.fail_write = 2;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  std::vector<std::vector<uint8_t>> d = {testing::pattern(512, 31), testing::pattern(512, 32),
                                         testing::pattern(512, 33)};
  std::vector<IoRequest> batch;
  for (int i = 0; i < 3; ++i) batch.push_back({IoRequest::Op::kWrite, uint64_t(i) * 4096, d[i].data(), 512});
  CHECK((*rec)->submit(batch).code() == Status::Code::kIoError);
  std::vector<uint8_t> zero(512, 0);
  CHECK(std::memcmp(inner.bytes().data() + 0, d[0].data(), 512) == 0);
  CHECK(std::memcmp(inner.bytes().data() + 4096, zero.data(), 512) == 0);
  CHECK(std::memcmp(inner.bytes().data() + 8192, d[2].data(), 512) == 0);
  check_log((*rec)->log(),
            {{LogRecord::Type::kWrite, 0, d[0]},
             {LogRecord::Type::kWriteFailed, 4096, {}, 512, LogRecord::kFlagInjected},
             {LogRecord::Type::kWrite, 8192, d[2]}},
            512, 1 << 20);
}

TEST_CASE("fault injection: the Nth flush fails with EIO", "[recording][faults]") {
  MemoryDevice inner(1 << 20, 512);
  RecordingOptions o;
  o.keep_in_memory = true;
  o.faults.fail_flush = 2;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  auto a = testing::pattern(512, 41);
  REQUIRE((*rec)->flush().ok());
  REQUIRE((*rec)->write(0, a.data(), 512).ok());
  Status s = (*rec)->flush();
  CHECK(s.code() == Status::Code::kIoError);
  CHECK(s.errno_value() == EIO);
  CHECK(inner.flush_count() == 1);  // the failed flush was not passed down
  REQUIRE((*rec)->flush().ok());
  CHECK(inner.flush_count() == 2);
  check_log((*rec)->log(),
            {{LogRecord::Type::kFlush},
             {LogRecord::Type::kWrite, 0, a},
             {LogRecord::Type::kFlushFailed, 0, {}, 0, LogRecord::kFlagInjected},
             {LogRecord::Type::kFlush}},
            512, 1 << 20);
}

TEST_CASE("fault injection: power loss after N writes", "[recording][faults]") {
  const uint64_t size = 1 << 20;
  const uint64_t N = GENERATE(0, 1, 4, 6);
  INFO("power loss after " << N << " writes");
  MemoryDevice inner(size, 512);
  // The device starts with content, so "unchanged" is not "all zero".
  auto base = testing::pattern(size, 50);
  inner.bytes() = base;
  MemoryDevice reference(size, 512);
  reference.bytes() = base;

  RecordingOptions o;
  o.keep_in_memory = true;
  o.faults.power_loss_after_writes = N;
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  RecordingDevice& dev = **rec;

  // Ten writes (some overlapping), a flush after every third, one batch of two.
  uint64_t issued = 0;
  bool off = false;
  for (int i = 0; i < 10; ++i) {
    const uint64_t offset = uint64_t(i % 7) * 3072;
    auto data = testing::pattern(1024 + 512 * (i % 3), 60 + i);
    Status s;
    if (i == 5) {
      auto data2 = testing::pattern(512, 99);
      std::vector<IoRequest> batch = {{IoRequest::Op::kWrite, offset, data.data(), data.size()},
                                      {IoRequest::Op::kWrite, 900 * 1024, data2.data(), 512}};
      s = dev.submit(batch);
      for (const IoRequest& r : batch) {
        if (++issued <= N) REQUIRE(reference.write(r.offset, r.buf, r.len).ok());
      }
    } else {
      s = dev.write(offset, data.data(), data.size());
      if (++issued <= N) REQUIRE(reference.write(offset, data.data(), data.size()).ok());
    }
    if (issued <= N) {
      CHECK(s.ok());
    } else {
      CHECK(s.code() == Status::Code::kPowerLoss);
      off = true;
    }
    if (i % 3 == 2) {
      Status f = dev.flush();
      CHECK(f.ok() == (issued < N));
    }
  }
  CHECK(off);
  CHECK(dev.power_lost());
  CHECK(inner.bytes() == reference.bytes());  // base + exactly the first N writes
  std::vector<uint8_t> buf(512);
  CHECK(dev.write(0, buf.data(), 512).code() == Status::Code::kPowerLoss);
  CHECK(dev.flush().code() == Status::Code::kPowerLoss);
  CHECK(dev.read(0, buf.data(), 512).code() == Status::Code::kPowerLoss);
  CHECK(inner.bytes() == reference.bytes());

  RecordLog log = dev.log();
  REQUIRE_FALSE(log.records.empty());
  CHECK(log.records.back().type == LogRecord::Type::kPowerLoss);
  uint64_t logged_writes = 0;
  for (const LogRecord& r : log.records) logged_writes += r.type == LogRecord::Type::kWrite;
  CHECK(logged_writes == N);
}

TEST_CASE("concurrent writers: every write is logged once and the log replays to the device",
          "[recording]") {
  ScratchDir dir;
  const uint64_t size = 4 << 20;
  MemoryDevice inner(size, 512);
  RecordingOptions o;
  o.log_path = dir.file("mt.log");
  auto rec = RecordingDevice::create(inner, o);
  REQUIRE(rec.ok());
  RecordingDevice& dev = **rec;
  constexpr int kThreads = 4, kWrites = 200;
  std::vector<std::thread> ts;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        // Threads share regions, so the final content depends on the order
        // the device completed them: the log must have that order.
        auto d = testing::pattern(1024, t * 1000 + i);
        if (!dev.write(uint64_t((i * 7 + t) % 64) * 512, d.data(), d.size()).ok()) ++failures;
        if (i % 50 == 49 && !dev.flush().ok()) ++failures;
      }
    });
  }
  for (auto& t : ts) t.join();
  CHECK(failures == 0);
  auto log = record_log::read_file(o.log_path);
  REQUIRE(log.ok());
  std::vector<uint8_t> replay(size, 0);
  uint64_t writes = 0, flushes = 0;
  for (const LogRecord& r : log->records) {
    if (r.type == LogRecord::Type::kWrite) {
      ++writes;
      std::memcpy(replay.data() + r.offset, r.data.data(), r.length);
    }
    flushes += r.type == LogRecord::Type::kFlush;
  }
  CHECK(writes == kThreads * kWrites);
  CHECK(flushes == kThreads * (kWrites / 50));
  CHECK(replay == inner.bytes());
}
