#include "cext3/block_device.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace cext3;

namespace {

std::filesystem::path scratch_dir() {
  const char* s = std::getenv("CEXT3_SCRATCH");
  std::filesystem::path p = s ? s : std::filesystem::temp_directory_path() / "cext3-scratch";
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace

TEST_CASE("open_block_device picks the file backend for a path", "[blockdev][open]") {
  auto path = scratch_dir() / "open_device_test.img";
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.seekp((1 << 20) - 1);
    f.put('\0');
  }
  auto dev = open_block_device(path.string());
  REQUIRE(dev.ok());
  CHECK((*dev)->size() == (1u << 20));
  CHECK((*dev)->name().find("open_device_test.img") != std::string::npos);
  std::filesystem::remove(path);
}

TEST_CASE("open_block_device gives one clear line for bad names", "[blockdev][open]") {
  auto empty = open_block_device("");
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.status().code() == Status::Code::kInvalidArgument);

  auto missing = open_block_device((scratch_dir() / "no-such-image.img").string());
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == Status::Code::kNotFound);
  CHECK(missing.status().message().find('\n') == std::string::npos);

  // An NBD URI whose socket does not exist is routed to the NBD backend and
  // fails there, not as a missing file called "nbd+unix:...".
  auto nbd = open_block_device("nbd+unix:///?socket=" + (scratch_dir() / "no-such.sock").string());
  REQUIRE_FALSE(nbd.ok());
  CHECK(nbd.status().message().find("nbd") != std::string::npos);
}
