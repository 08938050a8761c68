// Minimal JSON output helpers for --json reports and the control socket
// (strings escaped per RFC 8259).
#pragma once

#include <string>

namespace cext3 {

std::string json_str(const std::string& s);
inline const char* json_bool(bool b) { return b ? "true" : "false"; }

}  // namespace cext3
