// cext3-plock-pingpong: two processes pass fcntl write locks back and forth
// on one file, each through its own path (on a cluster: each node's mount
// of the same file), and update counters under the locks. Any lost update
// or stale read fails the run; the hand-off rate is printed.
//
//   cext3-plock-pingpong PATH_A PATH_B [--rounds N] [--timeout SECONDS]
//
// Scheme (the classic lock chase): three 8-byte slots, slot i locked by the
// byte range [8i, 8i+8). A process holding slot i's lock takes slot i+1's
// (F_SETLKW), adds one to slot i's counter, releases slot i and moves on.
// Process 0 starts holding slot 0, process 1 slot 1, both taken before
// either moves (a barrier), so the two strictly alternate on every slot:
// each visit must find the counter exactly one above what this process
// wrote there on its previous visit. At the end the counters must sum to
// the rounds done. The file is created (zeroed) through PATH_A; PATH_B
// must show the same file.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>

namespace {

constexpr int kSlots = 3;

// Shared between the parent and both children (MAP_SHARED).
struct Shared {
  std::atomic<uint64_t> rounds[2];
  std::atomic<int> done[2];
  char error[2][256];
};

bool set_lock(int fd, int slot, short type, bool wait) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 8 * slot;
  fl.l_len = 8;
  for (;;) {
    if (fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) == 0) return true;
    if (errno != EINTR) return false;
  }
}

bool read_slot(int fd, int slot, uint64_t& v) { return pread(fd, &v, 8, 8 * slot) == 8; }
bool write_slot(int fd, int slot, uint64_t v) { return pwrite(fd, &v, 8, 8 * slot) == 8; }

int child(int me, const char* path, uint64_t rounds, Shared* sh, int ready_fd, int go_fd) {
  auto die = [&](const std::string& what) {
    std::snprintf(sh->error[me], sizeof sh->error[me], "process %d (%s): %s", me, path, what.c_str());
    sh->done[me].store(1);
    return 1;
  };
  int fd = open(path, O_RDWR);
  if (fd < 0) return die(std::string("open: ") + std::strerror(errno));
  int slot = me;
  if (!set_lock(fd, slot, F_WRLCK, true)) return die(std::string("first lock: ") + std::strerror(errno));
  char b = 1;
  bool told = write(ready_fd, &b, 1) == 1;
  close(ready_fd);  // the parent sees EOF if the other process never gets here
  if (!told || read(go_fd, &b, 1) != 1) return die("barrier: the other process did not take its first lock");
  uint64_t last[kSlots];
  bool visited[kSlots] = {false, false, false};
  for (uint64_t r = 0; r < rounds; ++r) {
    int next = (slot + 1) % kSlots;
    if (!set_lock(fd, next, F_WRLCK, true))
      return die("lock slot " + std::to_string(next) + ": " + std::strerror(errno) + " after " + std::to_string(r) + " rounds");
    uint64_t v = 0;
    errno = 0;
    if (!read_slot(fd, slot, v))
      return die("read slot " + std::to_string(slot) + ": " + (errno ? std::strerror(errno) : "short read (the file is shorter than the slots)"));
    // Strict alternation: the other process added one since our last visit,
    // unless it has already finished all its rounds.
    bool other_done = sh->done[1 - me].load() != 0;
    bool ok = visited[slot] ? (v == last[slot] + 1 || (other_done && v == last[slot])) : (v <= 1);
    if (!ok)
      return die("lost update at round " + std::to_string(r) + ": slot " + std::to_string(slot) + " holds " + std::to_string(v) +
                 ", this process wrote " + (visited[slot] ? std::to_string(last[slot]) : "nothing") +
                 " there on its previous visit and the other added one since");
    if (!write_slot(fd, slot, v + 1)) return die("write slot " + std::to_string(slot) + ": " + std::strerror(errno));
    last[slot] = v + 1;
    visited[slot] = true;
    if (!set_lock(fd, slot, F_UNLCK, false)) return die(std::string("unlock: ") + std::strerror(errno));
    slot = next;
    sh->rounds[me].store(r + 1);
  }
  // Finished: say so before the last lock goes, so the other process does
  // not expect our increments any more.
  sh->done[me].store(1);
  set_lock(fd, slot, F_UNLCK, false);
  close(fd);
  return 0;
}

