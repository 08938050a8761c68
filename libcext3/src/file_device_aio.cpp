#include "file_device_aio.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <linux/fs.h>
#include <unistd.h>

namespace cext3::file_device_detail {

namespace {

// io_submit() refusing everything with EAGAIN while nothing of ours is in
// flight means the kernel is short of resources; retry a little, then fail.
constexpr unsigned kMaxSubmitAgain = 200;  // x 1 ms
// A transfer that moves less than one sector, several times in a row.
constexpr unsigned kMaxStalls = 3;

void sleep_1ms() {
  struct timespec ts = {0, 1000 * 1000};
  nanosleep(&ts, nullptr);
}

}  // namespace

// One piece (at most kMaxChunkBytes) of one caller request.
struct AioQueue::Chunk {
  bool write = false;
  uint64_t offset = 0;
  uint8_t* user = nullptr;  // caller's memory for this piece
  size_t len = 0;
  size_t done = 0;          // bytes transferred so far (a multiple of the sector size)
  unsigned stalls = 0;      // completions in a row that made no progress
  // Write-through requested (IoRequest::durable): each piece goes to the
  // kernel with RWF_DSYNC, so it is durable when its completion arrives.
  bool durable = false;
};

// One iocb in flight, with its bounce buffer (kept between batches so that
// steady unaligned traffic does not allocate).
struct AioQueue::Slot {
  struct iocb cb;
  AlignedBuffer bounce;
  size_t chunk = 0;   // index into the current batch's chunks
  size_t len = 0;     // bytes asked of the kernel by cb
  bool bounced = false;
};

Result<std::unique_ptr<AioQueue>> AioQueue::create(unsigned depth) {
  io_context_t ctx = nullptr;
  int r = io_setup(static_cast<int>(depth), &ctx);
  if (r < 0) {
    return Status::FromErrno(-r, "cannot create a Linux AIO context for " + std::to_string(depth) +
                                     " requests (lower the queue depth or raise sysctl fs.aio-max-nr)");
  }
  return std::unique_ptr<AioQueue>(new AioQueue(ctx, depth));
}

AioQueue::AioQueue(io_context_t ctx, unsigned depth) : ctx_(ctx), depth_(depth) {
  for (unsigned i = 0; i < depth_; ++i) slots_.push_back(std::make_unique<Slot>());
}

AioQueue::~AioQueue() { io_destroy(ctx_); }

Status AioQueue::run(const AioTarget& t, std::span<const IoRequest> batch) {
  std::vector<Chunk> chunks;
  for (const IoRequest& r : batch) {
    for (size_t pos = 0; pos < r.len; pos += kMaxChunkBytes) {
      Chunk c;
      c.write = r.op == IoRequest::Op::kWrite;
      c.offset = r.offset + pos;
      c.user = static_cast<uint8_t*>(r.buf) + pos;
      c.len = std::min(kMaxChunkBytes, r.len - pos);
      c.durable = c.write && r.durable;
      chunks.push_back(c);
    }
  }
  if (chunks.empty()) return Status::OK();

  auto what = [&](const Chunk& c, size_t len) {
    return t.name + ": " + (c.write ? "write" : "read") + " of " + std::to_string(len) +
           " bytes at offset " + std::to_string(c.offset + c.done);
  };

  Status first;
  auto fail = [&](Status s) {
    if (first.ok()) first = std::move(s);
  };

  std::vector<Slot*> free_slots;
  for (auto& s : slots_) free_slots.push_back(s.get());
  std::vector<struct iocb*> pending;  // prepared, not yet accepted by io_submit
  std::vector<size_t> retry;          // chunks to resubmit after a short transfer
  std::vector<struct io_event> events(depth_);
  size_t next_new = 0;
  unsigned in_flight = 0;
  unsigned again = 0;
  // A kernel without per-request RWF_DSYNC (before Linux 4.13) rejects the
  // flag at io_submit: those pieces go again as plain writes and the batch
  // ends with an fdatasync instead.
  bool sync_at_end = false;

  auto prepare = [&](Slot& s, size_t ci) {
    Chunk& c = chunks[ci];
    const size_t len = c.len - c.done;
    uint8_t* user = c.user + c.done;
    void* buf = user;
    s.bounced = reinterpret_cast<uintptr_t>(user) % t.mem_align != 0;
    if (s.bounced) {
      if (s.bounce.size() < len) s.bounce = AlignedBuffer(len);
      buf = s.bounce.data();
      if (c.write) std::memcpy(buf, user, len);
    }
    const auto off = static_cast<long long>(c.offset + c.done);
    if (c.write) {
      io_prep_pwrite(&s.cb, t.fd, buf, len, off);
      if (c.durable) s.cb.aio_rw_flags = RWF_DSYNC;
    } else {
      io_prep_pread(&s.cb, t.fd, buf, len, off);
    }
    s.cb.data = &s;
    s.chunk = ci;
    s.len = len;
  };

  auto complete = [&](Slot& s, long res) {
    Chunk& c = chunks[s.chunk];
    if (res < 0) {
      fail(Status::FromErrno(static_cast<int>(-res), what(c, s.len)));
    } else {
      const size_t got = std::min(static_cast<size_t>(res), s.len);
      // Resume only at a sector boundary: O_DIRECT cannot start mid-sector,
      // and re-reading or re-writing the same bytes is harmless.
      const size_t progress = got / t.sector_size * t.sector_size;
      if (!c.write && s.bounced && progress) std::memcpy(c.user + c.done, s.bounce.data(), progress);
      c.done += progress;
      if (c.done < c.len) {
        if (got == 0) {
          fail(Status::IoError(what(c, s.len) + " hit the end of the file; did it shrink while open? "
                               "Check the image and reopen it"));
        } else if (progress == 0 && ++c.stalls > kMaxStalls) {
          fail(Status::IoError(what(c, s.len) + " keeps transferring less than one sector; "
                               "the device is misbehaving, check the kernel log"));
        } else {
          if (progress) c.stalls = 0;
          retry.push_back(s.chunk);
        }
      }
    }
    free_slots.push_back(&s);
  };

  for (;;) {
    // Fill every free slot: short-transfer retries first, then new chunks.
    while (!free_slots.empty() && (!retry.empty() || next_new < chunks.size())) {
      size_t ci;
      if (!retry.empty()) {
        ci = retry.back();
        retry.pop_back();
      } else {
        ci = next_new++;
      }
      Slot* s = free_slots.back();
      free_slots.pop_back();
      prepare(*s, ci);
      pending.push_back(&s->cb);
    }
    if (pending.empty() && in_flight == 0) break;

    if (!pending.empty()) {
      int r = io_submit(ctx_, static_cast<long>(pending.size()), pending.data());
      if (r > 0) {
        // Partial submission is normal: the first r are in flight, the rest
        // go again on the next round.
        pending.erase(pending.begin(), pending.begin() + r);
        in_flight += static_cast<unsigned>(r);
        again = 0;
      } else if (r == 0 || r == -EAGAIN || r == -EINTR) {
        if (in_flight == 0) {
          if (++again > kMaxSubmitAgain) {
            // Give up on everything not yet started; nothing is in flight.
            fail(Status::FromErrno(EAGAIN, t.name + ": the kernel refuses to queue more I/O (io_submit)"));
            for (struct iocb* cb : pending) free_slots.push_back(static_cast<Slot*>(cb->data));
            pending.clear();
            retry.clear();
            next_new = chunks.size();
            continue;
          }
          sleep_1ms();
          continue;
        }
        // Otherwise reaping below frees kernel resources.
      } else {
        // The kernel rejected the first pending iocb outright; the others
        // were not looked at and stay pending.
        Slot* s = static_cast<Slot*>(pending.front()->data);
        if ((r == -EINVAL || r == -EOPNOTSUPP) && s->cb.aio_rw_flags != 0) {
          // No RWF_DSYNC in this kernel's AIO: plain write, fdatasync later.
          for (struct iocb* cb : pending) {
            Slot* p = static_cast<Slot*>(cb->data);
            if (p->cb.aio_rw_flags == 0) continue;
            p->cb.aio_rw_flags = 0;
            chunks[p->chunk].durable = false;
          }
          for (Chunk& c : chunks) c.durable = false;
          sync_at_end = true;
          continue;
        }
        fail(Status::FromErrno(-r, what(chunks[s->chunk], s->len)));
        pending.erase(pending.begin());
        free_slots.push_back(s);
        continue;
      }
    }

    if (in_flight > 0) {
      int n = io_getevents(ctx_, 1, static_cast<long>(in_flight), events.data(), nullptr);
      if (n == -EINTR) continue;
      if (n < 0) {
        // The kernel still owns the in-flight buffers, some of them the
        // caller's: returning now would let it write into freed memory.
        std::fprintf(stderr, "cext3: %s: io_getevents failed: %s; aborting to protect memory\n",
                     t.name.c_str(), std::strerror(-n));
        std::abort();
      }
      in_flight -= static_cast<unsigned>(n);
      for (int i = 0; i < n; ++i) {
        complete(*static_cast<Slot*>(events[i].data), static_cast<long>(events[i].res));
      }
    }
  }
  if (sync_at_end && first.ok() && ::fdatasync(t.fd) != 0)
    fail(Status::FromErrno(errno, t.name + ": making a write-through write durable (fdatasync) failed; "
                                      "data since the last flush may be lost, check the device"));
  return first;
}

AioQueuePool::AioQueuePool(unsigned depth, unsigned max_queues)
    : depth_(depth), max_queues_(std::max(max_queues, 1u)) {}

Status AioQueuePool::init(const std::string& name) {
  auto made = AioQueue::create(depth_);
  if (!made.ok()) return made.status().Annotate(name);
  std::lock_guard<std::mutex> g(mu_);
  idle_.push_back(std::move(made).value());
  live_ = 1;
  return Status::OK();
}

Status AioQueuePool::run(const AioTarget& target, std::span<const IoRequest> batch) {
  std::unique_ptr<AioQueue> q;
  {
    std::unique_lock<std::mutex> lk(mu_);
    while (!q) {
      if (!idle_.empty()) {
        q = std::move(idle_.back());
        idle_.pop_back();
        break;
      }
      if (live_ < max_queues_) {
        ++live_;
        lk.unlock();
        auto made = AioQueue::create(depth_);
        lk.lock();
        if (made.ok()) {
          q = std::move(made).value();
          break;
        }
        // Out of kernel AIO contexts (fs.aio-max-nr): share the ones we have.
        --live_;
        max_queues_ = std::max(live_, 1u);
        continue;
      }
      idle_cv_.wait(lk);
    }
  }
  Status s = q->run(target, batch);
  {
    std::lock_guard<std::mutex> g(mu_);
    idle_.push_back(std::move(q));
  }
  idle_cv_.notify_one();
  return s;
}

}  // namespace cext3::file_device_detail
