// The daemon's log: one line per event on stderr,
// "2026-11-24T19:40:01.123Z jcoord[n1] INFO slot 3 claimed", so that several
// nodes' logs merged by time stay readable. Thread-safe.
#pragma once

#include <string>

#include "cext3/daemon/config.h"

namespace cext3::daemon {

void set_log_identity(const std::string& node_name);
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);
void log(LogLevel level, const std::string& message);

inline void log_debug(const std::string& m) { log(LogLevel::kDebug, m); }
inline void log_info(const std::string& m) { log(LogLevel::kInfo, m); }
inline void log_warn(const std::string& m) { log(LogLevel::kWarn, m); }
inline void log_error(const std::string& m) { log(LogLevel::kError, m); }

}  // namespace cext3::daemon
