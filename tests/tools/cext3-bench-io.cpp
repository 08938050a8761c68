// cext3-bench-io: sequential write throughput of the file/block-device
// backend, for comparison with dd oflag=direct (scripts/bench/io.sh).
//
// Writes N MiB from offset 0 in fixed-size requests, all handed to one
// submit() so the backend keeps queue-depth requests in flight, then
// flush()es; the time includes the flush, as dd's conv=fdatasync does.
// The bytes written are zeros, like dd's /dev/zero, so both write the same.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "cext3/file_device.h"

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "cext3-bench-io: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Sequential write throughput through the O_DIRECT/libaio file backend"};
  std::string path;
  uint64_t mib = 1024;
  unsigned queue_depth = 32;
  unsigned request_kib = 1024;
  bool fresh = false;
  bool buffered = false;
  app.add_option("file", path, "image file or block device to overwrite")->required();
  app.add_option("-n,--mib", mib, "MiB to write")->check(CLI::PositiveNumber);
  app.add_option("-q,--queue-depth", queue_depth, "requests in flight")->check(CLI::Range(1, 1024));
  app.add_option("-r,--request-kib", request_kib, "size of each request in KiB")->check(CLI::Range(4, 65536));
  app.add_flag("--fresh", fresh,
               "(regular files) recreate FILE as a sparse file of exactly --mib MiB before timing, so blocks "
               "are allocated during the run, as they are for dd, which truncates its output");
  app.add_flag("--buffered", buffered, "do not ask for O_DIRECT");
  CLI11_PARSE(app, argc, argv);

  const uint64_t total = mib << 20;
  const uint64_t req = uint64_t(request_kib) << 10;
  if (total % req != 0) return fail("--mib must be a whole number of --request-kib requests");

  if (fresh) {
    int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(total)) != 0 || ::fsync(fd) != 0) {
      return fail("cannot recreate " + path + " as a " + std::to_string(mib) + " MiB sparse file: " +
                  std::strerror(errno));
    }
    ::close(fd);
  }

  cext3::OpenOptions opts;
  opts.queue_depth = queue_depth;
  opts.direct = !buffered;
  auto opened = cext3::open_file_device(path, opts);
  if (!opened.ok()) return fail(opened.status().ToString());
  auto& dev = *opened;
  if (dev->size() < total) {
    return fail(path + " holds " + std::to_string(dev->size() >> 20) + " MiB, less than the " +
                std::to_string(mib) + " MiB to write; make it bigger or lower --mib");
  }
  const auto* fdev = dynamic_cast<const cext3::FileDevice*>(dev.get());
  std::string mode = fdev && fdev->direct_io() ? "O_DIRECT" : "buffered (" + (fdev ? fdev->buffered_reason() : "") + ")";

  // One aligned zero buffer, written to every offset: the requests only read it.
  cext3::AlignedBuffer zeros(req);
  std::vector<cext3::IoRequest> batch;
  for (uint64_t off = 0; off < total; off += req) {
    batch.push_back({cext3::IoRequest::Op::kWrite, off, zeros.data(), req});
  }

  const auto t0 = std::chrono::steady_clock::now();
  cext3::Status s = dev->submit(batch);
  if (s.ok()) s = dev->flush();
  const auto t1 = std::chrono::steady_clock::now();
  if (!s.ok()) return fail(s.ToString());

  const double secs = std::chrono::duration<double>(t1 - t0).count();
  std::printf("cext3-bench-io: %llu MiB in %.4f s = %.1f MiB/s (%s, queue depth %u, %u KiB requests, "
              "sector %u, fdatasync included)\n",
              static_cast<unsigned long long>(mib), secs, double(mib) / secs, mode.c_str(), queue_depth,
              request_kib, dev->sector_size());
  return 0;
}
