#include "cext3/sha256.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

using cext3::Sha256;

namespace {

std::string HexOf(const std::string& s) { return Sha256::ToHex(Sha256::Of(s.data(), s.size())); }

// Runs the system's sha256sum on the bytes, as an oracle independent of this code.
std::string SystemSha256(const std::vector<uint8_t>& bytes) {
  char path[] = "/tmp/cext3-sha256-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
  close(fd);
  std::string cmd = std::string("sha256sum ") + path;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char out[65] = {0};
  size_t got = fread(out, 1, 64, p);
  int rc = pclose(p);
  unlink(path);
  REQUIRE(rc == 0);
  REQUIRE(got == 64);
  return std::string(out, 64);
}

}  // namespace

TEST_CASE("sha256 matches the FIPS 180-4 / NIST example vectors", "[sha256]") {
  CHECK(HexOf("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(HexOf("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(HexOf("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(HexOf("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu") ==
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  Sha256 h;
  std::string thousand_a(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.Update(thousand_a.data(), thousand_a.size());
  CHECK(Sha256::ToHex(h.Finish()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256 agrees with the system sha256sum around every padding boundary", "[sha256]") {
  std::mt19937 rng(12345);
  std::vector<size_t> lengths;
  for (size_t n = 0; n <= 130; ++n) lengths.push_back(n);  // 55/56/63/64/119/120 padding edges
  lengths.push_back(4095);
  lengths.push_back(4096);
  lengths.push_back(1000003);
  for (size_t len : lengths) {
    std::vector<uint8_t> bytes(len);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    INFO("length " << len);
    CHECK(Sha256::ToHex(Sha256::Of(bytes.data(), bytes.size())) == SystemSha256(bytes));
  }
}

TEST_CASE("sha256 gives the same digest for any split of the input, and resets after Finish", "[sha256]") {
  std::mt19937 rng(777);
  std::vector<uint8_t> bytes(10000);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  const auto whole = Sha256::Of(bytes.data(), bytes.size());
  Sha256 h;
  for (int round = 0; round < 3; ++round) {
    size_t pos = 0;
    while (pos < bytes.size()) {
      size_t chunk = std::min<size_t>(bytes.size() - pos, rng() % 200);
      h.Update(bytes.data() + pos, chunk);
      pos += chunk;
    }
    CHECK(h.Finish() == whole);  // second and third rounds prove Finish() reset the state
  }
}
