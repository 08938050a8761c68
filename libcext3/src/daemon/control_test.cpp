#include "cext3/daemon/control.h"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>

using namespace cext3::daemon;

namespace {

std::string temp_socket_path() {
  const char* t = std::getenv("TMPDIR");
  return std::string(t && *t ? t : "/tmp") + "/cext3-ctl-test-" + std::to_string(getpid()) + ".sock";
}

struct EchoHandler : ControlHandler {
  std::mutex mu;
  std::set<uint64_t> open, closed;
  std::string handle(uint64_t session, const std::vector<std::string>& w) override {
    std::lock_guard<std::mutex> g(mu);
    open.insert(session);
    std::string r = "{\"ok\":true,\"session\":" + std::to_string(session) + ",\"words\":" + std::to_string(w.size());
    if (!w.empty()) r += ",\"first\":\"" + w[0] + "\"";
    return r + "}";
  }
  void session_closed(uint64_t session) override {
    std::lock_guard<std::mutex> g(mu);
    closed.insert(session);
  }
};

}  // namespace

TEST_CASE("control: split_words", "[daemon][control]") {
  CHECK(split_words("  lock  a EX\t100 \r") == std::vector<std::string>{"lock", "a", "EX", "100"});
  CHECK(split_words("").empty());
}

TEST_CASE("control: request/reply, sessions, busy socket, stop", "[daemon][control]") {
  const std::string path = temp_socket_path();
  EchoHandler h;
  auto srv = ControlServer::start(path, h);
  REQUIRE(srv.ok());
  {
    auto a = ControlClient::connect(path);
    auto b = ControlClient::connect(path);
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    auto r1 = (*a)->request("status now");
    auto r2 = (*a)->request("ping");
    auto r3 = (*b)->request("");
    REQUIRE(r1.ok());
    REQUIRE(r2.ok());
    REQUIRE(r3.ok());
    CHECK(r1->find("\"words\":2") != std::string::npos);
    CHECK(r1->find("\"first\":\"status\"") != std::string::npos);
    CHECK(r2->find("\"first\":\"ping\"") != std::string::npos);
    CHECK(r3->find("\"words\":0") != std::string::npos);
    // Two connections are two sessions.
    CHECK(r1->substr(0, r1->find(",\"words\"")) == r2->substr(0, r2->find(",\"words\"")));
    CHECK(r1->substr(0, r1->find(",\"words\"")) != r3->substr(0, r3->find(",\"words\"")));
    // A second server on a live socket is refused, naming it.
    EchoHandler h2;
    auto dup = ControlServer::start(path, h2);
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.status().message().find(path) != std::string::npos);
  }
  // Closed clients end their sessions (the server notices asynchronously).
  // The refused second server's probe connection is a session too, one that
  // never sent a request, so `closed` may hold one more than `open`.
  auto all_closed = [&] {
    std::lock_guard<std::mutex> g(h.mu);
    return std::includes(h.closed.begin(), h.closed.end(), h.open.begin(), h.open.end());
  };
  for (int i = 0; i < 500 && !all_closed(); ++i) usleep(10000);
  {
    std::lock_guard<std::mutex> g(h.mu);
    CHECK(h.open.size() == 2);
  }
  CHECK(all_closed());
  auto c = ControlClient::connect(path);
  REQUIRE(c.ok());
  (*srv)->stop();
  CHECK(access(path.c_str(), F_OK) != 0);  // unlinked
  CHECK_FALSE((*c)->request("ping").ok());
  CHECK_FALSE(ControlClient::connect(path).ok());
}

TEST_CASE("control: a stale socket file is replaced", "[daemon][control]") {
  const std::string path = temp_socket_path() + ".stale";
  EchoHandler h;
  {
    auto srv = ControlServer::start(path, h);
    REQUIRE(srv.ok());
  }
  // Simulate a crashed daemon: a socket file with nobody listening.
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fclose(f);
  auto srv = ControlServer::start(path, h);
  REQUIRE(srv.ok());
  auto c = ControlClient::connect(path);
  REQUIRE(c.ok());
  CHECK((*c)->request("x").ok());
}
