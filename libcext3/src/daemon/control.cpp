// Control socket server and client (see control.h for the protocol).
#include "cext3/daemon/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

namespace cext3::daemon {

std::vector<std::string> split_words(const std::string& line) {
  std::vector<std::string> w;
  std::string cur;
  for (char c : line) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      if (!cur.empty()) w.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) w.push_back(std::move(cur));
  return w;
}

namespace {

Status fill_addr(const std::string& path, sockaddr_un* a) {
  std::memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a->sun_path)
    return Status::InvalidArgument("control socket path '" + path + "' is empty or longer than " +
                                   std::to_string(sizeof a->sun_path - 1) + " bytes");
  std::memcpy(a->sun_path, path.data(), path.size());
  return Status::OK();
}

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// A request line longer than this is refused. The largest legitimate one
// is `exec write` with 1 MiB of data in hex (docs/jcoord.8).
constexpr size_t kMaxLine = 4 * 1024 * 1024;

}  // namespace

struct ControlServer::Impl {
  std::string path;
  ControlHandler* handler = nullptr;
  int listen_fd = -1;
  int wake_pipe[2] = {-1, -1};
  std::thread acceptor;
  std::mutex mu;
  std::map<uint64_t, int> session_fds;  // live sessions, for stop()
  // Sessions run on detached threads; stop() waits for `active` to reach 0.
  std::condition_variable idle;
  size_t active = 0;
  std::atomic<bool> stopping{false};
  uint64_t next_session = 1;
  bool stopped = false;

  void serve(uint64_t id, int fd) {
    std::string buf;
    std::vector<char> chunk(64 * 1024);
    size_t scanned = 0;  // bytes of buf already known to hold no newline
    bool open = true;
    while (open) {
      ssize_t n = ::recv(fd, chunk.data(), chunk.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      buf.append(chunk.data(), static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n', scanned)) != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        scanned = 0;
        std::string reply = handler->handle(id, split_words(line));
        if (!write_all(fd, reply + "\n")) {
          open = false;
          break;
        }
      }
      scanned = buf.size();
      if (buf.size() > kMaxLine) {
        write_all(fd, "{\"ok\":false,\"error\":\"request line too long\"}\n");
        break;
      }
    }
    handler->session_closed(id);
    std::lock_guard<std::mutex> g(mu);
    session_fds.erase(id);
    ::close(fd);
    if (--active == 0) idle.notify_all();
  }

  void accept_loop() {
    while (!stopping) {
      pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || (p[1].revents & POLLIN)) break;
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard<std::mutex> g(mu);
      if (stopping) {
        ::close(fd);
        break;
      }
      uint64_t id = next_session++;
      session_fds[id] = fd;
      ++active;
      std::thread([this, id, fd] { serve(id, fd); }).detach();
    }
  }
};

ControlServer::ControlServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path, ControlHandler& handler) {
  sockaddr_un addr;
  CEXT3_RETURN_IF_ERROR(fill_addr(path, &addr));
  // The parent directory (/run/cext3 by default) may not exist yet.
  auto slash = path.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      return Status::FromErrno(errno, "creating control socket directory " + dir);
  }
  // A socket file that still answers belongs to a running daemon.
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(probe);
    if (live)
      return Status::Busy("control socket " + path +
                          " is in use by a running jcoord (stop it with `jcoord stop --socket " + path +
                          "`, or give this node another control_socket)");
  }
  ::unlink(path.c_str());
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->handler = &handler;
  impl->listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (impl->listen_fd < 0) return Status::FromErrno(errno, "creating control socket");
  mode_t old = ::umask(0077);
  int br = ::bind(impl->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int berr = errno;
  ::umask(old);
  if (br != 0) {
    ::close(impl->listen_fd);
    return Status::FromErrno(berr, "binding control socket " + path);
  }
  if (::listen(impl->listen_fd, 64) != 0) {
    int e = errno;
    ::close(impl->listen_fd);
    ::unlink(path.c_str());
    return Status::FromErrno(e, "listening on control socket " + path);
  }
  if (::pipe2(impl->wake_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(impl->listen_fd);
    ::unlink(path.c_str());
    return Status::FromErrno(e, "creating control socket wake pipe");
  }
  Impl* p = impl.get();
  impl->acceptor = std::thread([p] { p->accept_loop(); });
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(impl)));
}

const std::string& ControlServer::path() const { return impl_->path; }

void ControlServer::stop() {
  Impl& m = *impl_;
  if (m.stopped) return;
  m.stopped = true;
  m.stopping = true;
  char c = 1;
  (void)!::write(m.wake_pipe[1], &c, 1);
  if (m.acceptor.joinable()) m.acceptor.join();
  {
    std::unique_lock<std::mutex> g(m.mu);
    for (auto& [id, fd] : m.session_fds) ::shutdown(fd, SHUT_RDWR);
    m.idle.wait(g, [&] { return m.active == 0; });
  }
  ::close(m.listen_fd);
  ::close(m.wake_pipe[0]);
  ::close(m.wake_pipe[1]);
  ::unlink(m.path.c_str());
}

ControlServer::~ControlServer() { stop(); }

Result<std::unique_ptr<ControlClient>> ControlClient::connect(const std::string& path) {
  sockaddr_un addr;
  CEXT3_RETURN_IF_ERROR(fill_addr(path, &addr));
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "creating socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno(e, "connecting to jcoord control socket " + path +
                                    " (is the node running? give --socket or --config)");
  }
  return std::unique_ptr<ControlClient>(new ControlClient(fd));
}

ControlClient::~ControlClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::string> ControlClient::request(const std::string& line) {
  if (!write_all(fd_, line + "\n")) return Status::IoError("control socket closed by jcoord while sending");
  std::vector<char> chunk(64 * 1024);
  size_t scanned = 0;  // bytes of buffered_ known to hold no newline
  for (;;) {
    size_t nl = buffered_.find('\n', scanned);
    if (nl != std::string::npos) {
      std::string reply = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return reply;
    }
    scanned = buffered_.size();
    ssize_t n = ::recv(fd_, chunk.data(), chunk.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::IoError("control socket closed by jcoord before it replied");
    buffered_.append(chunk.data(), static_cast<size_t>(n));
  }
}

}  // namespace cext3::daemon
