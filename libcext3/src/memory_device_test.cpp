#include "cext3/memory_device.h"

#include "backend_suite.h"

using namespace cext3;

TEST_CASE("memory device passes the backend suite", "[blockdev][memory]") {
  testing::run_backend_suite([] { return std::make_unique<MemoryDevice>(16u << 20, 512); });
  testing::run_backend_suite([] { return std::make_unique<MemoryDevice>(16u << 20, 4096); });
}

TEST_CASE("status carries errno and context", "[status]") {
  Status s = Status::FromErrno(ENOENT, "opening /nope");
  CHECK(s.code() == Status::Code::kNotFound);
  CHECK(s.errno_value() == ENOENT);
  CHECK(s.Annotate("convert").message() == "convert: opening /nope: No such file or directory");
  CHECK(Status::OK().errno_value() == 0);
  Result<int> r = Status::NoSpace("full");
  CHECK_FALSE(r.ok());
  CHECK(r.status().errno_value() == ENOSPC);
  Result<int> v = 7;
  CHECK(*v == 7);
}
