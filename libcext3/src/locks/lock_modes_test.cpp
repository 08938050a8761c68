#include <catch2/catch.hpp>

#include "cext3/locks/lock_types.h"

using cext3::locks::LockMode;

TEST_CASE("lock modes: compatibility table is the NL/PR/EX matrix", "[locks]") {
  const LockMode all[] = {LockMode::kNL, LockMode::kPR, LockMode::kEX};
  // Row a, column b; independent of the implementation: written out by hand.
  const bool expect[3][3] = {{true, true, true}, {true, true, false}, {true, false, false}};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      INFO(cext3::locks::to_string(all[a]) << " vs " << cext3::locks::to_string(all[b]));
      CHECK(cext3::locks::compatible(all[a], all[b]) == expect[a][b]);
    }
}

TEST_CASE("lock modes: names parse in any case and reject others", "[locks]") {
  LockMode m = LockMode::kNL;
  CHECK(cext3::locks::parse_lock_mode("ex", &m));
  CHECK(m == LockMode::kEX);
  CHECK(cext3::locks::parse_lock_mode("Pr", &m));
  CHECK(m == LockMode::kPR);
  CHECK(cext3::locks::parse_lock_mode("NL", &m));
  CHECK(m == LockMode::kNL);
  CHECK_FALSE(cext3::locks::parse_lock_mode("PW", &m));
  CHECK_FALSE(cext3::locks::parse_lock_mode("", &m));
  CHECK(std::string(cext3::locks::to_string(LockMode::kPR)) == "PR");
}
