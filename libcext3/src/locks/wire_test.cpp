#include <catch2/catch.hpp>

#include "locks/wire.h"

using namespace cext3::locks;

namespace {
wire::Message sample() {
  wire::Message m;
  m.type = wire::MsgType::kHello;
  m.slot = 7;
  m.generation = 0x1122334455667788ull;
  m.epoch = 42;
  m.resource = "inode/12";
  m.mode = LockMode::kEX;
  m.try_only = true;
  m.has_lvb = true;
  for (size_t i = 0; i < kLvbBytes; ++i) m.lvb[i] = static_cast<uint8_t>(i * 3);
  m.reason = "why";
  wire::ReportEntry e;
  e.resource = "dir/2";
  e.holding = true;
  e.held = LockMode::kPR;
  e.pending = true;
  e.pending_mode = LockMode::kEX;
  e.lvb[0] = 9;
  m.report.push_back(e);
  m.report.push_back(wire::ReportEntry{"x", false, LockMode::kNL, {}, true, LockMode::kPR, true});
  return m;
}
}  // namespace

TEST_CASE("wire: a message survives encode/decode, split anywhere", "[locks]") {
  wire::Message m = sample();
  std::string buf;
  wire::encode(m, &buf);
  wire::Message second;
  second.type = wire::MsgType::kGrant;
  second.resource = "r";
  wire::encode(second, &buf);
  const auto* p = reinterpret_cast<const uint8_t*>(buf.data());
  wire::Message out;
  auto first_len = wire::decode(p, buf.size(), &out);
  REQUIRE(first_len.ok());
  CHECK(out == m);
  // Any strict prefix of the first frame is "incomplete", never an error.
  for (size_t cut = 0; cut < *first_len; ++cut) {
    auto r = wire::decode(p, cut, &out);
    REQUIRE(r.ok());
    CHECK(*r == 0);
  }
  auto r2 = wire::decode(p + *first_len, buf.size() - *first_len, &out);
  REQUIRE(r2.ok());
  CHECK(*r2 == buf.size() - *first_len);
  CHECK(out == second);
}

TEST_CASE("wire: malformed frames are refused", "[locks]") {
  wire::Message out;
  std::string buf;
  wire::encode(sample(), &buf);
  SECTION("bad type") {
    buf[4] = 99;
    CHECK_FALSE(wire::decode(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), &out).ok());
  }
  SECTION("bad mode") {
    buf[6] = 3;
    CHECK_FALSE(wire::decode(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), &out).ok());
  }
  SECTION("length says more than the body holds") {
    // Grow the length by one and append a byte: the body then has a trailing byte.
    buf[0] = static_cast<char>(static_cast<uint8_t>(buf[0]) + 1);
    buf.push_back(0);
    CHECK_FALSE(wire::decode(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), &out).ok());
  }
  SECTION("huge length") {
    std::string huge = "\xff\xff\xff\x7f";
    CHECK_FALSE(wire::decode(reinterpret_cast<const uint8_t*>(huge.data()), huge.size(), &out).ok());
  }
}

TEST_CASE("wire: record-lock fields and reports survive encode/decode, bad ones are refused", "[locks][plock]") {
  wire::Message m;
  m.type = wire::MsgType::kPlockReply;
  m.epoch = 3;
  m.has_plock = true;
  m.plock_req = 0x0102030405060708ull;
  m.plock_result = wire::PlockResult::kDeadlock;
  m.plock = wire::PlockEntry{12, 1, wire::PlockType::kWrite, 0xAABBCCDDEEFF0011ull, 4242, 7, 10, UINT64_MAX, true};
  m.plock_report.push_back(wire::PlockEntry{13, 0, wire::PlockType::kRead, 5, 6, 0, 0, 0, false});
  std::string buf;
  wire::encode(m, &buf);
  wire::Message out;
  auto n = wire::decode(reinterpret_cast<const uint8_t*>(buf.data()), buf.size(), &out);
  REQUIRE(n.ok());
  CHECK(*n == buf.size());
  CHECK(out == m);
  // A frame without record-lock fields decodes with has_plock false.
  wire::Message plain;
  plain.type = wire::MsgType::kRequest;
  plain.resource = "r";
  std::string b2;
  wire::encode(plain, &b2);
  REQUIRE(wire::decode(reinterpret_cast<const uint8_t*>(b2.data()), b2.size(), &out).ok());
  CHECK_FALSE(out.has_plock);
  // The last 43 bytes are the report entry: u64 ino, u8 space, u8 type,
  // u64 owner, u32 pid, u32 slot, u64 start, u64 end, u8 wait.
  std::string bad = buf;
  size_t report_entry = bad.size() - 43;
  size_t start_off = report_entry + 8 + 1 + 1 + 8 + 4 + 4;
  bad[start_off] = 1;  // start 1 > end 0
  CHECK_FALSE(wire::decode(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), &out).ok());
  bad = buf;
  bad[report_entry + 9] = 3;  // type past kWrite
  CHECK_FALSE(wire::decode(reinterpret_cast<const uint8_t*>(bad.data()), bad.size(), &out).ok());
}