int usage() {
  std::fprintf(stderr, "usage: cext3-plock-pingpong PATH_A PATH_B [--rounds N] [--timeout SECONDS]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string paths[2];
  int npaths = 0;
  uint64_t rounds = 1000;
  int timeout_s = 60;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) {
      rounds = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--timeout" && i + 1 < argc) {
      timeout_s = std::atoi(argv[++i]);
    } else if (npaths < 2 && a[0] != '-') {
      paths[npaths++] = a;
    } else {
      return usage();
    }
  }
  if (npaths != 2 || rounds == 0 || timeout_s <= 0) return usage();

  int fd = open(paths[0].c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::printf("FAIL: cannot create %s: %s\n", paths[0].c_str(), std::strerror(errno));
    return 1;
  }
  char zeros[8 * kSlots] = {};
  if (pwrite(fd, zeros, sizeof zeros, 0) != static_cast<ssize_t>(sizeof zeros) || fsync(fd) != 0) {
    std::printf("FAIL: cannot initialise %s: %s\n", paths[0].c_str(), std::strerror(errno));
    return 1;
  }

  auto* sh = static_cast<Shared*>(mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (sh == MAP_FAILED) {
    std::printf("FAIL: mmap: %s\n", std::strerror(errno));
    return 1;
  }
  new (sh) Shared{};
  int ready[2], go[2];
  if (pipe(ready) != 0 || pipe(go) != 0) return 1;
  std::fflush(stdout);
  pid_t pids[2];
  for (int me = 0; me < 2; ++me) {
    pids[me] = fork();
    if (pids[me] < 0) {
      std::printf("FAIL: fork: %s\n", std::strerror(errno));
      return 1;
    }
    if (pids[me] == 0) {
      close(ready[0]);
      close(go[1]);
      close(fd);
      _exit(child(me, paths[me].c_str(), rounds, sh, ready[1], go[0]));
    }
  }
  close(ready[1]);
  close(go[0]);
  // Barrier: both initial locks are held before anyone moves.
  bool barrier = true;
  for (int i = 0; i < 2 && barrier; ++i) {
    struct pollfd pfd = {ready[0], POLLIN, 0};
    char b;
    barrier = poll(&pfd, 1, timeout_s * 1000) == 1 && read(ready[0], &b, 1) == 1;
  }
  close(ready[0]);
  auto start = std::chrono::steady_clock::now();
  if (barrier) {
    char b[2] = {1, 1};
    barrier = write(go[1], b, 2) == 2;
  }
  close(go[1]);  // without the go byte, a waiting process reads EOF and ends

  // Watchdog: no progress for timeout_s seconds is a hang (e.g. a lock
  // release that never reaches the other node).
  uint64_t seen = 0;
  auto last_progress = start;
  int status[2] = {0, 0};
  bool exited[2] = {false, false};
  bool hung = false;
  while (!(exited[0] && exited[1])) {
    for (int i = 0; i < 2; ++i)
      if (!exited[i] && waitpid(pids[i], &status[i], WNOHANG) == pids[i]) exited[i] = true;
    if (exited[0] && exited[1]) break;
    uint64_t now_rounds = sh->rounds[0].load() + sh->rounds[1].load();
    auto now = std::chrono::steady_clock::now();
    if (now_rounds != seen) {
      seen = now_rounds;
      last_progress = now;
    } else if (now - last_progress > std::chrono::seconds(timeout_s)) {
      hung = true;
      for (int i = 0; i < 2; ++i)
        if (!exited[i]) kill(pids[i], SIGKILL);
      for (int i = 0; i < 2; ++i)
        if (!exited[i]) waitpid(pids[i], &status[i], 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t done_rounds = sh->rounds[0].load() + sh->rounds[1].load();

  bool ok = barrier && !hung;
  for (int i = 0; i < 2; ++i) {
    if (sh->error[i][0]) {
      std::printf("FAIL: %s\n", sh->error[i]);
      ok = false;
    } else if (!hung && (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0)) {
      std::printf("FAIL: process %d ended with status %d\n", i, status[i]);
      ok = false;
    }
  }
  if (!barrier) std::printf("FAIL: the two processes could not take their first locks\n");
  if (hung)
    std::printf("FAIL: no progress for %d s after %llu rounds (process 0: %llu, process 1: %llu): a lock hand-off hangs\n",
                timeout_s, static_cast<unsigned long long>(done_rounds),
                static_cast<unsigned long long>(sh->rounds[0].load()), static_cast<unsigned long long>(sh->rounds[1].load()));
  // Every round added one to one slot: the sum, read through PATH_A under a
  // lock of the whole range, must equal the rounds done.
  uint64_t sum = 0;
  if (!hung) {
    struct flock fl {};
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_len = 8 * kSlots;
    fcntl(fd, F_SETLKW, &fl);
    for (int i = 0; i < kSlots; ++i) {
      uint64_t v = 0;
      read_slot(fd, i, v);
      sum += v;
    }
    fl.l_type = F_UNLCK;
    fcntl(fd, F_SETLK, &fl);
    if (sum != done_rounds) {
      std::printf("FAIL: the counters sum to %llu after %llu rounds: updates were lost\n", static_cast<unsigned long long>(sum),
                  static_cast<unsigned long long>(done_rounds));
      ok = false;
    }
  }
  close(fd);
  std::printf("plock-pingpong: %llu rounds in %.2f s: %.0f rounds/s (%s)\n", static_cast<unsigned long long>(done_rounds), secs,
              secs > 0 ? done_rounds / secs : 0.0, ok ? "no lost update" : "FAILED");
  return ok ? 0 : 1;
}
