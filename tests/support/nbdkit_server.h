// NbdkitServer: a real nbdkit for tests, started on a Unix socket in a
// scratch directory or on a free TCP port of 127.0.0.1, and stopped by the
// destructor. Nothing listens beyond loopback.
//
//   std::string err;
//   auto srv = NbdkitServer::memory(16 << 20, NbdkitServer::Transport::kUnix, &err);
//   REQUIRE_MESSAGE(srv, err);   // nbdkit is a declared test dependency
//   auto dev = open_nbd_device(srv->uri(), {});
//
// nbdkit runs in the foreground (-f) as our child, so its pid is known and
// the destructor can SIGTERM and reap it; --exit-with-parent also ends it if
// the test process dies first. Readiness: nbdkit writes its --pidfile only
// once it accepts connections, so we wait for that file.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace cext3::testing {

// A fresh directory for one test under $CEXT3_SCRATCH (or the system temp
// directory), removed with everything in it by the destructor.
class NbdScratchDir {
 public:
  NbdScratchDir() {
    const char* root = std::getenv("CEXT3_SCRATCH");
    std::filesystem::path base = root && *root ? root : std::filesystem::temp_directory_path().string();
    std::error_code ec;
    std::filesystem::create_directories(base, ec);
    std::string tmpl = (base / "cext3.XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~NbdScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  NbdScratchDir(const NbdScratchDir&) = delete;
  NbdScratchDir& operator=(const NbdScratchDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class NbdkitServer {
 public:
  enum class Transport { kUnix, kTcpLoopback };

  // nbdkit memory plugin: a zero-filled RAM disk of `size` bytes.
  static std::unique_ptr<NbdkitServer> memory(uint64_t size, Transport t, std::string* error,
                                              bool read_only = false) {
    return start("memory", {"size=" + std::to_string(size)}, t, read_only, error);
  }

  // nbdkit file plugin serving an existing file (writes land in the file).
  static std::unique_ptr<NbdkitServer> file(const std::string& path, Transport t, std::string* error,
                                            bool read_only = false) {
    return start("file", {"file=" + path}, t, read_only, error);
  }

  // Any plugin with its key=value arguments. Returns nullptr and sets *error
  // to one line when nbdkit is missing or does not come up.
  static std::unique_ptr<NbdkitServer> start(const std::string& plugin, const std::vector<std::string>& plugin_args,
                                             Transport t, bool read_only, std::string* error,
                                             const std::vector<std::string>& extra_options = {}) {
    std::unique_ptr<NbdkitServer> s(new NbdkitServer());
    if (!s->dir_.ok()) {
      *error = std::string("cannot create a scratch directory for nbdkit: ") + std::strerror(errno) +
               "; set CEXT3_SCRATCH to a writable directory";
      return nullptr;
    }
    // Binding port 0 then handing the port to nbdkit leaves a small window in
    // which someone else may take it; retry a few times if that happens.
    const int attempts = t == Transport::kTcpLoopback ? 5 : 1;
    for (int i = 0; i < attempts; ++i) {
      if (s->launch(plugin, plugin_args, t, read_only, extra_options, error)) return s;
    }
    return nullptr;
  }

  ~NbdkitServer() { stop(); }
  NbdkitServer(const NbdkitServer&) = delete;
  NbdkitServer& operator=(const NbdkitServer&) = delete;

  const std::string& uri() const { return uri_; }
  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_; }
  int port() const { return port_; }

  // SIGTERM and reap; safe to call twice. Tests call it to make the server
  // vanish under a connected client.
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 500; ++i) {  // up to 5 s, then SIGKILL
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  NbdkitServer() = default;

  static int free_loopback_port() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
    close(fd);
    return port;
  }

  std::string last_log_line() const {
    std::ifstream in(log_);
    std::string line, last;
    while (std::getline(in, line))
      if (!line.empty()) last = line;
    return last;
  }

  bool launch(const std::string& plugin, const std::vector<std::string>& plugin_args, Transport t, bool read_only,
              const std::vector<std::string>& extra_options, std::string* error) {
    const std::string pidfile = dir_.file("nbdkit.pid");
    log_ = dir_.file("nbdkit.log");
    std::filesystem::remove(pidfile);
    std::vector<std::string> argv = {"nbdkit", "-f", "--exit-with-parent", "-P", pidfile};
    if (read_only) argv.push_back("-r");
    if (t == Transport::kUnix) {
      socket_ = dir_.file("nbd.sock");
      if (socket_.size() >= sizeof(sockaddr_un{}.sun_path)) {
        *error = "scratch path " + socket_ + " is too long for a Unix socket; set CEXT3_SCRATCH to a shorter directory";
        return false;
      }
      argv.insert(argv.end(), {"-U", socket_});
      uri_ = "nbd+unix:///?socket=" + socket_;
    } else {
      port_ = free_loopback_port();
      if (port_ <= 0) {
        *error = std::string("cannot find a free TCP port on 127.0.0.1: ") + std::strerror(errno);
        return false;
      }
      argv.insert(argv.end(), {"-i", "127.0.0.1", "-p", std::to_string(port_)});
      uri_ = "nbd://127.0.0.1:" + std::to_string(port_) + "/";
    }
    argv.insert(argv.end(), extra_options.begin(), extra_options.end());
    argv.push_back(plugin);
    argv.insert(argv.end(), plugin_args.begin(), plugin_args.end());

    // exec failures come back through a close-on-exec pipe, so "nbdkit is not
    // installed" is told apart from "nbdkit started and then failed".
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
      *error = std::string("pipe: ") + std::strerror(errno);
      return false;
    }
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    const std::string log = log_;
    pid_t pid = fork();
    if (pid < 0) {
      *error = std::string("fork: ") + std::strerror(errno);
      close(report[0]);
      close(report[1]);
      return false;
    }
    if (pid == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
      }
      execvp("nbdkit", cargv.data());
      int e = errno;
      ssize_t ignored = write(report[1], &e, sizeof e);
      (void)ignored;
      _exit(127);
    }
    close(report[1]);
    int exec_errno = 0;
    ssize_t n = read(report[0], &exec_errno, sizeof exec_errno);
    close(report[0]);
    if (n == static_cast<ssize_t>(sizeof exec_errno)) {
      waitpid(pid, nullptr, 0);
      *error = std::string("cannot run nbdkit: ") + std::strerror(exec_errno) +
               "; nbdkit is a declared test dependency: install the nbdkit package (scripts/install-deps.sh)";
      return false;
    }
    pid_ = pid;

    for (int i = 0; i < 1000; ++i) {  // up to 10 s
      struct stat st;
      if (::stat(pidfile.c_str(), &st) == 0 && st.st_size > 0) return true;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *error = "nbdkit " + plugin + " exited before accepting connections: " + last_log_line();
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    stop();
    *error = "nbdkit " + plugin + " did not start listening within 10 s: " + last_log_line();
    return false;
  }

  NbdScratchDir dir_;
  std::string log_;
  std::string socket_;
  std::string uri_;
  int port_ = -1;
  pid_t pid_ = -1;
};

}  // namespace cext3::testing
