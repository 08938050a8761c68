// The control socket: how operators (`jcoord status|stop|lock ...`) and tests
// talk to a running node.
//
// Protocol (docs/jcoord.8, "CONTROL SOCKET"): a unix stream socket; each
// request is one line of space-separated words, each reply is one line of
// JSON with at least "ok" (and "error" when false). A connection is a
// session: locks taken with `lock` belong to it and are released when it
// closes, so a client that dies never leaves a lock behind.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cext3/status.h"

namespace cext3::daemon {

class ControlHandler {
 public:
  virtual ~ControlHandler() = default;
  // One request; returns the one-line JSON reply (no newline).
  virtual std::string handle(uint64_t session, const std::vector<std::string>& words) = 0;
  virtual void session_closed(uint64_t session) = 0;
};

class ControlServer {
 public:
  // Creates the socket (mode 0600; the parent directory is created 0755 if
  // missing). Busy if another daemon answers on it; a stale file is replaced.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path, ControlHandler& handler);
  ~ControlServer();
  const std::string& path() const;
  // Stops accepting, closes every session (calling session_closed), unlinks.
  void stop();

 private:
  struct Impl;
  explicit ControlServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class ControlClient {
 public:
  static Result<std::unique_ptr<ControlClient>> connect(const std::string& path);
  ~ControlClient();
  // Send one request line, wait for its reply line.
  Result<std::string> request(const std::string& line);

 private:
  explicit ControlClient(int fd) : fd_(fd) {}
  int fd_ = -1;
  std::string buffered_;
};

// Split a request line into words (runs of spaces separate).
std::vector<std::string> split_words(const std::string& line);

}  // namespace cext3::daemon
