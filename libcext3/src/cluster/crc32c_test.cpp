#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "cext3/cluster/crc32c.h"

using cext3::cluster::crc32c;

// Vectors from RFC 3720 (iSCSI) appendix B.4 and the usual check value.
TEST_CASE("crc32c matches the published Castagnoli vectors", "[cluster][crc32c]") {
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0x00), ones(32, 0xFF), inc(32), dec(32);
  for (int i = 0; i < 32; ++i) {
    inc[i] = static_cast<uint8_t>(i);
    dec[i] = static_cast<uint8_t>(31 - i);
  }
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  CHECK(crc32c(ones.data(), ones.size()) == 0x62A8AB43u);
  CHECK(crc32c(inc.data(), inc.size()) == 0x46DD794Eu);
  CHECK(crc32c(dec.data(), dec.size()) == 0x113FDB5Cu);
  CHECK(crc32c("", 0) == 0u);
}

TEST_CASE("crc32c can be computed in pieces", "[cluster][crc32c]") {
  const char* s = "The quick brown fox jumps over the lazy dog";
  size_t n = std::strlen(s);
  uint32_t whole = crc32c(s, n);
  CHECK(crc32c(s + 10, n - 10, crc32c(s, 10)) == whole);
  CHECK(whole == 0x22620404u);
}
