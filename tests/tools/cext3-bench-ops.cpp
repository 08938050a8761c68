// cext3-bench-ops: file-creation rates through running jcoord nodes, or
// through a directory of this machine (the kernel reference), one run.
//
//   cext3-bench-ops --socket S [--socket S2 ...] --workload create|create-write-fsync
//                   --layout disjoint|shared --seconds N [--threads-per-node T] --tag NAME
//   cext3-bench-ops --posix DIR ... (same options; one "node")
//
// Prints one line: "<tag> <ops/s> <ops> <seconds>". Every node gets
// `threads-per-node` client threads, each with its own control session
// (durable acknowledgements off: like a local filesystem, only fsync makes
// the data durable). disjoint: each thread creates in its own directory;
// shared: every thread of every node creates in one directory.
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "cext3/daemon/remote_fs.h"

using namespace cext3;

namespace {

struct Worker {
  std::string socket;  // empty: posix
  std::string dir;     // directory path (inside cext3, or on this machine)
  uint64_t ops = 0;
  std::string error;
};

bool run_engine(Worker& w, bool write_fsync, const std::atomic<bool>& stop, const std::string& prefix) {
  auto fsr = daemon::RemoteFilesystem::connect(w.socket, /*durable=*/false);
  if (!fsr.ok()) {
    w.error = fsr.status().message();
    return false;
  }
  auto& fs = **fsr;
  auto d = daemon::resolve_path(fs, w.dir);
  if (!d.ok()) {
    w.error = w.dir + ": " + d.status().message();
    return false;
  }
  std::vector<uint8_t> block(4096, 0x5a);
  engine::Caller c;
  while (!stop.load(std::memory_order_relaxed)) {
    const std::string name = prefix + std::to_string(w.ops);
    auto f = fs.create(d->ino, name, S_IFREG | 0644, c);
    if (!f.ok()) {
      w.error = "create " + name + ": " + f.status().message();
      return false;
    }
    if (write_fsync) {
      auto r = fs.write(f->ino, 0, block);
      Status s = r.ok() ? fs.fsync(f->ino) : r.status();
      if (!s.ok()) {
        w.error = "write/fsync " + name + ": " + s.message();
        return false;
      }
    }
    ++w.ops;
  }
  return true;
}

bool run_posix(Worker& w, bool write_fsync, const std::atomic<bool>& stop, const std::string& prefix) {
  std::vector<uint8_t> block(4096, 0x5a);
  while (!stop.load(std::memory_order_relaxed)) {
    const std::string path = w.dir + "/" + prefix + std::to_string(w.ops);
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) {
      w.error = "open " + path + ": " + std::strerror(errno);
      return false;
    }
    bool ok = true;
    if (write_fsync)
      ok = ::pwrite(fd, block.data(), block.size(), 0) == static_cast<ssize_t>(block.size()) && ::fsync(fd) == 0;
    if (!ok) w.error = "write/fsync " + path + ": " + std::strerror(errno);
    ::close(fd);
    if (!ok) return false;
    ++w.ops;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"file-creation rates through jcoord nodes or a local directory"};
  std::vector<std::string> sockets;
  std::string posix, workload = "create-write-fsync", layout = "disjoint", tag = "ops", top = "/bench";
  double seconds = 5;
  unsigned threads = 1;
  app.add_option("--socket", sockets, "control socket of a running node (repeat for more nodes)");
  app.add_option("--posix", posix, "a local directory instead (the kernel reference)");
  app.add_option("--workload", workload, "create or create-write-fsync")->check(CLI::IsMember({"create", "create-write-fsync"}));
  app.add_option("--layout", layout, "disjoint or shared directories")->check(CLI::IsMember({"disjoint", "shared"}));
  app.add_option("--seconds", seconds, "how long to run")->check(CLI::Range(0.2, 600.0));
  app.add_option("--threads-per-node", threads, "client threads per node")->check(CLI::Range(1, 64));
  app.add_option("--top", top, "directory (inside cext3) that holds the benchmark's directories");
  app.add_option("--tag", tag, "name printed before the result");
  CLI11_PARSE(app, argc, argv);
  if (sockets.empty() == posix.empty()) {
    std::fprintf(stderr, "cext3-bench-ops: give --socket (one per node) or --posix DIR, not both\n");
    return 2;
  }
  const bool write_fsync = workload == "create-write-fsync";
  const std::string run_id = tag + "_" + std::to_string(::getpid());

  // Directories: made before the clock starts, each through the node that
  // will use it (a disjoint directory's inode then sits in that node's own
  // groups, and no inode-table block is shared between the nodes); the
  // shared one through the first node.
  std::vector<Worker> workers;
  const size_t nodes = posix.empty() ? sockets.size() : 1;
  for (size_t n = 0; n < nodes; ++n)
    for (unsigned t = 0; t < threads; ++t) {
      Worker w;
      w.socket = posix.empty() ? sockets[n] : "";
      const std::string base = posix.empty() ? top : posix;
      w.dir = base + "/" + run_id + (layout == "shared" ? std::string() : "_" + std::to_string(n) + "_" + std::to_string(t));
      workers.push_back(w);
    }
  std::vector<std::string> made;
  for (const auto& w : workers) {
    bool seen = false;
    for (const auto& m : made) seen |= m == w.dir;
    if (seen) continue;
    made.push_back(w.dir);
    if (posix.empty()) {
      auto fsr = daemon::RemoteFilesystem::connect(w.socket);
      if (!fsr.ok()) return std::fprintf(stderr, "cext3-bench-ops: %s\n", fsr.status().message().c_str()), 1;
      auto& fs = **fsr;
      auto t = daemon::resolve_path(fs, top);
      if (!t.ok() && t.status().errno_value() == ENOENT) {
        auto p = daemon::resolve_parent(fs, top);
        if (p.ok()) t = fs.mkdir(p->first, p->second, 0755, engine::Caller{});
      }
      if (!t.ok()) return std::fprintf(stderr, "cext3-bench-ops: %s: %s\n", top.c_str(), t.status().message().c_str()), 1;
      auto p = daemon::resolve_parent(fs, w.dir);
      auto d = p.ok() ? fs.mkdir(p->first, p->second, 0755, engine::Caller{}) : Result<engine::Attr>(p.status());
      if (!d.ok()) return std::fprintf(stderr, "cext3-bench-ops: mkdir %s: %s\n", w.dir.c_str(), d.status().message().c_str()), 1;
    } else if (::mkdir(w.dir.c_str(), 0755) != 0) {
      return std::fprintf(stderr, "cext3-bench-ops: mkdir %s: %s\n", w.dir.c_str(), std::strerror(errno)), 1;
    }
  }

  std::atomic<bool> stop{false};
  std::vector<std::thread> th;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < workers.size(); ++i)
    th.emplace_back([&, i] {
      const std::string prefix = "w" + std::to_string(i) + "_";
      bool ok = posix.empty() ? run_engine(workers[i], write_fsync, stop, prefix)
                              : run_posix(workers[i], write_fsync, stop, prefix);
      if (!ok) stop = true;
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : th) t.join();
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  uint64_t total = 0;
  for (const auto& w : workers) {
    if (!w.error.empty()) {
      std::fprintf(stderr, "cext3-bench-ops: %s\n", w.error.c_str());
      return 1;
    }
    total += w.ops;
  }
  if (!posix.empty()) ::sync();
  std::printf("%s %.1f %llu %.2f\n", tag.c_str(), total / el, static_cast<unsigned long long>(total), el);
  return 0;
}
