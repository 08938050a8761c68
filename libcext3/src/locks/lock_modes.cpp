// Lock modes: names and the compatibility table (cext3/locks/lock_types.h).
#include <cctype>

#include "cext3/locks/lock_types.h"

namespace cext3::locks {

const char* to_string(LockMode m) {
  switch (m) {
    case LockMode::kNL: return "NL";
    case LockMode::kPR: return "PR";
    case LockMode::kEX: return "EX";
  }
  return "??";
}

bool parse_lock_mode(const std::string& s, LockMode* out) {
  std::string up;
  for (char c : s) up.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (up == "NL") { *out = LockMode::kNL; return true; }
  if (up == "PR") { *out = LockMode::kPR; return true; }
  if (up == "EX") { *out = LockMode::kEX; return true; }
  return false;
}

// NL is compatible with everything; PR with PR; EX only with NL.
bool compatible(LockMode a, LockMode b) {
  if (a == LockMode::kNL || b == LockMode::kNL) return true;
  return a == LockMode::kPR && b == LockMode::kPR;
}

}  // namespace cext3::locks
