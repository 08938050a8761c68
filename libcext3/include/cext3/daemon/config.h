// jcoord's node configuration: one YAML file per node
// (docs/jcoord.yaml.example documents every key).
//
// Loading is strict: an unknown key, a value of the wrong type or out of
// range, or a missing required key is one clear error naming the file, the
// key and what is accepted. A daemon never starts on a half-understood config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "cext3/status.h"

namespace cext3::daemon {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
const char* to_string(LogLevel l);

enum class CoordinationBackend { kDisk, kEtcd };

struct NodeConfig {
  std::string source;            // the file it was loaded from, for messages
  std::string device;            // path, block device or nbd:// URI (required)
  std::string node_name;         // default: the host name
  std::optional<uint32_t> slot;  // nullopt = auto
  std::string listen = "127.0.0.1:0";  // lock-service TCP address; port 0 = any free port
  std::string control_socket;    // default: /run/cext3/jcoord-<node_name>.sock
  // Timing lives in the cluster header so that every node agrees; when given
  // here it must equal the disk's (a mismatch is refused at start).
  std::optional<uint32_t> heartbeat_interval_ms;
  std::optional<uint32_t> dead_after_ms;
  CoordinationBackend coordination = CoordinationBackend::kDisk;
  std::string etcd_endpoints;    // reserved for the etcd backend
  LogLevel log_level = LogLevel::kInfo;
  std::string mount;             // FUSE mount point (reserved for the mount)
};

Result<NodeConfig> load_node_config(const std::string& path);
Result<NodeConfig> parse_node_config(const std::string& yaml_text, const std::string& source);

}  // namespace cext3::daemon
