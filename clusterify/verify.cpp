// clusterify verify (also installed as fsck.cext3): check every cluster
// invariant, replay dirty slot journals unless -n, then run e2fsck as a
// subprocess. Exit codes as fsck(8): 0 clean, 1 errors corrected,
// 4 errors left uncorrected, 8 operational error (bits combine).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "cext3/cluster/inspect.h"
#include "cext3/nbd_device.h"
#include "commands.h"
#include "device.h"
#include "json.h"

extern char** environ;

namespace clusterify {
namespace {

constexpr int kFsckCorrected = 1;
constexpr int kFsckUncorrected = 4;
constexpr int kFsckOperational = 8;

// Run e2fsck; its output goes to `out_fd` (stdout, or stderr under --json).
int run_e2fsck(const std::string& device, const char* mode, int out_fd) {
  std::vector<std::string> args = {"e2fsck", "-f", mode, device};
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out_fd != STDOUT_FILENO) posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, "e2fsck", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    std::fprintf(stderr, "clusterify verify: cannot run e2fsck (%s); install e2fsprogs\n", strerror(rc));
    return -1;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

}  // namespace

int run_verify(const VerifyArgs& a) {
  const int modes = int{a.no_change} + int{a.preen} + int{a.yes};
  if (modes > 1) {
    std::fprintf(stderr, "clusterify verify: -n, -p and -y exclude each other; give one\n");
    return 16;
  }
  // Without a mode: check only, like -n (safe default for a shared disk).
  const bool repair = a.preen || a.yes;
  const char* e2mode = a.yes ? "-y" : a.preen ? "-p" : "-n";
  cext3::cluster::VerifyReport rep;
  {
    auto dev = repair ? open_device_for_change(a.device, false) : open_device_read_only(a.device);
    if (!dev.ok()) {
      fail("verify", dev.status());
      return kFsckOperational;
    }
    cext3::cluster::VerifyOptions vo;
    vo.repair = repair;
    vo.observe = true;  // a verdict on a running cluster must rest on what its heartbeats do
    auto r = cext3::cluster::verify_cluster(**dev, vo);
    if (!r.ok()) {
      fail("verify", r.status());
      return kFsckOperational;
    }
    rep = std::move(r).value();
  }  // the device is closed before e2fsck opens it
  int code = 0;
  if (!rep.problems.empty()) code |= kFsckUncorrected;
  if (!rep.fixed.empty()) code |= kFsckCorrected;
  const int out_fd = a.json ? STDERR_FILENO : STDOUT_FILENO;
  FILE* out = a.json ? stderr : stdout;
  if (!rep.clusterified) {
    std::fprintf(out, "%s: plain ext3 filesystem (not clusterified); checking it as ext3\n", a.device.c_str());
  } else {
    std::fprintf(out, "%s: cext3 cluster checks: %zu passed, %zu problems, %zu fixed\n", a.device.c_str(),
                 rep.passed.size(), rep.problems.size(), rep.fixed.size());
    for (auto& p : rep.passed) std::fprintf(out, "  ok: %s\n", p.c_str());
    for (auto& p : rep.fixed) std::fprintf(out, "  FIXED: %s\n", p.c_str());
    for (auto& p : rep.problems) std::fprintf(out, "  PROBLEM: %s\n", p.c_str());
  }
  int e2 = -2;
  if (!rep.live_slots.empty()) {
    // e2fsck on a filesystem that nodes are changing would report their
    // writes in flight as damage (and with -p/-y "repair" them).
    std::fprintf(out, "  e2fsck: skipped (the cluster is live)\n");
  } else if (cext3::is_nbd_uri(a.device)) {
    std::fprintf(out, "  e2fsck: skipped (it cannot open an NBD URI; run it on a node with the export attached)\n");
  } else {
    std::fflush(out);
    e2 = run_e2fsck(a.device, e2mode, out_fd);
    if (e2 < 0) code |= kFsckOperational;
    else code |= e2;
  }
  if (a.json) {
    std::ostringstream o;
    o << "{\"device\":" << json_str(a.device) << ",\"clusterified\":" << json_bool(rep.clusterified) << ",\"mode\":"
      << json_str(e2mode) << ",\"passed\":[";
    for (size_t i = 0; i < rep.passed.size(); ++i) o << (i ? "," : "") << json_str(rep.passed[i]);
    o << "],\"fixed\":[";
    for (size_t i = 0; i < rep.fixed.size(); ++i) o << (i ? "," : "") << json_str(rep.fixed[i]);
    o << "],\"problems\":[";
    for (size_t i = 0; i < rep.problems.size(); ++i) o << (i ? "," : "") << json_str(rep.problems[i]);
    o << "],\"e2fsck_exit\":" << (e2 >= 0 ? std::to_string(e2) : "null") << ",\"exit\":" << code << "}\n";
    std::fputs(o.str().c_str(), stdout);
  }
  return code;
}

}  // namespace clusterify
