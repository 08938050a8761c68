// Minimal JSON output helpers for --json (strings escaped per RFC 8259).
#pragma once

#include <cstdio>
#include <string>

namespace clusterify {

inline std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

inline const char* json_bool(bool b) { return b ? "true" : "false"; }

}  // namespace clusterify
