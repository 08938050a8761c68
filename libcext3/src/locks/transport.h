// TCP plumbing for the lock service: listening, non-blocking connects and
// framed, buffered connections (docs/LOCKS.md, "Transport").
//
// Sockets are non-blocking with TCP_NODELAY (a lock message is small and
// latency-bound). A Conn buffers partial frames both ways; the service's
// event loop polls it, and any thread may append and try an immediate send
// under the service mutex, which saves a loop wake-up on the fast path.
#pragma once

#include <cstdint>
#include <string>

#include "cext3/status.h"
#include "locks/wire.h"

namespace cext3::locks::net {

struct Conn {
  Conn() = default;
  explicit Conn(int f) : fd(f) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn();

  int fd = -1;
  bool connecting = false;        // non-blocking connect in progress
  bool broken = false;            // read/write failed or EOF: close it
  bool close_after_flush = false; // send what is queued, then close
  std::string in;                 // received bytes not yet decoded
  std::string out;                // bytes not yet sent, from out_off
  size_t out_off = 0;
  int64_t slot = -1;              // accepted connections: the slot, after its hello

  // Append a frame and try to send at once; returns false when bytes remain
  // queued (the event loop must poll for POLLOUT).
  bool send(const wire::Message& m);
  bool has_output() const { return out_off < out.size(); }
  // Send what the socket takes now. Marks `broken` on error.
  void flush();
  // Read what the socket has. Marks `broken` on EOF or error.
  void read_available();
  // Decode the next complete frame; false when none (or when malformed, which
  // marks the connection broken and sets *err).
  bool next(wire::Message* m, Status* err);
};

// host:port -> listening socket. Port 0 lets the kernel choose; *bound gets
// the address actually bound.
Result<int> listen_tcp(const std::string& host_port, std::string* bound);
// Start a non-blocking connect; the Conn is `connecting` until writable.
Result<int> connect_tcp(const std::string& host_port, bool* in_progress);
// After POLLOUT on a connecting socket: did the connect succeed?
Status connect_result(int fd);
// Accept one pending connection (non-blocking, TCP_NODELAY), or -1 if none.
int accept_conn(int listen_fd);

}  // namespace cext3::locks::net
