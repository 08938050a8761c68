#include "cext3/daemon/log.h"

#include <sys/time.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace cext3::daemon {

namespace {
std::mutex g_mu;
std::string g_identity = "jcoord";
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

const char* level_word(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO";
    case LogLevel::kWarn: return "WARN";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}
}  // namespace

void set_log_identity(const std::string& node_name) {
  std::lock_guard<std::mutex> g(g_mu);
  g_identity = "jcoord[" + node_name + "]";
}

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }

bool log_enabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void log(LogLevel level, const std::string& message) {
  if (!log_enabled(level)) return;
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char ts[80];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long>(tv.tv_usec / 1000));
  std::lock_guard<std::mutex> g(g_mu);
  std::fprintf(stderr, "%s %s %s %s\n", ts, g_identity.c_str(), level_word(level), message.c_str());
  std::fflush(stderr);
}

}  // namespace cext3::daemon
