#include "cext3/cluster/layout.h"

#include <cstdio>

namespace cext3::cluster {

std::string journal_file_name(uint32_t slot) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "journal.%02u", slot);
  return buf;
}

}  // namespace cext3::cluster
