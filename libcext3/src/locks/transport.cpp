// TCP plumbing for the lock service (transport.h).
#include "locks/transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cext3::locks::net {
namespace {

Status split_host_port(const std::string& hp, std::string* host, std::string* port) {
  size_t colon = hp.rfind(':');
  if (colon == std::string::npos || colon + 1 == hp.size())
    return Status::InvalidArgument("lock service address '" + hp + "' has no port: give host:port, e.g. 127.0.0.1:0");
  *host = hp.substr(0, colon);
  *port = hp.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  return Status::OK();
}

Result<addrinfo*> resolve(const std::string& hp, bool passive) {
  std::string host, port;
  CEXT3_RETURN_IF_ERROR(split_host_port(hp, &host, &port));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr)
    return Status::InvalidArgument("cannot resolve lock service address '" + hp + "': " + gai_strerror(rc) +
                                   "; check the host name");
  return res;
}

void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

std::string format_addr(const sockaddr_storage& ss) {
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&ss), sizeof ss, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  std::string h = host;
  if (ss.ss_family == AF_INET6) h = "[" + h + "]";
  return h + ":" + serv;
}

}  // namespace

Conn::~Conn() {
  if (fd >= 0) close(fd);
}

bool Conn::send(const wire::Message& m) {
  if (out_off == out.size()) {
    out.clear();
    out_off = 0;
  }
  wire::encode(m, &out);
  flush();
  return !has_output();
}

void Conn::flush() {
  if (connecting || broken) return;
  while (out_off < out.size()) {
    ssize_t n = ::send(fd, out.data() + out_off, out.size() - out_off, MSG_NOSIGNAL);
    if (n > 0) {
      out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    broken = true;
    return;
  }
  out.clear();
  out_off = 0;
}

void Conn::read_available() {
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      in.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < sizeof buf) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    broken = true;  // EOF or error
    return;
  }
}

bool Conn::next(wire::Message* m, Status* err) {
  if (in.empty()) return false;
  Result<size_t> used = wire::decode(reinterpret_cast<const uint8_t*>(in.data()), in.size(), m);
  if (!used.ok()) {
    *err = used.status();
    broken = true;
    in.clear();
    return false;
  }
  if (*used == 0) return false;
  in.erase(0, *used);
  return true;
}

Result<int> listen_tcp(const std::string& host_port, std::string* bound) {
  Result<addrinfo*> ai = resolve(host_port, true);
  if (!ai.ok()) return ai.status();
  Status last = Status::IoError("no address to listen on for '" + host_port + "'");
  for (addrinfo* a = *ai; a != nullptr; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = Status::FromErrno(errno, "socket for lock listener");
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
      last = Status::FromErrno(errno, "binding the lock listener to " + host_port +
                                          " (is the port in use? use port 0 to let the system choose)");
      close(fd);
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    *bound = format_addr(ss);
    tune(fd);
    freeaddrinfo(*ai);
    return fd;
  }
  freeaddrinfo(*ai);
  return last;
}

Result<int> connect_tcp(const std::string& host_port, bool* in_progress) {
  Result<addrinfo*> ai = resolve(host_port, false);
  if (!ai.ok()) return ai.status();
  addrinfo* a = *ai;
  int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
  if (fd < 0) {
    Status s = Status::FromErrno(errno, "socket for lock connection");
    freeaddrinfo(*ai);
    return s;
  }
  tune(fd);
  int rc = connect(fd, a->ai_addr, a->ai_addrlen);
  int err = errno;
  freeaddrinfo(*ai);
  if (rc == 0) {
    *in_progress = false;
    return fd;
  }
  if (err == EINPROGRESS) {
    *in_progress = true;
    return fd;
  }
  close(fd);
  return Status::FromErrno(err, "connecting to the lock master at " + host_port);
}

Status connect_result(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) return Status::FromErrno(err, "connecting to the lock master");
  return Status::OK();
}

int accept_conn(int listen_fd) {
  for (;;) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR) continue;
    if (fd < 0) return -1;
    tune(fd);
    return fd;
  }
}

}  // namespace cext3::locks::net
