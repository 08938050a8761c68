#include "cext3/cluster/layout.h"

#include <cstdio>

namespace cext3::cluster {

std::string journal_file_name(uint32_t slot) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "journal.%02u", slot);
  return buf;
}

std::string orphan_dir_name(uint32_t slot) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "orphan.%02u", slot);
  return buf;
}

int orphan_dir_slot(const std::string& name) {
  unsigned slot = 0;
  int used = 0;
  if (std::sscanf(name.c_str(), "orphan.%u%n", &slot, &used) != 1 || size_t(used) != name.size()) return -1;
  if (slot >= kMaxSlots || orphan_dir_name(slot) != name) return -1;
  return int(slot);
}

}  // namespace cext3::cluster
