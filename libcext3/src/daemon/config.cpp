// Strict YAML loading for jcoord's node configuration.
#include "cext3/daemon/config.h"

#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace cext3::daemon {

const char* to_string(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

namespace {

// Every error names the file and the key, says what is wrong and what is
// accepted.
Status bad(const std::string& src, const std::string& key, const std::string& why) {
  return Status::InvalidArgument(src + ": " + key + ": " + why);
}

Status check_keys(const std::string& src, const YAML::Node& map, const std::string& prefix,
                  const std::set<std::string>& allowed) {
  if (!map.IsMap()) return bad(src, prefix.empty() ? "(top level)" : prefix, "must be a mapping of keys to values");
  for (const auto& kv : map) {
    std::string k = kv.first.as<std::string>();
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return bad(src, prefix + k, "unknown key (accepted here: " + list + ")");
    }
  }
  return Status::OK();
}

Result<std::string> get_string(const std::string& src, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) return bad(src, key, "must be a string");
  std::string v = n.as<std::string>();
  if (v.empty()) return bad(src, key, "must not be empty");
  return v;
}

Result<uint32_t> get_uint(const std::string& src, const YAML::Node& n, const std::string& key,
                          uint64_t min, uint64_t max) {
  if (!n.IsScalar()) return bad(src, key, "must be a number");
  const std::string s = n.as<std::string>();
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 10)
    return bad(src, key, "'" + s + "' is not a whole number (accepted: " + std::to_string(min) + ".." +
                             std::to_string(max) + ")");
  uint64_t v = std::stoull(s);
  if (v < min || v > max)
    return bad(src, key, std::to_string(v) + " is out of range (accepted: " + std::to_string(min) + ".." +
                             std::to_string(max) + ")");
  return static_cast<uint32_t>(v);
}

// host:port with a numeric port; host is an IPv4 address or a name.
bool valid_address(const std::string& a) {
  auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == a.size()) return false;
  std::string port = a.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5) return false;
  return std::stoul(port) <= 65535;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "node";
  return buf;
}

}  // namespace

Result<NodeConfig> parse_node_config(const std::string& text, const std::string& src) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(src + ": not valid YAML: " + e.what() + " (fix the syntax)");
  }
  if (!root.IsDefined() || root.IsNull()) return bad(src, "device", "missing (the file is empty)");
  CEXT3_RETURN_IF_ERROR(check_keys(src, root, "",
                                   {"device", "node", "listen", "control_socket", "timing", "coordination",
                                    "log_level", "mount"}));
  NodeConfig c;
  c.source = src;
  if (!root["device"]) return bad(src, "device", "missing (the shared disk: a path, block device or nbd:// URI)");
  auto dev = get_string(src, root["device"], "device");
  if (!dev.ok()) return dev.status();
  c.device = *dev;

  if (auto node = root["node"]) {
    CEXT3_RETURN_IF_ERROR(check_keys(src, node, "node.", {"name", "slot"}));
    if (node["name"]) {
      auto n = get_string(src, node["name"], "node.name");
      if (!n.ok()) return n.status();
      if (n->size() > 63) return bad(src, "node.name", "longer than 63 bytes (it must fit the heartbeat record)");
      for (unsigned char ch : *n)
        if (ch <= ' ' || ch == 0x7f)
          return bad(src, "node.name", "contains a space or control character (use letters, digits, '-', '_', '.')");
      c.node_name = *n;
    }
    if (node["slot"]) {
      if (!node["slot"].IsScalar()) return bad(src, "node.slot", "must be 'auto' or a slot number");
      std::string s = node["slot"].as<std::string>();
      if (s != "auto") {
        auto v = get_uint(src, node["slot"], "node.slot", 0, 254);
        if (!v.ok()) return bad(src, "node.slot", "'" + s + "' is neither 'auto' nor a slot number 0..254");
        c.slot = *v;
      }
    }
  }
  if (c.node_name.empty()) c.node_name = host_name().substr(0, 63);

  if (root["listen"]) {
    auto l = get_string(src, root["listen"], "listen");
    if (!l.ok()) return l.status();
    if (!valid_address(*l)) return bad(src, "listen", "'" + *l + "' is not host:port (e.g. 10.0.0.5:7400, port 0 = any)");
    c.listen = *l;
  }
  if (root["control_socket"]) {
    auto s = get_string(src, root["control_socket"], "control_socket");
    if (!s.ok()) return s.status();
    if (s->size() >= 108) return bad(src, "control_socket", "path longer than 107 bytes (a unix socket limit)");
    c.control_socket = *s;
  } else {
    c.control_socket = "/run/cext3/jcoord-" + c.node_name + ".sock";
  }
  if (auto t = root["timing"]) {
    CEXT3_RETURN_IF_ERROR(check_keys(src, t, "timing.", {"heartbeat_interval_ms", "dead_after_ms"}));
    if (t["heartbeat_interval_ms"]) {
      auto v = get_uint(src, t["heartbeat_interval_ms"], "timing.heartbeat_interval_ms", 10, 60000);
      if (!v.ok()) return v.status();
      c.heartbeat_interval_ms = *v;
    }
    if (t["dead_after_ms"]) {
      auto v = get_uint(src, t["dead_after_ms"], "timing.dead_after_ms", 50, 600000);
      if (!v.ok()) return v.status();
      c.dead_after_ms = *v;
    }
  }
  if (auto co = root["coordination"]) {
    CEXT3_RETURN_IF_ERROR(check_keys(src, co, "coordination.", {"backend", "etcd_endpoints"}));
    if (co["backend"]) {
      auto b = get_string(src, co["backend"], "coordination.backend");
      if (!b.ok()) return b.status();
      if (*b == "disk") c.coordination = CoordinationBackend::kDisk;
      else if (*b == "etcd") c.coordination = CoordinationBackend::kEtcd;
      else return bad(src, "coordination.backend", "'" + *b + "' is not a backend (accepted: disk, etcd)");
    }
    if (co["etcd_endpoints"]) {
      auto e = get_string(src, co["etcd_endpoints"], "coordination.etcd_endpoints");
      if (!e.ok()) return e.status();
      c.etcd_endpoints = *e;
    }
  }
  if (root["log_level"]) {
    auto l = get_string(src, root["log_level"], "log_level");
    if (!l.ok()) return l.status();
    if (*l == "debug") c.log_level = LogLevel::kDebug;
    else if (*l == "info") c.log_level = LogLevel::kInfo;
    else if (*l == "warn") c.log_level = LogLevel::kWarn;
    else if (*l == "error") c.log_level = LogLevel::kError;
    else return bad(src, "log_level", "'" + *l + "' is not a level (accepted: debug, info, warn, error)");
  }
  if (root["mount"]) {
    auto m = get_string(src, root["mount"], "mount");
    if (!m.ok()) return m.status();
    c.mount = *m;
  }
  return c;
}

Result<NodeConfig> load_node_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    int err = errno;
    return Status::NotFound("cannot read config " + path + ": " + std::strerror(err) +
                            " (give an existing YAML file with --config; see docs/jcoord.yaml.example)");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_node_config(ss.str(), path);
}

}  // namespace cext3::daemon
