#include "cext3/daemon/config.h"

#include <catch2/catch.hpp>

using cext3::daemon::parse_node_config;

TEST_CASE("node config: full file parses", "[daemon][config]") {
  auto c = parse_node_config(R"(
device: /dev/sdb
node:
  name: n1
  slot: 3
listen: 127.0.0.1:7400
control_socket: /tmp/j.sock
timing:
  heartbeat_interval_ms: 500
  dead_after_ms: 3000
coordination:
  backend: disk
log_level: debug
)",
                             "t.yaml");
  REQUIRE(c.ok());
  CHECK(c->device == "/dev/sdb");
  CHECK(c->node_name == "n1");
  REQUIRE(c->slot.has_value());
  CHECK(*c->slot == 3);
  CHECK(c->listen == "127.0.0.1:7400");
  CHECK(c->control_socket == "/tmp/j.sock");
  CHECK(*c->heartbeat_interval_ms == 500);
  CHECK(*c->dead_after_ms == 3000);
  CHECK(c->log_level == cext3::daemon::LogLevel::kDebug);
}

TEST_CASE("node config: defaults", "[daemon][config]") {
  auto c = parse_node_config("device: img\nnode: {name: a, slot: auto}\n", "t.yaml");
  REQUIRE(c.ok());
  CHECK(!c->slot.has_value());
  CHECK(c->listen == "127.0.0.1:0");
  CHECK(c->control_socket == "/run/cext3/jcoord-a.sock");
  CHECK(!c->dead_after_ms.has_value());
}

TEST_CASE("node config: every mistake is one clear error", "[daemon][config]") {
  struct Case {
    const char* yaml;
    const char* must_mention;
  } cases[] = {
      {"", "device"},
      {"node: {name: a}\n", "device"},
      {"device: x\ncolour: red\n", "colour"},
      {"device: x\nnode: {nmae: a}\n", "node.nmae"},
      {"device: x\nnode: {slot: -1}\n", "node.slot"},
      {"device: x\nnode: {slot: 255}\n", "node.slot"},
      {"device: x\nnode: {slot: first}\n", "node.slot"},
      {"device: x\nnode: {name: 'a b'}\n", "node.name"},
      {"device: x\nlisten: localhost\n", "listen"},
      {"device: x\nlisten: 'h:99999'\n", "listen"},
      {"device: x\ntiming: {dead_after_ms: 10}\n", "timing.dead_after_ms"},
      {"device: x\ntiming: {heartbeat_interval_ms: 1.5}\n", "timing.heartbeat_interval_ms"},
      {"device: x\ncoordination: {backend: zookeeper}\n", "coordination.backend"},
      {"device: x\nlog_level: loud\n", "log_level"},
      {"device: [a, b]\n", "device"},
      {"device: x\n  bad: [\n", "YAML"},
  };
  for (const auto& tc : cases) {
    INFO(tc.yaml);
    auto c = parse_node_config(tc.yaml, "t.yaml");
    REQUIRE_FALSE(c.ok());
    const std::string& m = c.status().message();
    CHECK(m.find(tc.must_mention) != std::string::npos);
    CHECK(m.find("t.yaml") == 0);
    CHECK(m.find('\n') == std::string::npos);
  }
}
